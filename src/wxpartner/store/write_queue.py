"""The queue SQLite writers wait in: one at a time per database file, across threads and processes.

SQLite lets one writer in at a time; the others wait in its busy handler, which polls with sleeps of
1, 2, 5 … 100 ms. Under load that wait is the request's latency, and two worker processes taking turns
through it lose most of their second core (measured: 2 workers served W4 at 1.2× one worker's rate).
Here a writer blocks instead: threads of a process on a lock, processes on an exclusive ``flock`` of a
file beside the database, so the kernel wakes the next writer the moment the lock is released.

The queue is only an ordering aid. SQLite still does the locking that keeps data safe, so a process
that does not queue here (an old CLI, the sqlite3 shell) is still correct, it just waits as before.
A process that dies holding the file lock releases it with its file descriptors.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path


class WriteQueue:
    def __init__(self, database: Path | None) -> None:
        self._lock = threading.Lock()
        self._depth = threading.local()  # re-entrant: a nested turn of the same thread goes straight through
        self._path = database.with_name(database.name + ".writelock") if database is not None else None
        self._fd: int | None = None
        self._pid = 0

    def _file(self) -> int | None:
        if self._path is None:
            return None
        if self._fd is None or self._pid != os.getpid():  # a forked child needs its own description
            try:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:  # read-only directory: SQLite's own waiting still applies
                self._path = None
                return None
            self._pid = os.getpid()
        return self._fd

    def close(self) -> None:
        """Close the lock file (a later turn opens it again)."""
        acquired = self._lock.acquire(timeout=10)  # not under a turn of another thread
        try:
            fd, self._fd = self._fd, None
            if fd is not None:
                os.close(fd)
        finally:
            if acquired:
                self._lock.release()

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        """Hold the database's single writer slot for the duration of the block."""
        depth = getattr(self._depth, "n", 0)
        if depth:
            self._depth.n = depth + 1
            try:
                yield
            finally:
                self._depth.n = depth
            return
        # Bounded like busy_timeout: a thread that cannot get its turn goes on to SQLite's own wait
        # (and its SQLITE_BUSY error) rather than hanging forever.
        acquired = self._lock.acquire(timeout=10)
        fd = None
        try:
            fd = self._file() if acquired else None
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            self._depth.n = 1
            try:
                yield
            finally:
                self._depth.n = 0
                if fd is not None:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            if acquired:
                self._lock.release()
