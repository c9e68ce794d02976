"""Each process's memory of (merchant, certificate, sandbox clock) lookups, valid while the database's
change word is unchanged (store/change_signal.py) and for at most a second.

SQLite: the word is shared memory on the host, checked before a remembered lookup is used (``lookup``).
PostgreSQL: the word is a row, read by the statement that records the request's nonce, so a
remembered lookup is used first and checked after (``remembered`` / ``remember``, server/verify.py).
Only found credentials are kept here, so a request with an unknown mchid or serial_no cannot fill it.
Unknown ones are answered by ``Registered``: every registered (mchid, serial_no) pair, read at one word
and for at most a second like a remembered lookup, so that a flood of requests naming unknown merchants
or serials, fixed or random, costs no lookup each (README: Request verification). It is as big as the
registry, not as what requests name, and not kept at all beyond ``REGISTERED_LIMIT`` pairs.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy.engine import Connection

from ..domain.clock import ClockState
from ..domain.merchants import Merchant
from ..store import registry
from ..store.change_signal import ChangeSignal
from ..store.registry import Credential

Lookup = tuple[Merchant | None, Credential | None, ClockState]

# Bounds what a change made behind the signal's back (the sqlite3 shell, a process killed between its
# commit and the signal) can leave unseen.
MAX_AGE_S = 1.0
SIZE = 4096
# Registries with more (mchid, serial_no) pairs than this are not kept in memory (their requests naming
# unknown ones are looked up each, as before): the memory stays bounded whatever the database holds.
REGISTERED_LIMIT = 10_000


class CredentialCache:
    def __init__(self, signal: ChangeSignal | None = None) -> None:
        self._signal = signal  # None: the caller checks the word itself (PostgreSQL)
        self._entries: OrderedDict[tuple[str, str], tuple[Lookup, object, float]] = OrderedDict()
        self._lock = threading.Lock()

    def lookup(self, mchid: str, serial_no: str, fetch: Callable[[], Lookup]) -> Lookup:
        """The remembered lookup, or ``fetch()``'s (remembered when it found a credential). The word is
        read before fetching: a fetch that raced a change is kept under the old word, so redone."""
        assert self._signal is not None
        found = self.get(mchid, serial_no)
        if found is None:
            word = self._signal.current()
            found = fetch()
            self.remember(mchid, serial_no, found, word)
        return found

    def word(self) -> int:
        """The change word now (SQLite's shared-memory signal)."""
        assert self._signal is not None
        return self._signal.current()

    def get(self, mchid: str, serial_no: str) -> Lookup | None:
        assert self._signal is not None
        entry = self.remembered(mchid, serial_no)
        if entry is None or entry[1] != self._signal.current():
            return None
        return entry[0]

    def remembered(self, mchid: str, serial_no: str) -> tuple[Lookup, object] | None:
        """The lookup kept for this pair and the word it was read at, if younger than MAX_AGE_S."""
        entry = self._entries.get((mchid, serial_no))
        if entry is None or time.monotonic() - entry[2] > MAX_AGE_S:
            return None
        return entry[0], entry[1]

    def remember(self, mchid: str, serial_no: str, found: Lookup, word: object) -> None:
        if found[1] is None:
            return
        with self._lock:
            self._entries[(mchid, serial_no)] = (found, word, time.monotonic())
            self._entries.move_to_end((mchid, serial_no))
            while len(self._entries) > SIZE:
                self._entries.popitem(last=False)


@dataclass(frozen=True, slots=True)
class Registered:
    """Every registered merchant and the serial numbers of its certificates (revoked ones too: those
    are refused on a lookup, which says so), read at change word ``word``."""

    serials: Mapping[str, tuple[str, ...]]
    word: object
    read_at: float

    def unknown(self, mchid: str, serial_no: str) -> str | None:
        """ "mchid" or "serial_no" when the request names one not registered, else None."""
        found = self.serials.get(mchid)
        if found is None:
            return "mchid"
        return None if serial_no in found else "serial_no"


class RegisteredMemory:
    """The last ``Registered`` read (one per process), or why there is none."""

    def __init__(self, limit: int | None = None) -> None:
        self._limit = REGISTERED_LIMIT if limit is None else limit
        self._kept: Registered | None = None
        # (word, read_at) of a registry found too big to keep: not read again at that word.
        self._too_big: tuple[object, float] | None = None

    def at(self, word: object) -> Registered | None:
        """The registry as read at ``word``, if kept and younger than MAX_AGE_S."""
        kept = self._kept
        if kept is None or kept.word != word or time.monotonic() - kept.read_at > MAX_AGE_S:
            return None
        return kept

    def latest(self) -> Registered | None:
        """PostgreSQL: the registry last read, if younger than MAX_AGE_S, whatever word it was read at
        (the caller compares that with the database's word before trusting it)."""
        kept = self._kept
        if kept is None or time.monotonic() - kept.read_at > MAX_AGE_S:
            return None
        return kept

    def read(self, conn: Connection, word: object = None) -> Registered | None:
        """Read the registry on ``conn`` and keep it. ``word``: the change signal's, read before
        (SQLite); None: PostgreSQL's generation, read by the same statement (never kept when the
        database has none yet: a deleted row would bring None back)."""
        too_big = self._too_big
        if too_big is not None and time.monotonic() - too_big[1] <= MAX_AGE_S and word in (None, too_big[0]):
            return None  # PostgreSQL (word None): read again a second later at the earliest
        rows = registry.registered_pairs(conn, self._limit + 1)
        if len(rows) > self._limit:
            self._too_big, self._kept = (word, time.monotonic()), None
            return None
        if word is None:
            word = rows[0][2] if rows else None
            if word is None:
                return None
        serials: dict[str, list[str]] = {}
        for mchid, serial_no, _ in rows:
            listed = serials.setdefault(mchid, [])
            if serial_no is not None:
                listed.append(serial_no)
        self._kept = Registered({m: tuple(s) for m, s in serials.items()}, word, time.monotonic())
        return self._kept
