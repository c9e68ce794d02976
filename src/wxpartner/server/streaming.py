"""An answer written as a blocking generator produces it: the generator runs in a thread of its own
(a database transaction it holds open stays on that thread), and hands chunks over through a small
queue, so a slow client holds back the reading instead of letting the answer pile up in memory."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import AsyncIterator, Generator

import anyio
from starlette.responses import StreamingResponse

QUEUED = 4  # chunks waiting for the client at most
# A client that takes nothing for this long is given up on: the generator is closed (its transaction
# ends; PostgreSQL would end an idle transaction at 30 s anyway) and the answer ends short.
STALL_SECONDS = 25.0
_END = object()


async def streamed(chunks: Generator[bytes, None, None], media_type: str) -> StreamingResponse:
    """Start ``chunks`` and answer with what it yields. Its first chunk is awaited here: an error
    before it (the database unreachable) is raised to the caller, who can still answer it properly;
    an error later can only cut the answer short (the status line is sent)."""
    handed: queue.Queue[object] = queue.Queue(maxsize=QUEUED)
    stop = threading.Event()  # the client is gone: the producer stops
    finished = threading.Event()  # the producer is gone: what it handed over is all there is

    def hand(item: object) -> bool:
        deadline = time.monotonic() + STALL_SECONDS
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                handed.put(item, timeout=0.25)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        last: object = None  # stays None when the client went away or stalled: nothing more is handed
        try:
            try:
                for chunk in chunks:
                    if not hand(chunk):
                        return
                last = _END
            except Exception as exc:  # handed over, to be raised on the event loop
                last = exc
            finally:
                chunks.close()  # ends its transaction, in the thread that began it
            if last is not None:
                hand(last)
        finally:
            finished.set()  # whatever happened: take() never waits for a producer that is gone

    def take() -> object:
        while True:
            try:
                return handed.get(timeout=0.25)
            except queue.Empty:
                if finished.is_set() and handed.empty():  # it gave up on a stalled client
                    return ConnectionAbortedError("the answer was given up on: the client stalled")

    threading.Thread(target=produce, name="wx-stream", daemon=True).start()
    first = await anyio.to_thread.run_sync(take)
    if isinstance(first, Exception):
        raise first

    async def body() -> AsyncIterator[bytes]:
        item = first
        try:
            while item is not _END:
                if isinstance(item, Exception):
                    raise item
                assert isinstance(item, bytes)
                yield item
                item = await anyio.to_thread.run_sync(take)
        finally:
            stop.set()

    return StreamingResponse(body(), media_type=media_type)
