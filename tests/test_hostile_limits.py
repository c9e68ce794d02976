"""Oversized requests (server/limits.py): a body over 1 MiB is 413 REQUEST_ENTITY_TOO_LARGE — refused from
Content-Length before it is read, or while streaming a chunked body — and too many / too large header
fields are 400 INVALID_REQUEST; always a WeChat error body, never a 500 or a hang, and the server's memory
stays bounded (a 50 MiB upload is cut off early and the server's RSS does not grow by anything like it).
Outside /v3 the same holds with the form limit (dashboard, simulated pages, the control API without its
token) and the control API's limit (with it)."""

from __future__ import annotations

import contextlib
import json
import pickle
import select
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import anyio
import httpx
import pytest
import uvicorn
from starlette.testclient import TestClient

from conftest import SANDBOX_TOKEN
from figures import record
from live import LiveServer, free_port, start_live_server
from support import SP_A, ApiClient, World, sign_request
from wxpartner.server.app import WxPartnerApp, create_app
from wxpartner.server.http_protocol import BoundedHttpToolsProtocol
from wxpartner.server.limits import check_request
from wxpartner.server.settings import Settings

LIMIT = Settings().max_body_bytes
RANGES = "/v3/webizpay/avail-mch-ranges"
MIB = 1 << 20


def _error(resp: httpx.Response, status: int, code: str, location: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    assert resp.headers["Request-ID"]
    body: dict[str, Any] = resp.json()
    assert body["code"] == code and body["message"], body
    assert body["detail"]["location"] == location, body
    return body


def test_limits_are_documented_defaults() -> None:
    s = Settings()
    assert (s.max_body_bytes, s.max_header_count, s.max_header_bytes) == (MIB, 100, 32 << 10)


# --- in process (real ASGI) ----------------------------------------------------------------------
# The limits act before the store is touched: these run on SQLite only.
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@SQLITE_ONLY
def test_declared_body_over_the_limit_is_413_before_verification(client_a: ApiClient) -> None:
    body = b'{"sp_mchid":"' + b"1" * LIMIT + b'"}'
    resp = client_a.post(RANGES, body)
    err = _error(resp, 413, "REQUEST_ENTITY_TOO_LARGE", "body")
    assert err["detail"]["limit"] == LIMIT
    assert resp.headers["Connection"] == "close"
    assert "Wechatpay-Signature" not in resp.headers  # refused before anyone was verified


@SQLITE_ONLY
def test_body_at_the_limit_is_read_and_processed(client_a: ApiClient) -> None:
    pad = LIMIT - len(b'{"sp_mchid":"","identifier_type":"ORGANIZATION_CODE","x":""}') - len(SP_A)
    body = f'{{"sp_mchid":"{SP_A}","identifier_type":"ORGANIZATION_CODE","x":"{"y" * pad}"}}'.encode()
    assert len(body) == LIMIT
    resp = client_a.post(RANGES, body)
    assert resp.status_code == 200, resp.text[:300]  # unknown fields are ignored: the range is created


@SQLITE_ONLY
def test_chunked_body_over_the_limit_is_413(http: TestClient, world: World) -> None:
    signed = sign_request(world.merchants[SP_A], "POST", RANGES, b"{}")
    streamed: list[int] = []

    def chunks() -> Iterator[bytes]:
        for _ in range(8):  # 8 MiB offered, no Content-Length
            streamed.append(1)
            yield b"x" * MIB

    resp = http.post(RANGES, content=chunks(), headers=signed.headers)
    _error(resp, 413, "REQUEST_ENTITY_TOO_LARGE", "body")


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("headers", "issue"),
    [
        ({f"X-Filler-{i}": "v" for i in range(120)}, "header fields, at most 100 allowed"),
        ({"X-Filler": "v" * (40 << 10)}, "bytes of header fields, at most 32768 allowed"),
    ],
)
def test_too_many_or_too_large_headers_are_400(
    http: TestClient, world: World, headers: dict[str, str], issue: str
) -> None:
    signed = sign_request(world.merchants[SP_A], "GET", "/v3/certificates")
    resp = http.get("/v3/certificates", headers={**signed.headers, **headers})
    err = _error(resp, 400, "INVALID_REQUEST", "header")
    assert issue in err["detail"]["issue"]


@SQLITE_ONLY
def test_long_authorization_is_a_clean_400(http: TestClient, world: World) -> None:
    signed = sign_request(world.merchants[SP_A], "GET", "/v3/certificates")
    auth = signed.headers["Authorization"][:-1] + "A" * (64 << 10) + '"'
    resp = http.get("/v3/certificates", headers={**signed.headers, "Authorization": auth})
    _error(resp, 400, "INVALID_REQUEST", "header")


@SQLITE_ONLY
def test_requests_just_under_the_header_limits_pass(client_a: ApiClient) -> None:
    extra = {f"X-Filler-{i}": "v" for i in range(80)}
    extra["X-Big"] = "v" * (20 << 10)
    assert client_a.get("/v3/certificates", headers=extra).status_code in (200, 404)


def test_the_header_limits_allow_exactly_their_size() -> None:
    """100 fields and 32 KiB of names and values are allowed; one field or one byte more is refused."""
    s = Settings()

    def refusal(headers: list[tuple[bytes, bytes]]) -> str | None:
        err = check_request({"type": "http", "path": "/v3/certificates", "headers": headers}, s)
        return None if err is None else f"{err.status} {err.code}"

    fields = [(b"x-f%d" % i, b"v") for i in range(s.max_header_count)]
    assert refusal(fields) is None
    assert refusal([*fields, (b"x-more", b"v")]) == "400 INVALID_REQUEST"
    name = b"x-big"
    assert refusal([(name, b"v" * (s.max_header_bytes - len(name)))]) is None
    assert refusal([(name, b"v" * (s.max_header_bytes - len(name) + 1))]) == "400 INVALID_REQUEST"


# --- outside /v3: the control API, the dashboard, the simulated pages ------------------------------
FORM_LIMIT = Settings().max_form_body_bytes
CONTROL_LIMIT = Settings().max_control_body_bytes
# Public or login-guarded forms, and the control API without its token: all get the form limit.
FORMS = [
    "/dashboard/login",
    "/webizpay/pay",
    "/webizpay/authorize",
    "/apply4subject/confirm/x",
    "/sandbox/scenario",
]
FORM_TYPE = {"Content-Type": "application/x-www-form-urlencoded"}


def _web_413(resp: httpx.Response, limit: int) -> None:
    assert resp.status_code == 413, resp.text[:300]
    assert resp.headers["Connection"] == "close"
    body = resp.json()
    assert body["code"] == "REQUEST_ENTITY_TOO_LARGE" and body["detail"]["limit"] == limit, body


def test_web_limits_are_documented_defaults() -> None:
    assert (FORM_LIMIT, CONTROL_LIMIT) == (64 << 10, 16 * MIB)


def _asgi_stream(
    app: WxPartnerApp, path: str, messages: int, size: int, headers: Iterable[tuple[bytes, bytes]] = ()
) -> tuple[int, int]:
    """POST ``messages`` body messages of ``size`` bytes (no Content-Length unless ``headers`` has one)
    straight to the ASGI app; returns (status, how many messages the app took)."""
    taken = 0

    async def receive() -> dict[str, Any]:
        nonlocal taken
        if taken == messages:
            return {"type": "http.disconnect"}
        taken += 1
        return {"type": "http.request", "body": b"x" * size, "more_body": taken < messages}

    headers = [(b"content-type", FORM_TYPE["Content-Type"].encode()), *headers]
    return _asgi_status(app, "POST", path, headers, receive), taken


def _asgi_status(
    app: WxPartnerApp,
    method: str,
    path: str,
    headers: Iterable[tuple[bytes, bytes]],
    receive: Callable[[], Awaitable[dict[str, Any]]],
) -> int:
    """One request straight to the ASGI app, its body from ``receive``; the status it answered (0:
    none)."""
    status = 0

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    anyio.run(app, scope, receive, send)
    return status


@SQLITE_ONLY
@pytest.mark.parametrize("path", FORMS)
def test_web_bodies_over_the_form_limit_are_413(http: TestClient, app: WxPartnerApp, path: str) -> None:
    """The audit's case: a 400 MB POST /dashboard/login was read whole (memory grew by ~270 MB) before
    its 401; so were the simulated pages' forms."""
    _web_413(http.post(path, content=b"token=" + b"x" * FORM_LIMIT, headers=FORM_TYPE), FORM_LIMIT)
    chunked = http.post(path, content=iter([b"x" * FORM_LIMIT] * 4), headers=FORM_TYPE)
    _web_413(chunked, FORM_LIMIT)
    # Streamed: refused as soon as the limit is passed, the rest never read.
    status, taken = _asgi_stream(app, path, messages=64, size=16 << 10)
    assert (status, taken) == (413, FORM_LIMIT // (16 << 10) + 1)


@SQLITE_ONLY
def test_a_declared_length_is_refused_before_a_byte_is_read(app: WxPartnerApp) -> None:
    """The Content-Length alone answers: a client is not made to send 1 MiB to hear 413. And the
    sandbox token raises the limit of the control API only: a dashboard form keeps the form limit."""
    declared = [(b"content-length", str(LIMIT + 1).encode())]
    assert _asgi_stream(app, RANGES, messages=80, size=16 << 10, headers=declared) == (413, 0)
    token = [(b"authorization", f"Bearer {SANDBOX_TOKEN}".encode())]
    status, taken = _asgi_stream(app, "/dashboard/login", messages=64, size=16 << 10, headers=token)
    assert (status, taken) == (413, FORM_LIMIT // (16 << 10) + 1)


@SQLITE_ONLY
def test_web_bodies_at_the_form_limit_are_served(http: TestClient) -> None:
    body = b"token=nope&pad=" + b"x" * (FORM_LIMIT - 15)
    assert len(body) == FORM_LIMIT
    resp = http.post("/dashboard/login", content=body, headers=FORM_TYPE)
    assert resp.status_code == 401 and "not the sandbox token" in resp.text
    assert http.post("/webizpay/pay", content=body, headers=FORM_TYPE).status_code == 400
    # the control API without the token: still 401 below the limit, and nothing read past it
    assert http.post("/sandbox/scenario", content=b"merchants: []").status_code == 401


@SQLITE_ONLY
def test_control_api_with_its_token_takes_scenario_uploads_up_to_its_limit(http: TestClient) -> None:
    auth = {"Authorization": f"Bearer {SANDBOX_TOKEN}"}
    pad = b"# " + b"x" * (2 * MIB) + b"\n"  # far over the form limit, a YAML comment
    merchant = b'merchants: [{mchid: "1888000077"}]\n'
    resp = http.post("/sandbox/scenario", content=pad + merchant, headers=auth)
    assert resp.status_code == 200 and resp.json()["merchants"] == 1, resp.text[:300]
    over = b"# " + b"x" * CONTROL_LIMIT + b"\n" + b'merchants: [{mchid: "1888000078"}]\n'
    _web_413(http.post("/sandbox/scenario", content=over, headers=auth), CONTROL_LIMIT)
    merchants = {m["mchid"] for m in http.get("/sandbox/merchants", headers=auth).json()["data"]}
    assert "1888000077" in merchants and "1888000078" not in merchants


# --- over real loopback HTTP (uvicorn + httptools, as `wxpartner serve` runs) -----------------------


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _port(server: LiveServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


def _push(port: int, head: bytes, chunks: Iterable[bytes]) -> tuple[bytes, int]:
    """Send head then chunks while reading; stop when the server answers or closes. (answer, bytes sent)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    answer = bytearray()
    closed = threading.Event()

    def read() -> None:
        try:
            while data := sock.recv(65536):
                answer.extend(data)
        except OSError:
            pass
        closed.set()

    sent = 0
    sock.sendall(head)
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        for chunk in chunks:
            if closed.is_set() or answer:
                break
            sock.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass  # broken pipe / reset: the server stopped reading, as it should
    closed.wait(20)
    sock.close()
    return bytes(answer), sent


FIFTY_MIB = 50 * MIB
BLOCK = b"x" * (64 << 10)


@pytest.fixture(scope="module")
def live(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_live_server(tmp_path_factory.mktemp("limits") / "live", world)
    yield server
    server.stop()


@pytest.mark.slow
def test_live_50_mib_uploads_are_cut_off_early(live: LiveServer) -> None:
    live_server = live
    port, pid = _port(live_server), live_server.proc.pid
    base = _rss_kib(pid)
    blocks = FIFTY_MIB // len(BLOCK)
    results: dict[str, tuple[bytes, int]] = {}

    head = f"POST {RANGES} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    results["content-length"] = _push(
        port, f"{head}Content-Length: {FIFTY_MIB}\r\n\r\n".encode(), (BLOCK for _ in range(blocks))
    )
    chunk = f"{len(BLOCK):x}\r\n".encode() + BLOCK + b"\r\n"
    results["chunked"] = _push(
        port, f"{head}Transfer-Encoding: chunked\r\n\r\n".encode(), (chunk for _ in range(blocks))
    )
    for kind, (answer, sent) in results.items():
        # Refused early: the server answered and stopped reading long before the 50 MiB were sent
        # (what was sent is at most the limit plus the kernel's socket buffers).
        assert sent < 20 * MIB, f"{kind}: {sent} bytes accepted"
        if answer:  # a reset may race the answer on a raw socket; when it arrives it is the 413
            assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
            assert b'"code":"REQUEST_ENTITY_TOO_LARGE"' in answer and b"\r\nConnection: close\r\n" in answer
    assert any(answer for answer, _ in results.values()), "no answer at all to either upload"
    grown = _rss_kib(pid) - base
    record(
        "oversized bodies (50 MiB uploads)",
        accepted_bytes_content_length=results["content-length"][1],
        accepted_bytes_chunked=results["chunked"][1],
        server_rss_growth_kib=grown,
    )
    assert grown < 16 * 1024, f"server RSS grew by {grown} KiB after two 50 MiB uploads"
    # and it still serves
    assert httpx.get(live_server.url + "/healthz", timeout=5).status_code == 200


@pytest.mark.slow
def test_live_50_mib_uploads_outside_v3_are_cut_off_early(live: LiveServer) -> None:
    """The dashboard login and the simulated pages read at most a form's worth; the control API with its
    token reads at most its own limit."""
    port, pid = _port(live), live.proc.pid
    base = _rss_kib(pid)
    blocks = FIFTY_MIB // len(BLOCK)
    chunk = f"{len(BLOCK):x}\r\n".encode() + BLOCK + b"\r\n"
    answers = []
    for path in ("/dashboard/login", "/webizpay/pay", "/apply4subject/confirm/x", "/sandbox/scenario"):
        head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {FORM_TYPE['Content-Type']}\r\n"
        for framing, piece in (
            (f"Content-Length: {FIFTY_MIB}", BLOCK),
            ("Transfer-Encoding: chunked", chunk),
        ):
            answer, sent = _push(port, f"{head}{framing}\r\n\r\n".encode(), (piece for _ in range(blocks)))
            assert sent < 20 * MIB, f"{path}, {framing}: {sent} bytes accepted"
            if answer:  # a reset may race the answer on a raw socket; when it arrives it is the 413
                assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
            answers.append(answer)
    assert any(answers), "no answer at all"
    grown = _rss_kib(pid) - base
    assert grown < 16 * 1024, f"server RSS grew by {grown} KiB after 50 MiB uploads to forms"

    head = (
        f"POST /sandbox/scenario HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {live.token}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    answer, sent = _push(port, head.encode(), (chunk for _ in range(blocks)))
    assert sent < CONTROL_LIMIT + 20 * MIB, f"control API with the token: {sent} bytes accepted"
    if answer:
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert httpx.get(live.url + "/healthz", timeout=5).status_code == 200


@pytest.mark.slow
def test_live_clients_see_clean_4xx(live: LiveServer, world: World) -> None:
    url = live.url
    with httpx.Client(base_url=url, timeout=30) as http:
        big = http.post(RANGES, content=b"x" * (2 * MIB), headers={"Content-Type": "application/json"})
        _error(big, 413, "REQUEST_ENTITY_TOO_LARGE", "body")

        def stream() -> Iterator[bytes]:
            for _ in range(50):
                yield b"x" * MIB

        chunked = http.post(RANGES, content=stream(), headers={"Content-Type": "application/json"})
        _error(chunked, 413, "REQUEST_ENTITY_TOO_LARGE", "body")

        signed = sign_request(world.merchants[SP_A], "GET", "/v3/certificates")
        long_auth = {**signed.headers, "Authorization": "WECHATPAY2-SHA256-RSA2048 " + "A" * (1 * MIB)}
        _error(http.get("/v3/certificates", headers=long_auth), 400, "INVALID_REQUEST", "header")
        many = {**signed.headers, **{f"X-Filler-{i}": "v" for i in range(2000)}}
        _error(http.get("/v3/certificates", headers=many), 400, "INVALID_REQUEST", "header")
        # the server is fine afterwards
        assert ApiClient(http, world, SP_A).get("/v3/certificates").status_code in (200, 404)


# --- the HTTP layer: an endless request head --------------------------------------------------------


@pytest.fixture
def bounded_server(tmp_path: Path, database_url: str) -> Iterator[int]:
    """uvicorn with BoundedHttpToolsProtocol in a thread (what `wxpartner serve` should run with)."""
    yield from _serve(tmp_path, database_url, BoundedHttpToolsProtocol)


class _IdleLooks:
    """How many times a protocol's timer has looked at a connection with nothing awaited from it (no
    deadline) since a request on it was last received whole, for a test to wait on."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._count = 0

    def received(self) -> None:
        with self._changed:
            self._count = 0

    def looked(self) -> None:
        with self._changed:
            self._count += 1
            self._changed.notify_all()

    def wait(self, count: int, timeout: float = 20) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: self._count >= count, timeout), (
                f"the timer looked at the idle connection {self._count} times, not {count}"
            )


class _Watched(BoundedHttpToolsProtocol):
    """The bounded protocol, counting its timer's looks at idle connections (``idle_looks``)."""

    idle_looks = _IdleLooks()
    open_connections: ClassVar[set[Any]] = set()  # uvicorn's set of open connections, once one was made

    def connection_made(self, transport: Any) -> None:
        type(self).open_connections = self.connections
        super().connection_made(transport)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.idle_looks.received()

    def _check_deadline(self) -> None:
        idle = self._deadline is None and not self.transport.is_closing()
        super()._check_deadline()
        if idle:
            self.idle_looks.looked()


def _open_connections(protocol: type[_Watched], count: int, timeout: float = 20) -> bool:
    """Whether the server comes to hold ``count`` connections open within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(protocol.open_connections) == count:
            return True
        time.sleep(0.01)
    return False


class _QuickTimeouts(_Watched):
    head_timeout = 0.6
    body_timeout = 0.6
    idle_looks = _IdleLooks()


@pytest.fixture
def quick_server(tmp_path: Path, database_url: str) -> Iterator[int]:
    """The bounded protocol with its read timeouts cut to 0.6 s (30 s and 120 s as served)."""
    yield from _serve(tmp_path, database_url, _QuickTimeouts)


def _serve(tmp_path: Path, database_url: str, protocol: type[BoundedHttpToolsProtocol]) -> Iterator[int]:
    app = create_app(Settings(data_dir=str(tmp_path), database_url=database_url, deliver_callbacks=False))
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http=protocol, log_level="error")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
        app.state.db.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_endless_header_is_cut_off_by_the_bounded_protocol(bounded_server: int) -> None:
    head = b"GET /v3/certificates HTTP/1.1\r\nHost: x\r\nAccept: */*\r\nUser-Agent: t\r\nAuthorization: "
    answer, sent = _push(bounded_server, head, (BLOCK for _ in range(512)))  # 32 MiB of one header
    assert sent < 8 * MIB, f"{sent} bytes of header accepted"
    if answer:
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
        assert b'"code":"INVALID_REQUEST"' in answer and b"request head larger than" in answer


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /v3/certificates HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"GET /v3/certificates HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)),  # a TLS hello on plain HTTP
    ],
)
def test_unparseable_http_gets_a_wechat_400(bounded_server: int, request_bytes: bytes) -> None:
    answer, _ = _push(bounded_server, request_bytes, ())
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"\r\nContent-Type: application/json; charset=utf-8\r\n" in head, head
    assert b"\r\nConnection: close" in head and b"\r\nRequest-ID: 08" in head, head
    err = json.loads(body)
    assert err["code"] == "INVALID_REQUEST" and err["detail"]["location"] == "http", err


def _closed_after(port: int, sent: Iterable[tuple[float, bytes]]) -> tuple[bytes, float]:
    """Send each (pause, bytes) in turn, then read until the server closes: (answer, seconds open).
    The sending stops once the server answers or closes (it has nothing more to wait for then)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for pause, data in sent:
            if select.select([sock], [], [], pause)[0]:  # answered or closed during the pause
                break
            with contextlib.suppress(OSError):
                sock.sendall(data)
        answer = bytearray()
        with contextlib.suppress(OSError):
            while data := sock.recv(65536):
                answer.extend(data)
    return bytes(answer), time.monotonic() - started


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_slow_or_silent_connections_are_closed(quick_server: int) -> None:
    """Slowloris: a connection that sent nothing, or a header line every so often, or a head and then
    not its body, was held open for ever (70 s and counting in the audit), each holding a file
    descriptor until the process had none left. Now the head has HEAD_TIMEOUT from the connection
    (or its first byte), the body BODY_TIMEOUT from the head; each is timed out (here 0.6 s)."""
    answer, open_for = _closed_after(quick_server, [])  # silent: closed without a word
    assert answer == b"" and open_for < 5
    head = b"GET /v3/certificates HTTP/1.1\r\nHost: x\r\n"
    trickle = [(0, head)] + [(0.2, b"X-Slow: 1\r\n")] * 20  # 4 s of headers, a line each 0.2 s
    answer, open_for = _closed_after(quick_server, trickle)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    err = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert err["code"] == "INVALID_REQUEST" and err["detail"]["location"] == "http", err
    assert "not complete within 0.6 s" in err["detail"]["issue"] and open_for < 5
    post = b"POST /v3/webizpay/avail-mch-ranges HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
    answer, open_for = _closed_after(quick_server, [(0, post)] + [(0.2, b" ")] * 20)
    assert answer == b"" and open_for < 5  # closed unanswered: the request is not handled


class _LongBody(_Watched):
    head_timeout = 0.6
    body_timeout = 4.0
    idle_looks = _IdleLooks()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_later_head_is_timed_from_its_first_byte_after_a_longer_body_phase(
    tmp_path: Path, database_url: str
) -> None:
    """One timer per connection looks at the deadline: after a request whose body had the longer
    timeout, the next request's trickling head is still cut at the head timeout, not at the body's."""
    for port in _serve(tmp_path, database_url, _LongBody):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = bytearray()
            while b"\r\n\r\n" not in answer:
                answer.extend(sock.recv(65536))
            _LongBody.idle_looks.wait(1)  # idle past the connection's first look (keep-alive allows 5 s)
            started = time.monotonic()
            # The start of a head, then nothing: more bytes sent after the server's close would draw a
            # reset, which can discard its answer before it is read.
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
            closed = False
            while not closed and time.monotonic() - started < 8:
                if select.select([sock], [], [], 0.2)[0]:  # answered, or closed
                    data = sock.recv(65536)
                    answer.extend(data)
                    closed = not data
            open_for = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 200 ") and b"not complete within 0.6 s" in answer, answer
        assert closed and open_for < 2.5, open_for  # 0.6 s of head (and a look), far from the body's 4 s


class _ThreeConnections(_Watched):
    max_connections = 3


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_connections_past_the_cap_are_closed_at_once(
    tmp_path: Path, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A flood of idle connections (each may wait HEAD_TIMEOUT) would take every file descriptor the
    worker has, its database's included. Past the cap (the open-files limit less a reserve; here 3) a
    connection is closed as soon as it is accepted; once one of the others goes, a request is served."""
    for port in _serve(tmp_path, database_url, _ThreeConnections):
        idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
        try:
            assert _open_connections(_ThreeConnections, 3)  # accepted, all three
            with socket.create_connection(("127.0.0.1", port), timeout=10) as extra:
                started = time.monotonic()
                with contextlib.suppress(ConnectionResetError):
                    assert extra.recv(1024) == b""  # closed unanswered
                assert time.monotonic() - started < 2  # at once, not after a timeout
            assert "refusing connections: 3 open, the cap is 3" in caplog.text
            for sock in idle:  # the three held below the cap are served
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
            idle.pop().close()
            assert _open_connections(_ThreeConnections, 2)  # the server saw it go
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
                assert http.get("/healthz").status_code == 200
        finally:
            for sock in idle:
                sock.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_read_timeouts_leave_prompt_and_keep_alive_requests_alone(quick_server: int, world: World) -> None:
    """Only the sending is timed: a request sent promptly on a connection used before, after a pause
    shorter than uvicorn's keep-alive (5 s) but longer than the timeouts, is served."""
    with httpx.Client(base_url=f"http://127.0.0.1:{quick_server}", timeout=10) as http:
        client = ApiClient(http, world, SP_A)
        for _ in range(2):
            assert client.get("/v3/certificates").status_code in (200, 404)
            # idle past both timeouts: the timer looked at the connection twice, 0.6 s apart, since
            # the request was received (a deadline left set would have been past by then)
            _QuickTimeouts.idle_looks.wait(2)
        assert http.get("/healthz").status_code == 200


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_bounded_protocol_serves_normal_and_keep_alive_requests(bounded_server: int, world: World) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{bounded_server}", timeout=10) as http:
        client = ApiClient(http, world, SP_A)
        for _ in range(3):  # one connection, several requests
            assert client.get("/v3/certificates").status_code in (200, 404)
        assert (
            client.post(RANGES, {"sp_mchid": SP_A, "identifier_type": "ORGANIZATION_CODE"}).status_code == 200
        )
        signed = sign_request(world.merchants[SP_A], "GET", "/v3/certificates")
        long_auth = {**signed.headers, "Authorization": "WECHATPAY2-SHA256-RSA2048 " + "A" * (40 << 10)}
        _error(http.get("/v3/certificates", headers=long_auth), 400, "INVALID_REQUEST", "header")


def test_bounded_protocol_can_be_handed_to_worker_processes() -> None:
    # uvicorn pickles its config (protocol class included) for --workers N
    assert pickle.loads(pickle.dumps(BoundedHttpToolsProtocol)) is BoundedHttpToolsProtocol


@pytest.mark.slow
def test_live_endless_header_is_cut_off(live: LiveServer) -> None:
    head = b"GET /v3/certificates HTTP/1.1\r\nHost: x\r\nAccept: */*\r\nUser-Agent: t\r\nAuthorization: "
    base = _rss_kib(live.proc.pid)
    answer, sent = _push(_port(live), head, (BLOCK for _ in range(512)))
    assert sent < 8 * MIB, f"{sent} bytes of header accepted"
    assert _rss_kib(live.proc.pid) - base < 8 * 1024
    if answer:
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]


def _asgi_cut_off(
    app: WxPartnerApp, method: str, path: str, sent: bytes, headers: list[tuple[bytes, bytes]]
) -> int:
    """``sent``, the start of a longer body, then the client disconnects; returns the status the app
    answered (0: none)."""
    messages: list[dict[str, Any]] = [
        *([{"type": "http.request", "body": sent, "more_body": True}] if sent else []),
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if len(messages) > 1 else messages[0]

    return _asgi_status(app, method, path, headers, receive)


def test_a_body_cut_off_by_a_disconnect_is_never_handled_as_an_empty_one(
    app: WxPartnerApp, control: TestClient, client_a: ApiClient
) -> None:
    """A disconnect before the body was complete read as an empty body, and the request ran with it:
    `POST /sandbox/reset {"mchid": "…"}` cut off after its first bytes reset EVERY merchant (an empty
    body means "all"); on /v3 the journal recorded a bogus signature mismatch. Now nothing runs."""
    created = client_a.post(RANGES, {"sp_mchid": SP_A, "identifier_type": "ORGANIZATION_CODE"})
    assert created.status_code == 200, created.text
    token = [(b"authorization", f"Bearer {SANDBOX_TOKEN}".encode()), (b"content-type", b"application/json")]
    body = json.dumps({"mchid": "1230000009"}).encode()
    cut = [*token, (b"content-length", str(len(body)).encode())]
    assert _asgi_cut_off(app, "POST", "/sandbox/reset", body[:3], cut) == 0
    listed = client_a.get(f"{RANGES}?sp_mchid={SP_A}")
    assert listed.status_code == 200 and listed.json()["range_list"], "A's data was reset"

    signed = sign_request(
        client_a.keys, "POST", RANGES, {"sp_mchid": SP_A, "identifier_type": "ORGANIZATION_CODE"}
    )
    head = [(k.lower().encode(), v.encode()) for k, v in signed.headers.items()]
    head.append((b"content-length", str(len(signed.body)).encode()))
    before = control.get("/sandbox/journal").json()
    assert _asgi_cut_off(app, "POST", RANGES, signed.body[:5], head) == 0
    assert control.get("/sandbox/journal").json() == before  # nothing was answered, nothing recorded
    # A request without a body still runs when its client has gone (it lost nothing).
    assert _asgi_cut_off(app, "GET", "/readyz", b"", []) == 200
