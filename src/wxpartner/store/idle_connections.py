"""SQLite connections kept checked out between transactions, ready for the next one.

Checking a connection out of SQLAlchemy's pool and back in (fairy, events, the rollback of
reset-on-return, a new ``Connection``) cost about 40 µs per transaction here, as much as the SQLite
work of a request's nonce insert. Idle connections wait on a shelf instead: a transaction takes one,
and gives it back when it ended cleanly. The shelf is shared by all threads (a dead thread leaves
nothing behind), bounded (extra connections go back to the pool), and belongs to one process (a
forked child starts with an empty shelf and leaves the parent's connections alone).

Only for SQLite: a PostgreSQL connection held idle is a server slot, and its pool checkout also
pings the server, which a shelf would skip.
"""

from __future__ import annotations

import contextlib
import os
import threading

from sqlalchemy.engine import Connection, Engine


class IdleConnections:
    def __init__(self, engine: Engine, *, write: bool, keep: int = 8) -> None:
        self._engine = engine
        self._write = write
        self._keep = keep
        self._shelf: list[Connection] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._closed = False

    def take(self) -> Connection:
        """An idle connection not in a transaction (a new one from the pool if the shelf is empty)."""
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's connections are not ours to use
                self._shelf, self._pid = [], os.getpid()
            conn = self._shelf.pop() if self._shelf else None
        if conn is None:
            conn = self._engine.connect()
            if self._write:
                conn = conn.execution_options(wx_write=True)
        return conn

    def give(self, conn: Connection) -> None:
        """Back on the shelf if it is healthy and idle; otherwise (or when full) back to the pool."""
        healthy = not conn.closed and not conn.invalidated and not conn.in_transaction()
        with self._lock:
            if healthy and not self._closed and self._pid == os.getpid() and len(self._shelf) < self._keep:
                self._shelf.append(conn)
                return
        with contextlib.suppress(Exception):
            conn.close()

    def close(self) -> None:
        """Close the idle ones; connections still in use are closed when they are given back."""
        with self._lock:
            shelf, self._shelf, self._closed = self._shelf, [], True
            mine = self._pid == os.getpid()
        for conn in shelf if mine else ():
            with contextlib.suppress(Exception):
                conn.close()
