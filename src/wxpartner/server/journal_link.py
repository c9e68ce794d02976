"""A ``serve`` worker's end of its journal writer process (server/journal_process.py).

The worker's event loop only serialises its buffered rows and hands them to a non-blocking socket;
what the socket cannot take yet waits here, already framed, and goes first next time, so the stream
stays whole and the loop never waits for the writer (which runs at idle priority and may be put off
while the machine is busy). A reader's flush, in a thread, waits for the writer's acknowledgement.
When the writer is gone (it died, or could not start) the link is down and the worker writes its rows
itself, as the in-process app does: the rows of the send that found it gone are kept, earlier frames
not yet wholly sent are lost and counted (``lost_rows``, logged).
"""

from __future__ import annotations

import logging
import select
import socket
import subprocess
import sys
import threading
import time
from typing import Any

from .journal_process import ACK_SIZE, frame, read_ack

log = logging.getLogger("wxpartner.journal")

MAX_UNSENT = 16 << 20  # bytes waiting for the writer; beyond, rows stay in the worker's own buffer


class JournalLink:
    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        try:
            self.proc: subprocess.Popen[bytes] = subprocess.Popen(
                [sys.executable, "-m", "wxpartner.server.journal_process", str(theirs.fileno())],
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
        # Rows framed, not wholly sent, when the writer went away (those it had received and not
        # written yet are lost too, and not known here).
        self.lost_rows = 0
        self._unsent = bytearray()
        self._unsent_rows: list[int] = []  # rows in each frame not wholly sent yet, oldest first
        self._acks = bytearray()
        self._syncs = 0

    def room(self) -> bool:
        return self.up and len(self._unsent) < MAX_UNSENT

    def send_rows(self, rows: list[dict[str, Any]]) -> bool:
        """Frame ``rows`` and send what the socket takes now (the caller holds ``lock``). False when
        the writer is gone before they reached it whole: the caller keeps them (it writes them)."""
        self._unsent += frame(("rows", rows))
        self._unsent_rows.append(len(rows))
        self._push()
        if self.up:
            return True
        self.lost_rows -= len(rows)  # counted by _down with the other unsent frames; these are kept
        return False

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
        if not self._unsent:
            self._unsent_rows.clear()

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
            self._unsent_rows.append(0)
            while self.up:
                self._push()
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                readable, _, _ = select.select([self.sock], [self.sock] if self._unsent else [], [], left)
                if readable and self._read_acks(wanted):
                    return True
            return False
        finally:
            self.lock.release()

    def _read_acks(self, wanted: int) -> bool:
        try:
            data = self.sock.recv(4096)
        except BlockingIOError:
            return False
        except OSError as exc:
            self._down(exc)
            return False
        if not data:
            self._down(None)
            return False
        self._acks += data
        done = False
        while len(self._acks) >= ACK_SIZE:  # an older sync's late answer comes first: skipped
            done = read_ack(bytes(self._acks[:ACK_SIZE])) == wanted or done
            del self._acks[:ACK_SIZE]
        return done

    def _down(self, exc: BaseException | None) -> None:
        if not self.up:
            return
        self.up = False
        self.lost_rows += sum(self._unsent_rows)
        self._unsent.clear()
        self._unsent_rows.clear()
        log.warning(
            "journal writer process %s gone (%s); this worker writes its journal itself from now on%s",
            self.proc.pid,
            type(exc).__name__ if exc is not None else "end of stream",
            f" ({self.lost_rows} rows not sent to it are lost)" if self.lost_rows else "",
        )

    def close(self, timeout: float) -> None:
        """No more rows: the writer writes what it has and exits (waited for up to ``timeout``)."""
        with self.lock:
            self.up = False
            self.sock.close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("journal writer process %s still writing after %.0f s", self.proc.pid, timeout)
