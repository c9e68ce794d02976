"""Each process's memory of (merchant, certificate, sandbox clock) lookups, valid while the database's
change signal is unchanged (store/change_signal.py) and for at most a second.

A SQLite deployment only (its processes share the signal on one host). Only found credentials are
kept, so a request with an unknown mchid or serial_no always looks again (and cannot fill the cache).
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
    def __init__(self, signal: ChangeSignal) -> None:
        self._signal = signal
        self._entries: OrderedDict[tuple[str, str], tuple[Lookup, int, float]] = OrderedDict()
        self._lock = threading.Lock()

    def lookup(self, mchid: str, serial_no: str, fetch: Callable[[], Lookup]) -> Lookup:
        """The remembered lookup, or ``fetch()``'s (remembered when it found a credential). The word is
        read before fetching: a fetch that raced a change is kept under the old word, so redone."""
        found = self.get(mchid, serial_no)
        if found is None:
            word = self._signal.current()
            found = fetch()
            self._put(mchid, serial_no, found, word)
        return found

    def get(self, mchid: str, serial_no: str) -> Lookup | None:
        entry = self._entries.get((mchid, serial_no))
        if entry is None:
            return None
        found, word, at = entry
        if word != self._signal.current() or time.monotonic() - at > MAX_AGE_S:
            return None
        return found

    def _put(self, mchid: str, serial_no: str, found: Lookup, word: int) -> None:
        if found[1] is None:
            return
        with self._lock:
            self._entries[(mchid, serial_no)] = (found, word, time.monotonic())
            self._entries.move_to_end((mchid, serial_no))
            while len(self._entries) > SIZE:
                self._entries.popitem(last=False)
