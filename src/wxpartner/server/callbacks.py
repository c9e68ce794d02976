"""Callback delivery (WeChat Pay → merchant): claim due notifications from the outbox, build the
protocol §9 body, encrypt the resource with the merchant's APIv3 key, sign with the platform key the
merchant's key mode calls for, POST it, and record the attempt. Safe with any number of processes:
each attempt is claimed atomically in the database (store/outbox.py)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import secrets
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
import certifi
from sqlalchemy.engine import Connection

from ..domain.merchants import Merchant, shown_url
from ..protocol.constants import CALLBACK_ANSWER_TIMEOUT_SECONDS, CALLBACK_USER_AGENT
from ..protocol.notification import encrypt_resource, sign_notification
from ..protocol.request_ids import new_request_id
from ..protocol.times import format_rfc3339
from ..store import outbox, registry, sandbox
from ..store.change_signal import GENERATION_KEY
from ..store.db import Database
from .keyring import KeyRing

# httpx (≈ 30 ms of a start) and the transport on it (callback_network.py) are imported by the first
# send, not here: a serve that sends no callback never imports them (issue 9). ``serve --notify-ca-file``
# is still read at start (check_callback_settings), into a context made with ssl and certifi alone.
if TYPE_CHECKING:
    import httpx

    from .app import AppState

log = logging.getLogger("wxpartner.callbacks")

Merchants = dict[str, Merchant | None]

POLL_SECONDS = 1.0
# > timeout x sends per batch worker: a live claim never expires mid-send. The lease is taken and judged
# on the database's clock (outbox._lease_now); the send's timeout is timed on this host's monotonic clock
# on purpose: both are intervals, which an offset between hosts' clocks does not change.
LEASE_SECONDS = 60.0
BATCH = 16
SENDERS = 8
# Concurrent sends to one host: a burst of simultaneous connects overflows a small listen backlog
# (Python's http.server: 5), whose dropped SYNs are retried only after 1 s.
SENDERS_PER_HOST = 4
SUCCESS_STATUSES = frozenset({200, 204})  # protocol §9.4: only the status counts, not the body
# Of an answer's body only this much is read (for the attempt's error text); the rest is not awaited.
ANSWER_BYTES = 64 * 1024
STOP_GRACE = 1.0  # at shutdown: waited past the callback timeout for the sends in flight to be recorded
# Retention (settings.callback_retention_days): notifications deleted per write transaction (each with
# up to 10 attempts), at most PRUNE_BATCHES such writes per look so requests' writes interleave; the
# next look is a poll later while more are left, PRUNE_EVERY seconds later once none are.
PRUNE_BATCH = 100
PRUNE_BATCHES = 10
PRUNE_EVERY = 60.0
DAY_SECONDS = 86400.0


class TrustError(ValueError):
    """An authority file the operator named cannot be used; the message is one line."""


def _load_ca_file(ctx: ssl.SSLContext, path: str) -> str | None:
    """Add the authorities of ``path`` to ``ctx``; None, or why they cannot be (one line)."""
    try:
        ctx.load_verify_locations(cafile=path)
    except ssl.SSLError as exc:
        return f"{path}: no PEM certificate in it ({exc.reason or exc})"
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    return None


def check_ca_file(path: str) -> None:
    """Raise TrustError unless ``path`` is a readable PEM file with at least one certificate: a bad
    ``serve --notify-ca-file`` stops the start, not the first https:// callback."""
    problem = _load_ca_file(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), path)
    if problem:
        raise TrustError(problem)


def _add_env_trust(ctx: ssl.SSLContext, environ: Mapping[str, str]) -> list[str]:
    """Add what SSL_CERT_FILE / SSL_CERT_DIR name to ``ctx``; return a line for each that cannot be
    used. Such a variable is skipped, not fatal: it is set for every program in the environment (the
    README has users point it at ``<data-dir>/tls/ca.pem``, which ``serve --tls`` makes only later).
    Empty means unset, as for httpx."""
    problems: list[str] = []
    cafile = environ.get("SSL_CERT_FILE", "")
    problem = _load_ca_file(ctx, cafile) if cafile else None
    if problem:
        problems.append(f"SSL_CERT_FILE={problem}")
    capath = environ.get("SSL_CERT_DIR", "")
    if capath:  # OpenSSL's hashed directories (c_rehash), several separated by ':'; read when needed
        dirs = [d for d in capath.split(os.pathsep) if d and os.path.isdir(d)]
        if dirs:
            ctx.load_verify_locations(capath=os.pathsep.join(dirs))
        else:
            problems.append(f"SSL_CERT_DIR={capath}: no such directory")
    return problems


def env_trust_problems(environ: Mapping[str, str]) -> list[str]:
    """What ``serve`` warns about before it starts: the variables notify_tls_context would skip."""
    return _add_env_trust(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), environ)


def notify_tls_context(ca_file: str = "", environ: Mapping[str, str] | None = None) -> ssl.SSLContext:
    """The trust for https:// notify URLs: certifi's roots (what httpx trusts), plus ``ca_file``
    (settings.notify_ca_file) and SSL_CERT_FILE / SSL_CERT_DIR. Added to certifi's roots, never
    instead of them (httpx and OpenSSL replace): a serve started from a shell that exported
    SSL_CERT_FILE for its clients would refuse every public receiver. Host names are checked as
    always (check_hostname, CERT_REQUIRED)."""
    # httpx.create_ssl_context(trust_env=False) is this (httpx 0.27-0.29), without importing httpx
    ctx = ssl.create_default_context(cafile=certifi.where())
    problem = _load_ca_file(ctx, ca_file) if ca_file else None
    if problem:  # built at start-up (check_callback_settings): the start's error, in one line
        raise TrustError(problem)
    for problem in _add_env_trust(ctx, os.environ if environ is None else environ):
        log.warning("not trusted for https:// notify URLs: %s", problem)
    return ctx


def retention_seconds(days: object) -> float:
    """settings.callback_retention_days in seconds (0: kept for ever); ValueError for anything but a
    finite number of days, 0 or more."""
    if isinstance(days, bool) or not isinstance(days, int | float) or not math.isfinite(days) or days < 0:
        raise ValueError(f"settings.callback_retention_days must be days, 0 or more, got {days!r}")
    return float(days) * DAY_SECONDS


def check_callback_settings(state: AppState) -> None:
    """Start-up stops, in one line, on a callback setting it cannot use (create_app, each worker)."""
    retention_seconds(state.settings.callback_retention_days)
    if state.settings.notify_ca_file:
        # Read now, once: a file moved or rewritten later failed every pass (each holding its claims
        # for a lease) instead of being the start's error.
        try:
            deliverer_for(state)._tls_context()
        except TrustError as exc:
            raise ValueError(f"settings.notify_ca_file {exc}") from None


def build_body(merchant: Merchant, claim: outbox.Claim) -> bytes:
    """The exact bytes POSTed (protocol §9.2), field order as in the official examples."""
    assert merchant.apiv3_key is not None  # claim_due only picks merchants with a key
    resource = encrypt_resource(merchant.apiv3_key, claim.resource, original_type=claim.original_type)
    body = {
        "id": claim.id,
        "create_time": format_rfc3339(dt.datetime.fromtimestamp(claim.create_time, dt.UTC)),
        "event_type": claim.event_type,
        "resource_type": "encrypt-resource",
        "summary": claim.summary,
        "resource": resource,
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True, slots=True)
class Delivered:
    """One send of one notification, as a delivery pass reports it."""

    id: str
    mchid: str
    event_type: str
    attempt_no: int
    state: str
    status: int | None
    ok: bool
    error: str | None
    latency_ms: float

    @classmethod
    def unsent(cls, claim: outbox.Claim, error: str) -> Delivered:
        """A claim that went back without a send (still pending, no attempt used)."""
        return cls(claim.id, claim.mchid, claim.event_type, claim.sends, "pending", None, False, error, 0.0)

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "mchid": self.mchid,
            "event_type": self.event_type,
            "attempt_no": self.attempt_no,
            "state": self.state,
            "status": self.status,
            "ok": self.ok,
            "error": self.error,
            "latency_ms": self.latency_ms,
        }


class Deliverer:
    """Runs delivery passes against one database. Thread-safe: a pass holds no state on ``self``."""

    def __init__(
        self,
        db: Database,
        keyring: KeyRing,
        *,
        timeout: float = CALLBACK_ANSWER_TIMEOUT_SECONDS,
        lease_seconds: float = LEASE_SECONDS,
        batch: int = BATCH,
        ca_file: str = "",
    ) -> None:
        self.db = db
        self.ca_file = ca_file
        self.keyring = keyring
        self.timeout = timeout
        self.lease_seconds = lease_seconds
        self.batch = batch
        self.owner_prefix = secrets.token_hex(6)
        self._tls: ssl.SSLContext | None = None
        self._stopping = threading.Event()

    def _tls_context(self) -> ssl.SSLContext:
        """The trust for https:// receivers (notify_tls_context), built once: a new client per pass
        built it again, ≈ 24 ms of CPU a pass (a batch of 16 callbacks) for loading the CA file."""
        if self._tls is None:
            self._tls = notify_tls_context(self.ca_file)
        return self._tls

    def stop(self) -> None:
        """The process is stopping: no more claims; a claim not yet sent goes back at once, for another
        process to send now (it was held until its lease ran out, a minute); sends in flight end (within
        ``timeout``) and are recorded, so none is sent again."""
        self._stopping.set()

    def resume(self) -> None:
        """Delivery starts (again): an app served in-process may start after a stop."""
        self._stopping.clear()

    def run_pass(self, ids: list[str] | None = None, sent_before: float | None = None) -> list[Delivered]:
        """Send every notification that is due now (at most ``batch``), once each; return what happened.
        ``sent_before``: only those not sent since then (real time; see drain)."""
        if self._stopping.is_set():
            return []
        if ids is None:
            with self.db.read() as conn:
                bnow = sandbox.read_clock(conn).now_ts()
                if not outbox.any_due(conn, business_now=bnow):
                    return []
        owner = f"{self.owner_prefix}-{secrets.token_hex(6)}"
        with self.db.write() as conn:
            bnow = sandbox.read_clock(conn).now_ts()
            claims = outbox.claim_due(
                conn,
                business_now=bnow,
                owner=owner,
                lease_seconds=self.lease_seconds,
                limit=self.batch,
                ids=ids,
                sent_before=sent_before,
            )
            sending = self._to_send(conn, claims)
        return self._send_claims(claims, sending, bnow)

    def _to_send(self, conn: Connection, claims: list[outbox.Claim]) -> tuple[Merchants, str | None]:
        """Read in the claim's transaction: the claims' merchants and (PostgreSQL) the change
        generation, so a platform key rotated through another host since this process last read its
        keys is used for these callbacks (server/keyring.py: follow), not up to 5 s later."""
        merchants = {c.mchid: registry.get_merchant(conn, c.mchid) for c in claims}
        generation = sandbox.kv_get(conn, GENERATION_KEY) if claims and not self.db.sqlite else None
        return merchants, generation

    def _send_claims(
        self, claims: list[outbox.Claim], sending: tuple[Merchants, str | None], bnow: float
    ) -> list[Delivered]:
        if not claims:
            return []
        merchants, generation = sending
        self.keyring.follow(generation)
        # The sends run on an event loop of their own (this is a worker thread): only there can the
        # whole answer be bounded by one deadline (httpx's timeouts are per read, so an answer trickling
        # in a byte at a time was waited for without end, past the lease).
        return anyio.run(self._send_all, claims, merchants, bnow)

    async def _send_all(
        self, claims: list[outbox.Claim], merchants: Merchants, bnow: float
    ) -> list[Delivered]:
        results: dict[str, Delivered] = {}
        senders = anyio.Semaphore(SENDERS)
        per_host: dict[str, anyio.Semaphore] = {}

        def host_of(claim: outbox.Claim) -> str:
            merchant = merchants[claim.mchid]
            try:
                parts = urlsplit(merchant.notify_url or "") if merchant else None
                return f"{parts.scheme}://{parts.hostname}:{parts.port}" if parts else ""
            except ValueError:
                return ""

        async def one(claim: outbox.Claim) -> None:
            host = per_host.setdefault(host_of(claim), anyio.Semaphore(SENDERS_PER_HOST))
            async with host, senders:
                try:
                    if self._stopping.is_set():
                        await anyio.to_thread.run_sync(self._release, claim)
                        results[claim.id] = Delivered.unsent(claim, "not sent: this process is stopping")
                        return
                    results[claim.id] = await self._send(client, merchants[claim.mchid], claim, bnow)
                except Exception as exc:  # e.g. the database refused the release: the others go on,
                    # and this one's lease expires and it is sent again (at-least-once)
                    log.exception("callback %s: send not completed", claim.id)
                    results[claim.id] = Delivered.unsent(claim, f"{type(exc).__name__}: {exc}"[:300])

        # trust_env=False: no HTTP(S)_PROXY / ALL_PROXY / .netrc. They are set for the operator's own
        # traffic; WeChat Pay connects to the receiver itself, and a proxy would not reach one on this
        # machine's loopback or LAN. The TLS variables are read on purpose (notify_tls_context).
        import httpx

        from .callback_network import CallbackTransport

        async with (
            httpx.AsyncClient(
                timeout=self.timeout,
                trust_env=False,
                follow_redirects=False,
                # the whole send is bounded, the receiver's name lookup included (callback_network.py)
                transport=CallbackTransport(self._tls_context()),
                # httpx asks for gzip: a compressed error page was recorded as binary in the attempt.
                # The User-Agent is WeChat Pay's (constants.CALLBACK_USER_AGENT), not httpx's.
                headers={"Accept-Encoding": "identity", "User-Agent": CALLBACK_USER_AGENT},
            ) as client,
            anyio.create_task_group() as tg,
        ):
            for claim in claims:
                tg.start_soon(one, claim)
        return [results[c.id] for c in claims]

    def drain(self, max_rounds: int | None = 50, since: float | None = None) -> list[Delivered]:
        """Passes until a claim comes back short of a full batch: a backlog goes out at once, and each
        notification at most once, none sent since ``since`` (real time; default: now). Its next send
        may be due at once (a clock moved forward: outbox.complete); it goes out in the next drain.
        The background poll stops after ``max_rounds`` to look again; None goes on to the end."""
        out: list[Delivered] = []
        rounds = 0
        since = time.time() if since is None else since
        while max_rounds is None or rounds < max_rounds:
            rounds += 1
            results = self.run_pass(sent_before=since)  # none once stopping: the loop ends
            out.extend(results)
            if len(results) < self.batch:
                break
        return out

    def deliver_now(self) -> list[Delivered]:
        """Everything due has been attempted when this returns: drain, then wait (bounded) for sends
        other processes have in flight, so a caller can look at its receiver straight after."""
        since = time.time()  # each notification once in this call, in both drains
        out = self.drain(None, since)  # 50 rounds of 16 left the rest of a longer backlog to the background
        deadline = time.monotonic() + self.timeout + 2
        while time.monotonic() < deadline:
            with self.db.read() as conn:
                if not outbox.leased(conn):
                    break
            time.sleep(0.05)
        return out + self.drain(None, since)

    def redeliver(self, notification_id: str) -> list[Delivered] | None:
        """Sandbox "redeliver": make the notification due now (one more send if all were used) and send
        it; None if there is no such notification. Reopening and claiming are one statement
        (outbox.redeliver), so the send returned is this call's own: they were two, and a pass of any
        process in between sent the redelivered notification itself while this call returned nothing.
        A send of it another process has in flight is waited for (bounded, as deliver_now) and recorded
        as it ends; then this call reopens and sends. Empty when nothing was sent: the merchant has no
        notify_url or APIv3 key (it goes out once both are configured), or the send in flight outlasted
        the wait (the redeliver is then recorded without a claim, and that send's result does not undo
        it: outbox.complete)."""
        owner = f"{self.owner_prefix}-{secrets.token_hex(6)}"
        deadline = time.monotonic() + self.timeout + 2
        while True:
            with self.db.write() as conn:
                bnow = sandbox.read_clock(conn).now_ts()
                state, claim = outbox.redeliver(
                    conn, notification_id, business_now=bnow, owner=owner, lease_seconds=self.lease_seconds
                )
                if state == "in_flight" and time.monotonic() >= deadline:
                    outbox.reopen(conn, notification_id, bnow)
                    return []
                sending = self._to_send(conn, [claim] if claim else [])
            if state == "missing":
                return None
            if claim is not None:
                return self._send_claims([claim], sending, bnow)
            if state == "waiting":
                return []
            while time.monotonic() < deadline:  # until the send in flight is over
                with self.db.read() as conn:
                    if not outbox.in_flight(conn, notification_id):
                        break
                time.sleep(0.05)

    def prune(self, keep_seconds: float, *, batches: int = PRUNE_BATCHES) -> tuple[int, bool]:
        """Delete the notifications delivered or failed more than ``keep_seconds`` ago (real time: the
        business clock is the sandbox user's to move, and a 30-day jump to expire cards would have
        erased every callback just when they are looked at) with their attempts, up to ``batches``
        batches of PRUNE_BATCH, each its own short write. Pending ones are never deleted. Returns
        (how many, whether more are left). Safe in any number of processes at once."""
        cutoff = time.time() - keep_seconds
        with self.db.read() as conn:
            if not outbox.any_finished_before(conn, cutoff):
                return 0, False  # the common case: one indexed read, no write lock
        total = 0
        for _ in range(batches):
            if self._stopping.is_set():
                return total, False
            with self.db.write() as conn:
                done = outbox.prune_finished(conn, cutoff, PRUNE_BATCH)
            total += done
            if done < PRUNE_BATCH:
                return total, False
        return total, True

    def _release(self, claim: outbox.Claim) -> None:
        with self.db.write() as conn:
            outbox.release(conn, claim)

    def _complete(self, claim: outbox.Claim, outcome: outbox.Outcome) -> str:
        try:
            with self.db.write() as conn:
                state, _held = outbox.complete(conn, claim, outcome)
                return state
        except Exception:  # the lease will expire and the notification be sent again (at-least-once)
            log.exception("could not record callback attempt %s", claim.id)
            return "pending"

    async def _send(
        self, client: httpx.AsyncClient, merchant: Merchant | None, claim: outbox.Claim, bnow: float
    ) -> Delivered:
        if merchant is None or not merchant.notify_url or merchant.apiv3_key is None:
            # configuration changed since the claim: no send used
            await anyio.to_thread.run_sync(self._release, claim)
            return Delivered.unsent(claim, "merchant has no notify_url or APIv3 key")
        outcome = await self._post(client, merchant, claim, bnow)
        from . import metrics  # local: keeps this module importable without the metrics stack

        metrics.callback_delivered(metrics.delivery_outcome(outcome.status, outcome.ok, outcome.error))
        state = await anyio.to_thread.run_sync(self._complete, claim, outcome)
        return Delivered(
            claim.id,
            claim.mchid,
            claim.event_type,
            claim.sends + 1,
            state,
            outcome.status,
            outcome.ok,
            outcome.error,
            outcome.latency_ms,
        )

    async def _post(
        self, client: httpx.AsyncClient, merchant: Merchant, claim: outbox.Claim, bnow: float
    ) -> outbox.Outcome:
        """One send. The whole answer (status, headers and the body up to ANSWER_BYTES) must arrive
        within ``self.timeout`` of the send (protocol §9.4: 5 s), else it is a timeout."""
        import httpx  # imported by _send_all already: a look-up in sys.modules

        from .callback_network import LOOKUPS

        url = merchant.notify_url or ""
        request_id = new_request_id()
        key_id = ""
        status: int | None = None
        error: str | None = None
        started = time.time()
        t0 = time.perf_counter()
        try:
            key = self.keyring.callback_signer_for(merchant)
            key_id = key.key_id
            body = build_body(merchant, claim)
            signed = sign_notification(
                body,
                private_key=key.private_key,
                key_id=key.key_id,
                timestamp=int(time.time()),
                request_id=request_id,
            )
            with anyio.fail_after(self.timeout):
                async with client.stream("POST", url, content=signed.body, headers=signed.headers) as resp:
                    answer = await _read_answer(resp)
                    status = resp.status_code
            if status not in SUCCESS_STATUSES:
                error = _answer_error(resp, answer)
        except (TimeoutError, httpx.TimeoutException):
            status = None  # an answer that did not arrive whole in time is no answer
            error = f"timeout: no answer within {self.timeout:g} s"
            host = _host_of(url)
            if host and LOOKUPS.running(host):
                error = f"timeout: the name lookup of {host} did not finish within {self.timeout:g} s"
        except httpx.HTTPError as exc:
            error = failure_text(exc)
        except Exception as exc:  # a bad URL, a missing key: recorded as a failed send, never raised
            error = f"{type(exc).__name__}: {exc}"[:300]
        latency_ms = round((time.perf_counter() - t0) * 1000, 1)
        return outbox.Outcome(
            at=bnow,
            sent_at=started,
            url=shown_url(url),
            status=status,
            latency_ms=latency_ms,
            ok=status in SUCCESS_STATUSES,
            error=error,
            signer_key_id=key_id,
            request_id=request_id,
        )


# OpenSSL's verify codes for a chain that no trusted authority vouches for (x509_vfy.h): unable to
# get the issuer, self-signed leaf, self-signed in the chain, no local issuer, leaf not verifiable.
UNTRUSTED_ISSUER_CODES = frozenset({2, 18, 19, 20, 21})


def failure_text(exc: BaseException) -> str:
    """A failed send in words for the attempt's error: the class and its reason, with what to do when
    the receiver's certificate comes from an authority nobody here trusts. The reason is the first
    down the chain: httpx's ReadError for a reset connection says nothing itself (recorded as
    "ReadError: "), the socket's ConnectionResetError under it does; nor does anyio's "All connection
    attempts failed" for a receiver that is down, the socket's "Connection refused" does."""
    from .callback_network import connect_reason

    chain = _chain(exc)
    reason = connect_reason(exc)
    if not reason:
        reason = (type(exc).__doc__ or "").strip().split("\n")[0]
    text = f"{type(exc).__name__}: {reason}"
    for cause in chain:
        if isinstance(cause, ssl.SSLCertVerificationError) and cause.verify_code in UNTRUSTED_ISSUER_CODES:
            text += " (trust the receiver's authority: wxpartner serve --notify-ca-file, or SSL_CERT_FILE)"
            break
    return text[:300]


def _chain(exc: BaseException, depth: int = 8) -> list[BaseException]:
    """The exception and what caused it (httpx wraps httpcore's, which wraps the socket's)."""
    out: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and len(out) < depth and cause not in out:
        out.append(cause)
        cause = cause.__cause__ or cause.__context__
    return out


def _host_of(url: str) -> str:
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


REDIRECTS = frozenset({301, 302, 303, 307, 308})


def _answer_error(resp: httpx.Response, answer: bytes) -> str:
    """The attempt's error for an answer that is no success: its status and the start of its body;
    for a redirect, where it pointed (WeChat Pay posts to the notify_url itself and follows none: the
    empty body of a 301 said nothing); a body compressed though identity was asked for is not shown
    as binary."""
    status = resp.status_code
    location = resp.headers.get("location")
    if status in REDIRECTS and location:
        return f"HTTP {status}: redirect to {location[:200]} not followed (the notify_url must answer itself)"
    encoding = resp.headers.get("content-encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        return f"HTTP {status}: ({len(answer)} bytes of {encoding[:32]}-encoded body not shown)"
    return f"HTTP {status}: {answer.decode('utf-8', 'replace')[:200]}"


async def _read_answer(resp: httpx.Response) -> bytes:
    """The answer's body, at most ANSWER_BYTES of it (only the status counts; the text is for the
    attempt's error)."""
    got = bytearray()
    async for chunk in resp.aiter_raw():
        got += chunk
        if len(got) >= ANSWER_BYTES:
            break
    return bytes(got[:ANSWER_BYTES])


def deliverer_for(state: AppState) -> Deliverer:
    """One Deliverer per process (kept on the app state)."""
    existing = state.extensions.get("callbacks.deliverer")
    if isinstance(existing, Deliverer):
        return existing
    made = Deliverer(state.db, state.keyring, ca_file=state.settings.notify_ca_file)
    state.extensions["callbacks.deliverer"] = made
    return made


async def deliver_forever(state: AppState) -> None:
    """The background task: a pass every POLL_SECONDS while settings.deliver_callbacks is on, and the
    retention's pruning (Deliverer.prune) every PRUNE_EVERY seconds, each poll while a backlog lasts.
    Never raises: a failing pass is logged and the next one tries again."""
    if not state.settings.deliver_callbacks:
        return
    deliverer = deliverer_for(state)
    deliverer.resume()
    keep = retention_seconds(state.settings.callback_retention_days)
    failing = False
    idle = threading.Event()
    idle.set()
    next_prune = time.monotonic()  # at start: a process stopped for a week has a week's to prune

    def drain() -> None:
        nonlocal next_prune
        idle.clear()
        try:
            deliverer.drain()
            if keep and time.monotonic() >= next_prune:
                next_prune = time.monotonic() + PRUNE_EVERY  # a failing prune too: not every second
                _done, more = deliverer.prune(keep)
                if more:
                    next_prune = time.monotonic()
        finally:
            idle.set()

    try:
        while True:
            try:
                await anyio.to_thread.run_sync(drain, abandon_on_cancel=True)
                if failing:
                    log.warning("callback delivery recovered")
                failing = False
            except Exception as exc:
                # A database outage fails every pass: one traceback, then one line per pass.
                if failing:
                    log.warning("callback delivery pass failed again: %s", type(exc).__name__)
                else:
                    log.exception("callback delivery pass failed")
                failing = True
            await anyio.sleep(POLL_SECONDS)
    finally:
        # Shutdown: the pass in flight hands back what it has not sent and records what it sent. It
        # went on claiming a backlog's batches after the stop (a Ctrl-C took 99 s to exit, sending all
        # along), or was killed by SIGTERM mid-send, its claims held for a minute and its sends made
        # again. Waited for (bounded) before the database closes.
        deliverer.stop()
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(idle.wait, deliverer.timeout + STOP_GRACE)
