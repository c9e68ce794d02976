"""The asynchronous client: drives the same pipeline (core.Engine) with its own HTTP/1.1
(http11_aio.AsyncPooledHTTP) by default, or an httpx.AsyncClient."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar, Unpack

import anyio
import httpx
from anyio.lowlevel import EventLoopToken, current_token
from cryptography.hazmat.primitives.asymmetric import rsa

from ..protocol.keys import PemSource
from .base import BaseClient, ClientOptions, check_tls_context, generic_call
from .core import Action, Call, Flow, Refresh, Response, Send, Sleep, answer
from .errors import ClientClosedError
from .given_http import AsyncHTTPClient, request_for, transport_error
from .http11 import environment_has_proxy
from .http11_aio import AsyncPooledHTTP
from .keys import HeadersLike
from .notifications import Notification, notification_flow
from .policy import TimeoutLike
from .resources import AsyncFamilies

T = TypeVar("T")


def loop_closed(token: EventLoopToken) -> bool:
    """Whether the event loop behind ``token`` is closed (asyncio's loops say so; others never do)."""
    is_closed = getattr(token.native_token, "is_closed", None)
    return bool(callable(is_closed) and is_closed())


class AsyncClient(BaseClient, AsyncFamilies):
    """One merchant's asyncio client (any anyio backend). See ``BaseClient`` for the arguments; also
    ``http_client`` (your own ``httpx.AsyncClient``, or an httpx2 one) or ``transport`` (e.g. ``httpx.ASGITransport``).
    Without either, HTTP/1.1 goes through its own pooled streams (``http11_aio``), per event loop; with
    a proxy in the environment, through httpx clients made here, one per event loop too."""

    def __init__(
        self,
        mchid: str,
        serial_no: str,
        private_key: PemSource | rsa.RSAPrivateKey,
        *,
        http_client: AsyncHTTPClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        check_tls_context(options.get("tls_context"), http_client, transport)
        super().__init__(mchid, serial_no, private_key, **options)
        self._closed = False
        self._owned: httpx.AsyncClient | None = None  # the httpx client made here, closed here
        # Its own HTTP/1.1 unless the caller chose the HTTP or a proxy is configured (as Client).
        self._pooled: AsyncPooledHTTP | None = None
        self._http: AsyncHTTPClient | None = http_client
        # Through a proxy, httpx clients made here, one per event loop: an httpx pool's connections
        # belong to the loop that opened them, and the next loop's calls failed with "Event loop is
        # closed" (asyncio.run per call), as the SDK's own HTTP did before its pool went per loop.
        self._per_loop: dict[EventLoopToken, httpx.AsyncClient] | None = None
        if http_client is None and transport is None and not environment_has_proxy():
            self._pooled = AsyncPooledHTTP(self.config.timeout, self.tls_context)
        elif http_client is None and transport is None:
            self._per_loop = {}
        elif http_client is None:  # the caller's transport: its pool, its loop rules (as http_client=)
            self._http = self._owned = httpx.AsyncClient(
                transport=transport, timeout=self.config.timeout, verify=self.tls_context or True
            )
        self._refresh_lock: anyio.Lock | None = None  # created lazily inside the event loop
        AsyncFamilies.__init__(self, self)

    async def execute(self, call: Call[T]) -> T:
        return await self._drive(self._engine.run(call))

    async def _drive(self, flow: Flow[T]) -> T:
        value: Any = None
        while True:
            try:
                action = flow.send(value)
            except StopIteration as stop:
                result: T = stop.value
                return result
            value = await self._perform(action)

    async def _perform(self, action: Action) -> Any:
        if isinstance(action, Send):
            if self._closed:
                raise ClientClosedError(
                    f"{type(self).__name__} for {self.mchid} is closed: make a new one (or call within its "
                    "async with block)"
                )
            try:
                if self._pooled is not None:
                    return await self._pooled.exchange(action.request, action.timeout)
                http = self._loop_http() if self._per_loop is not None else self._http
                assert http is not None
                r = await http.send(request_for(http, action.request, action.timeout))
            except Exception as exc:
                failure = transport_error(exc)
                if failure is None:
                    raise
                return failure
            return answer(r.status_code, r.headers, r.content)
        if isinstance(action, Sleep):
            await anyio.sleep(action.seconds)
            return None
        if isinstance(action, Refresh):
            async with self._lock():  # one refresh at a time; latecomers find the work done
                if self._engine.refresh_needed(action.serial):
                    await self._drive(self._engine.refresh_certificates())
                    self._engine.after_refresh(action.serial)
            return None
        raise TypeError(action)

    def _loop_http(self) -> httpx.AsyncClient:
        """This event loop's httpx client (made on its first call: it reads the proxy settings then)."""
        assert self._per_loop is not None
        token = current_token()
        http = self._per_loop.get(token)
        if http is None:
            # A closed loop's client is dropped: its connections can only be closed through that loop
            # (the garbage collector closes their sockets), and the dict holds one client per live loop.
            for other in [t for t in self._per_loop if loop_closed(t)]:
                del self._per_loop[other]
            http = self._per_loop[token] = httpx.AsyncClient(
                timeout=self.config.timeout, verify=self.tls_context or True
            )
        return http

    def _lock(self) -> anyio.Lock:
        if self._refresh_lock is None:
            self._refresh_lock = anyio.Lock()
        return self._refresh_lock

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
        json: Any = None,
        content: bytes | None = None,
        idempotent: bool | None = None,
        headers: Mapping[str, str] | None = None,
        sensitive: Sequence[str] = (),
        unsigned_ok: bool = False,
        timeout: TimeoutLike | None = None,
    ) -> Response:
        """Any APIv3 call, signed and verified; see ``Client.request``."""
        return await self.execute(
            generic_call(
                method,
                path,
                query=query,
                json_body=json,
                content=content,
                idempotent=idempotent,
                headers=headers,
                sensitive=sensitive,
                unsigned_ok=unsigned_ok,
                timeout=timeout,
            )
        )

    async def refresh_certificates(self) -> list[str]:
        async with self._lock():
            return await self._drive(self._engine.refresh_certificates())

    async def parse_notification(self, headers: HeadersLike, raw_body: bytes | str) -> Notification:
        return await self._drive(notification_flow(self._engine, headers, raw_body))

    async def aclose(self) -> None:
        """Close the connections this client opened (an ``http_client`` of yours stays open); safe to
        call twice. Later calls raise ``ClientClosedError``."""
        self._closed = True
        if self._pooled is not None:
            await self._pooled.aclose()
        elif self._owned is not None:
            await self._owned.aclose()
        elif self._per_loop:
            clients, self._per_loop = self._per_loop, {}
            token = current_token()
            if token in clients:  # another loop's connections close only through that loop: dropped
                await clients[token].aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
