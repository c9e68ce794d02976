"""The synchronous client's default transport: the HTTP/1.1 of http11.py on blocking sockets, a
keep-alive pool per origin shared by the client's threads."""

from __future__ import annotations

import socket
import ssl

import httpx

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


class _Connection:
    """A socket and what was read from it beyond the last answer (nothing, with a well-behaved server)."""

    __slots__ = ("buffer", "idle_since", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.idle_since = 0.0

    def quiet(self) -> bool:
        return not self.buffer and socket_quiet(self.sock)


class PooledHTTP:
    """Thread-safe: a connection serves one call at a time, taken from its origin's idle list and put
    back once its answer was read in full (never when the server said it closes)."""

    def __init__(self, timeout: httpx.Timeout, tls: ssl.SSLContext | None = None) -> None:
        self._timeout = timeout
        # The caller's context, else httpx's, loaded on the first https origin (certifi: ≈ 20 ms).
        self._tls: ssl.SSLContext | None = tls
        self._idle: Idle[_Connection] = Idle()

    def exchange(self, request: Outgoing, timeout: httpx.Timeout | None = None) -> Response:
        """One request and its answer, within ``timeout`` (the pool's own when None)."""
        bounds = timeout or self._timeout
        data = serialize(request)
        origin = parse_origin(request.origin)
        conn, stale = self._idle.take(origin)
        for old in stale:
            old.sock.close()
        if conn is None:
            conn = self._connect(origin, bounds)
        try:
            self._write(conn, data, bounds)
            status, raw_headers, content, reusable = self._read(conn, request.method, bounds)
        except BaseException:
            conn.sock.close()
            raise
        if not (reusable and self._idle.put(origin, conn)):
            conn.sock.close()
        return Response(status, decode_headers(raw_headers), content)

    def close(self) -> None:
        for conn in self._idle.drain():
            conn.sock.close()

    # -- connections ----------------------------------------------------------------------------
    def _connect(self, origin: Origin, timeout: httpx.Timeout) -> _Connection:
        scheme, host, port = origin
        sock: socket.socket | None = None
        try:
            sock = socket.create_connection((host, port), timeout=timeout.connect)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":  # the handshake within the connect timeout, as httpcore does
                if self._tls is None:
                    self._tls = tls_context()
                sock = self._tls.wrap_socket(sock, server_hostname=host)
        except OSError as exc:  # a timeout; refused, unreachable, DNS, certificate verification
            if sock is not None:
                sock.close()
            if isinstance(exc, TimeoutError):
                raise httpx.ConnectTimeout(
                    f"connecting to {host}:{port}: {timed_out(timeout, 'connect')}"
                ) from exc
            raise httpx.ConnectError(f"connecting to {host}:{port}: {exc}") from exc
        return _Connection(sock)

    # -- one exchange ---------------------------------------------------------------------------
    def _write(self, conn: _Connection, data: bytes, timeout: httpx.Timeout) -> None:
        try:
            conn.sock.settimeout(timeout.write)
            conn.sock.sendall(data)
        except TimeoutError as exc:
            raise httpx.WriteTimeout(timed_out(timeout, "write")) from exc
        except OSError as exc:
            raise httpx.WriteError(str(exc)) from exc

    def _read(self, conn: _Connection, method: str, timeout: httpx.Timeout) -> Answer:
        reader = AnswerReader(conn.buffer, method)
        try:
            conn.sock.settimeout(timeout.read)
            while reader.answer is None:
                reader.feed(conn.sock.recv(65536))
            conn.buffer = reader.rest
            return reader.answer
        except TimeoutError as exc:
            raise httpx.ReadTimeout(timed_out(timeout, "read")) from exc
        except OSError as exc:
            raise httpx.ReadError(str(exc)) from exc
