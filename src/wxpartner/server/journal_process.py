"""The request journal's writer process: one beside each ``wxpartner serve`` worker, at idle priority.

Writing the journal costs CPU (≈ 12 µs a row in-process), and on a machine whose CPUs the workers
share with their clients, that work, wherever it ran at normal priority, moved W4's p99 at half load
by 1–3 ms. Written by a process at the scheduler's idle priority (Linux ``SCHED_IDLE``; ``nice 19``
elsewhere), it takes only CPU time nobody else wants: W4's p99 came within 0.1–1.2 ms of no journal
at all (docs/performance-log.md, session 28). A thread of the worker at idle priority did not help:
it holds the GIL while binding rows, and the loop waits for it.

The worker (server/journal_link.py: ``JournalLink``) ships its buffered rows over a socket pair, in frames
of a 4-byte big-endian length and a ``marshal``-ed tuple:

- ``("rows", [row, ...])``: written here, ``CHUNK`` rows per transaction, as the worker would; after
  each transaction the writer answers ``b"W"`` + the rows done with so far (8 bytes, counted from the
  first row it was sent: written, or dropped as unstorable or beyond ``MAX_PENDING``). The worker keeps
  every row until it is counted there, so rows a writer received and never wrote (it died, or was
  still put off at idle priority when its worker stopped and killed it) are written by the worker;
- ``("sync", n)``: answered ``b"S"`` + ``n`` once every row received before it is written or dropped
  (a reader's flush: it finds its worker's requests), or after 4 s of a database that refuses them
  (they stay pending);
- rows it drops are also told, before they are counted done with: ``b"F"`` + how many went because
  more than ``MAX_PENDING`` waited, ``b"U"`` + how many the database refused for their data; the
  worker counts them in its ``/metrics`` (``wxpartner_journal_events_total``, as its own drops);
- end of file (the worker is stopping): what is pending is written, then the process exits.

The database comes from the worker's settings (``WXPARTNER_SETTINGS``, inherited): its URL may hold a
password, so it is not on the command line. Rows that fail to write for anything but their data stay
pending and are tried again (a database outage), at most ``MAX_PENDING`` of them.
"""

from __future__ import annotations

import contextlib
import logging
import marshal
import os
import select
import signal
import socket
import struct
import sys
import time
from collections import deque
from typing import Any

log = logging.getLogger("wxpartner.journal")


def _lower_priority() -> None:
    """Idle priority for this process and every thread it starts (threads inherit it): first, so even
    the imports of the database layer take only idle CPU."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux
        os.nice(19)


CHUNK = 64  # rows per transaction, as the worker's own writer (server/journal.py)
MAX_PENDING = 20_000  # while the database is down, at most this many rows wait here
RETRY_SECONDS = 0.5  # after a failed write
_HEAD = struct.Struct(">I")
_ACK = struct.Struct(">cQ")


def frame(message: tuple[Any, ...]) -> bytes:
    data = marshal.dumps(message)
    return _HEAD.pack(len(data)) + data


def unframe(data: bytes) -> tuple[Any, ...]:
    """The message of one whole frame."""
    return tuple(marshal.loads(data[_HEAD.size :]))


SYNCED, WRITTEN = b"S", b"W"
# Rows dropped, by the event the worker counts them as (server/metrics.py: JOURNAL).
DROPPED = {b"F": "buffer_full", b"U": "unstorable"}
_DROP_KIND = {event: kind for kind, event in DROPPED.items()}


def ack(kind: bytes, n: int) -> bytes:
    return _ACK.pack(kind, n)


ACK_SIZE = _ACK.size


def dropped_ack(event: str, n: int) -> bytes:
    return _ACK.pack(_DROP_KIND[event], n)


def read_ack(data: bytes) -> tuple[bytes, int]:
    """(SYNCED, the sync's number), (WRITTEN, the rows done with so far) or (a ``DROPPED`` kind, how
    many rows were just dropped)."""
    kind, n = _ACK.unpack(data)
    if kind not in (SYNCED, WRITTEN) and kind not in DROPPED:
        raise ValueError(f"not an acknowledgement: {data!r}")
    return kind, int(n)


class _Frames:
    """Frames from a blocking socket; ``next(wait)`` is None when none is complete within ``wait``
    seconds (None: wait as long as it takes), ``EOFError`` at the end."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def _complete(self) -> tuple[Any, ...] | None:
        if len(self.buf) < _HEAD.size:
            return None
        (size,) = _HEAD.unpack_from(self.buf)
        if len(self.buf) < _HEAD.size + size:
            return None
        message = marshal.loads(bytes(self.buf[_HEAD.size : _HEAD.size + size]))
        del self.buf[: _HEAD.size + size]
        return tuple(message)

    def next(self, wait: float | None) -> tuple[Any, ...] | None:
        while (message := self._complete()) is None:
            if wait is not None and not select.select([self.sock], [], [], wait)[0]:
                return None
            data = self.sock.recv(1 << 20)
            if not data:
                raise EOFError
            self.buf += data
        return message


class _Writer:
    def __init__(self, sock: socket.socket, url: str, keep: int) -> None:
        from ..store.db import Database

        self.sock = sock
        self.db = Database(url, pool_size=1)
        self.keep = keep
        self.pending: deque[dict[str, Any]] = deque()
        self.retry_at = 0.0
        self.done = 0  # rows done with, in the order received: what the worker may forget

    def add(self, rows: list[dict[str, Any]]) -> None:
        self.pending.extend(rows)
        if len(self.pending) > MAX_PENDING:
            over = len(self.pending) - MAX_PENDING
            for _ in range(over):
                self.pending.popleft()
            log.warning("journal writer %d rows behind: the %d oldest dropped", MAX_PENDING, over)
            self.sock.sendall(dropped_ack("buffer_full", over))
            self._done_with(over)

    def _done_with(self, rows: int) -> None:
        if rows:
            self.done += rows
            self.sock.sendall(ack(WRITTEN, self.done))

    def write_chunk(self) -> bool:
        """The oldest CHUNK pending rows; False when it failed (they stay pending)."""
        from ..store import ops_repo

        if time.monotonic() < self.retry_at:
            return False
        chunk = [self.pending.popleft() for _ in range(min(CHUNK, len(self.pending)))]
        done, dropped, failure = ops_repo.write_journal_chunk(self.db, chunk, self.keep)  # and logged
        if dropped:
            self.sock.sendall(dropped_ack("unstorable", dropped))
        self._done_with(done)
        if failure is None:
            return True
        self.pending.extendleft(reversed(chunk[done:]))
        self.retry_at = time.monotonic() + RETRY_SECONDS
        log.warning("journal write failed (%s); %d rows kept", type(failure).__name__, len(self.pending))
        return False

    def write_all(self, deadline: float | None = None) -> None:
        """Everything pending, retrying a failed write until ``deadline`` (None: once)."""
        while self.pending:
            if self.write_chunk():
                continue
            if deadline is None or time.monotonic() >= deadline:
                return
            time.sleep(RETRY_SECONDS)


def serve(sock: socket.socket, url: str, keep: int) -> None:
    writer = _Writer(sock, url, keep)
    frames = _Frames(sock)
    try:
        while True:
            # Rows waiting: look for more without blocking, else write a chunk of them.
            try:
                message = frames.next(0 if writer.pending else None)
            except EOFError:
                writer.write_all(time.monotonic() + 10)
                return
            if message is None:
                if not writer.write_chunk():
                    time.sleep(RETRY_SECONDS / 10)
                continue
            if message[0] == "rows":
                writer.add(message[1])
            elif message[0] == "sync":  # answered within 4 s, before the worker's 5 s wait ends
                writer.write_all(time.monotonic() + 4)
                sock.sendall(ack(SYNCED, int(message[1])))
    finally:
        writer.db.dispose()


def main(argv: list[str]) -> int:
    _lower_priority()
    # Ctrl-C reaches the whole process group, a service manager's stop every process of the service:
    # this one ends when its worker closes the socket pair (at its stop, or its death), after writing
    # what it was given. Ended by a signal, it would lose the worker's last rows.
    for stop_signal in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop_signal, signal.SIG_IGN)
    from ..store.ops_repo import DEFAULT_KEEP
    from .settings import Settings

    settings = Settings.from_env()
    keep = settings.extra.get("journal_keep", DEFAULT_KEEP)  # the worker checked it at start-up
    sock = socket.socket(fileno=int(argv[1]))
    sock.setblocking(True)
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the worker is gone
        serve(sock, settings.resolved_database_url(), keep if isinstance(keep, int) else DEFAULT_KEEP)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
