"""The asynchronous client's default transport: the HTTP/1.1 of http11.py (the same request bytes, the
same answer parser, the same pool rules and failures) on anyio streams, so any anyio backend runs it.

Per W3 issue over loopback the async SDK spends 2.2–2.5 ms of client CPU on httpx.AsyncClient and
0.9–1.0 ms on this (three interleaved rounds of 300 issues each). Used when the client owns its HTTP and no proxy is configured, as for
the sync client.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl

import anyio
import httpx
from anyio.abc import ByteStream, SocketAttribute
from anyio.lowlevel import EventLoopToken, current_token
from anyio.streams.tls import TLSAttribute

from .core import Response, decode_headers
from .http11 import (
    Answer,
    AnswerReader,
    Idle,
    Origin,
    parse_origin,
    serialize,
    socket_quiet,
    timed_out,
    tls_context,
)
from .outgoing import Outgoing

# What anyio raises for a connection that broke or was closed under us, beside the OS's own errors.
_BROKEN = (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError)


class _Connection:
    __slots__ = ("buffer", "idle_since", "loop", "pid", "stream")

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream
        self.buffer = b""
        self.idle_since = 0.0
        self.loop: EventLoopToken = current_token()  # a stream works in the event loop that opened it
        self.pid = os.getpid()

    def quiet(self) -> bool:
        """As the sync pool decides, on the raw socket: anyio pauses reading between receives, so a FIN
        that came while the connection was idle waits there (httpcore's anyio backend checks the same).
        A connection of another event loop (``asyncio.run`` per call, a test's own loop) is never
        reused: its stream fails here ("Event loop is closed")."""
        if self.buffer or self.loop != current_token():
            return False
        ssl_object = self.stream.extra(TLSAttribute.ssl_object, None)
        if ssl_object is not None and ssl_object.pending():
            return False
        return socket_quiet(self.stream.extra(SocketAttribute.raw_socket, None))

    async def discard(self) -> None:
        if self.pid != os.getpid():  # inherited by a forked child: the parent's, left to it untouched
            return
        if self.loop != current_token():
            self._abandon()
            return
        with anyio.CancelScope(shield=True):  # a cancelled call still closes its connection
            await anyio.aclose_forcefully(self.stream)

    def _abandon(self) -> None:
        """Closing a stream goes through its own event loop, which may be closed already: the socket is
        shut down from here instead (the server sees the end at once; its loop, if alive, closes it)."""
        raw = self.stream.extra(SocketAttribute.raw_socket, None)
        if raw is not None:
            with contextlib.suppress(OSError):
                raw.shutdown(socket.SHUT_RDWR)


class AsyncPooledHTTP:
    """A connection serves one call at a time and is reused only in the event loop (and process) that
    opened it; the client is meant for one loop, but a second one (asyncio.run per call) still works."""

    def __init__(self, timeout: httpx.Timeout, tls: ssl.SSLContext | None = None) -> None:
        self._timeout = timeout
        # The caller's context, else httpx's, loaded on the first https origin (certifi: ≈ 20 ms).
        self._tls: ssl.SSLContext | None = tls
        self._idle: Idle[_Connection] = Idle()

    async def exchange(self, request: Outgoing, timeout: httpx.Timeout | None = None) -> Response:
        """One request and its answer, within ``timeout`` (the pool's own when None)."""
        bounds = timeout or self._timeout
        data = serialize(request)
        origin = parse_origin(request.origin)
        conn, stale = self._idle.take(origin)
        for old in stale:
            await old.discard()
        if conn is None:
            conn = await self._connect(origin, bounds)
        try:
            await self._write(conn, data, bounds)
            status, raw_headers, content, reusable = await self._read(conn, request.method, bounds)
        except BaseException:
            await conn.discard()
            raise
        if not (reusable and self._idle.put(origin, conn)):
            await conn.discard()
        return Response(status, decode_headers(raw_headers), content)

    async def aclose(self) -> None:
        for conn in self._idle.drain():
            await conn.discard()

    async def _connect(self, origin: Origin, timeout: httpx.Timeout) -> _Connection:
        scheme, host, port = origin
        if scheme == "https" and self._tls is None:
            self._tls = tls_context()
        try:
            with anyio.fail_after(timeout.connect):  # TCP and the TLS handshake, as httpcore
                stream: ByteStream
                if scheme == "https":  # an answer ends at its length, not at a close_notify
                    stream = await anyio.connect_tcp(
                        host, port, tls=True, ssl_context=self._tls, tls_standard_compatible=False
                    )
                else:
                    stream = await anyio.connect_tcp(host, port)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(
                f"connecting to {host}:{port}: {timed_out(timeout, 'connect')}"
            ) from exc
        except _BROKEN as exc:  # refused, unreachable, DNS, certificate verification
            raise httpx.ConnectError(f"connecting to {host}:{port}: {exc}") from exc
        return _Connection(stream)

    async def _write(self, conn: _Connection, data: bytes, timeout: httpx.Timeout) -> None:
        try:
            with anyio.fail_after(timeout.write):
                await conn.stream.send(data)
        except TimeoutError as exc:
            raise httpx.WriteTimeout(timed_out(timeout, "write")) from exc
        except _BROKEN as exc:
            raise httpx.WriteError(str(exc)) from exc

    async def _read(self, conn: _Connection, method: str, timeout: httpx.Timeout) -> Answer:
        reader = AnswerReader(conn.buffer, method)
        try:
            while reader.answer is None:
                with anyio.fail_after(timeout.read):
                    try:
                        chunk = await conn.stream.receive(65536)
                    except anyio.EndOfStream:
                        chunk = b""
                reader.feed(chunk)
            conn.buffer = reader.rest
            return reader.answer
        except TimeoutError as exc:
            raise httpx.ReadTimeout(timed_out(timeout, "read")) from exc
        except _BROKEN as exc:
            raise httpx.ReadError(str(exc)) from exc
