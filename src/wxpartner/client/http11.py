"""The synchronous client's default transport: HTTP/1.1 on its own sockets, a keep-alive pool per origin.

Why not httpx here: per call over loopback, httpx's Client, httpcore and h11 spent ≈ 0.3–0.45 ms of
CPU, more than the request's RSA signature, and ``http.client`` ≈ 0.15 ms, ≈ 40 µs of it parsing the
answer's headers with the e-mail parser (README, *Performance*). A WeChat Pay call is one small request
and one small answer, so this writes the request line, headers and body in one ``sendall`` (one
segment: the server parses it in one go) and reads the answer with a parser that knows only HTTP/1.1
responses: a status line, header lines, then a body by Content-Length, chunks, or up to the close.

Failures are raised as httpx's exceptions, so the retry policy (``policy.NOT_SENT_ERRORS``) reads them
exactly as it reads httpx's: only a failure to connect proves the request never left.

Used only when the client owns its HTTP: no ``http_client`` or ``transport`` given and no proxy in the
environment (httpx honours ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY``; such clients keep httpx rather
than meet a second proxy implementation). TLS uses httpx's default context (certifi, or
``SSL_CERT_FILE``/``SSL_CERT_DIR``), so a certificate one transport accepts the other accepts too.
"""

from __future__ import annotations

import re
import select
import socket
import ssl
import threading
import time
import urllib.parse
import urllib.request
from functools import lru_cache

import httpx

from .core import Response, decode_headers
from .outgoing import Outgoing

# httpx's defaults (Limits): idle connections kept per origin, and for how long. A connection idle for
# longer may have been dropped by a NAT or load balancer without a FIN, which only a read timeout shows.
MAX_IDLE_PER_ORIGIN = 20
KEEPALIVE_EXPIRY = 5.0
# http.client's bounds on what a server may send before the body.
MAX_LINE = 65536
MAX_HEADERS = 100

_DEFAULT_PORTS = {"http": 80, "https": 443}
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\r\n\x00]")
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: [^\r\n]*)?\r?\n")

Origin = tuple[str, str, int]


def environment_has_proxy() -> bool:
    """Whether httpx (``trust_env``) would send some request through a proxy."""
    proxies = urllib.request.getproxies()
    return any(proxies.get(scheme) for scheme in ("http", "https", "all"))


class _Connection:
    """A socket and what was read from it beyond the last answer (nothing, with a well-behaved server)."""

    __slots__ = ("buffer", "idle_since", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.idle_since = 0.0

    def close(self) -> None:
        self.sock.close()

    def quiet(self) -> bool:
        """An idle keep-alive connection has nothing to read; if it has (the server's FIN, or bytes
        nobody asked for) it is not reused, as httpcore decides."""
        if self.buffer or (isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()):
            return False
        try:
            if not hasattr(select, "poll"):  # Windows
                return not select.select([self.sock], [], [], 0)[0]
            poller = select.poll()
            poller.register(self.sock, select.POLLIN)
            return not poller.poll(0)
        except (OSError, ValueError):  # closed meanwhile
            return False


class PooledHTTP:
    """Thread-safe: a connection serves one call at a time, taken from its origin's idle list and put
    back once its answer was read in full (never when the server said it closes)."""

    def __init__(self, timeout: httpx.Timeout) -> None:
        self._timeout = timeout
        self._tls: ssl.SSLContext | None = None  # loaded on the first https origin (certifi: ≈ 20 ms)
        self._idle: dict[Origin, list[_Connection]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def exchange(self, request: Outgoing) -> Response:
        data = _serialize(request)
        origin = _origin(request.origin)
        conn = self._idle_connection(origin) or self._connect(origin)
        try:
            self._write(conn, data)
            status, raw_headers, content, reusable = self._read(conn, request.method)
        except BaseException:
            conn.close()
            raise
        if reusable:
            self._release(origin, conn)
        else:
            conn.close()
        return Response(status, decode_headers(raw_headers), content)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle = [conn for conns in self._idle.values() for conn in conns]
            self._idle.clear()
        for conn in idle:
            conn.close()

    # -- connections ----------------------------------------------------------------------------
    def _idle_connection(self, origin: Origin) -> _Connection | None:
        now = time.monotonic()
        stale: list[_Connection] = []
        found = None
        with self._lock:
            idle = self._idle.get(origin)
            while idle:
                conn = idle.pop()
                if now - conn.idle_since < KEEPALIVE_EXPIRY and conn.quiet():
                    found = conn
                    break
                stale.append(conn)
        for conn in stale:
            conn.close()
        return found

    def _connect(self, origin: Origin) -> _Connection:
        scheme, host, port = origin
        sock: socket.socket | None = None
        try:
            sock = socket.create_connection((host, port), timeout=self._timeout.connect)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":  # the handshake within the connect timeout, as httpcore does
                sock = self._context().wrap_socket(sock, server_hostname=host)
        except TimeoutError as exc:
            if sock is not None:
                sock.close()
            raise httpx.ConnectTimeout(f"connecting to {host}:{port}: {exc}") from exc
        except OSError as exc:  # refused, unreachable, DNS, certificate verification
            if sock is not None:
                sock.close()
            raise httpx.ConnectError(f"connecting to {host}:{port}: {exc}") from exc
        return _Connection(sock)

    def _context(self) -> ssl.SSLContext:
        if self._tls is None:
            context = httpx.create_ssl_context()
            context.set_alpn_protocols(["http/1.1"])  # as httpcore offers it without HTTP/2
            self._tls = context
        return self._tls

    def _release(self, origin: Origin, conn: _Connection) -> None:
        with self._lock:
            if not self._closed:
                idle = self._idle.setdefault(origin, [])
                if len(idle) < MAX_IDLE_PER_ORIGIN:
                    conn.idle_since = time.monotonic()
                    idle.append(conn)
                    return
        conn.close()

    # -- one exchange ---------------------------------------------------------------------------
    def _write(self, conn: _Connection, data: bytes) -> None:
        try:
            conn.sock.settimeout(self._timeout.write)
            conn.sock.sendall(data)
        except TimeoutError as exc:
            raise httpx.WriteTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpx.WriteError(str(exc)) from exc

    def _read(self, conn: _Connection, method: str) -> tuple[int, list[tuple[bytes, bytes]], bytes, bool]:
        try:
            conn.sock.settimeout(self._timeout.read)
            return _Answer(conn).read(method)
        except TimeoutError as exc:
            raise httpx.ReadTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpx.ReadError(str(exc)) from exc


class _Answer:
    """Reads one HTTP/1.1 response from a connection's buffer and socket."""

    def __init__(self, conn: _Connection) -> None:
        self.conn = conn

    def read(self, method: str) -> tuple[int, list[tuple[bytes, bytes]], bytes, bool]:
        """Status, raw header pairs, body, and whether the connection may serve another request."""
        while True:
            line = self._line()
            if not line:
                raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
            m = _STATUS_LINE.fullmatch(line)
            if m is None:
                raise httpx.RemoteProtocolError(f"malformed status line {line[:100]!r}")
            status = int(m.group(2))
            headers = self._headers()
            if not 100 <= status < 200 or status == 101:
                break  # an interim answer (100 Continue, 103 Early Hints) is followed by the real one
        connection = b",".join(v for k, v in headers if k.lower() == b"connection").lower()
        keep_alive = b"close" not in connection and (m.group(1) == b"1" or b"keep-alive" in connection)
        if method == "HEAD" or status in (204, 304) or status < 200:
            return status, headers, b"", keep_alive
        codings = b",".join(v for k, v in headers if k.lower() == b"transfer-encoding").lower()
        if codings:
            if codings.rsplit(b",", 1)[-1].strip() != b"chunked":
                return status, headers, self._to_close(), False
            return status, headers, self._chunked(), keep_alive
        lengths = {v.strip() for k, v in headers if k.lower() == b"content-length"}
        if not lengths:
            return status, headers, self._to_close(), False
        length = next(iter(lengths))
        if len(lengths) > 1 or not length.isdigit():
            raise httpx.RemoteProtocolError(f"bad Content-Length {sorted(lengths)!r}")
        return status, headers, self._exactly(int(length)), keep_alive

    def _headers(self) -> list[tuple[bytes, bytes]]:
        headers: list[tuple[bytes, bytes]] = []
        while True:
            line = self._line()
            if line in (b"\r\n", b"\n"):
                return headers
            if not line:
                raise httpx.RemoteProtocolError("Server disconnected in the answer's headers.")
            if line[:1] in (b" ", b"\t") and headers:  # obsolete line folding: part of the last value
                name, value = headers[-1]
                headers[-1] = (name, value + b" " + line.strip())
                continue
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip():
                raise httpx.RemoteProtocolError(f"malformed header line {line[:100]!r}")
            if len(headers) >= MAX_HEADERS:
                raise httpx.RemoteProtocolError(f"more than {MAX_HEADERS} headers")
            headers.append((name, value.strip(b" \t\r\n")))

    def _chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size_line = self._line()
            if not size_line:
                raise httpx.RemoteProtocolError("Server disconnected in a chunked body.")
            size_text = size_line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise httpx.RemoteProtocolError(f"bad chunk size {size_line[:40]!r}") from None
            if size == 0:
                self._headers()  # trailers, ignored
                return b"".join(parts)
            parts.append(self._exactly(size))
            if self._line() not in (b"\r\n", b"\n"):
                raise httpx.RemoteProtocolError("a chunk not followed by CRLF")

    # -- reading --------------------------------------------------------------------------------
    def _fill(self) -> bool:
        data = self.conn.sock.recv(65536)
        self.conn.buffer += data
        return bool(data)

    def _line(self) -> bytes:
        """Up to and including LF; b"" when the server closed before sending anything more."""
        conn = self.conn
        while True:
            end = conn.buffer.find(b"\n")
            if end > MAX_LINE or (end < 0 and len(conn.buffer) > MAX_LINE):
                raise httpx.RemoteProtocolError(f"an answer line longer than {MAX_LINE} bytes")
            if end >= 0:
                line, conn.buffer = conn.buffer[: end + 1], conn.buffer[end + 1 :]
                return line
            if not self._fill():
                if conn.buffer:
                    raise httpx.RemoteProtocolError("Server disconnected in the middle of a line.")
                return b""

    def _exactly(self, size: int) -> bytes:
        conn = self.conn
        while len(conn.buffer) < size:
            if not self._fill():
                raise httpx.RemoteProtocolError(
                    f"Server disconnected after {len(conn.buffer)} of {size} bytes of the body."
                )
        body, conn.buffer = conn.buffer[:size], conn.buffer[size:]
        return body

    def _to_close(self) -> bytes:
        while self._fill():
            pass
        body, self.conn.buffer = self.conn.buffer, b""
        return body


def _serialize(request: Outgoing) -> bytes:
    """The request line, headers and body in one buffer. Refuses what would let a header value start
    another header (h11 refuses the same, when httpx sends)."""
    lines = [f"{request.method} {request.target} HTTP/1.1"]
    for name, value in request.headers:
        if not _TOKEN.fullmatch(name) or _BAD_VALUE.search(value):
            raise httpx.LocalProtocolError(f"illegal header {name!r}")
        lines.append(f"{name}: {value}")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("ascii") + request.body


@lru_cache(maxsize=64)
def _origin(origin: str) -> Origin:
    parts = urllib.parse.urlsplit(origin)
    scheme = parts.scheme
    if scheme not in _DEFAULT_PORTS:
        raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}: http or https")
    host = parts.hostname or ""
    return scheme, host, parts.port or _DEFAULT_PORTS[scheme]
