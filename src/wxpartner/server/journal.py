"""The request journal: every ``/v3`` request, recorded off the request path.

The pipeline's observer only appends a small dict to an in-process buffer; a background task writes
the buffer in one transaction every quarter second and once more at shutdown, so a normal stop loses
nothing. Rows carry no bodies and no keys: a body digest, and for a signature mismatch the
string-to-sign the server expected (request bodies carry sensitive fields only as RSA-OAEP ciphertext).
Retention is bounded: the newest ``journal_keep`` rows (settings.extra, default 10 000) are kept.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import anyio

from ..protocol.authorization import AuthorizationFormatError, parse_authorization
from ..protocol.errors import ApiError
from ..protocol.messages import canonical_url, request_message
from ..store import ops_repo
from .http import RawRequest, RawResponse
from .responses import error_fields

if TYPE_CHECKING:
    from .app import AppState
    from .context import Ctx

log = logging.getLogger("wxpartner.journal")

FLUSH_INTERVAL = 0.25
MAX_BUFFER = 20_000  # while the database is down, keep at most this many rows in memory
CHUNK = 64  # rows per transaction (~0.8 ms of the writer here)
PRUNE_EVERY = 128  # rows written between prunes; one prune deletes at most 4x as many
MAX_MESSAGE_CHARS = 8192
_MCHID = re.compile(r'mchid="([^"]{1,32})"')


class JournalWriter:
    def __init__(self, state: AppState) -> None:
        self.state = state
        keep = state.settings.extra.get("journal_keep", 10_000)
        self.keep = int(keep) if isinstance(keep, int | str) else 10_000
        self._rows: deque[dict[str, Any]] = deque(maxlen=MAX_BUFFER)
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._since_prune = 0
        self.dropped = 0
        # The fault module notes which fault it injected into which request (popped when recorded).
        self.faults: dict[str, str] = {}

    def record(self, row: dict[str, Any]) -> None:
        with self._lock:
            if len(self._rows) == MAX_BUFFER:
                self.dropped += 1
            self._rows.append(row)

    def pending(self) -> int:
        return len(self._rows)

    def flush(self) -> int:
        """Write everything buffered, ``CHUNK`` rows per transaction; on failure the rows not yet
        written go back to the buffer. Returns the number of rows written."""
        with self._flush_lock:
            with self._lock:
                batch = list(self._rows)
                self._rows.clear()
            written = 0
            try:
                # Short turns: the writer slot is shared with every request of every worker, and a
                # quarter second's rows (~150 under load) in one transaction held it for ~3 ms.
                for start in range(0, len(batch), CHUNK):
                    chunk = batch[start : start + CHUNK]
                    with self.state.db.write() as conn:
                        ops_repo.insert_journal(conn, chunk)
                    written += len(chunk)
                    self._since_prune += len(chunk)
                    if self._since_prune >= PRUNE_EVERY:
                        self._since_prune = 0
                        with self.state.db.write() as conn:
                            ops_repo.prune_journal(conn, self.keep, at_most=4 * PRUNE_EVERY)
            except Exception as exc:
                rest = batch[written:]
                log.warning(
                    "journal write failed (%s); %d rows kept for the next try", type(exc).__name__, len(rest)
                )
                with self._lock:
                    self._rows.extendleft(reversed(rest))
            return written

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
        else:
            m = _MCHID.search(req.header("authorization") or "")
            mchid = m.group(1) if m else None
            verification = "not_routed" if op_id == "route" else ("refused" if refusal else "error")
        field = issue = expected = None
        if refusal is not None:
            detail = refusal.detail or {}
            field = str(detail.get("field") or "")[:32] or None
            inner = detail.get("detail")
            issue = str(
                (inner.get("issue") if isinstance(inner, dict) else None) or detail.get("issue") or ""
            )
            issue = (issue or refusal.message)[:512]
            if refusal.code == "SIGN_ERROR" and field == "signature":
                expected = expected_message(req)
        path = req.raw_path + (f"?{req.raw_query}" if req.raw_query else "")
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


def expected_message(req: RawRequest) -> str | None:
    """The exact string the server verified the signature over (what the client should have signed)."""
    try:
        auth = parse_authorization(req.header("authorization") or "")
    except AuthorizationFormatError:
        return None
    url = canonical_url(req.raw_path, req.raw_query)
    message = request_message(req.method, url, auth.timestamp, auth.nonce_str, req.body)
    return message.decode("utf-8", errors="replace")[:MAX_MESSAGE_CHARS]


def writer(state: AppState) -> JournalWriter:
    found = state.extensions.get("journal")
    if not isinstance(found, JournalWriter):
        found = JournalWriter(state)
        state.extensions["journal"] = found
    return found


async def flush_loop(state: AppState) -> None:
    """Background task: write the buffer every FLUSH_INTERVAL; write what is left when cancelled."""
    w = writer(state)
    try:
        while True:
            await anyio.sleep(FLUSH_INTERVAL)
            if w.pending():
                await anyio.to_thread.run_sync(w.flush)
    finally:
        w.flush()  # shutdown: synchronous on purpose, the loop is being cancelled
