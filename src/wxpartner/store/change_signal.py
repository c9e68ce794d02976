"""A word shared by the processes of a deployment that changes whenever merchants, their certificates
or the sandbox clock do, so each process may keep them in memory between requests.

Every request needs its merchant, the certificate named by its ``serial_no`` and the sandbox clock; they
change rarely (a scenario applied, a certificate revoked, the clock moved), and looking them up cost a
read transaction per request. A process caches them together with the word it read *before* the lookup;
a transaction that changed them rewrites the word *after* it committed, so a cached lookup is stale
exactly when the word differs (a lookup that raced the commit carries the old word and is redone).

The word lives in ``<db>.changes`` beside the database, mapped by every process (one host, like SQLite
itself). A change made by other means (the ``sqlite3`` shell) does not rewrite it: caches also expire
after a second (``server/credential_cache.py``).

PostgreSQL's hosts share no memory: there the word is a row of ``sandbox_kv`` (``GENERATION_KEY``)
rewritten *inside* the changing transaction, so it commits or rolls back with the change, and every
host sees it at the same moment as the change itself. A request reads it in the statement that
records its nonce, which it runs anyway (server/verify.py), so checking a cached lookup costs no round
trip.
"""

from __future__ import annotations

import functools
import mmap
import os
import struct
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .schema import sandbox_kv

_WORD = struct.Struct("<Q")
_MARK = "wx_cached_rows_changed"
GENERATION_KEY = "changes:generation"


@functools.cache
def _new_generation() -> Any:
    """The upsert that rewrites the word on PostgreSQL, made at its first use: SQLAlchemy's PostgreSQL
    dialect costs ≈ 35 ms of CPU to import, which a SQLite process (every ``serve`` start) never needs.
    Compiled once (db.LeanStatement: every change's mark, control calls and resets included)."""
    from sqlalchemy.dialects import postgresql

    from .db import LeanStatement  # db imports this module

    return LeanStatement(
        postgresql.insert(sandbox_kv)
        .values(key=GENERATION_KEY, value=sa.bindparam("value"))
        .on_conflict_do_update(index_elements=[sandbox_kv.c.key], set_={"value": sa.bindparam("value")})
    )


def note_change(conn: Connection) -> None:
    """Mark the transaction on ``conn``: once it commits, every process drops its cached lookups."""
    conn.info[_MARK] = True
    if conn.dialect.name == "postgresql":
        # A new random value, not a counter: a reset that deleted the row could bring a counter back to
        # a value some host still holds.
        _new_generation().rows(conn, {"value": os.urandom(8).hex()})


def take_change(conn: Connection) -> bool:
    """Whether the transaction that just ended on ``conn`` was marked (and clear the mark)."""
    return bool(conn.info.pop(_MARK, False))


class ChangeSignal:
    def __init__(self, database: Path) -> None:
        self._path = database.with_name(database.name + ".changes")
        self._map: mmap.mmap | None = None
        self._pid = 0

    def _word(self) -> mmap.mmap:
        if self._map is None or self._pid != os.getpid():
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                if os.fstat(fd).st_size < _WORD.size:
                    os.pwrite(fd, bytes(_WORD.size), 0)  # written, not sparse: no SIGBUS on a full disk
                self._map, self._pid = mmap.mmap(fd, _WORD.size), os.getpid()
            finally:
                os.close(fd)
        return self._map

    def current(self) -> int:
        return int(_WORD.unpack_from(self._word(), 0)[0])

    def signal(self) -> None:
        """Rewrite the word with a new random value (no lock needed: any new value means "changed")."""
        _WORD.pack_into(self._word(), 0, int.from_bytes(os.urandom(_WORD.size), "little"))

    def close(self) -> None:
        if self._map is not None and self._pid == os.getpid():
            self._map.close()
        self._map = None
