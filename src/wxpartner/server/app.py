"""The ASGI application: ``/v3/...`` goes through the APIv3 pipeline, everything else (sandbox control
API, dashboard, health) through Starlette."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import anyio
import anyio.lowlevel
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.types import Message, Receive, Scope, Send

from ..protocol.constants import H_REQUEST_ID
from ..protocol.errors import ApiError
from ..protocol.request_ids import new_request_id
from ..store.db import Database
from . import limits
from .context import Ctx
from .http import BARE_QUERY, RawRequest, RawResponse
from .keyring import KeyRing
from .logs import shown_path
from .operations import REGISTRY, Router
from .pipeline import Pipeline, Shaping
from .settings import Settings
from .verify import Verifier

log = logging.getLogger("wxpartner.server")

BeforeHandler = Callable[[Ctx, Shaping], None]
Observer = Callable[..., None]
BackgroundTask = Callable[["AppState"], Coroutine[Any, Any, None]]

# Families and sandbox features register here at import time (see server/families.py).
BACKGROUND_TASKS: list[BackgroundTask] = []
STARTUP_HOOKS: list[Callable[[AppState], None]] = []
# Business-clock transitions a family makes on its own reads (a quota card past its end becomes
# DISABLED): the dashboard runs them before it reads, so a page after a clock move shows what the API
# would answer, not what the background sweep has not reached yet (or never will, when it is off).
# A hook makes one bounded batch and returns how many transitions it made: a caller that must leave
# nothing owed (the pytest plugin's clock moves) runs them again until they all return 0.
SETTLE_HOOKS: list[Callable[[AppState], int]] = []
# What a process caches from a scenario's sections (fault rules): dropped after POST /sandbox/scenario,
# so the loading process applies the scenario to its very next request, as after the control API's own
# changes (the platform keys are the foundation's: control.py refreshes them itself).
SCENARIO_LOADED_HOOKS: list[Callable[[AppState], None]] = []
# Run as a served process stops, after its background tasks and before its database closes: what was
# observed while they stopped (an answer cut off by a forced stop) is kept, not lost.
STOP_HOOKS: list[Callable[[AppState], None]] = []


class AppState:
    """Everything a process shares between requests. Nothing here is business state: that is in the db."""

    def __init__(self, settings: Settings, db: Database | None = None) -> None:
        from . import families  # noqa: F401  (registers every operation)

        self.settings = settings
        self.db = db or Database(settings.resolved_database_url())
        self.keyring = KeyRing(self.db)
        self.verifier = Verifier(self.db, time_window=settings.time_window, explain=settings.explain)
        self.router = Router(REGISTRY)
        on_loop = settings.pipeline_on_loop
        self.pipeline_on_loop = self.db.sqlite if on_loop is None else on_loop
        self.before_handlers: list[BeforeHandler] = []
        self.observers: list[Observer] = []
        self.sandbox_token = settings.sandbox_token or self._stored_token()
        self._learn_replay_history()
        self.started_at = time.time()
        self.extensions: dict[str, Any] = {}
        for hook in STARTUP_HOOKS:
            hook(self)

    def _learn_replay_history(self) -> None:
        try:
            self.verifier.learn_history()
        except (SQLAlchemyError, OSError):  # not migrated yet: learnt before the first request instead
            log.debug("replay history not read at start", exc_info=True)

    def _stored_token(self) -> str:
        from ..sandbox.bootstrap import TOKEN_KEY
        from ..store.sandbox import kv_get

        try:
            with self.db.read() as conn:
                return kv_get(conn, TOKEN_KEY) or ""
        except Exception:  # not migrated yet: the control API stays closed
            return ""

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
        for observer in self.observers:
            try:
                observer(ctx, req, resp, request_id, op_id, started, refusal)
            except Exception:
                log.exception("observer failed")


class DroppedConnection(ConnectionAbortedError):
    """Raised once a DROP_CONNECTION fault's answer has started, so that uvicorn closes the connection
    (in-process, the test client raises it). Logged by the app in one line, not as uvicorn's traceback
    (``_QuietDrops``)."""


class _QuietDrops(logging.Filter):
    """On uvicorn's error log: an injected drop is no error (an operator injecting 1,000 drops got
    1,000 tracebacks; the journal and one INFO line record each). Anything else keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], DroppedConnection))


_uvicorn_errors = logging.getLogger("uvicorn.error")
if not any(isinstance(f, _QuietDrops) for f in _uvicorn_errors.filters):
    _uvicorn_errors.addFilter(_QuietDrops())  # uvicorn's logging set-up keeps a logger's filters


class _ClientGone(Exception):
    """The client disconnected before its body was complete: nothing is handled, nobody is answered."""


def _announces_body(scope: Scope) -> bool:
    return bool(limits.declared_length(scope)) or any(
        name.lower() == b"transfer-encoding" for name, _ in scope["headers"]
    )


async def _read_body(receive: Receive, limit: int, scope: Scope) -> bytes | None:
    """The whole body, or None past ``limit``. A disconnect before an announced body is complete raises
    ``_ClientGone``: read as an empty body, ``POST /sandbox/reset {"mchid": ...}`` cut off by a dropped
    connection reset every merchant (an empty body means "all"). A request without a body runs as
    before, whether or not its client is still there."""
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            if size == 0 and not _announces_body(scope):
                return b""
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The already-read body as one message, then the connection's own messages (a disconnect)."""
    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def _shutdown_when_cancelled(receive: Receive) -> Receive:
    """The lifespan's messages, a cancellation read as the shutdown: after a forced quit (a second
    Ctrl-C) uvicorn sends none and asyncio cancels the lifespan task instead, which Starlette logged
    as a failed shutdown with its traceback. The app's stop steps run either way."""

    async def received() -> Message:
        try:
            return await receive()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # handled: the stop steps' task group must not see it pending
            return {"type": "lifespan.shutdown"}

    return received


def _raw_request(scope: Scope, body: bytes) -> RawRequest:
    raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
    raw_path, mark, in_path = raw_path.partition(b"?")  # httpx's ASGI transport includes the query here
    query = scope.get("query_string", b"")
    bare_query = bool(scope.get(BARE_QUERY)) or (bool(mark) and not in_path and not query)
    headers: dict[str, str] = {}
    dupes: set[str] = set()
    for k, v in scope["headers"]:
        name = k.decode("latin-1").lower()
        value = v.decode("latin-1")
        if name in headers:
            dupes.add(name)
            headers[name] = headers[name] + ", " + value
        else:
            headers[name] = value
    client = scope.get("client")
    return RawRequest(
        method=scope["method"],
        raw_path=raw_path.decode("latin-1"),
        raw_query=query.decode("latin-1"),
        headers=headers,
        body=body,
        client=f"{client[0]}:{client[1]}" if client else "",
        duplicate_headers=frozenset(dupes),
        bare_query=bare_query,
    )


async def send_raw(send: Send, resp: RawResponse) -> None:
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers]
    if resp.status != 204 and resp.status != 304 and resp.status >= 200:  # RFC 9110 §8.6: none there
        headers.append((b"content-length", str(len(resp.body)).encode()))
    await send({"type": "http.response.start", "status": resp.status, "headers": headers})
    await send({"type": "http.response.body", "body": resp.body})


class WxPartnerApp:
    def __init__(
        self,
        settings: Settings,
        db: Database | None = None,
        *,
        freeze_heap: bool = False,
        close_db: bool = False,
    ) -> None:
        self.state = AppState(settings, db)
        self._freeze_heap = freeze_heap
        self._close_db = close_db
        self.pipeline = Pipeline(self.state)
        # Operations marked long (operations.py) go to a thread even when the pipeline is on the loop.
        ops = self.state.router.operations
        self._long_paths = frozenset(op.template for op in ops if op.long and not op.param_names)
        self._limiter: tuple[object, anyio.CapacityLimiter] | None = None
        from .web import build_web_app

        self.web: Starlette = build_web_app(self.state, lifespan=self._lifespan)

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(self.state.keyring.refresh)
        if self._freeze_heap:
            # What a served worker holds once started (modules, models, keys) lives as long as it does.
            # Out of the collector's sight, a full collection scans only the requests' objects; with
            # the ~110k start-up objects it took 30-50 ms, during which the worker answered nothing.
            gc.freeze()
        try:
            async with anyio.create_task_group() as tg:
                for task in BACKGROUND_TASKS:
                    tg.start_soon(task, self.state)
                yield
                tg.cancel_scope.cancel()  # each task's own shutdown step runs (journal, callbacks)
        finally:
            for hook in STOP_HOOKS:
                try:
                    hook(self.state)
                except Exception:
                    log.exception("stop step failed")
            if self._close_db:
                # The process ends here. Its PostgreSQL sessions are closed with a goodbye (they were
                # cut when the process exited), and SQLite's last connection checkpoints the WAL into
                # the database file (it was left, -wal and -shm, for the next start to recover).
                self.state.db.dispose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.web(scope, _shutdown_when_cancelled(receive), send)
        elif scope["type"] != "http":
            await self.web(scope, receive, send)
        elif scope["path"].startswith("/v3/"):
            await self._api(scope, receive, send)
        else:
            await self._web(scope, receive, send)

    async def _web(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Every body outside /v3 is read here, bounded (server/limits.py), before any route sees it:
        # Starlette's request.body() would buffer whatever the client sends.
        limit = limits.web_body_limit(scope, self.state.settings, self.state.sandbox_token)
        declared = limits.declared_length(scope)
        try:
            body = (
                None if declared is not None and declared > limit else await _read_body(receive, limit, scope)
            )
        except _ClientGone:
            return
        if body is None:
            await limits.refuse(send, limits.body_too_large(limit))
            return
        await self.web(scope, _replay(body, receive), send)

    async def _api(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Size limits (server/limits.py): declared sizes refused up front, a chunked body read only
        # until it passes the limit; the refusal closes the connection.
        started = time.perf_counter()
        settings = self.state.settings
        refusal = limits.check_request(scope, settings)
        try:
            body = None if refusal else await _read_body(receive, settings.max_body_bytes, scope)
        except _ClientGone:
            return
        except asyncio.CancelledError:
            # The server stops while the body is still arriving: the task uvicorn or asyncio cancels
            # (--graceful-timeout run out, a second Ctrl-C) ends here, answered (Pipeline.cut_off).
            # Uncaught, uvicorn logged a traceback and answered an unsigned plain-text 500.
            await send_raw(send, self.pipeline.cut_off(_raw_request(scope, b""), started))
            return
        if refusal is not None or body is None:
            err = refusal or limits.body_too_large(settings.max_body_bytes)
            # Journaled, counted and logged as every other /v3 answer (operation "limits"): a client
            # whose 2 MiB body got a 413 finds the request, not a gap, in the journal.
            request_id = new_request_id()
            answer = RawResponse(err.status, err.body_bytes(), [])
            self.state.observe(None, _raw_request(scope, b""), answer, request_id, "limits", started, err)
            await limits.refuse(send, err, request_id)
            return
        req = _raw_request(scope, body)
        # SQLite work is local and short, and its writers take turns anyway: on the loop, a worker is
        # one thread doing one request at a time, so the writer never waits for the GIL while another
        # thread signs (two workers served W4 at 0.46 of the floor in threads, 0.58 on the loop).
        # PostgreSQL round trips are worth overlapping, so by default they go to threads; so do the
        # few operations that can take seconds (a quarter's funding proof).
        if self.state.pipeline_on_loop and req.raw_path not in self._long_paths:
            resp = self.pipeline.handle(req)
        else:
            try:
                resp = await anyio.to_thread.run_sync(
                    self.pipeline.handle, req, limiter=self._pipeline_limiter()
                )
            except asyncio.CancelledError:  # stopped while the handler runs: as below, SYSTEM_ERROR, signed
                await send_raw(send, self.pipeline.cut_off(req, started))
                return
        if resp.delay_s > 0:
            # Stopped while a latency fault holds the answer back: it is ready, it goes now.
            with contextlib.suppress(asyncio.CancelledError):
                await anyio.sleep(resp.delay_s)
        if resp.status == 0:  # sandbox fault: drop the connection without an answer
            # Raising before the response starts makes uvicorn answer 500 itself; once it has started,
            # uvicorn closes the transport, so the client gets a broken response and no answer.
            await send({"type": "http.response.start", "status": 500, "headers": [(b"content-length", b"1")]})
            log.info(
                "sandbox fault DROP_CONNECTION: closed the connection of %s %s unanswered (Request-ID %s)",
                req.method,
                shown_path(req.raw_path),
                resp.header(H_REQUEST_ID),
                extra={"request_id": resp.header(H_REQUEST_ID)},
            )
            raise DroppedConnection("sandbox fault: dropped connection")
        await send_raw(send, resp)

    def _pipeline_limiter(self) -> anyio.CapacityLimiter:
        # One per event loop (a limiter belongs to the loop it was made on; in-process tests run the
        # app under one loop after another).
        loop = anyio.lowlevel.current_token()
        if self._limiter is None or self._limiter[0] != loop:
            self._limiter = (loop, anyio.CapacityLimiter(self.state.settings.pipeline_threads))
        return self._limiter[1]


def create_app(settings: Settings | None = None, db: Database | None = None) -> WxPartnerApp:
    return WxPartnerApp(settings or Settings.from_env(), db)


def app_from_env() -> WxPartnerApp:
    """Factory for uvicorn workers: settings come from the WXPARTNER_SETTINGS environment variable.
    A worker process is the app's alone, so its start-up heap is frozen and its database closed when
    it stops (not so in-process: tests)."""
    return WxPartnerApp(Settings.from_env(), freeze_heap=True, close_db=True)
