"""The synchronous client's default transport: HTTP/1.1 over the standard library's ``http.client``,
a keep-alive pool per origin.

Why not httpx here: per call over loopback, httpx's Client, httpcore and h11 spend ≈ 0.3–0.45 ms of
CPU where ``http.client`` spends ≈ 0.15 ms, more than the request's RSA signature (README,
*Performance*). The client still builds and signs an ``httpx.Request`` (one request model for both
clients and for callers' own httpx clients), and failures are raised as httpx's exceptions, so the retry
policy (``policy.NOT_SENT_ERRORS``) reads them exactly as it reads httpx's: only a failure to connect
proves the request never left.

Used only when the client owns its HTTP: no ``http_client`` or ``transport`` given and no proxy in the
environment (httpx honours ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY``; such clients keep httpx rather
than meet a second proxy implementation). TLS uses httpx's default context (certifi, or
``SSL_CERT_FILE``/``SSL_CERT_DIR``), so a certificate one transport accepts the other accepts too.
"""

from __future__ import annotations

import http.client
import select
import ssl
import threading
import time
import urllib.request
from collections.abc import Iterable

import httpx

from .core import Response, merge_headers

# httpx's defaults (Limits): idle connections kept per origin, and for how long. A connection idle for
# longer may have been dropped by a NAT or load balancer without a FIN, which only a read timeout shows.
MAX_IDLE_PER_ORIGIN = 20
KEEPALIVE_EXPIRY = 5.0

Origin = tuple[str, str, int]
_DEFAULT_PORTS = {"http": 80, "https": 443}


def environment_has_proxy() -> bool:
    """Whether httpx (``trust_env``) would send some request through a proxy."""
    proxies = urllib.request.getproxies()
    return any(proxies.get(scheme) for scheme in ("http", "https", "all"))


class PooledHTTP:
    """Thread-safe: a connection serves one call at a time, taken from its origin's idle list and put
    back once its answer was read in full (never when the server said it closes)."""

    def __init__(self, timeout: httpx.Timeout) -> None:
        self._timeout = timeout
        self._tls: ssl.SSLContext | None = None  # loaded on the first https origin (certifi: ≈ 20 ms)
        self._idle: dict[Origin, list[tuple[http.client.HTTPConnection, float]]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def exchange(self, request: httpx.Request) -> Response:
        url = request.url
        scheme = url.scheme
        if scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}: http or https")
        origin = (scheme, url.host, url.port or _DEFAULT_PORTS[scheme])
        conn = self._idle_connection(origin) or self._connect(origin)
        try:
            status, pairs, content = self._send(conn, request)
        except BaseException:
            conn.close()
            raise
        self._release(origin, conn)
        return Response(status, merge_headers(_as_httpx_decodes(pairs)), content)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle = [conn for conns in self._idle.values() for conn, _ in conns]
            self._idle.clear()
        for conn in idle:
            conn.close()

    # -- connections ----------------------------------------------------------------------------
    def _idle_connection(self, origin: Origin) -> http.client.HTTPConnection | None:
        now = time.monotonic()
        stale: list[http.client.HTTPConnection] = []
        found = None
        with self._lock:
            idle = self._idle.get(origin)
            while idle:
                conn, since = idle.pop()
                if now - since < KEEPALIVE_EXPIRY and _quiet(conn):
                    found = conn
                    break
                stale.append(conn)
        for conn in stale:
            conn.close()
        return found

    def _connect(self, origin: Origin) -> http.client.HTTPConnection:
        scheme, host, port = origin
        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = http.client.HTTPSConnection(
                host, port, timeout=self._timeout.connect, context=self._context()
            )
        else:
            conn = http.client.HTTPConnection(host, port, timeout=self._timeout.connect)
        try:
            conn.connect()  # TCP (TCP_NODELAY set by http.client), then the TLS handshake
        except TimeoutError as exc:
            conn.close()
            raise httpx.ConnectTimeout(f"connecting to {host}:{port}: {exc}") from exc
        except OSError as exc:  # refused, unreachable, DNS, certificate verification
            conn.close()
            raise httpx.ConnectError(f"connecting to {host}:{port}: {exc}") from exc
        return conn

    def _context(self) -> ssl.SSLContext:
        if self._tls is None:
            context = httpx.create_ssl_context()
            context.set_alpn_protocols(["http/1.1"])  # as httpcore offers it without HTTP/2
            self._tls = context
        return self._tls

    def _release(self, origin: Origin, conn: http.client.HTTPConnection) -> None:
        if conn.sock is None:  # the answer said Connection: close (http.client dropped the socket)
            return
        with self._lock:
            if not self._closed:
                idle = self._idle.setdefault(origin, [])
                if len(idle) < MAX_IDLE_PER_ORIGIN:
                    idle.append((conn, time.monotonic()))
                    return
        conn.close()

    # -- one exchange ---------------------------------------------------------------------------
    def _send(
        self, conn: http.client.HTTPConnection, request: httpx.Request
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        sock = conn.sock
        assert sock is not None  # connected by _connect, or idle and checked by _quiet
        try:
            sock.settimeout(self._timeout.write)
            # Host, Content-Length and the rest come from the httpx.Request, byte for byte as signed.
            conn.putrequest(request.method, request.url.raw_path.decode("ascii"), True, True)
            for name, value in request.headers.raw:
                conn.putheader(name, value)  # http.client refuses CR/LF in names and values
            conn.endheaders(request.content or None)  # headers and a bytes body in one send
        except TimeoutError as exc:
            raise httpx.WriteTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpx.WriteError(str(exc)) from exc
        try:
            sock.settimeout(self._timeout.read)
            answer = conn.getresponse()
            content = answer.read()
        except TimeoutError as exc:
            raise httpx.ReadTimeout(str(exc)) from exc
        except http.client.RemoteDisconnected as exc:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.") from exc
        except http.client.HTTPException as exc:  # a malformed status line, headers or body length
            raise httpx.RemoteProtocolError(f"{type(exc).__name__}: {exc}") from exc
        except OSError as exc:
            raise httpx.ReadError(str(exc)) from exc
        return answer.status, answer.getheaders(), content


def _quiet(conn: http.client.HTTPConnection) -> bool:
    """An idle keep-alive connection has nothing to read; if it has (the server's FIN, or bytes nobody
    asked for) it is not reused, as httpcore does."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        if not hasattr(select, "poll"):  # Windows
            return not select.select([sock], [], [], 0)[0]
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return not poller.poll(0)
    except (OSError, ValueError):  # closed meanwhile
        return False


def _as_httpx_decodes(pairs: list[tuple[str, str]]) -> Iterable[tuple[str, str]]:
    """http.client decodes header bytes as Latin-1; httpx as ASCII, else UTF-8, else Latin-1, for the
    whole set. The same text either way unless some header is not ASCII."""
    if all(name.isascii() and value.isascii() for name, value in pairs):
        return pairs
    try:
        return [(n.encode("latin-1").decode("utf-8"), v.encode("latin-1").decode("utf-8")) for n, v in pairs]
    except UnicodeDecodeError:
        return pairs
