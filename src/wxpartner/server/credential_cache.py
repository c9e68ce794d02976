"""Each process's memory of (merchant, certificate, sandbox clock) lookups, valid while the database's
change word is unchanged (store/change_signal.py) and for at most a second.

SQLite: the word is shared memory on the host, checked before a remembered lookup is used (``lookup``).
PostgreSQL: the word is a row, read by the statement that records the request's nonce, so a
remembered lookup is used first and checked after (``remembered`` / ``remember``, server/verify.py).
Only found credentials are kept, so a request with an unknown mchid or serial_no always looks again
(and cannot fill the cache).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from ..domain.clock import ClockState
from ..domain.merchants import Merchant
from ..store.change_signal import ChangeSignal
from ..store.registry import Credential

Lookup = tuple[Merchant | None, Credential | None, ClockState]

# Bounds what a change made behind the signal's back (the sqlite3 shell, a process killed between its
# commit and the signal) can leave unseen.
MAX_AGE_S = 1.0
SIZE = 4096


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
