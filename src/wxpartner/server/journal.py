"""The request journal: every ``/v3`` request, recorded off the request path.

The pipeline's observer only appends a small dict to an in-process buffer; a background task writes
the buffer every quarter second, in transactions of at most ``CHUNK`` rows, and once more at
shutdown, so a normal stop loses nothing. Under ``serve`` the writing is handed to a process of its
own at idle priority beside each worker (server/journal_process.py, journal_link.py): the buffer is
shipped there instead, and a reader's flush waits for its confirmation. Rows carry no bodies and no
keys: a body digest, and for a signature mismatch the string-to-sign the server expected (request
bodies carry sensitive fields only as RSA-OAEP ciphertext).
Retention is bounded: the newest ``journal_keep`` rows (settings.extra, default 10 000) at least, and
at most about twice as many (two generations, store/ops_repo.py: insert_journal).

A request whose signature was not verified (refused, unrouted, or the database failed before it was
checked) is journaled under the mchid its Authorization header *claims*: shown everywhere with
``mchid_verified: false`` (store/ops_repo.py). Anyone can send such requests, so each process journals
them at a bounded rate (a token bucket: ``journal_unverified_burst`` rows, refilled at
``journal_unverified_rate`` a second; settings.extra), and a flood of them cannot rotate a merchant's
verified rows out of the two generations faster than that: per process, so the generations, which every
worker and host share, take a flood spread over W processes at up to W times that. The rest are counted, and at most once a
second one row says how many were left out and which merchants they claimed to be. Accepted requests
never reach the bucket (one branch on the refusal path only).
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any

import anyio

from ..protocol.authorization import AuthorizationFormatError, parse_authorization
from ..protocol.errors import ApiError
from ..protocol.messages import request_message
from ..store import ops_repo
from . import metrics
from .http import RawRequest, RawResponse
from .journal_link import JournalLink
from .responses import error_fields

if TYPE_CHECKING:
    from .app import AppState
    from .context import Ctx

log = logging.getLogger("wxpartner.journal")

FLUSH_INTERVAL = 0.25
MAX_BUFFER = 20_000  # while the database is down, keep at most this many rows in memory
CHUNK = 64  # rows per transaction (~1 ms of the writer here)
SYNC_SECONDS = 5.0  # a reader's flush waits at most this long for the writer process
MAX_RESTART_SECONDS = 60.0  # a writer process that went away is replaced after at most this long
MAX_MESSAGE_CHARS = 8192
UNVERIFIED_RATE = 20.0  # unverified rows a second per process, beyond the burst (settings.extra)
UNVERIFIED_BURST = 200
# At most one "left out" row a second per process (and one per read of the journal: control_ops.py).
SKIPPED_NOTE_INTERVAL = 1.0
SKIPPED_OPERATION = "journal.unverified_skipped"
_MCHID = re.compile(r'mchid="([^"]{1,32})"')


class JournalWriter:
    def __init__(self, state: AppState) -> None:
        self.state = state
        keep = state.settings.extra.get("journal_keep", ops_repo.DEFAULT_KEEP)
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:  # made at start-up: it stops
            raise ValueError(
                f"settings.extra['journal_keep'] must be a whole number of rows, 1 or more, got {keep!r}"
            )
        self.keep = keep
        rate = state.settings.extra.get("journal_unverified_rate", UNVERIFIED_RATE)
        burst = state.settings.extra.get("journal_unverified_burst", UNVERIFIED_BURST)
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not rate >= 0:
            raise ValueError(
                f"settings.extra['journal_unverified_rate'] must be rows a second, 0 or more, got {rate!r}"
            )
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ValueError(
                f"settings.extra['journal_unverified_burst'] must be a whole number of rows, 1 or more, "
                f"got {burst!r}"
            )
        self._unverified = _TokenBucket(float(rate), burst)
        # Unverified requests left out since the last note, by the mchid they claimed (bounded: the
        # claims are cut to 32 characters and at most MAX_CLAIMS are told apart).
        self._skipped: dict[str | None, int] = {}
        self._skipped_total = 0
        self._noted_at = -float("inf")
        self.unverified_skipped = 0  # all time, this process
        self._rows: deque[dict[str, Any]] = deque(maxlen=MAX_BUFFER)
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self.dropped = 0
        # The fault module notes which fault it injected into which request (popped when recorded).
        self.faults: dict[str, str] = {}
        # `serve`'s workers: the rows go to a writer process at idle priority (server/journal_link.py)
        self.link: JournalLink | None = None
        self._started_at = -float("inf")
        self._restart_after = 1.0

    def start_process(self) -> None:
        """Hand the writing to a process of its own (``serve``'s workers; Settings.journal_process).
        If it cannot start, this process writes its rows itself. A writer that went away is replaced
        (``restart_due``); the rows it did not write are back in the buffer already."""
        old, self.link = self.link, None
        if old is not None:
            self._take_back(old.close(0))
        self._started_at = time.monotonic()
        try:
            self.link = JournalLink(on_dropped=self._writer_dropped)
        except OSError as exc:
            log.warning("journal writer process not started (%s); this worker writes its rows", exc)
            return
        if old is not None:
            metrics.JOURNAL_WRITER_RESTARTED.inc()
            log.warning("journal writer process %s started in place of %s", self.link.proc.pid, old.proc.pid)

    def _writer_dropped(self, event: str, rows: int) -> None:
        """Rows the writer process dropped (``event``: buffer_full, unstorable), counted as this
        process's own: the worker's ``/metrics`` is where they are looked for."""
        self.dropped += rows
        metrics.JOURNAL.labels(event=event).inc(rows)

    def restart_due(self) -> bool:
        """No writer process yet, or it went away and another may start: two seconds after the
        previous start, then four, eight..., at most a minute (a writer that cannot run is not
        started again and again)."""
        if self.shipping or time.monotonic() - self._started_at < self._restart_after:
            return False
        self._restart_after = min(self._restart_after * 2, MAX_RESTART_SECONDS)
        return True

    @property
    def shipping(self) -> bool:
        return self.link is not None and self.link.up

    def ship(self) -> int:
        """Hand what is buffered to the writer process without waiting for it (the event loop calls
        this); returns the rows handed over. Nothing when a reader's flush is sending (it sends them),
        when the writer is far behind (they wait here, bounded by MAX_BUFFER) or gone."""
        link = self.link
        if link is None or not link.lock.acquire(blocking=False):
            return 0
        try:
            if not link.room():
                return 0
            self._note_skipped()
            return self._send_buffered(link)
        finally:
            link.lock.release()

    def record(self, row: dict[str, Any]) -> None:
        with self._lock:
            if len(self._rows) == MAX_BUFFER:
                self.dropped += 1
                metrics.JOURNAL_BUFFER_FULL.inc()
            self._rows.append(row)

    def pending(self) -> int:
        return len(self._rows) + (1 if self._skipped_total else 0)

    def _skip(self, claimed: str | None) -> None:
        with self._lock:
            self.unverified_skipped += 1
            metrics.JOURNAL_UNVERIFIED_SKIPPED.inc()
            self._skipped_total += 1
            if claimed in self._skipped or len(self._skipped) < MAX_CLAIMS:
                self._skipped[claimed] = self._skipped.get(claimed, 0) + 1
            else:
                self._skipped[OTHER_CLAIMS] = self._skipped.get(OTHER_CLAIMS, 0) + 1

    def _note_skipped(self, *, now: bool = False) -> None:
        """One row saying how many unverified requests were left out since the last such row (at most
        one a second, unless ``now``: a reader flushing to see everything)."""
        clock = time.monotonic()
        with self._lock:
            if not self._skipped_total or (not now and clock - self._noted_at < SKIPPED_NOTE_INTERVAL):
                return
            counts, total = self._skipped, self._skipped_total
            self._skipped, self._skipped_total, self._noted_at = {}, 0, clock
            self._rows.append(skipped_row(counts, total, self._unverified))

    def flush(self, *, note: bool = False) -> int:
        """Write everything buffered now, ``CHUNK`` rows per transaction; on failure the rows not yet
        written go back to the buffer. Returns the number of rows done with (written, or dropped as
        unstorable: see ``flush_step``). A step already in flight (the background task's, in another
        thread) is waited for first: its rows have left the buffer but are not committed, and whoever
        flushes to read its own requests back must find them. ``note``: also note the unverified
        requests left out so far now, not up to SKIPPED_NOTE_INTERVAL later (a reader's flush)."""
        if self.shipping and self._flush_shipped(note=note):
            return 0  # written by the writer process (how many is its own count)
        with self._flush_lock:
            pass
        self._note_skipped(now=note)
        written = 0
        for _ in range(self.steps()):
            n = self.flush_step()
            if n == 0:
                break
            written += n
        return written

    def _flush_shipped(self, *, note: bool) -> bool:
        """A flush through the writer process: everything buffered sent, then its acknowledgement
        that all it received is written. False when the writer went away meanwhile (the caller
        writes the rows itself) or did not answer within SYNC_SECONDS (a machine too busy to give an
        idle-priority process any CPU: the rows are written later, and the reader reads without
        them)."""
        link = self.link
        assert link is not None
        self._note_skipped(now=note)
        with link.lock:
            self._send_buffered(link)
        if not link.sync(SYNC_SECONDS) and link.up:
            log.warning("journal writer process did not confirm within %.0f s", SYNC_SECONDS)
        if not link.up:
            with link.lock:
                self._take_back(link.take_back())
        return link.up

    def _send_buffered(self, link: JournalLink) -> int:
        """Everything buffered to the writer (the caller holds ``link.lock``); the rows sent, 0 when
        the writer is gone: then every row it did not write is back in the buffer."""
        with self._lock:
            rows = [storable(row) for row in self._rows]
            self._rows.clear()
        if rows:
            link.send_rows(rows)
        if not link.up:
            self._take_back(link.take_back())
            return 0
        return len(rows)

    def _take_back(self, rows: list[dict[str, Any]]) -> None:
        """Rows the writer process did not say it wrote, to the head of the buffer (they are older
        than what is there). Its last chunk may be written all the same (it ended between its commit
        and its acknowledgement): the rows of theirs the journal already holds are left out."""
        if not rows:
            return
        metrics.JOURNAL_TAKEN_BACK.inc(len(rows))
        try:
            there = ops_repo.journaled_request_ids(self.state.db, [r["request_id"] for r in rows[:CHUNK]])
        except Exception as exc:  # the database is down: writing them will fail and keep them too
            log.warning("journal: could not check the writer's last rows (%s)", type(exc).__name__)
            there = set()
        self._put_back([r for i, r in enumerate(rows) if i >= CHUNK or r["request_id"] not in there])

    def close_process(self) -> None:
        """At a stop: the writer process is sent what is buffered, writes it and exits, waited for up
        to SYNC_SECONDS (an idle-priority process on a busy machine may get no CPU: then it is killed);
        the rows it did not write come back to the buffer, for this process's last flush."""
        link = self.link
        if link is None:
            return
        with link.lock:
            if link.up:
                self._send_buffered(link)
        self._take_back(link.close(SYNC_SECONDS))

    def steps(self) -> int:
        """How many ``flush_step`` calls write what is buffered now."""
        return -(-self.pending() // CHUNK)  # a note of requests left out may be due (_note_skipped)

    def flush_step(self) -> int:
        """One short transaction: the oldest ``CHUNK`` buffered rows. Returns the rows done with; 0 when
        there were none or it failed, in which case they are back at the head of the buffer. A chunk
        the database refuses for its data is written row by row instead, and a row it cannot store is
        dropped (and counted as done with): kept, it would fail every later flush and no request of any
        merchant would be journaled again."""
        self._note_skipped()
        with self._flush_lock:
            with self._lock:
                chunk = [self._rows.popleft() for _ in range(min(CHUNK, len(self._rows)))]
            if not chunk:
                return 0
            chunk = [storable(row) for row in chunk]
            done, dropped, failure = ops_repo.write_journal_chunk(self.state.db, chunk, self.keep)
            self.dropped += dropped
            if dropped:
                metrics.JOURNAL_UNSTORABLE.inc(dropped)
            if failure is not None:
                self._keep(chunk[done:], failure)
            return done

    def _keep(self, rows: list[dict[str, Any]], exc: Exception) -> None:
        log.warning("journal write failed (%s); %d rows kept for the next try", type(exc).__name__, len(rows))
        self._put_back(rows)

    def _put_back(self, rows: list[dict[str, Any]]) -> None:
        """``rows`` (older than the buffer's) to its head; a full buffer loses its newest rows."""
        with self._lock:
            over = len(self._rows) + len(rows) - MAX_BUFFER
            if over > 0:
                self.dropped += over
                metrics.JOURNAL_BUFFER_FULL.inc(over)
            self._rows.extendleft(reversed(rows))

    def observe(
        self,
        ctx: Ctx | None,
        req: RawRequest,
        resp: RawResponse,
        request_id: str,
        op_id: str,
        started: float,
        refusal: ApiError | None = None,
    ) -> None:
        if ctx is None and req.caller is None and not self._unverified.take():
            self._skip(claimed_mchid(req))  # a flood of unverified requests: counted, not journaled
            return
        self.record(self.row(ctx, req, resp, request_id, op_id, started, refusal))

    def row(
        self,
        ctx: Ctx | None,
        req: RawRequest,
        resp: RawResponse,
        request_id: str,
        op_id: str,
        started: float,
        refusal: ApiError | None,
    ) -> dict[str, Any]:
        code, message = error_fields(resp)
        if ctx is not None:
            mchid: str | None = ctx.caller.mchid
            verification = "ok"
        elif req.caller is not None:  # verified, then cut off by a stop (pipeline.cut_off)
            mchid, verification = req.caller.mchid, "ok"
        else:
            mchid = claimed_mchid(req)
            verification = "not_routed" if op_id == "route" else ("refused" if refusal else "error")
        field = issue = expected = None
        if refusal is not None:
            detail = refusal.detail or {}
            # A size limit's refusal names no field: its location (header, body) says what was refused.
            field = str(detail.get("field") or detail.get("location") or "")[:32] or None
            inner = detail.get("detail")
            issue = str(
                (inner.get("issue") if isinstance(inner, dict) else None) or detail.get("issue") or ""
            )
            issue = (issue or refusal.message)[:512]
            if refusal.code == "SIGN_ERROR" and field == "signature":
                expected = expected_message(req)
        path = req.target()
        return {
            "request_id": request_id,
            "at": time.time(),
            "mchid": mchid,
            "method": req.method[:8],
            "path": path[:1024],
            "operation": op_id[:96],
            "status": resp.status,
            "code": code,
            "message": message,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            "verification": verification,
            "verify_field": field,
            "verify_issue": issue,
            "expected_message": expected,
            "fault": self.faults.pop(request_id, None),
            "body_length": len(req.body),
            "body_sha256": hashlib.sha256(req.body).hexdigest() if req.body else None,
            "client": req.client[:64] or None,
            "user_agent": (req.header("user-agent") or "")[:256] or None,
        }


MAX_CLAIMS = 16
OTHER_CLAIMS = "(other)"


class _TokenBucket:
    """``burst`` tokens, refilled at ``rate`` a second (monotonic clock); thread-safe."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._tokens = float(burst)
        self._at = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


def claimed_mchid(req: RawRequest) -> str | None:
    """The mchid an Authorization header claims (not verified). Its characters that are not printable
    read as U+FFFD (same length): a header value may carry bytes 0x80-0xFF, which decode to C1 control
    characters (0x9B is a terminal's CSI) that the CLI and logs would otherwise print as they are."""
    m = _MCHID.search(req.header("authorization") or "")
    if m is None:
        return None
    claimed = m.group(1)
    return claimed if claimed.isprintable() else "".join(c if c.isprintable() else "\ufffd" for c in claimed)


def skipped_row(counts: dict[str | None, int], total: int, bucket: _TokenBucket) -> dict[str, Any]:
    """The journal's own note of unverified requests it left out; under the mchid claimed most often,
    so a merchant's filtered view shows that it was flooded."""
    ranked = sorted(counts.items(), key=lambda item: -item[1])
    top = ranked[0][0] if ranked and ranked[0][0] != OTHER_CLAIMS else None
    claims = ", ".join(f"{mchid or '(none)'}: {n}" for mchid, n in ranked[:5])
    message = (
        f"{total} unverified requests not journaled (claimed mchid {claims}): this server journals at "
        f"most {bucket.burst} at once and {bucket.rate:g} a second of requests whose signature was not "
        "verified, so that they cannot push verified entries out"
    )
    return {
        "request_id": "journal-" + uuid.uuid4().hex,
        "at": time.time(),
        "mchid": top,
        "method": "-",
        "path": "-",
        "operation": SKIPPED_OPERATION,
        "status": 0,
        "code": "NOT_JOURNALED",
        "message": message[:512],
        "latency_ms": 0.0,
        "verification": "refused",
        "verify_field": None,
        "verify_issue": None,
        "expected_message": None,
        "fault": None,
        "body_length": 0,
        "body_sha256": None,
        "client": None,
        "user_agent": None,
    }


def storable(row: dict[str, Any]) -> dict[str, Any]:
    """The row with every NUL in its text replaced by U+FFFD: PostgreSQL text cannot hold NUL, and a
    refused request's message, expected string-to-sign or User-Agent may carry one. Same length, so
    the columns' limits still hold; the same on both backends."""
    if not any(isinstance(v, str) and "\x00" in v for v in row.values()):
        return row
    return {k: v.replace("\x00", "\ufffd") if isinstance(v, str) else v for k, v in row.items()}


def expected_message(req: RawRequest) -> str | None:
    """The exact string the server verified the signature over (what the client should have signed)."""
    try:
        auth = parse_authorization(req.header("authorization") or "")
    except AuthorizationFormatError:
        return None
    message = request_message(req.method, req.target(), auth.timestamp, auth.nonce_str, req.body)
    return message.decode("utf-8", errors="replace")[:MAX_MESSAGE_CHARS]


def explained(row: dict[str, Any]) -> dict[str, Any]:
    """A journal entry as the control API, the CLI and the dashboard show it: with, for a refused
    signature, ``expected_message_length`` (the bytes the server verified: the four header lines, the
    body's ``body_length`` bytes and the final line feed) and ``expected_message_truncated`` (only the
    first ``MAX_MESSAGE_CHARS`` characters are kept; a body that is not UTF-8 shows U+FFFD for each
    bad byte, so the text alone cannot give the count)."""
    message = row.get("expected_message")
    if not message:
        return row
    head = message.split("\n", 4)
    length = None
    if len(head) == 5 and not any("\ufffd" in line for line in head[:4]):
        length = len("\n".join(head[:4]).encode("utf-8")) + 1 + int(row.get("body_length") or 0) + 1
    truncated = len(message) >= MAX_MESSAGE_CHARS and length != len(message.encode("utf-8"))
    return {**row, "expected_message_length": length, "expected_message_truncated": truncated}


def writer(state: AppState) -> JournalWriter:
    found = state.extensions.get("journal")
    if not isinstance(found, JournalWriter):
        found = JournalWriter(state)
        state.extensions["journal"] = found
    return found


async def flush_loop(state: AppState) -> None:
    """Background task: write the buffer every FLUSH_INTERVAL; write what is left when cancelled."""
    w = writer(state)
    wanted = state.settings.journal_process
    try:
        while True:
            await anyio.sleep(FLUSH_INTERVAL)
            if not w.pending():
                continue
            # At the first rows, not at start-up (`serve` answers ~0.1 s sooner without it); again
            # after a while if it went away (killed, out of memory).
            if wanted and w.restart_due():
                w.start_process()
            if w.shipping:
                w.ship()  # serialised and handed to the socket: ~2-3 µs a row on the loop, no waiting
                continue
            if state.pipeline_on_loop:
                # SQLite, where requests run on the loop too: a chunk at a time (~1.5 ms), answering
                # requests in between. A whole flush of a quarter second's ~300 rows held the loop for
                # ~13 ms; in a thread it contends with the requests for the GIL, which sqlite3 keeps
                # while it binds rows.
                for _ in range(w.steps()):
                    if w.flush_step() == 0:
                        break
                    await anyio.sleep(0)
            else:
                await anyio.to_thread.run_sync(w.flush)
    finally:  # shutdown: synchronous on purpose, the loop is being cancelled
        w.close_process()  # what the writer process does not write within its wait comes back here
        w.flush()
