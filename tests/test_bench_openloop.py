"""The benchmark's open-loop load generator (bench/openloop.c) against a small HTTP server on loopback:
every request is answered once and counted, and a server that stalls shows the stall in the tail
(latency from each request's due time, not from when the generator got around to sending it)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from bench import openloop

BINARY = openloop.compiled()
pytestmark = pytest.mark.skipif(BINARY is None, reason="no C compiler to build bench/openloop.c")


@contextmanager
def http_server(*, stall_at: int = -1, stall_s: float = 0.0, status_every: int = 0) -> Iterator[int]:
    """Keep-alive HTTP/1.1 on an event loop in a thread. Request number ``stall_at`` blocks the whole
    loop for ``stall_s`` (every connection waits); every ``status_every``-th answer is a 500."""
    loop = asyncio.new_event_loop()
    count = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                count += 1
                if count == stall_at:
                    time.sleep(stall_s)  # blocking on purpose: the server answers nobody meanwhile
                status = (
                    b"500 Internal Server Error" if status_every and count % status_every == 0 else b"200 OK"
                )
                body = b'{"ok":true}'
                writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            writer.close()

    async def stop(server: asyncio.Server) -> None:
        server.close()
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(asyncio.start_server(handle, "127.0.0.1", 0), loop).result(5)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        asyncio.run_coroutine_threadsafe(stop(server), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


REQUEST = b"GET /v3/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def test_every_request_is_sent_once_and_answered() -> None:
    with http_server(status_every=10) as port:
        lat = openloop.measure("127.0.0.1", port, [REQUEST] * 600, 1000.0, connections=8)
    assert lat.generator == "c"
    assert lat.sent == 600
    assert lat.ok == 540  # every 10th answer was a 500: counted, not as ok
    assert 0 < lat.p50_ms <= lat.p99_ms < 200
    assert 500 < lat.achieved_rate < 1500


def test_a_stalled_server_shows_in_the_tail() -> None:
    # 1,000 requests at 1,000/s; the 200th blocks the server for 150 ms. Requests due meanwhile wait,
    # and their latency counts from when they were due: about 150 of them, so p99 is well over 50 ms.
    # A generator that waited for answers before sending (coordinated omission) would see one slow
    # request and a p99 of a millisecond or two.
    with http_server(stall_at=200, stall_s=0.15) as port:
        lat = openloop.measure("127.0.0.1", port, [REQUEST] * 1000, 1000.0, connections=16)
    assert lat.ok == 1000
    assert lat.p99_ms > 50
    assert lat.p50_ms < 50
