"""The replay window of a SQLite deployment, shared by its processes through files mapped in memory.

Every accepted request records (mchid, nonce), and a nonce recorded again while still remembered is a
replay. PostgreSQL keeps the window in ``request_nonces`` because its servers may run on many hosts. A
SQLite database lives on one host by construction (its locking needs one kernel), so all its processes
can share the window through memory instead of a write transaction per request: that transaction (the
writers' queue, an insert into two B-trees, a commit that appends to the WAL, later a checkpoint) cost
every request, reads included, more than everything else the database did for it.

Layout, beside the database file:

- ``<db>.replay``, the index (one page): a version that changes whenever the list of generations does,
  the retention history (below), and per generation its number, size, fill and newest entry;
- ``<db>.replay-<n>``, the generations: fixed-size hash tables with linear probing, of 16-byte slots
  (8 bytes of a BLAKE2b digest of mchid and nonce, 4 of a digest of mchid, 4 of the unix second the
  nonce was recorded; 0 marks an empty slot, 1 a forgotten entry).

New entries go into the newest generation; when it is half full a new one starts (twice as large when
the last one filled in less than half the retention). A generation whose newest entry has left the
window is deleted whole, so nothing is ever rehashed or swept, and no request pays for the expiry of
others. Two different nonces are taken for each other only when their 64-bit digests agree (and, across
merchants, 32 more bits): with a million nonces remembered, a false "replay" once in about 10^13 requests.

Processes may verify with different time windows (``serve --time-window``; a restart with a wider one).
The index keeps the longest retention any of them asked for, and generations are dropped by it, so a
narrow process never deletes a nonce that a wider one still accepts a replay of. A process that widens
the retention also records from when the history is complete for it (``widen``): nonces older than the
narrower retention may already be gone, and requests signed before that instant are refused (server/
verify.py), as they could be replays nobody remembers.

Every operation holds a thread lock and an exclusive ``flock`` on the index, so threads and processes
see one window; the kernel releases the lock of a process that dies. The files live in the page cache:
a crashed process loses nothing, an OS crash may lose the last moments (the promise SQLite's
``synchronous=NORMAL`` makes for the data itself).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import mmap
import os
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"WXRPLY01"
INDEX_SIZE = 4096
_HEADER = struct.Struct("<8sQII")  # magic, version, count, next generation number
_ENTRY = struct.Struct("<IIIII")  # number, log2 of slots, slots used, created at, newest entry at
_HISTORY = struct.Struct("<II")  # the longest retention asked for (s), complete since (unix s)
_HISTORY_AT = _HEADER.size
_ENTRIES_AT = 32
MAX_GENERATIONS = (INDEX_SIZE - _ENTRIES_AT) // _ENTRY.size
_SLOT = struct.Struct("<QII")  # digest of (mchid, nonce), digest of mchid, recorded at
EMPTY, FORGOTTEN = 0, 1
MIN_LOG2, MAX_LOG2 = 16, 22  # 1 MiB .. 64 MiB per generation


class ReplayWindowFull(RuntimeError):
    """More nonces inside the window than the index can describe (MAX_GENERATIONS full generations)."""


@dataclass
class _Generation:
    number: int
    log2: int
    used: int
    created: int
    newest: int
    table: mmap.mmap

    @property
    def mask(self) -> int:
        return (1 << self.log2) - 1

    @property
    def full(self) -> bool:
        return self.used * 2 >= 1 << self.log2

    def find(self, key: int, tag: int, since: int) -> bool:
        """Whether (key, tag) is here, recorded at or after ``since``."""
        table, mask, unpack = self.table, self.mask, _SLOT.unpack_from
        i = key & mask
        for _ in range(mask + 1):  # a table is at most half full: the bound only guards a damaged file
            k, t, at = unpack(table, i << 4)
            if at == EMPTY:
                return False
            if k == key and t == tag and at >= since:
                return True
            i = (i + 1) & mask
        return False

    def insert(self, key: int, tag: int, at: int) -> None:
        table, mask, unpack = self.table, self.mask, _SLOT.unpack_from
        i = key & mask
        while unpack(table, i << 4)[2] != EMPTY:
            i = (i + 1) & mask
        _SLOT.pack_into(table, i << 4, key, tag, at)
        self.used += 1
        self.newest = max(self.newest, at)

    def forget(self, tag: int) -> None:
        words = memoryview(self.table).cast("I")  # per slot: key low, key high, tag, recorded at
        try:
            for i in range(2, len(words), 4):
                if words[i] == tag and words[i + 1] > FORGOTTEN:
                    words[i + 1] = FORGOTTEN
        finally:
            words.release()


class ReplayWindow:
    """(mchid, nonce) pairs seen recently, shared by every process that opens the same database file."""

    def __init__(self, database: Path) -> None:
        self._index_path = database.with_name(database.name + ".replay")
        self._lock = threading.Lock()
        self._pid = 0
        self._fd = -1
        self._index: mmap.mmap | None = None
        self._version = -1
        self._generations: list[_Generation] = []
        self._tags: dict[str, int] = {}

    # -- the operations -------------------------------------------------------------------------------
    def record(self, mchid: str, nonce: str, now: float, since: float) -> bool:
        """Remember (mchid, nonce) at ``now``; False if it was already recorded at or after ``since``."""
        key, tag = self._digests(mchid, nonce)
        at, oldest = int(now), int(since)
        with self._locked() as index:
            for gen in self._generations:
                if gen.newest >= oldest and gen.find(key, tag, oldest):
                    return False
            self._drop_expired(index, min(oldest, at - _HISTORY.unpack_from(index, _HISTORY_AT)[0]))
            newest = self._generations[-1] if self._generations else None
            if newest is None or newest.full:
                newest = self._start_generation(index, at, oldest, newest)
            newest.insert(key, tag, at)
            self._write_entry(index, len(self._generations) - 1, newest)
            return True

    def widen(self, keep: int, now: float) -> int:
        """Ask every process to keep nonces at least ``keep`` seconds; the instant from which the window's
        history is complete for a process keeping that long. Widening from a shorter retention R makes
        it ``now - R / 2``: a nonce first accepted before then, by a process whose window was at most
        R / 2, may already have been dropped. 0 when nothing was ever dropped by a shorter one."""
        with self._locked() as index:
            longest, complete_from = _HISTORY.unpack_from(index, _HISTORY_AT)
            if keep > longest:
                if longest:
                    complete_from = max(complete_from, int(now) - longest // 2)
                _HISTORY.pack_into(index, _HISTORY_AT, keep, complete_from)
            return int(complete_from)

    def seen(self, mchid: str, nonce: str, since: float) -> bool:
        key, tag = self._digests(mchid, nonce)
        oldest = int(since)
        with self._locked():
            return any(gen.newest >= oldest and gen.find(key, tag, oldest) for gen in self._generations)

    def forget(self, mchid: str | None = None) -> None:
        """Forget every nonce, or one merchant's (a sandbox reset)."""
        with self._locked() as index:
            if mchid is None:
                for gen in self._generations:
                    gen.table.close()
                    self._unlink(gen.number)
                self._generations = []
                self._publish(index)
            else:
                tag = self._digests(mchid, "")[1]
                for gen in self._generations:
                    gen.forget(tag)

    def remembered(self) -> int:
        """Slots in use across the generations (forgotten and expired entries included until dropped)."""
        with self._locked():
            return sum(gen.used for gen in self._generations)

    def close(self) -> None:
        with self._lock:
            self._close_maps()

    # -- digests --------------------------------------------------------------------------------------
    def _digests(self, mchid: str, nonce: str) -> tuple[int, int]:
        tag = self._tags.get(mchid)
        if tag is None:
            tag = int.from_bytes(hashlib.blake2b(mchid.encode(), digest_size=4).digest(), "little")
            if len(self._tags) > 4096:
                self._tags.clear()
            self._tags[mchid] = tag
        digest = hashlib.blake2b(mchid.encode() + b"\x00" + nonce.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "little"), tag

    # -- the index ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[mmap.mmap]:
        with self._lock:
            index = self._open()
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                self._sync(index)
                yield index
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _open(self) -> mmap.mmap:
        if self._index is not None and self._pid == os.getpid():
            return self._index
        # First use, or a forked child: its own open file (a shared one would share the flock too).
        self._close_maps()
        fd = os.open(self._index_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.fstat(fd).st_size != INDEX_SIZE or os.pread(fd, len(MAGIC), 0) != MAGIC:
                    # New, or not ours (another version, a truncated file): start an empty window.
                    os.ftruncate(fd, 0)
                    os.ftruncate(fd, INDEX_SIZE)
                    os.pwrite(fd, _HEADER.pack(MAGIC, 1, 0, 0), 0)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
            index = mmap.mmap(fd, INDEX_SIZE)
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._index, self._pid, self._version = fd, index, os.getpid(), -1
        return index

    def _sync(self, index: mmap.mmap) -> None:
        """Catch up with generations another process started or dropped, and the fill of the newest."""
        _, version, count, _ = _HEADER.unpack_from(index, 0)
        if version == self._version:
            if self._generations:  # only the newest generation's fill and newest entry change in place
                last = self._generations[-1]
                _, _, last.used, _, last.newest = _ENTRY.unpack_from(index, _entry_at(count - 1))
            return
        mapped = {gen.number: gen.table for gen in self._generations}
        generations = []
        for i in range(count):
            number, log2, used, created, newest = _ENTRY.unpack_from(index, _entry_at(i))
            table = mapped.pop(number, None) or self._map(number, log2)
            generations.append(_Generation(number, log2, used, created, newest, table))
        for table in mapped.values():
            table.close()
        self._generations, self._version = generations, version

    def _publish(self, index: mmap.mmap) -> None:
        """Write the list of generations and move the version on, so other processes re-read it."""
        _, version, _, next_number = _HEADER.unpack_from(index, 0)
        for i, gen in enumerate(self._generations):
            self._write_entry(index, i, gen)
        self._version = version + 1
        _HEADER.pack_into(index, 0, MAGIC, self._version, len(self._generations), next_number)

    def _write_entry(self, index: mmap.mmap, i: int, gen: _Generation) -> None:
        _ENTRY.pack_into(index, _entry_at(i), gen.number, gen.log2, gen.used, gen.created, gen.newest)

    # -- generations ----------------------------------------------------------------------------------
    def _drop_expired(self, index: mmap.mmap, oldest: int) -> None:
        expired = [gen for gen in self._generations[:-1] if gen.newest < oldest]
        if not expired:
            return
        for gen in expired:
            gen.table.close()
            self._unlink(gen.number)
        self._generations = [gen for gen in self._generations if gen not in expired]
        self._publish(index)

    def _start_generation(
        self, index: mmap.mmap, at: int, oldest: int, last: _Generation | None
    ) -> _Generation:
        if len(self._generations) >= MAX_GENERATIONS:
            raise ReplayWindowFull(f"{len(self._generations)} generations of nonces inside the window")
        log2 = MIN_LOG2
        if last is not None:
            # Filled in less than half the retention: the next one holds twice as much.
            quick = at - last.created < (at - oldest) // 2
            log2 = min(last.log2 + 1, MAX_LOG2) if quick else last.log2
        _, version, _, number = _HEADER.unpack_from(index, 0)
        _HEADER.pack_into(index, 0, MAGIC, version, len(self._generations), number + 1)
        gen = _Generation(number, log2, 0, at, at, self._map(number, log2, create=True))
        self._generations.append(gen)
        self._publish(index)
        return gen

    def _path(self, number: int) -> Path:
        return self._index_path.with_name(f"{self._index_path.name}-{number}")

    def _map(self, number: int, log2: int, *, create: bool = False) -> mmap.mmap:
        size = _SLOT.size << log2
        # O_CREAT also when only mapping: a generation file deleted by hand comes back empty, and one cut
        # short is extended, rather than a worker dying of SIGBUS on a page past its end.
        fd = os.open(
            self._path(number), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | (os.O_TRUNC if create else 0), 0o600
        )
        try:
            if os.fstat(fd).st_size != size:
                os.ftruncate(fd, size)
            # Disk blocks reserved now: a full disk is an OSError here (a 500 for one request), not a
            # SIGBUS in the worker when a page of a sparse file is first written through the mapping.
            os.posix_fallocate(fd, 0, size)
            return mmap.mmap(fd, size)
        finally:
            os.close(fd)  # the mapping keeps the file

    def _unlink(self, number: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(number).unlink()

    def _close_maps(self) -> None:
        for gen in self._generations:
            gen.table.close()
        self._generations = []
        if self._index is not None:
            self._index.close()
            self._index = None
        if self._fd >= 0:
            os.close(self._fd)  # in a forked child, its copy: the parent's lock is not affected
        self._fd, self._version = -1, -1


def _entry_at(i: int) -> int:
    return _ENTRIES_AT + i * _ENTRY.size
