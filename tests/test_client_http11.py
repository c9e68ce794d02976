"""The SDK's own HTTP/1.1 (client/http11.py, its sync and async pools) and the request it sends
(client/outgoing.py), against a socket-level loopback server: the bytes it sends are the bytes httpx sends (and sent before
it: the request target as httpx computes it), answers decode as httpx decodes them, keep-alive
connections are reused and never when dead or expired, failures come out as the httpx exceptions the
retry policy reads, TLS verifies like httpx, and a proxy in the environment hands the client to httpx."""

from __future__ import annotations

import asyncio
import gc
import re
import socket
import ssl
import struct
import threading
import types
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import anyio
import h11
import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import example, given, settings
from hypothesis import strategies as st

from live import free_port
from self_signed import self_signed
from support import World
from test_client_transport import Stub, make_async, make_client, stub  # noqa: F401  (stub is a fixture)
from wxpartner.client import NO_RETRIES, Client, ClientClosedError, TransportError, policy
from wxpartner.client import http11 as sh
from wxpartner.client.core import Response, answer
from wxpartner.client.http11_aio import AsyncPooledHTTP
from wxpartner.client.http11_sync import PooledHTTP
from wxpartner.client.outgoing import Outgoing, host_header, outgoing, wire_target

OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'

# What the server does with one request: the bytes to answer (then keep the connection, or close it if
# the flag says so), or None to close without answering, "hang" to read on and never answer, or
# "reset" to abort the connection.
Respond = Callable[[bytes], tuple[bytes, bool] | str | None]


@dataclass
class Wire:
    """Records each request's raw bytes with the number of the connection it came on."""

    respond: Respond
    tls: ssl.SSLContext | None = None
    requests: list[tuple[int, bytes]] = field(default_factory=list)
    accepted: int = 0
    eof_seen: threading.Event = field(default_factory=threading.Event)  # a client closed its side
    closed: threading.Event = field(default_factory=threading.Event)  # the server closed a connection
    alpn: list[str | None] = field(default_factory=list)  # what each TLS connection agreed on
    port: int = 0

    def start(self) -> Wire:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._sock.close()

    def origin(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            number = self.accepted
            self.accepted += 1
            threading.Thread(target=self._serve, args=(conn, number), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
                self.alpn.append(conn.selected_alpn_protocol())
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        self.eof_seen.set()
                        return
                    buf += chunk
                head, _, rest = buf.partition(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                if b"\r\ntransfer-encoding: chunked" in head.lower():  # only empty ones are sent
                    while b"0\r\n\r\n" not in rest:
                        rest += conn.recv(65536)
                    length = rest.index(b"0\r\n\r\n") + 5
                while len(rest) < length:
                    rest += conn.recv(65536)
                raw, buf = head + b"\r\n\r\n" + rest[:length], rest[length:]
                self.requests.append((number, raw))
                outcome = self.respond(raw)
                if outcome == "hang":
                    conn.recv(1)  # until the client gives up
                    return
                if outcome == "reset":  # RST instead of FIN: the client's read fails
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                if outcome is None or isinstance(outcome, str):
                    return
                data, close = outcome
                conn.sendall(data)
                if close:
                    return
        except (OSError, ssl.SSLError):
            return
        finally:
            conn.close()
            self.closed.set()


@pytest.fixture
def wire() -> Iterator[Callable[..., Wire]]:
    started: list[Wire] = []

    def start(respond: Respond = lambda _raw: (OK, False), tls: ssl.SSLContext | None = None) -> Wire:
        started.append(Wire(respond, tls).start())
        return started[-1]

    yield start
    for w in started:
        w.stop()


class Pool(Protocol):
    def exchange(self, request: Outgoing) -> Response: ...

    def close(self) -> None: ...


class PortalPool:
    """The async pool, driven from tests written once for both: every call runs on one event loop in a
    portal thread (concurrent callers become concurrent tasks)."""

    def __init__(self, portal: BlockingPortal, timeout: httpx.Timeout) -> None:
        self.portal = portal
        self.pool = AsyncPooledHTTP(timeout)

    def exchange(self, request: Outgoing) -> Response:
        return self.portal.call(self.pool.exchange, request)

    def close(self) -> None:
        self.portal.call(self.pool.aclose)


@pytest.fixture(params=["sync", "async"])
def pooled(request: pytest.FixtureRequest) -> Iterator[Callable[..., Pool]]:
    if request.param == "sync":
        yield lambda read=5.0, write=5.0, connect=5.0: PooledHTTP(
            httpx.Timeout(5.0, connect=connect, read=read, write=write)
        )
        return
    with start_blocking_portal() as portal:
        yield lambda read=5.0, write=5.0, connect=5.0: PortalPool(
            portal, httpx.Timeout(5.0, connect=connect, read=read, write=write)
        )


HEADERS = {"Accept": "application/json", "User-Agent": "t", "Authorization": "WECHATPAY2-SHA256-RSA2048 x"}


def post(w: Wire, body: bytes = b'{"a":1}', scheme: str = "http") -> Outgoing:
    return outgoing("POST", w.origin(scheme), "/v3/x", (), HEADERS, body)


# -- what goes out and what comes back ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "query", "body"),
    [
        ("POST", "/v3/webizpay/employees/e%2F1/quota-cards", [], b'{"a":1}'),
        (
            "GET",
            "/v3/webizpay/employees/e1/quota-cards",
            [("limit", "10"), ("offset", "0"), ("limit", "2")],
            b"",
        ),
        ("POST", "/v3/webizpay/users/u1/revoke", [], b""),  # Content-Length: 0, as httpx writes it
        ("GET", "/v3/x y/中", [("q", "a b&c")], b""),  # a path httpx quotes itself
    ],
)
def test_the_bytes_on_the_wire_are_the_ones_httpx_sends(
    wire: Callable[..., Wire],
    method: str,
    path: str,
    query: list[tuple[str, str]],
    body: bytes,
    pooled: Callable[..., Pool],
) -> None:
    w = wire()
    request = outgoing(method, w.origin(), path, query, HEADERS, body)
    pooled().exchange(request)
    with httpx.Client() as h:
        h.send(request.to_httpx())  # what the httpx drivers send
        # ... and what the pipeline sent before it had its own request: httpx.Request built by httpx
        h.send(
            httpx.Request(
                method, w.origin() + path, params=query or None, headers=HEADERS, content=body or None
            )
        )
    ours, via_httpx, before = (raw for _, raw in w.requests)
    assert ours == via_httpx == before
    assert ours.startswith(f"{method} {request.target} HTTP/1.1\r\nHost: 127.0.0.1:{w.port}\r\n".encode())
    assert ours.endswith(b"\r\n\r\n" + body)


PATH_CHARS = "abcXYZ019-._~!$&'()*+,;=:@/%?#[] é中\\\"<>^`{|}\t"


@given(
    path=st.text(PATH_CHARS, max_size=14).map(lambda p: "/" + p),
    query=st.lists(st.tuples(st.text(PATH_CHARS, max_size=5), st.text(PATH_CHARS, max_size=5)), max_size=3),
)
@settings(max_examples=400, deadline=None)
@example(path="/v3/a/./b", query=[])  # dot segments, which httpx removes, in an otherwise plain path
@example(path="/v3/a/../b", query=[("q", "1")])
def test_the_signed_target_is_the_one_httpx_sends(path: str, query: list[tuple[str, str]]) -> None:
    origin = "https://api.mch.weixin.qq.com"
    try:
        theirs = httpx.Request("GET", origin + path, params=query or None).url.raw_path.decode()
    except httpx.InvalidURL:  # a control character: refused either way
        with pytest.raises(httpx.InvalidURL):
            wire_target(origin, path, query)
        return
    assert wire_target(origin, path, query) == theirs


@pytest.mark.parametrize(
    ("method", "given", "body"),
    [
        ("POST", {"Content-Length": "7"}, b'{"a":1}'),
        ("POST", {"Content-Length": "7, 7"}, b'{"a":1}'),  # h11 writes "7"
        ("POST", {"Content-Length": "7", "content-length": "7"}, b'{"a":1}'),  # and once
        ("GET", {"Content-Length": "0"}, b""),
        ("POST", {"Transfer-Encoding": "Chunked"}, b""),  # the empty last chunk, "chunked" in lower case
        ("GET", {"Transfer-Encoding": "chunked"}, b""),
        ("POST", {"X-A": "1", "Host": "h.example"}, b""),  # Host first (h11 moves it), then Content-Length 0
        ("PUT", {"X-A": "1", "Host": "h.example"}, b'{"a":1}'),
    ],
    ids=[
        "length",
        "length-list",
        "length-twice",
        "get-length-0",
        "chunked",
        "get-chunked",
        "host",
        "host-body",
    ],
)
def test_framing_and_host_headers_the_caller_gives_go_on_the_wire_as_httpx_sends_them(
    wire: Callable[..., Wire],
    method: str,
    given: dict[str, str],
    body: bytes,
    pooled: Callable[..., Pool],
) -> None:
    """A given Content-Length or Transfer-Encoding stands for the body's length (none is added, nor
    written twice), a given Host for the origin's: the bytes are httpx's, byte for byte."""
    w = wire()
    request = outgoing(method, w.origin(), "/v3/x", (), given, body)
    pooled(read=2.0).exchange(request)
    with httpx.Client() as h:
        h.send(request.to_httpx())
        h.send(httpx.Request(method, w.origin() + "/v3/x", headers=given, content=body or None))
    ours, via_httpx, httpx_itself = (raw for _, raw in w.requests)
    assert ours == via_httpx == httpx_itself
    assert ours.lower().count(b"content-length") <= 1


# A Content-Length or Transfer-Encoding the SDK refuses before anything is sent, and what httpx does.
REFUSED_FRAMING = [
    # httpx sends Transfer-Encoding: chunked and Content-Length: 7 (a chunked body): ambiguous
    ({"Transfer-Encoding": "chunked"}, b'{"a":1}', "ambiguous"),
    ({"Transfer-Encoding": "chunked", "Content-Length": "7"}, b'{"a":1}', "ambiguous"),  # the same
    ({"Content-Length": "0", "Transfer-Encoding": "chunked"}, b"", "ambiguous"),
    # h11 refuses these before sending
    ({"Transfer-Encoding": "gzip"}, b'{"a":1}', "only chunked"),
    ({"Transfer-Encoding": "gzip, chunked"}, b"", "only chunked"),
    ({"Transfer-Encoding": "chunked", "transfer-encoding": "chunked"}, b"", "multiple Transfer-Encoding"),
    ({"Content-Length": "x7"}, b'{"a":1}', "bad Content-Length"),
    ({"Content-Length": "-7"}, b'{"a":1}', "bad Content-Length"),
    ({"Content-Length": " 7"}, b'{"a":1}', "bad Content-Length"),
    ({"Content-Length": "7, 8"}, b'{"a":1}', "conflicting"),
    ({"Content-Length": "7", "content-length": "8"}, b'{"a":1}', "conflicting"),
    # httpx sends the headers (and the body), then fails: "Too much/little data for declared Content-Length"
    ({"Content-Length": "3"}, b'{"a":1}', "for a body of 7 bytes"),
    ({"Content-Length": "9"}, b'{"a":1}', "for a body of 7 bytes"),
    ({"Content-Length": "5"}, b"", "for a body of 0 bytes"),
]


REFUSED_IDS = [
    "chunked-body",
    "chunked-and-length",
    "chunked-and-length-0",
    "gzip",
    "gzip-chunked",
    "chunked-twice",
    "length-x7",
    "length-negative",
    "length-blank",
    "length-list-conflict",
    "lengths-conflict",
    "length-short",
    "length-long",
    "length-no-body",
]


@pytest.mark.parametrize(("given", "body", "message"), REFUSED_FRAMING, ids=REFUSED_IDS)
def test_a_framing_the_caller_gives_that_httpx_would_send_wrongly_is_refused(
    given: dict[str, str], body: bytes, message: str
) -> None:
    with pytest.raises(httpx.LocalProtocolError, match=message):
        outgoing("POST", "http://127.0.0.1:9", "/v3/x", (), given, body)


@pytest.mark.parametrize(
    ("given", "body", "message"),
    [REFUSED_FRAMING[0], REFUSED_FRAMING[3], REFUSED_FRAMING[-3]],
    ids=[REFUSED_IDS[0], REFUSED_IDS[3], REFUSED_IDS[-3]],
)
def test_a_client_refuses_such_a_framing_before_connecting(
    wire: Callable[..., Wire],
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    given: dict[str, str],
    body: bytes,
    message: str,
) -> None:
    """Client and AsyncClient: the LocalProtocolError itself, raised while the request is built (not a
    TransportError: nothing was sent, and repeating it cannot help)."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    w = wire()

    def sync_call() -> None:
        with make_client(world, w.origin()) as client:
            client.request("POST", "/v3/x", content=body, headers=given)

    async def async_call() -> None:
        async with make_async(world, w.origin()) as client:
            await client.request("POST", "/v3/x", content=body, headers=given)

    for call in (sync_call, lambda: anyio.run(async_call)):
        with pytest.raises(httpx.LocalProtocolError, match=message):
            call()
    assert w.accepted == 0


@pytest.mark.parametrize(
    "origin",
    [
        "https://api.mch.weixin.qq.com",
        "http://127.0.0.1:80",
        "https://h:8443",
        "https://例子.测试",
        "http://[::1]:9",
    ],
)
def test_the_host_header_is_the_one_httpx_writes(origin: str) -> None:
    assert host_header(origin) == httpx.Request("GET", origin + "/v3").headers["Host"]


@pytest.mark.parametrize(
    "answer_bytes",
    [
        OK,
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nX-Rep: a\r\nx-rep: b\r\n\r\n"
        b'5;ext=1\r\n{"ok"\r\n6\r\n:true}\r\n0\r\nTrailer: t\r\n\r\n',
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Note: 商户\r\n\r\n{}".encode(),
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Note: caf\xe9\r\n\r\n{}",  # Latin-1, not UTF-8
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200\r\nContent-Length:   2  \r\nX-Empty:\r\n\r\n{}",
        b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{"until":"close"}',
        b"HTTP/1.1 200 OK\nX-Lf: only\nContent-Length: 2\n\n{}",  # bare LF line ends
        b"HTTP/1.1 200 OK\r\nX-First: 1\r\nX-Fold: a\r\n b\r\n\tc\r\nContent-Length: 2\r\n\r\n{}",  # folded
    ],
    ids=[
        "plain",
        "chunked",
        "utf8-header",
        "latin1-header",
        "no-body",
        "interim",
        "bare",
        "http10-to-close",
        "bare-lf",
        "folded",
    ],
)
def test_answers_decode_as_httpx_decodes_them(
    wire: Callable[..., Wire], answer_bytes: bytes, pooled: Callable[..., Pool]
) -> None:
    closes = answer_bytes.startswith(b"HTTP/1.0")
    w = wire(lambda _raw: (answer_bytes, closes))
    ours = pooled().exchange(post(w))
    with httpx.Client() as h:
        r = h.send(post(w).to_httpx())
    theirs = answer(r.status_code, r.headers, r.content)
    assert (ours.status, ours.headers, ours.content) == (theirs.status, theirs.headers, theirs.content)
    assert ours.status in (200, 201, 204)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_large_body_arrives_whole(
    wire: Callable[..., Wire], framing: str, pooled: Callable[..., Pool]
) -> None:
    """A bill file is megabytes: read in many chunks (into a bytearray, not bytes copied per chunk)."""
    body = bytes(range(256)) * 32768  # 8 MiB
    if framing == "content-length":
        data = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    else:
        piece = 1 << 20
        chunks = b"".join(
            b"%x\r\n" % piece + body[i : i + piece] + b"\r\n" for i in range(0, len(body), piece)
        )
        data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    w = wire(lambda _raw: (data, False))
    pool = pooled()
    assert pool.exchange(post(w)).content == body
    assert pool.exchange(post(w)).content == body  # and the connection is reusable after it
    assert w.accepted == 1


# -- connections ------------------------------------------------------------------------------------
def test_one_connection_serves_call_after_call_and_close_releases_it(
    wire: Callable[..., Wire], pooled: Callable[..., Pool]
) -> None:
    w = wire()
    pool = pooled()
    for _ in range(5):
        assert pool.exchange(post(w)).status == 200
    assert w.accepted == 1 and [n for n, _ in w.requests] == [0] * 5
    pool.close()
    assert w.eof_seen.wait(5), "close() leaves the idle connection open"


@pytest.mark.parametrize("how", ["server-closes", "connection-close-header"])
def test_a_connection_the_server_ended_is_not_reused(
    wire: Callable[..., Wire], how: str, pooled: Callable[..., Pool]
) -> None:
    if how == "server-closes":  # closes after answering, without saying so: a FIN waits on the socket
        w = wire(lambda _raw: (OK, True))
    else:
        w = wire(lambda _raw: (OK.replace(b"Content-Length", b"Connection: close\r\nContent-Length"), False))
    pool = pooled()
    for _ in range(3):
        assert pool.exchange(post(w)).status == 200
        assert w.closed.wait(5)  # the server's side is closed before the next call
        w.closed.clear()
    assert w.accepted == 3


@pytest.mark.parametrize(
    ("connection", "reused"),
    [(b"", False), (b"Connection: keep-alive\r\n", True)],
    ids=["plain", "keep-alive"],
)
def test_an_http10_answer_keeps_its_connection_only_when_it_says_keep_alive(
    wire: Callable[..., Wire], connection: bytes, reused: bool, pooled: Callable[..., Pool]
) -> None:
    w = wire(lambda _raw: (b"HTTP/1.0 200 OK\r\n" + connection + b"Content-Length: 2\r\n\r\n{}", False))
    pool = pooled()
    assert pool.exchange(post(w)).content == b"{}"
    assert pool.exchange(post(w)).content == b"{}"
    assert w.accepted == (1 if reused else 2)


def test_a_body_whose_last_coding_is_not_chunked_is_read_to_the_close(
    wire: Callable[..., Wire], pooled: Callable[..., Pool]
) -> None:
    """RFC 9112 §6.3 (h11 refuses such an answer instead): its length is the connection's, so it is
    never reused."""
    w = wire(lambda _raw: (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n2\r\n{}", True))
    pool = pooled()
    assert pool.exchange(post(w)).content == b"2\r\n{}"
    w.respond = lambda _raw: (OK, False)
    assert pool.exchange(post(w)).status == 200
    assert w.accepted == 2


@pytest.mark.parametrize(("method", "status"), [("HEAD", b"200 OK"), ("GET", b"304 Not Modified")])
def test_a_head_or_304_answer_has_no_body_whatever_its_content_length(
    wire: Callable[..., Wire], method: str, status: bytes, pooled: Callable[..., Pool]
) -> None:
    head = OK.removesuffix(b'{"ok":true}').replace(b"200 OK", status)  # Content-Length: 11, no body
    w = wire(lambda _raw: (head, False))
    pool = pooled(read=2.0)
    for _ in range(2):
        answer = pool.exchange(outgoing(method, w.origin(), "/v3/x", (), HEADERS, b""))
        assert (answer.status, answer.content, answer.headers["content-length"]) == (
            int(status[:3]),
            b"",
            "11",
        )
    assert w.accepted == 1


def test_a_connection_with_bytes_beyond_its_answer_is_not_reused(
    wire: Callable[..., Wire], pooled: Callable[..., Pool]
) -> None:
    """An answer nobody asked for, sent along with the first one, must not be taken for the next
    call's answer: the connection is dropped, as httpcore drops one with something to read."""
    unasked = b'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{"evil":1}'
    w = wire(lambda raw: (OK + unasked if raw.startswith(b"POST") else OK, False))
    pool = pooled()
    assert pool.exchange(post(w)).content == b'{"ok":true}'
    assert pool.exchange(outgoing("GET", w.origin(), "/v3/x", (), HEADERS, b"")).content == b'{"ok":true}'
    assert w.accepted == 2


def test_a_connection_idle_past_the_expiry_is_not_reused(
    wire: Callable[..., Wire], monkeypatch: pytest.MonkeyPatch, pooled: Callable[..., Pool]
) -> None:
    w = wire()
    pool = pooled()
    pool.exchange(post(w))
    monkeypatch.setattr(sh, "KEEPALIVE_EXPIRY", 0.0)
    pool.exchange(post(w))
    assert w.accepted == 2


def test_a_connection_is_reused_until_it_has_been_idle_for_the_expiry(
    wire: Callable[..., Wire], monkeypatch: pytest.MonkeyPatch, pooled: Callable[..., Pool]
) -> None:
    """httpx's keepalive_expiry, 5 s: idle for less, the connection serves again; for 5 s, it is
    dropped (a NAT may have forgotten it). The pool's clock is stepped, not waited for."""
    now = [1000.0]
    monkeypatch.setattr(sh, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    w = wire()
    pool = pooled()
    pool.exchange(post(w))
    now[0] += 4.9
    pool.exchange(post(w))
    assert w.accepted == 1
    now[0] += 5.0
    pool.exchange(post(w))
    assert w.accepted == 2
    assert w.eof_seen.wait(5)  # the expired connection was closed when met, not left open


def test_at_most_twenty_idle_connections_are_kept_per_origin(
    wire: Callable[..., Wire], pooled: Callable[..., Pool]
) -> None:
    """httpx's max_keepalive_connections, 20: of 21 connections busy at once, 20 stay for the next calls
    and the 21st is closed."""
    gate = threading.Barrier(21, timeout=10)

    def together(_raw: bytes) -> tuple[bytes, bool]:
        gate.wait()  # every connection is busy before any answers
        return OK, False

    w = wire(together)
    pool = pooled()

    def burst() -> None:
        threads = [threading.Thread(target=pool.exchange, args=(post(w),)) for _ in range(21)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    burst()
    assert w.accepted == 21 and len(w.requests) == 21
    assert w.eof_seen.wait(5)  # the one the pool had no room for
    burst()
    assert w.accepted == 22 and len(w.requests) == 42


def test_the_pools_close_every_socket_they_open(
    wire: Callable[..., Wire], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pooled: Callable[..., Pool]
) -> None:
    """Explicitly, not left to the garbage collector (which warns, and which other interpreters run
    late): a connection the answer ends, one broken by a bad answer, an expired idle one, the idle
    ones at close(), and one whose TLS handshake failed."""
    server_tls, _ = _self_signed(tmp_path)  # a certificate the pool does not trust
    secure = wire(tls=server_tls)
    w = wire()
    gc.collect()  # what earlier tests left behind is not this test's to answer for
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", ResourceWarning)
        pool = pooled()
        w.respond = lambda _raw: (
            OK.replace(b"Content-Length", b"Connection: close\r\nContent-Length"),
            False,
        )
        pool.exchange(post(w))
        w.respond = lambda _raw: (b"HTTP/1.1 abc\r\n\r\n", False)
        with pytest.raises(httpx.RemoteProtocolError):
            pool.exchange(post(w))
        w.respond = lambda _raw: (OK, False)
        pool.exchange(post(w))
        monkeypatch.setattr(sh, "KEEPALIVE_EXPIRY", 0.0)  # the idle one is stale when next met
        pool.exchange(post(w))
        monkeypatch.undo()
        with pytest.raises(httpx.ConnectError):
            pool.exchange(post(secure, scheme="https"))
        pool.close()
        del pool
        gc.collect()
    assert w.accepted == 4
    assert [str(x.message) for x in seen if issubclass(x.category, ResourceWarning)] == []


def test_threads_share_the_pool_without_sharing_a_connection(
    wire: Callable[..., Wire], pooled: Callable[..., Pool]
) -> None:
    w = wire()
    pool = pooled()
    errors: list[BaseException] = []

    def calls() -> None:
        try:
            for _ in range(20):
                assert pool.exchange(post(w)).content == b'{"ok":true}'
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=calls) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(w.requests) == 160
    assert 1 <= w.accepted <= 8


# -- failures, as the retry policy reads them ---------------------------------------------------------
def test_refused_connection_is_a_connect_error_so_provably_not_sent(pooled: Callable[..., Pool]) -> None:
    with pytest.raises(httpx.ConnectError) as caught:
        pooled().exchange(outgoing("GET", f"http://127.0.0.1:{free_port()}", "/v3/x", (), HEADERS, b""))
    assert isinstance(caught.value, policy.NOT_SENT_ERRORS)


@pytest.mark.parametrize(
    ("respond", "error"),
    [
        (lambda _raw: None, httpx.RemoteProtocolError),  # read, then closed without a word
        (lambda _raw: (b"HTTP/1.1 abc\r\n\r\n", True), httpx.RemoteProtocolError),
        (lambda _raw: (b"HTTP/1.1 099 Low\r\nContent-Length: 2\r\n\r\n{}", False), httpx.RemoteProtocolError),
        (lambda _raw: (b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{}", True), httpx.RemoteProtocolError),
        (
            lambda _raw: (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000 + b"\r\n\r\n", True),
            httpx.RemoteProtocolError,
        ),
        (
            lambda _raw: (b"HTTP/1.1 200 OK\r\n" + b"X: a\r\n" * 101 + b"\r\n", True),
            httpx.RemoteProtocolError,
        ),
        (lambda _raw: (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000, False), httpx.RemoteProtocolError),
        (lambda _raw: (b"HTTP/1.1 200 OK\r\n folded: first\r\n\r\n", False), httpx.RemoteProtocolError),
        (lambda _raw: (b"HTTP/1.1 200 OK\r\nNo-Colon\r\n\r\n", False), httpx.RemoteProtocolError),
        (lambda _raw: (b"HTTP/1.1 200 OK\r\n: no-name\r\n\r\n", False), httpx.RemoteProtocolError),
        (lambda _raw: (b"HTTP/1.1 200 OK\r\nX-Sp : v\r\n\r\n", False), httpx.RemoteProtocolError),
        (lambda _raw: (b"HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\n{}", False), httpx.RemoteProtocolError),
        (
            lambda _raw: (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", True),
            httpx.RemoteProtocolError,
        ),
        (
            lambda _raw: (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", True),
            httpx.RemoteProtocolError,
        ),
        (lambda _raw: "hang", httpx.ReadTimeout),
        (lambda _raw: "reset", httpx.ReadError),
        (  # never asked for: the connection would speak another protocol (h11 refuses it too)
            lambda _raw: (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", False),
            httpx.RemoteProtocolError,
        ),
    ],
    ids=[
        "dropped",
        "bad-status-line",
        "status-below-100",
        "short-body",
        "long-line",
        "many-headers",
        "long-line-unended",
        "folded-first-line",
        "no-colon",
        "no-name",
        "space-before-colon",
        "bad-length",
        "bad-chunk",
        "two-lengths",
        "no-answer",
        "reset",
        "switching-protocols",
    ],
)
def test_failures_after_sending_are_httpx_errors_that_may_have_taken_effect(
    wire: Callable[..., Wire], respond: Respond, error: type[Exception], pooled: Callable[..., Pool]
) -> None:
    w = wire(respond)
    pool = pooled(read=0.3)
    with pytest.raises(error) as caught:
        pool.exchange(post(w))
    assert not isinstance(caught.value, policy.NOT_SENT_ERRORS)
    assert len(w.requests) == 1
    w.respond = lambda _raw: (OK, False)  # the pool stays usable: a fresh connection for the next call
    assert pool.exchange(post(w)).status == 200


@pytest.mark.parametrize("extra", [0, 1], ids=["at-the-bounds", "beyond"])
def test_header_lines_and_count_are_bounded_as_http_client_bounds_them(
    wire: Callable[..., Wire], extra: int, pooled: Callable[..., Pool]
) -> None:
    """A line of at most 65536 bytes (its CRLF included) and at most 100 headers are read; one byte or
    one header more is a RemoteProtocolError."""
    long_line = b"X-Long: " + b"a" * (65536 - 10 + extra) + b"\r\n"
    many = b"".join(b"X-%d: v\r\n" % i for i in range(100 - 1 + extra))
    w = wire(
        lambda raw: (
            b"HTTP/1.1 200 OK\r\n" + (long_line if b"long" in raw else many) + b"Content-Length: 2\r\n\r\n{}",
            False,
        )
    )
    pool = pooled()
    for path in ("/long", "/many"):
        request = outgoing("GET", w.origin(), path, (), HEADERS, b"")
        if extra:
            with pytest.raises(httpx.RemoteProtocolError):
                pool.exchange(request)
        else:
            assert pool.exchange(request).content == b"{}"
    assert len(long_line) == 65536 + extra


@pytest.mark.parametrize("size", [b"+2", b"0x2", b" 2", b"0_2", b"-1", b"0" * 20 + b"2"])
def test_a_chunk_size_httpx_refuses_is_refused(
    wire: Callable[..., Wire], size: bytes, pooled: Callable[..., Pool]
) -> None:
    """A chunk size is hex digits only (h11: 1 to 20 of them): int(..., 16) also reads a sign, '0x', '_'
    and blanks, and a negative size cuts the body short and reads on into what follows it."""
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%s\r\n{}\r\n0\r\n\r\n" % size
    w = wire(lambda _raw: (chunked, False))
    with httpx.Client() as h, pytest.raises(httpx.RemoteProtocolError):
        h.send(post(w).to_httpx())
    pool = pooled(read=0.3)
    with pytest.raises(httpx.RemoteProtocolError, match="bad chunk size"):
        pool.exchange(post(w))
    w.respond = lambda _raw: (OK, False)  # and the connection is not reused
    assert pool.exchange(post(w)).status == 200
    assert w.accepted == 3


# A header line h11 refuses, and the header the error names ("" for a name that is no token).
H11_REFUSES = [
    (b"Wechatpay-Signature: a\x00b\r\n", "Wechatpay-Signature"),  # NUL
    (b"Wechatpay-Serial: PUB\rWechatpay-Serial: EVIL\r\n", "Wechatpay-Serial"),  # a bare CR
    (b"Wechatpay-Serial: PUB\r\r\n", "Wechatpay-Serial"),  # a CR before the line's CRLF
    (b"Wechatpay-Serial: \rPUB\r\n", "Wechatpay-Serial"),  # a CR before the value
    (b"X-Vt: a\x0bb\r\n", "X-Vt"),
    (b"X-Ff: a\x0c\r\n", "X-Ff"),
    (b"X-Fold: a\r\n b\x00\r\n", "X-Fold"),  # in a folded line: the header it continues
    (b"X Sp: v\r\n", ""),  # names are tokens
    (b"X(y): v\r\n", ""),
    (b"X\x00: v\r\n", ""),
    ("X-商户: v\r\n".encode(), ""),
]


@pytest.mark.parametrize(
    ("line", "named"),
    H11_REFUSES,
    ids=[
        "nul",
        "bare-cr",
        "cr-crlf",
        "cr-first",
        "vt",
        "ff",
        "folded",
        "space-in-name",
        "paren",
        "nul-in-name",
        "non-ascii-name",
    ],
)
def test_a_header_line_h11_refuses_is_refused_naming_its_header(
    wire: Callable[..., Wire], line: bytes, named: str, pooled: Callable[..., Pool]
) -> None:
    """h11's grammar (h11._abnf.header_field): a token, then a value without NUL, CR, LF, VT or FF but
    spaces and tabs between visible bytes. A bare CR read leniently could make the SDK read another
    Wechatpay-Serial or -Signature than a proxy saw; in trailers too."""
    head = b"HTTP/1.1 200 OK\r\n" + line + b"Content-Length: 2\r\n\r\n{}"
    trailer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n" + line + b"\r\n"
    w = wire(lambda raw: (trailer if b"trailer" in raw else head, False))
    pool = pooled(read=0.3)
    for path in ("/v3/head", "/v3/trailer"):
        request = outgoing("GET", w.origin(), path, (), HEADERS, b"")
        with httpx.Client() as h, pytest.raises(httpx.RemoteProtocolError):
            h.send(request.to_httpx())
        message = f"value of header {named!r}" if named else "illegal header name"
        with pytest.raises(httpx.RemoteProtocolError, match=re.escape(message)):
            pool.exchange(request)
    w.respond = lambda _raw: (OK, False)  # and the connection is not reused
    assert pool.exchange(post(w)).status == 200
    assert w.accepted == 5


def test_a_client_call_meeting_such_a_header_fails_as_a_transport_error_naming_it(
    wire: Callable[..., Wire], world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the caller of Client and AsyncClient sees: a TransportError (sent: the request left) caused
    by the RemoteProtocolError, its message naming the header."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    w = wire(
        lambda _raw: (
            b"HTTP/1.1 200 OK\r\nWechatpay-Serial: PUB\rWechatpay-Serial: EVIL\r\nContent-Length: 2\r\n\r\n{}",
            False,
        )
    )

    def sync_call() -> None:
        with make_client(world, w.origin()) as client:
            client.request("POST", "/v3/x", json={"a": 1})

    async def async_call() -> None:
        async with make_async(world, w.origin()) as client:
            await client.request("POST", "/v3/x", json={"a": 1})

    for call in (sync_call, lambda: anyio.run(async_call)):
        with pytest.raises(TransportError, match="value of header 'Wechatpay-Serial'") as caught:
            call()
        assert caught.value.sent and isinstance(caught.value.__cause__, httpx.RemoteProtocolError)
    assert len(w.requests) == 2  # a POST is not repeated: it may have taken effect


@pytest.mark.parametrize("reason", [b"O\x00K", b"O\x0bK", b"O\rK"], ids=["nul", "vt", "bare-cr"])
def test_a_reason_phrase_h11_refuses_is_refused(
    wire: Callable[..., Wire], reason: bytes, pooled: Callable[..., Pool]
) -> None:
    w = wire(lambda _raw: (b"HTTP/1.1 200 " + reason + b"\r\nContent-Length: 2\r\n\r\n{}", False))
    with httpx.Client() as h, pytest.raises(httpx.RemoteProtocolError):
        h.send(post(w).to_httpx())
    with pytest.raises(httpx.RemoteProtocolError, match="malformed status line"):
        pooled(read=0.3).exchange(post(w))


def _h11_reads(data: bytes) -> list[tuple[bytes, bytes]] | None:
    """The headers h11 reads in an answer to a GET, or None when it refuses them."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError:
        return None
    assert isinstance(event, h11.Response)
    return list(event.headers.raw_items())


def _sdk_reads(data: bytes) -> list[tuple[bytes, bytes]] | None:
    reading = sh.AnswerParser(data).read("GET")
    try:
        next(reading)
    except StopIteration as done:
        return list(done.value[1])
    except httpx.RemoteProtocolError:
        return None
    raise AssertionError("the answer is complete: nothing more to read")


# Bytes of header lines: token characters, separators, blanks, controls h11 accepts and refuses,
# obs-text, and line ends (a line end then a blank: a folded line).
_HEADER_BYTES = st.sampled_from(
    [*(bytes([c]) for c in b"aZ-!(: \t\r\x00\x01\x0b\x0c\x7f\xe9"), b"\r\n", b"\n "]
)


@given(lines=st.lists(st.lists(_HEADER_BYTES, min_size=1, max_size=8).map(b"".join), min_size=1, max_size=4))
@settings(max_examples=600, deadline=None)
@example(lines=[b"X: a", b" b \t", b"\t"])  # folded lines, blank ones included
@example(lines=[b"X:", b" b"])
@example(lines=[b"X: \x01\x7f\xe9\t-"])  # controls h11 accepts
@example(lines=[b"a:a \n a"])  # a blank before the fold stays in the value (found by a CI run)
@example(lines=[b"X: a ", b" b ", b"\t c"])
def test_header_lines_are_read_as_h11_reads_them(lines: list[bytes]) -> None:
    data = b"HTTP/1.1 200 OK\r\n" + b"".join(line + b"\r\n" for line in lines)
    data += b"Content-Length: 0\r\n\r\n"
    if re.search(rb"\n\r?\n", data[:-2]):
        return  # an early blank line ends the headers: another answer
    assert _sdk_reads(data) == _h11_reads(data)


@pytest.mark.parametrize(
    ("server", "error"), [("reads-nothing", httpx.WriteTimeout), ("resets", httpx.WriteError)]
)
def test_a_request_the_server_does_not_take_fails_as_a_write_that_may_have_taken_effect(
    server: str, error: type[Exception], pooled: Callable[..., Pool]
) -> None:
    """A body larger than the socket buffers: a server that reads none of it stalls the send past the
    write timeout, one that aborts the connection breaks it. Either way some bytes may have left.

    The reset comes once the request's first bytes have arrived (the client is inside its send: the
    body cannot fit in the buffers), and that write's timeout is far longer than any wait for it. It
    came after a fixed 0.2 s within a 0.5 s write timeout: on a loaded machine the timeout won."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        conn, _ = listener.accept()
        accepted.append(conn)
        if server == "resets":
            assert conn.recv(1)  # the client has begun to send
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    origin = f"http://127.0.0.1:{listener.getsockname()[1]}"
    write = 0.5 if server == "reads-nothing" else 60.0
    try:
        with pytest.raises(error) as caught:
            pooled(write=write).exchange(outgoing("POST", origin, "/v3/x", (), HEADERS, b"x" * (64 << 20)))
        assert not isinstance(caught.value, policy.NOT_SENT_ERRORS)
    finally:
        for conn in accepted:
            conn.close()
        listener.close()


@pytest.mark.parametrize(
    ("phase", "error"),
    [("connect", httpx.ConnectTimeout), ("write", httpx.WriteTimeout), ("read", httpx.ReadTimeout)],
)
def test_each_phase_is_bounded_by_its_own_timeout(
    phase: str, error: type[Exception], pooled: Callable[..., Pool]
) -> None:
    """A server that accepts and then does nothing, with only the phase under test bounded: the TLS
    handshake by the connect timeout, a 64 MiB body by the write timeout, the answer by the read
    timeout. A phase left on another phase's timeout (here: none) would wait for ever."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    origin = f"{'https' if phase == 'connect' else 'http'}://127.0.0.1:{listener.getsockname()[1]}"
    body = b"x" * (64 << 20) if phase == "write" else b"{}"
    limits = {"connect": None, "write": None, "read": None, phase: 0.5}
    pool = pooled(**limits)
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            pool.exchange(outgoing("POST", origin, "/v3/x", (), HEADERS, body))
        except BaseException as exc:  # reported below
            outcome.append(exc)

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    caller.join(20)
    for conn in accepted:  # frees a caller that did not time out
        conn.close()
    listener.close()
    caller.join(5)
    assert outcome and isinstance(outcome[0], error), outcome
    assert isinstance(outcome[0], policy.NOT_SENT_ERRORS) is (phase == "connect")


def test_a_header_that_would_start_another_is_refused_before_sending(
    wire: Callable[..., Wire], pooled: Callable[..., Pool]
) -> None:
    w = wire()
    for name, value in (("X-Bad", "a\r\nInjected: 1"), ("X Bad", "a"), ("X-Nul", "a\x00")):
        with pytest.raises(httpx.LocalProtocolError):
            pooled().exchange(outgoing("GET", w.origin(), "/v3/x", (), {name: value}, b""))
    assert w.requests == []


@pytest.mark.parametrize(
    ("value", "refused"),
    [
        (" a", True),
        ("a ", True),
        ("\t", True),
        ("a\x0bb", True),
        ("a\x0cb", True),
        ("a\rb", True),
        ("a\tb  c", False),
        ("", False),
        ("a\x01\x7fb", False),
    ],
    ids=[
        "blank-first",
        "blank-last",
        "tab-alone",
        "vt",
        "ff",
        "cr",
        "inner-blanks",
        "empty",
        "controls-h11-takes",
    ],
)
def test_a_request_header_value_is_refused_when_h11_refuses_it(
    wire: Callable[..., Wire], value: str, refused: bool, pooled: Callable[..., Pool]
) -> None:
    """h11's field-value: no NUL, CR, LF, VT or FF, no blank at either end; httpx raises
    LocalProtocolError (once connected), the SDK before sending anything. What h11 takes, both send."""
    w = wire()
    request = outgoing("GET", w.origin(), "/v3/x", (), {"X-V": value}, b"")
    with httpx.Client() as h:
        if refused:
            with pytest.raises(httpx.LocalProtocolError):
                h.send(request.to_httpx())
            with pytest.raises(httpx.LocalProtocolError, match="X-V"):
                pooled().exchange(request)
            assert w.requests == []
            return
        h.send(request.to_httpx())
    pooled().exchange(request)
    theirs, ours = (raw for _, raw in w.requests)
    assert ours == theirs


def test_a_client_call_with_such_a_header_is_refused_once_not_retried_nor_failed_over(
    wire: Callable[..., Wire], world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A GET is idempotent, so a failure after sending is retried and fails over; a request that cannot
    be written is neither: the LocalProtocolError itself, no connection to either host, both clients."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    primary, backup = wire(), wire()
    options = {"backup_url": backup.origin(), "failover": True}

    def sync_call() -> None:
        with make_client(world, primary.origin(), **options) as client:
            client.request("GET", "/v3/x", headers={"X-V": "a\x0bb"})

    async def async_call() -> None:
        async with make_async(world, primary.origin(), **options) as client:
            await client.request("GET", "/v3/x", headers={"X-V": "a\x0bb"})

    for call in (sync_call, lambda: anyio.run(async_call)):
        with pytest.raises(httpx.LocalProtocolError, match="X-V"):
            call()
    assert primary.accepted == 0 and backup.accepted == 0


@pytest.mark.parametrize("method", ["GE T", "GET\r\nX-Injected: 1\r\n", "G\x00T"])
def test_a_method_that_is_no_token_is_refused_before_sending(
    wire: Callable[..., Wire], method: str, pooled: Callable[..., Pool]
) -> None:
    w = wire()
    request = outgoing(method, w.origin(), "/v3/x", (), HEADERS, b"")
    with httpx.Client() as h, pytest.raises(httpx.LocalProtocolError):
        h.send(request.to_httpx())
    with pytest.raises(httpx.LocalProtocolError, match="illegal method"):
        pooled().exchange(request)
    assert w.requests == []


def test_a_request_target_with_a_line_end_is_refused() -> None:
    """wire_target quotes or refuses such a path; an Outgoing built otherwise is still checked."""
    for target in ("/v3/x\r\nX-Injected: 1", "/v3/\x00"):
        with pytest.raises(httpx.LocalProtocolError, match="illegal request line"):
            sh.serialize(Outgoing("GET", "http://127.0.0.1:9", target, [("Host", "127.0.0.1:9")], b""))


def test_an_origin_without_a_port_connects_to_its_schemes_default() -> None:
    assert sh.parse_origin("https://api.mch.weixin.qq.com") == ("https", "api.mch.weixin.qq.com", 443)
    assert sh.parse_origin("http://127.0.0.1") == ("http", "127.0.0.1", 80)
    assert sh.parse_origin("http://[::1]:9") == ("http", "::1", 9)


def test_a_scheme_other_than_http_is_refused(pooled: Callable[..., Pool]) -> None:
    with pytest.raises(httpx.UnsupportedProtocol):
        pooled().exchange(outgoing("GET", "ftp://127.0.0.1", "/x", (), HEADERS, b""))


# -- TLS ----------------------------------------------------------------------------------------------
def _self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    cert_path, key_path = self_signed(tmp_path, ca=True)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_path, key_path)
    return server, cert_path


def test_tls_is_verified_like_httpx(
    wire: Callable[..., Wire], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pooled: Callable[..., Pool]
) -> None:
    server_tls, cert_path = _self_signed(tmp_path)
    server_tls.set_alpn_protocols(["h2", "http/1.1"])  # offered HTTP/2 first: the pool must say 1.1
    w = wire(tls=server_tls)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        pooled().exchange(post(w, scheme="https"))
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_path))  # trusted the way httpx trusts it
    pool = pooled()
    for _ in range(3):
        assert pool.exchange(post(w, scheme="https")).content == b'{"ok":true}'
    assert w.accepted == 2  # one refused, then one kept alive across TLS 1.3's session tickets
    assert w.alpn == ["http/1.1"]
    with httpx.Client() as h:
        assert h.send(post(w, scheme="https").to_httpx()).status_code == 200


# -- who uses it --------------------------------------------------------------------------------------
PROXY_VARIABLES = (
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
)


@pytest.mark.parametrize("name", ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "https_proxy", "all_proxy"])
def test_any_proxy_variable_httpx_honours_counts_as_a_proxy(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """WeChat Pay is https: an HTTPS_PROXY (or ALL_PROXY) alone must hand the client to httpx too."""
    for variable in PROXY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    assert not sh.environment_has_proxy()
    monkeypatch.setenv(name, "http://127.0.0.1:3128")
    assert sh.environment_has_proxy()


def test_a_proxy_in_the_environment_sends_the_client_through_httpx(
    stub: Stub,  # noqa: F811
    world: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    direct = make_client(world, stub.url)
    assert direct.request("GET", "/v3/direct").status == 200
    assert stub.seen[-1].target == "/v3/direct"
    monkeypatch.setenv("HTTP_PROXY", stub.url)  # the stub plays the proxy for an unresolvable host
    proxied = make_client(world, "http://wx.invalid")
    assert proxied.request("GET", "/v3/proxied").status == 200
    assert stub.seen[-1].target == "http://wx.invalid/v3/proxied"
    assert isinstance(direct, Client) and isinstance(proxied, Client)

    async def async_call(base_url: str, path: str) -> int:
        async with make_async(world, base_url) as client:
            return (await client.request("GET", path)).status

    assert anyio.run(async_call, "http://wx.invalid", "/v3/proxied-async") == 200
    assert stub.seen[-1].target == "http://wx.invalid/v3/proxied-async"
    monkeypatch.delenv("HTTP_PROXY")
    assert anyio.run(async_call, stub.url, "/v3/direct-async") == 200
    assert stub.seen[-1].target == "/v3/direct-async"


def test_an_async_client_through_a_proxy_serves_one_event_loop_after_another(
    stub: Stub,  # noqa: F811
    world: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A proxy in the environment hands the AsyncClient to httpx, whose pool belongs to the event loop
    that opened its connections: ``asyncio.run`` per call (a script, a worker's task, a test framework's
    loop per test) failed from the second loop on with ``RuntimeError: Event loop is closed``, as the
    SDK's own HTTP did before its pool went per loop. The httpx client the SDK makes is now one per
    event loop; a closed loop's is dropped when the next loop makes its own."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", stub.url)  # the stub plays the proxy for an unresolvable host
    client = make_async(world, "http://wx.invalid", retry=NO_RETRIES)
    assert client._pooled is None

    async def call(path: str) -> int:
        return (await client.request("GET", path)).status

    assert [asyncio.run(call(f"/v3/loop{i}")) for i in range(3)] == [200] * 3
    assert [seen.target for seen in stub.seen] == [f"http://wx.invalid/v3/loop{i}" for i in range(3)]

    async def twice() -> list[int]:  # within one loop, one httpx client serves every call
        return [await call("/v3/again"), await call("/v3/again")]

    assert asyncio.run(twice()) == [200, 200]
    assert len({seen.port for seen in stub.seen[-2:]}) == 1  # the second call reused the connection
    assert client._per_loop is not None and len(client._per_loop) == 1  # closed loops' clients dropped
    asyncio.run(client.aclose())  # in yet another loop: the others' connections close only in theirs
    assert client._per_loop == {}
    with pytest.raises(ClientClosedError):
        asyncio.run(call("/v3/closed"))
