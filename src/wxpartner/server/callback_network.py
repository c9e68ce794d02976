"""How a callback send reaches its receiver: the receiver's host name is looked up in a thread of its
own that the send stops waiting for at its deadline, then the connection is made to the addresses found.

The system resolver (``getaddrinfo``) cannot be interrupted. httpx runs it in the event loop's default
executor, and a delivery pass's loop (``anyio.run``) waits for that executor's threads before it
returns: a receiver whose DNS never answered had its attempt recorded as a timeout at 5 s, and the pass
then went on waiting for the resolver to give up (resolv.conf's timeout x attempts x servers: 10 s to
minutes), holding every claim of its batch and the next pass behind it. Here a lookup is a daemon thread
nobody joins; a lookup of a host still running is shared by every send to that host, in this pass and
later ones, so a resolver that hangs costs one thread per host until it gives up, not one per send; and
at most ``MAX_RUNNING`` threads in all, so receivers under many names cannot pile them up."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import ssl
import threading
from collections.abc import Iterable
from concurrent.futures import Future
from typing import Any

import httpcore
import httpx

AddrInfo = list[tuple[Any, ...]]

# Lookups running at once, every host together. A lookup ends when the resolver answers or gives up
# (resolv.conf: seconds to minutes); sends are at most 16 a pass, a pass a second, so hanging names
# would otherwise add up to hundreds of threads.
MAX_RUNNING = 64


class TooManyLookups(OSError):
    """Every lookup thread is taken by names whose resolver has not answered yet."""


class Lookups:
    """Name lookups in flight, at most one per (host, port) and ``limit`` in all."""

    def __init__(self, limit: int = MAX_RUNNING) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._running: dict[tuple[str, int], Future[AddrInfo]] = {}

    def forget(self) -> None:
        """A forked child: the lookups' threads stayed in the parent, their futures would never end."""
        self._lock = threading.Lock()
        self._running = {}

    def start(self, host: str, port: int) -> Future[AddrInfo]:
        """The lookup of ``host`` (the one running, or a new one)."""
        key = (host, port)
        with self._lock:
            found = self._running.get(key)
            if found is not None:
                return found
            if len(self._running) >= self.limit:
                raise TooManyLookups(
                    f"{host} was not looked up: {len(self._running)} name lookups are still waiting for "
                    "the resolver (the most at once); a later attempt tries again"
                )
            future: Future[AddrInfo] = Future()
            future.set_running_or_notify_cancel()  # a waiter that gives up cannot cancel it for the others
            self._running[key] = future
        threading.Thread(
            target=self._run, args=(key, future), name=f"wxpartner lookup {host}", daemon=True
        ).start()
        return future

    def _run(self, key: tuple[str, int], future: Future[AddrInfo]) -> None:
        try:
            found: AddrInfo = socket.getaddrinfo(key[0], key[1], type=socket.SOCK_STREAM)
        except BaseException as exc:  # handed to the waiters
            self._done(key)
            future.set_exception(exc)
            return
        self._done(key)
        future.set_result(found)

    def _done(self, key: tuple[str, int]) -> None:
        with self._lock:
            self._running.pop(key, None)

    def running(self, host: str) -> bool:
        """Whether a lookup of ``host`` (any port) has not finished."""
        with self._lock:
            return any(h == host for h, _port in self._running)

    async def addresses(self, host: str, port: int) -> list[str]:
        """The addresses of ``host`` in the resolver's order, each once. Cancelled (the send's
        deadline) without waiting for the lookup, which goes on for whoever asks next. TooManyLookups
        at once when ``limit`` lookups are running."""
        found = await asyncio.wrap_future(self.start(host, port))
        out: list[str] = []
        for _family, _type, _proto, _name, sockaddr in found:
            address = str(sockaddr[0])
            if address not in out:
                out.append(address)
        return out


LOOKUPS = Lookups()
os.register_at_fork(after_in_child=LOOKUPS.forget)

# anyio's words when no address of the receiver could be connected to; the reason is in their cause.
ALL_FAILED = "All connection attempts failed"


def connect_reason(exc: BaseException) -> str:
    """What a failed connect came to, as the socket said it: anyio's "All connection attempts failed"
    says nothing a merchant can act on, its cause does (``Connection refused: [Errno 111] Connect call
    failed ('127.0.0.1', 9)``); several addresses tried give one reason each. Empty if none is found."""
    cause: BaseException | None = exc
    seen: list[BaseException] = []
    while cause is not None and cause not in seen and len(seen) < 8:
        seen.append(cause)
        if isinstance(cause, BaseExceptionGroup):
            return "; ".join(r for r in (connect_reason(e) for e in cause.exceptions) if r)
        text = str(cause).strip()
        if text and text != ALL_FAILED:
            errno = getattr(cause, "errno", None)
            if (
                isinstance(cause, OSError)
                and not isinstance(cause, ssl.SSLError)
                and isinstance(errno, int)
                and errno > 0
            ):
                words = os.strerror(errno)
                if words not in text:
                    return f"{words}: {text}"
            return text
        cause = cause.__cause__ or cause.__context__
    return ""


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class LookupBoundedBackend(httpcore.AnyIOBackend):
    """httpcore's network backend, with the host name looked up through ``LOOKUPS``. The TLS handshake
    still names and checks the URL's host (httpcore passes it to start_tls), not the address."""

    def __init__(self, lookups: Lookups = LOOKUPS) -> None:
        self.lookups = lookups

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if _is_address(host):
            return await super().connect_tcp(host, port, timeout, local_address, socket_options)
        try:
            addresses = await self.lookups.addresses(host, port)
        except OSError as exc:  # as httpx words it: "ConnectError: [Errno -2] Name or service not known"
            raise httpcore.ConnectError(str(exc)) from exc
        reasons: list[str] = []
        for address in addresses:  # in turn: refused on ::1, then 127.0.0.1 (anyio tried each too)
            try:
                return await super().connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                reasons.append(connect_reason(exc) or f"{address}: {type(exc).__name__}")
        raise httpcore.ConnectError("; ".join(reasons) or f"{host}: the name has no address")


class CallbackTransport(httpx.AsyncHTTPTransport):
    """httpx's transport, connecting through LookupBoundedBackend; no proxy (see Deliverer)."""

    def __init__(self, ssl_context: Any, backend: httpcore.AsyncNetworkBackend | None = None) -> None:
        super().__init__(verify=ssl_context, trust_env=False)
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)  # httpx's defaults
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend or LookupBoundedBackend(),
        )
