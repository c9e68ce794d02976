"""A ``serve`` worker's end of its journal writer process (server/journal_process.py).

The worker's event loop only serialises its buffered rows and hands them to a non-blocking socket;
what the socket cannot take yet waits here, already framed, and goes first next time, so the stream
stays whole and the loop never waits for the writer (which runs at idle priority and may be put off
while the machine is busy). A reader's flush, in a thread, waits for the writer's acknowledgement.

Every frame of rows is kept here until the writer says it is done with its rows (it counts them after
each transaction), so no row is lost to the writer: when it is gone (it died, or could not start) or
has not finished within the stop's wait (a machine too busy to give an idle-priority process any
CPU: it is killed), ``take_back`` returns the rows it did not write and the worker writes them itself,
as the in-process app does, until it starts another writer (server/journal.py: ``restart_due``).
"""

from __future__ import annotations

import logging
import select
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from .journal_process import ACK_SIZE, DROPPED, SYNCED, WRITTEN, frame, read_ack, unframe

log = logging.getLogger("wxpartner.journal")

# Bytes of frames kept for the writer (sent or not, not yet written); beyond, rows stay in the
# worker's own buffer until it catches up.
MAX_KEPT = 16 << 20


WRITER = (sys.executable, "-m", "wxpartner.server.journal_process")


class JournalLink:
    def __init__(
        self, command: Sequence[str] = WRITER, on_dropped: Callable[[str, int], None] | None = None
    ) -> None:
        """``command``: the writer's, given its socket's file descriptor number as its last argument;
        ``on_dropped(event, rows)``: told of the rows the writer dropped (``journal_process.DROPPED``)."""
        ours, theirs = socket.socketpair()
        try:
            self.proc: subprocess.Popen[bytes] = subprocess.Popen(
                [*command, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                # A session of its own: Ctrl-C in a terminal signals the whole foreground group, and a
                # writer still starting (before it ignores such signals) died of it with the last rows.
                # It ends when its worker closes the socket pair, whatever signals the worker gets.
                start_new_session=True,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self.sock = ours
        self.lock = threading.Lock()  # one sender at a time: frames never interleave
        self.up = True
        self._unsent = bytearray()  # frames (rows and syncs) not wholly handed to the socket yet
        self._kept: deque[tuple[int, bytes]] = deque()  # (rows, frame) not done with by the writer
        self._kept_bytes = 0
        self._first = 0  # the stream's number of the first row in _kept
        self._done = 0  # rows the writer is done with (its latest WRITTEN count)
        self._acks = bytearray()
        self._synced = 0
        self._syncs = 0
        self._closing = False
        self._on_dropped = on_dropped

    def room(self) -> bool:
        return self.up and self._kept_bytes < MAX_KEPT

    def send_rows(self, rows: list[dict[str, Any]]) -> None:
        """Frame ``rows`` and send what the socket takes now (the caller holds ``lock``); they are
        kept until the writer is done with them. The link may be down afterwards: see ``take_back``."""
        data = frame(("rows", rows))
        self._kept.append((len(rows), data))
        self._kept_bytes += len(data)
        self._unsent += data
        self._read_acks()
        self._push()

    def _push(self) -> None:
        while self._unsent and self.up:
            try:
                sent = self.sock.send(self._unsent)
            except BlockingIOError:
                return
            except OSError as exc:
                self._down(exc)
                return
            del self._unsent[:sent]

    def sync(self, timeout: float) -> bool:
        """Every row sent before now written by the writer (True), or not within ``timeout`` seconds
        or the writer gone (False)."""
        deadline = time.monotonic() + timeout
        if not self.lock.acquire(timeout=timeout):
            return False
        try:
            if not self.up:
                return False
            self._syncs += 1
            wanted = self._syncs
            self._unsent += frame(("sync", wanted))
            while self.up:
                self._push()
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                readable, _, _ = select.select([self.sock], [self.sock] if self._unsent else [], [], left)
                if readable:
                    self._read_acks()
                    if self._synced >= wanted:
                        return True
            return False
        finally:
            self.lock.release()

    def _read_acks(self) -> None:
        """Whatever acknowledgements the socket holds now, without waiting."""
        while self.up:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return
            except OSError as exc:
                self._down(exc)
                return
            if not data:
                self._down(None)
                return
            self._acks += data
            self._count_acks()

    def _count_acks(self) -> None:
        """The whole acknowledgements received so far: a sync answered, rows the writer is done with,
        or rows it dropped."""
        while len(self._acks) >= ACK_SIZE:
            kind, n = read_ack(bytes(self._acks[:ACK_SIZE]))
            del self._acks[:ACK_SIZE]
            if kind == SYNCED:
                self._synced = max(self._synced, n)
            elif kind == WRITTEN:
                self._forget(n)
            elif self._on_dropped is not None:
                self._on_dropped(DROPPED[kind], n)

    def _forget(self, done: int) -> None:
        self._done = max(self._done, done)
        while self._kept and self._first + self._kept[0][0] <= self._done:
            rows, data = self._kept.popleft()
            self._first += rows
            self._kept_bytes -= len(data)

    def _down(self, exc: BaseException | None) -> None:
        if not self.up:
            return
        self.up = False
        self._unsent.clear()
        if self._closing:  # its end of file, as asked
            return
        log.warning(
            "journal writer process %s gone (%s); this worker writes its journal until it starts another",
            self.proc.pid,
            type(exc).__name__ if exc is not None else "end of stream",
        )

    def take_back(self, wait: float = 1.0) -> list[dict[str, Any]]:
        """The writer ended (given ``wait`` seconds to, then killed), the rows it was sent and did not
        say it was done with, oldest first (the caller holds ``lock``; the link is down from now on).
        The first chunk of them may have been written just before the writer ended, unacknowledged."""
        self.up = False
        self._unsent.clear()
        try:
            self.proc.wait(wait)  # a writer that closed its end may take a moment more to exit
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._drain()
        rows: list[dict[str, Any]] = []
        skip = self._done - self._first
        for n, data in self._kept:
            if skip >= n:
                skip -= n
                continue
            rows.extend(unframe(data)[1][max(skip, 0) :])
            skip = 0
        self._kept.clear()
        self._kept_bytes = 0
        self._first = self._done
        if rows:
            log.warning(
                "journal writer process %s ended with %d rows not written: its worker writes them",
                self.proc.pid,
                len(rows),
            )
        return rows

    def _drain(self) -> None:
        """The acknowledgements a writer that has ended left in the socket."""
        while True:
            try:
                data = self.sock.recv(4096)
            except OSError:  # BlockingIOError: nothing more; a reset: nothing more either
                break
            if not data:
                break
            self._acks += data
        self._count_acks()
        self._acks.clear()

    def close(self, timeout: float) -> list[dict[str, Any]]:
        """No more rows: the writer writes what it has and exits, waited for up to ``timeout``
        seconds; then it is killed if it is still running. Returns the rows it did not write, for the
        worker to write."""
        deadline = time.monotonic() + timeout
        with self.lock:
            self._closing = True
            shut = False
            while self.up:
                self._push()
                if not self._unsent and not shut and self.up:
                    try:
                        self.sock.shutdown(socket.SHUT_WR)  # end of file: the writer drains and exits
                    except OSError as exc:
                        self._down(exc)
                        break
                    shut = True
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning(
                        "journal writer process %s still writing after %.0f s: stopped",
                        self.proc.pid,
                        timeout,
                    )
                    break
                select.select([self.sock], [self.sock] if self._unsent else [], [], left)
                self._read_acks()  # the writer's end of file marks the link down
            rows = self.take_back(max(0.0, deadline - time.monotonic()))
            self.sock.close()
            return rows
