"""WAL checkpoints for SQLite, from a background thread instead of inside a writer's commit.

SQLite's automatic checkpoint runs in whichever COMMIT crosses 1,000 WAL pages: that commit then
copies the pages back and fsyncs the database file while still holding the single writer slot, so
every other writer (and every request waiting behind one) waits for the disk. Measured with two
workers, W3 issue at half load: p99 17–22 ms with automatic checkpoints, 5–6 ms with these (and
throughput up from about 830 to 960 requests/s).

Connections turn the automatic checkpoint off (``PRAGMA wal_autocheckpoint=0``, in store/db.py); a
Database that writes starts one thread per process that runs a PASSIVE checkpoint (never blocks a
writer or a reader) shortly after writes, and SQLite checkpoints once more when the last connection
closes. A long log is restarted in the writers' turn (RESTART_FRAMES); ``journal_size_limit``
truncates the WAL file back when it is reset.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .db import Database

log = logging.getLogger("wxpartner.store")

# Small and often: each checkpoint then copies a few pages and its fsync is short. At 0.5 s the fsyncs
# grew large enough to stall the file system's journal, and every WAL append behind it (p99 85 ms).
INTERVAL_S = 0.05

# The log is written from its start again only when a writer begins while every frame has been
# copied back and no reader still uses one. Under steady load that moment never comes (writers commit
# while each PASSIVE checkpoint runs): 600 MB of WAL after 14 s of W3 issue at full speed. So once the
# log is this long (64 MiB of 4 KiB pages, journal_size_limit), a RESTART checkpoint runs in the
# writers' turn: it copies the last frames, waits briefly for readers of old frames (a reader that
# takes longer only postpones it to the next round), and the next writer starts the log over.
RESTART_FRAMES = 16_384
RESTART_WAIT_MS = 20
STOP_WAIT_S = 10.0  # a checkpoint in a busy writers' turn; it never waits for long


class WalCheckpointer:
    def __init__(self, db: Database, interval: float = INTERVAL_S) -> None:
        self._db = weakref.ref(db)  # a Database nobody holds any more ends its thread
        self._interval = interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pid = 0
        self._thread: threading.Thread | None = None
        self._dirty = False  # the thread only checkpoints after writes

    def wrote(self) -> None:
        """Called after every committed write: a checkpoint is due, and this process needs its thread."""
        self._dirty = True
        if self._pid == os.getpid() or self._stop.is_set():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            thread = threading.Thread(target=self._run, name="wxpartner-wal-checkpoint", daemon=True)
            thread.start()
            self._thread, self._pid = thread, os.getpid()

    def stop(self) -> None:
        """Stop the thread and wait for it: a checkpoint still running, or begun just after, would keep
        or open a connection past the database's close, and the connection that closes last is the one
        that folds the WAL into the file and removes it."""
        self._stop.set()
        thread = self._thread
        if thread is not None and self._pid == os.getpid() and thread is not threading.current_thread():
            thread.join(STOP_WAIT_S)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            db = self._db()
            if db is None or self._stop.is_set():
                return
            if self._dirty:
                self._dirty = False
                checkpoint(db)
            del db


def checkpoint(
    db: Database, *, restart_frames: int = RESTART_FRAMES, wait_ms: int = RESTART_WAIT_MS
) -> tuple[int, int]:
    """One PASSIVE checkpoint: copies what no reader still needs, waits for nobody. Once the log is
    longer than ``restart_frames``, also a RESTART in the writers' turn (see RESTART_FRAMES).
    Returns (frames in the log, frames copied) as the PASSIVE checkpoint saw them."""
    try:
        with db.engine.connect() as conn:
            driver = conn.connection.driver_connection
            assert driver is not None
            _busy, frames, copied = driver.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if frames >= restart_frames:
                with db.write_turn():  # no writer of ours is inside SQLite meanwhile
                    driver.execute(f"PRAGMA busy_timeout={int(wait_ms)}")
                    try:
                        driver.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
                    finally:
                        driver.execute("PRAGMA busy_timeout=10000")
            return int(frames), int(copied)
    except Exception:  # the next round tries again; a failed checkpoint loses nothing
        log.debug("WAL checkpoint failed", exc_info=True)
        return -1, -1
