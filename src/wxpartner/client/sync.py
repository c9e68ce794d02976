"""The synchronous client: drives the shared pipeline (core.Engine) with blocking HTTP: its own
HTTP/1.1 (http11_sync.PooledHTTP) by default, or an httpx.Client."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar, Unpack

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa

from ..protocol.keys import PemSource
from .base import BaseClient, ClientOptions, check_tls_context, generic_call
from .core import Action, Call, Flow, Refresh, Response, Send, Sleep, answer
from .errors import ClientClosedError
from .given_http import SyncHTTPClient, request_for, transport_error
from .http11 import environment_has_proxy
from .http11_sync import PooledHTTP
from .keys import HeadersLike
from .notifications import Notification, notification_flow
from .policy import TimeoutLike
from .resources import Families

T = TypeVar("T")


class Client(BaseClient, Families):
    """One merchant's synchronous client; thread-safe. See ``BaseClient`` for the arguments; also
    ``http_client`` (your own ``httpx.Client``, or an httpx2 one, e.g. Starlette's TestClient) or
    ``transport`` (an httpx transport). Without either, HTTP/1.1 goes through its own pooled sockets (``http11_sync``)."""

    def __init__(
        self,
        mchid: str,
        serial_no: str,
        private_key: PemSource | rsa.RSAPrivateKey,
        *,
        http_client: SyncHTTPClient | None = None,
        transport: httpx.BaseTransport | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        check_tls_context(options.get("tls_context"), http_client, transport)
        super().__init__(mchid, serial_no, private_key, **options)
        self._closed = False
        self._owned: httpx.Client | None = None  # the httpx client made here, closed here
        # Its own HTTP/1.1 unless the caller chose the HTTP or a proxy is configured
        # (http11.py says why: ≈ 0.3 ms of CPU less per call than httpx).
        self._pooled: PooledHTTP | None = None
        self._http: SyncHTTPClient | None = http_client
        if http_client is None and transport is None and not environment_has_proxy():
            self._pooled = PooledHTTP(self.config.timeout, self.tls_context)
        elif http_client is None:
            self._http = self._owned = httpx.Client(
                transport=transport, timeout=self.config.timeout, verify=self.tls_context or True
            )
        self._refresh_lock = threading.Lock()
        Families.__init__(self, self)

    # -- the driver -----------------------------------------------------------------------------
    def execute(self, call: Call[T]) -> T:
        return self._drive(self._engine.run(call))

    def _drive(self, flow: Flow[T]) -> T:
        value: Any = None
        while True:
            try:
                action = flow.send(value)
            except StopIteration as stop:
                result: T = stop.value
                return result
            value = self._perform(action)

    def _perform(self, action: Action) -> Any:
        if isinstance(action, Send):
            if self._closed:
                raise ClientClosedError(
                    f"{type(self).__name__} for {self.mchid} is closed: make a new one (or call within its "
                    "with block)"
                )
            try:
                if self._pooled is not None:
                    return self._pooled.exchange(action.request, action.timeout)
                assert self._http is not None
                r = self._http.send(request_for(self._http, action.request, action.timeout))
            except Exception as exc:
                failure = transport_error(exc)
                if failure is None:
                    raise
                return failure
            return answer(r.status_code, r.headers, r.content)
        if isinstance(action, Sleep):
            time.sleep(action.seconds)
            return None
        if isinstance(action, Refresh):
            with self._refresh_lock:  # one refresh at a time; latecomers find the work done
                if self._engine.refresh_needed(action.serial):
                    self._drive(self._engine.refresh_certificates())
                    self._engine.after_refresh(action.serial)
            return None
        raise TypeError(action)

    # -- public helpers -------------------------------------------------------------------------
    def request(
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
        """Any APIv3 call, signed and verified; non-2xx raise ``ApiError``. ``path`` must be
        percent-encoded; ``sensitive`` lists JSON pointers of ``json`` to encrypt; ``unsigned_ok`` accepts an
        answer without signature headers (a file download: WeChat Pay does not sign bill files); ``timeout``
        bounds each attempt of this call (seconds or an ``httpx.Timeout``), as on every typed operation."""
        return self.execute(
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

    def refresh_certificates(self) -> list[str]:
        """Download platform certificates now (normally automatic); returns the serials trusted."""
        with self._refresh_lock:
            return self._drive(self._engine.refresh_certificates())

    def parse_notification(self, headers: HeadersLike, raw_body: bytes | str) -> Notification:
        """Verify (exact raw bytes, timestamp, probe) and decrypt a callback; see notifications.py."""
        return self._drive(notification_flow(self._engine, headers, raw_body))

    def close(self) -> None:
        """Close the connections this client opened (an ``http_client`` of yours stays open); safe to
        call twice. Later calls raise ``ClientClosedError``."""
        self._closed = True
        if self._pooled is not None:
            self._pooled.close()
        elif self._owned is not None:
            self._owned.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
