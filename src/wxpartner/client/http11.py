"""HTTP/1.1 for the SDK's own transports (http11_sync.py, http11_aio.py): the request's bytes, a parser of
answers, and the rules of a keep-alive pool, written once for both.

Why not httpx by default: per call over loopback, httpx's Client, httpcore and h11 spent ≈ 0.3–0.45 ms
of CPU, more than the request's RSA signature, and ``http.client`` ≈ 0.15 ms, ≈ 40 µs of it parsing
the answer's headers with the e-mail parser (README, *Performance*). A WeChat Pay call is one small
request and one small answer, so the request line, headers and body go out in one send (one segment:
the server parses it in one go) and the answer is read by a parser that knows only HTTP/1.1 responses:
a status line, header lines, then a body by Content-Length, chunks, or up to the close.

Failures are raised as httpx's exceptions, so the retry policy (``policy.NOT_SENT_ERRORS``) reads them
exactly as it reads httpx's: only a failure to connect proves the request never left.

Used only when the client owns its HTTP: no ``http_client`` or ``transport`` given and no proxy in the
environment (httpx honours ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY``; such clients keep httpx rather
than meet a second proxy implementation). TLS uses httpx's default context (certifi, or
``SSL_CERT_FILE``/``SSL_CERT_DIR``), so a certificate one transport accepts the other accepts too.
"""

from __future__ import annotations

import operator
import os
import re
import select
import socket
import ssl
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Generator
from functools import lru_cache
from typing import Generic, Protocol, TypeVar

import httpx

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


def is_token(text: str) -> bool:
    """An HTTP token (RFC 9110 §5.6.2): what a method or a header name must be."""
    return _TOKEN.fullmatch(text) is not None


# What h11's field-value (which it checks in each request header) does not allow: a blank at either end
# (serialize checks it apart), and a NUL, CR, LF, VT or FF anywhere.
_BAD_VALUE = re.compile(r"[\x00\r\n\x0b\x0c]")
# Methods and names the SDK itself writes, known to be tokens (the regex is for the others).
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"})
_TOKEN_NAMES = frozenset(
    {"Host", "Content-Length", "Accept", "User-Agent", "Content-Type", "Authorization", "Wechatpay-Serial"}
)
# A status is 100 to 999 (h11 refuses "099"; it was read as an answer without a body); the reason
# phrase is h11's: no NUL, CR, LF, VT or FF.
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([1-9][0-9]{2})(?: [^\x00\r\n\x0b\x0c]*)?\r?\n")
# h11's header line (h11._abnf.header_field): a token, ':', then a value of any byte but NUL and
# whitespace, with spaces and tabs only between them and blanks around it. So a value may not hold a
# NUL, VT, FF or a CR (but the line's end). Read leniently, a value split at a bare CR could make the
# SDK see another Wechatpay-Signature or -Serial than a proxy before it saw.
_TCHARS = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BARE_CR = re.compile(rb"\r(?!\n)")
_first = operator.itemgetter(0)
_FIELD_VALUE = rb"[ \t]*((?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?)[ \t]*\r?\n"
_HEADER_LINE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:" + _FIELD_VALUE)
_CONTINUATION = re.compile(rb"[ \t]+" + _FIELD_VALUE)
# h11's chunk-size line: 1 to 20 hex digits, an extension, trailing blanks. int(..., 16) alone also took
# "+5", "0x5", "5_0", " 5" and "-1" (a negative size cut the body short and read on into the framing).
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,20})(?:;[^\r\n]*)?[ \t]*\r?\n")

Origin = tuple[str, str, int]
T = TypeVar("T")


class Poolable(Protocol):
    idle_since: float

    def quiet(self) -> bool: ...


C = TypeVar("C", bound=Poolable)


def timed_out(timeout: httpx.Timeout, phase: str, source: str = "timeout=") -> str:
    """What a timeout's error says: the phase and the seconds configured (it said only "timed out"),
    and where they were set (``source``)."""
    what = {
        "connect": "no connection",
        "write": "the request not written",
        "read": "nothing received",
        "pool": "no free connection",
    }[phase]
    seconds: float | None = getattr(timeout, phase)
    shown = "?" if seconds is None else f"{seconds:g}"
    return f"{what} within {shown} s (the {phase} timeout, from {source})"


def environment_has_proxy() -> bool:
    """Whether httpx (``trust_env``) would send some request through a proxy."""
    proxies = urllib.request.getproxies()
    return any(proxies.get(scheme) for scheme in ("http", "https", "all"))


class Idle(Generic[C]):
    """The idle keep-alive connections of a pool, per origin; thread-safe, never waits on I/O (the
    pool closes what ``take``, ``put`` and ``drain`` hand back)."""

    def __init__(self) -> None:
        self._idle: dict[Origin, list[C]] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._pid = os.getpid()

    def take(self, origin: Origin) -> tuple[C | None, list[C]]:
        """A connection to reuse, if one is fresh and quiet, and the stale ones met on the way.

        In a forked child (multiprocessing, Celery prefork, gunicorn --preload) every connection
        inherited from the parent is stale: the parent's process holds the same socket, and two
        processes writing to one keep-alive connection read each other's answers, validly signed."""
        now = time.monotonic()
        stale: list[C] = []
        with self._lock:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                stale = [conn for conns in self._idle.values() for conn in conns]
                self._idle.clear()
            idle = self._idle.get(origin)
            while idle:
                conn = idle.pop()
                if now - conn.idle_since < KEEPALIVE_EXPIRY and conn.quiet():
                    return conn, stale
                stale.append(conn)
        return None, stale

    def put(self, origin: Origin, conn: C) -> bool:
        """False when the pool is closed or full: the caller closes the connection."""
        with self._lock:
            if self._closed:
                return False
            idle = self._idle.setdefault(origin, [])
            if len(idle) >= MAX_IDLE_PER_ORIGIN:
                return False
            conn.idle_since = time.monotonic()
            idle.append(conn)
            return True

    def drain(self) -> list[C]:
        with self._lock:
            self._closed = True
            conns = [conn for conns in self._idle.values() for conn in conns]
            self._idle.clear()
        return conns


def socket_quiet(sock: socket.socket | None) -> bool:
    """An idle keep-alive connection has nothing to read; if it has (the server's FIN, or bytes nobody
    asked for) it is not reused, as httpcore decides (which also polls the raw socket)."""
    if sock is None:
        return False
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return False
    try:
        if not hasattr(select, "poll"):  # Windows
            return not select.select([sock], [], [], 0)[0]
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return not poller.poll(0)
    except (OSError, ValueError):  # closed meanwhile
        return False


def tls_context() -> ssl.SSLContext:
    """httpx's default verification (certifi, or SSL_CERT_FILE/SSL_CERT_DIR), offering HTTP/1.1 by ALPN."""
    context = httpx.create_ssl_context()
    context.set_alpn_protocols(["http/1.1"])
    return context


Answer = tuple[int, list[tuple[bytes, bytes]], bytes, bool]
Reading = Generator[None, bytes, T]


class AnswerReader:
    """Drives an ``AnswerParser`` from chunks as they arrive: ``answer`` is set once it is complete,
    ``rest`` then holds what arrived beyond it."""

    def __init__(self, buffer: bytes, method: str) -> None:
        self._parser = AnswerParser(buffer)
        self._reading = self._parser.read(method)
        self.answer: Answer | None = None
        self.rest = b""
        self._step(None)  # parses what is already buffered

    def feed(self, chunk: bytes) -> None:
        """The next chunk from the connection; b"" when the server closed it."""
        self._step(chunk)

    def _step(self, chunk: bytes | None) -> None:
        try:
            if chunk is None:
                next(self._reading)
            else:
                self._reading.send(chunk)
        except StopIteration as done:
            self.answer = done.value
            self.rest = bytes(self._parser.buffer)


def _check_header_lines(lines: list[bytes], headers: list[tuple[bytes, bytes]]) -> None:
    """Refuses what h11 refuses in header lines, in one pass over all of them (a regex per line cost
    ≈ 3 times the parsing of the lines): names are tokens, no NUL, VT or FF, and no CR but before the
    LF that ends a line. Only when that fails is each line read to name the culprit."""
    head = b"".join(lines)
    if (
        b"\x00" not in head
        and b"\x0b" not in head
        and b"\x0c" not in head
        and _BARE_CR.search(head) is None
        and not b"".join(map(_first, headers)).translate(None, _TCHARS)
    ):
        return
    name = b""
    for line in lines:
        if line[:1] in (b" ", b"\t"):  # a folded line, of the last header's value
            if _CONTINUATION.fullmatch(line):
                continue
        else:
            name = line.partition(b":")[0]
            if name.translate(None, _TCHARS):
                raise httpx.RemoteProtocolError(f"illegal header name in {line[:100]!r}")
            if _HEADER_LINE.fullmatch(line):
                continue
        raise httpx.RemoteProtocolError(
            f"illegal character in the value of header {name.decode('ascii')!r}: {line[:100]!r}"
        )
    raise AssertionError("a header line h11 refuses was not found")  # pragma: no cover


class AnswerParser:
    """One HTTP/1.1 answer, sans-IO (both pools drive it through ``AnswerReader``): ``read`` yields when
    it needs more bytes and is sent the next chunk, b"" when the server closed. Whatever is left in
    ``buffer`` afterwards arrived beyond the answer. A bytearray: a large body (a bill file) arrives in
    many chunks, and appending to bytes would copy everything read so far for every chunk."""

    def __init__(self, buffer: bytes = b"") -> None:
        self.buffer = bytearray(buffer)

    def read(self, method: str) -> Reading[Answer]:
        """Status, raw header pairs, body, and whether the connection may serve another request."""
        while True:
            line = yield from self._line()
            if not line:
                raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
            m = _STATUS_LINE.fullmatch(line)
            if m is None:
                raise httpx.RemoteProtocolError(f"malformed status line {line[:100]!r}")
            status = int(m.group(2))
            headers = yield from self._headers()
            if status == 101:  # the connection now speaks another protocol: h11 refuses it too
                raise httpx.RemoteProtocolError("101 Switching Protocols to a request that asked no upgrade")
            if not 100 <= status < 200:
                break  # an interim answer (100 Continue, 103 Early Hints) is followed by the real one
        connection = b",".join(v for k, v in headers if k.lower() == b"connection").lower()
        keep_alive = b"close" not in connection and (m.group(1) == b"1" or b"keep-alive" in connection)
        if method == "HEAD" or status in (204, 304):
            return status, headers, b"", keep_alive
        codings = b",".join(v for k, v in headers if k.lower() == b"transfer-encoding").lower()
        if codings:
            if codings.rsplit(b",", 1)[-1].strip() != b"chunked":
                return status, headers, (yield from self._to_close()), False
            return status, headers, (yield from self._chunked()), keep_alive
        lengths = {v.strip() for k, v in headers if k.lower() == b"content-length"}
        if not lengths:
            return status, headers, (yield from self._to_close()), False
        length = next(iter(lengths))
        if len(lengths) > 1 or not length.isdigit():
            raise httpx.RemoteProtocolError(f"bad Content-Length {sorted(lengths)!r}")
        return status, headers, (yield from self._exactly(int(length))), keep_alive

    def _headers(self) -> Reading[list[tuple[bytes, bytes]]]:
        headers: list[tuple[bytes, bytes]] = []
        lines: list[bytes] = []
        folded: bytes | None = None  # the last value as folding builds it, before its final strip
        while True:
            line = yield from self._line()
            if line in (b"\r\n", b"\n"):
                _check_header_lines(lines, headers)
                return headers
            if not line:
                raise httpx.RemoteProtocolError("Server disconnected in the answer's headers.")
            lines.append(line)
            if line[:1] in (b" ", b"\t"):  # obsolete line folding: part of the last value
                if not headers:
                    raise httpx.RemoteProtocolError(f"a folded line opens the headers: {line[:100]!r}")
                # As h11 joins them: the lines as they are, one space between, the whole value
                # stripped at its ends only ("a \r\n b" is "a  b"; stripping each part lost a space).
                if folded is None:
                    folded = lines[-2].partition(b":")[2].lstrip(b" \t").rstrip(b"\r\n")
                folded += b" " + line.lstrip(b" \t").rstrip(b"\r\n")
                headers[-1] = (headers[-1][0], folded.strip(b" \t"))
                continue
            folded = None
            name, colon, value = line.partition(b":")
            if not colon or not name:
                raise httpx.RemoteProtocolError(f"malformed header line {line[:100]!r}")
            if len(headers) >= MAX_HEADERS:
                raise httpx.RemoteProtocolError(f"more than {MAX_HEADERS} headers")
            headers.append((name, value.strip(b" \t\r\n")))

    def _chunked(self) -> Reading[bytes]:
        parts: list[bytes] = []
        while True:
            size_line = yield from self._line()
            if not size_line:
                raise httpx.RemoteProtocolError("Server disconnected in a chunked body.")
            m = _CHUNK_SIZE.fullmatch(size_line)
            if m is None:
                raise httpx.RemoteProtocolError(f"bad chunk size {size_line[:40]!r}")
            size = int(m.group(1), 16)
            if size == 0:
                yield from self._headers()  # trailers, ignored
                return b"".join(parts)
            parts.append((yield from self._exactly(size)))
            if (yield from self._line()) not in (b"\r\n", b"\n"):
                raise httpx.RemoteProtocolError("a chunk not followed by CRLF")

    # -- reading --------------------------------------------------------------------------------
    def _fill(self) -> Reading[bool]:
        data = yield
        self.buffer += data
        return bool(data)

    def _line(self) -> Reading[bytes]:
        """Up to and including LF; b"" when the server closed before sending anything more."""
        while True:
            end = self.buffer.find(b"\n")
            if end >= MAX_LINE or (end < 0 and len(self.buffer) >= MAX_LINE):  # LF included
                raise httpx.RemoteProtocolError(f"an answer line longer than {MAX_LINE} bytes")
            if end >= 0:
                line = bytes(self.buffer[: end + 1])
                del self.buffer[: end + 1]
                return line
            if not (yield from self._fill()):
                if self.buffer:
                    raise httpx.RemoteProtocolError("Server disconnected in the middle of a line.")
                return b""

    def _exactly(self, size: int) -> Reading[bytes]:
        while len(self.buffer) < size:
            if not (yield from self._fill()):
                raise httpx.RemoteProtocolError(
                    f"Server disconnected after {len(self.buffer)} of {size} bytes of the body."
                )
        body = bytes(self.buffer[:size])
        del self.buffer[:size]
        return body

    def _to_close(self) -> Reading[bytes]:
        while (yield from self._fill()):
            pass
        body = bytes(self.buffer)
        self.buffer.clear()
        return body


def serialize(request: Outgoing) -> bytes:
    """The request line, headers and body in one buffer. Refuses the header names and values h11
    refuses when httpx sends (among them a value that would start another header). The values are
    checked once encoded, all at once: a regex over each took ≈ 3 µs for the Authorization alone."""
    if request.method not in _METHODS and not _TOKEN.fullmatch(request.method):
        raise httpx.LocalProtocolError(f"illegal method {request.method!r}")
    lines = [f"{request.method} {request.target} HTTP/1.1"]
    for name, value in request.headers:
        if (name not in _TOKEN_NAMES and not _TOKEN.fullmatch(name)) or value.strip(" \t") != value:
            raise httpx.LocalProtocolError(f"illegal header {name!r}")
        lines.append(f"{name}: {value}")
    lines.append("\r\n")
    head = "\r\n".join(lines).encode("ascii")
    # CR and LF only in the CRLFs that join the lines, no NUL, VT or FF
    if (
        head.count(b"\r") != len(lines)
        or head.count(b"\n") != len(lines)
        or b"\x00" in head
        or b"\x0b" in head
        or b"\x0c" in head
    ):
        for name, value in request.headers:
            if _BAD_VALUE.search(value):
                raise httpx.LocalProtocolError(f"illegal header {name!r}")
        raise httpx.LocalProtocolError(f"illegal request line {lines[0][:100]!r}")
    if request.chunked:  # a caller's Transfer-Encoding: chunked, without a body (outgoing.given_framing)
        return head + b"0\r\n\r\n"
    return head + request.body


@lru_cache(maxsize=64)
def parse_origin(origin: str) -> Origin:
    parts = urllib.parse.urlsplit(origin)
    scheme = parts.scheme
    if scheme not in _DEFAULT_PORTS:
        raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}: http or https")
    host = parts.hostname or ""
    return scheme, host, parts.port or _DEFAULT_PORTS[scheme]
