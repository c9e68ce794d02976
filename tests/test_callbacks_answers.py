"""What a delivery records of answers receivers really give: a connection reset, a redirect, a
compressed error page, a receiver that never answers. Raw sockets on loopback, so each answer is
exactly the bytes a misbehaving receiver sends."""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from support import SP_A
from test_callbacks import read_request, set_clock
from wxpartner.server.app import WxPartnerApp
from wxpartner.server.callbacks import Deliverer
from wxpartner.store import outbox, registry

T0 = 1_747_280_000.0
FAIL = json.dumps({"code": "FAIL", "message": "数据库暂时不可用"}, ensure_ascii=False).encode() * 20


@contextlib.contextmanager
def raw_receiver(answer: Callable[[socket.socket, bytes], None]) -> Iterator[tuple[str, list[bytes]]]:
    """A merchant endpoint on a loopback port: reads each request whole, records it, and lets
    ``answer(conn, request)`` reply (or not) in its own way."""
    listener = socket.create_server(("127.0.0.1", 0))
    requests: list[bytes] = []

    def serve_one(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            request = read_request(conn)
            requests.append(request)
            answer(conn, request)

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                threading.Thread(target=serve_one, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/wxpay/notify", requests
    finally:
        listener.close()


def _send_once(app: WxPartnerApp, url: str, **deliverer: float) -> dict[str, Any]:
    """One delivery pass of one new notification to ``url``: the attempt it recorded (a failure)."""
    with app.state.db.write() as conn:
        registry.set_notify_url(conn, SP_A, url)
        nid = outbox.enqueue(
            conn, mchid=SP_A, event_type="WEBIZPAY.REVOKED", summary="s", resource={}, now=T0
        )
    [result] = Deliverer(app.state.db, app.state.keyring, **deliverer).run_pass()  # type: ignore[arg-type]
    with app.state.db.read() as conn:
        view = outbox.get_notification(conn, nid)
    assert view is not None and result.id == nid
    [attempt] = view["attempts"]
    assert (attempt["ok"], view["state"], view["sends"]) == (False, "pending", 1), view
    return attempt


@pytest.fixture
def frozen_app(app: WxPartnerApp, control: TestClient) -> WxPartnerApp:
    set_clock(control, set=T0, freeze=True)
    return app


def test_a_connection_reset_says_so(frozen_app: WxPartnerApp) -> None:
    """httpx's ReadError for a reset carries no message of its own: the attempt read "ReadError: ",
    nothing a merchant could act on. The reason is further down the exception's chain."""

    def reset(conn: socket.socket, _request: bytes) -> None:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST

    with raw_receiver(reset) as (url, requests):
        attempt = _send_once(frozen_app, url)
    assert len(requests) == 1
    assert attempt["status"] is None
    assert attempt["error"].startswith("ReadError: ") and "reset" in attempt["error"].lower(), attempt


def test_a_redirect_is_not_followed_and_says_where_it_pointed(frozen_app: WxPartnerApp) -> None:
    """WeChat Pay posts to the notify_url itself. A receiver answering 301 (http:// moved to https://,
    a path that gained a slash) was recorded as "HTTP 301: " with the empty body: the Location that
    explains it was dropped."""

    def moved(conn: socket.socket, _request: bytes) -> None:
        conn.sendall(
            b"HTTP/1.1 301 Moved Permanently\r\nLocation: https://merchant.example.test/wxpay/notify/\r\n"
            b"Content-Length: 0\r\nConnection: close\r\n\r\n"
        )

    with raw_receiver(moved) as (url, requests):
        attempt = _send_once(frozen_app, url)
    assert len(requests) == 1  # not followed
    assert attempt["status"] == 301
    assert "https://merchant.example.test/wxpay/notify/" in attempt["error"], attempt
    assert "not followed" in attempt["error"], attempt


def _gzipping(always: bool) -> Callable[[socket.socket, bytes], None]:
    """An error page compressed as web servers do (nginx `gzip on`, Starlette's GZipMiddleware) when
    the request accepts gzip, or ``always``."""

    def answer(conn: socket.socket, request: bytes) -> None:
        head = request.split(b"\r\n\r\n", 1)[0].lower()
        accepted = (
            b"accept-encoding:" in head and b"gzip" in head.split(b"accept-encoding:", 1)[1].split(b"\r\n")[0]
        )
        body, extra = (
            (gzip.compress(FAIL), b"Content-Encoding: gzip\r\n") if accepted or always else (FAIL, b"")
        )
        conn.sendall(
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n" + extra
            + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body
        )  # fmt: skip

    return answer


def test_an_error_page_is_asked_for_uncompressed_so_its_text_is_readable(frozen_app: WxPartnerApp) -> None:
    """httpx asks for gzip by default, the raw body is what is read (bounded), and a receiver that
    compressed its error page had the attempt's error read "HTTP 500: \\x1f\\x8b\\x08…"."""
    with raw_receiver(_gzipping(always=False)) as (url, requests):
        attempt = _send_once(frozen_app, url)
    assert b"accept-encoding: identity" in requests[0].lower()
    assert attempt["error"] == "HTTP 500: " + FAIL.decode()[:200], attempt


def test_an_error_page_compressed_anyway_is_not_shown_as_binary(frozen_app: WxPartnerApp) -> None:
    with raw_receiver(_gzipping(always=True)) as (url, _requests):
        attempt = _send_once(frozen_app, url)
    assert attempt["status"] == 500
    assert "gzip" in attempt["error"] and "\ufffd" not in attempt["error"], attempt


def test_a_receiver_that_accepts_and_never_answers_times_out(frozen_app: WxPartnerApp) -> None:
    """Connected, request read, never a byte back: a timeout (5 s in service; shortened here)."""
    release = threading.Event()

    def silent(_conn: socket.socket, _request: bytes) -> None:
        release.wait(30)

    try:
        with raw_receiver(silent) as (url, requests):
            attempt = _send_once(frozen_app, url, timeout=0.3)
    finally:
        release.set()
    assert len(requests) == 1
    assert attempt["status"] is None and attempt["error"] == "timeout: no answer within 0.3 s", attempt


def test_an_https_receiver_that_never_finishes_the_handshake_times_out(frozen_app: WxPartnerApp) -> None:
    """Accepts the connection and says nothing: the TLS handshake is inside the same bound."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                held.append(listener.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    try:
        attempt = _send_once(frozen_app, f"https://127.0.0.1:{listener.getsockname()[1]}/n", timeout=0.3)
    finally:
        listener.close()
        for conn in held:
            conn.close()
    assert attempt["status"] is None and attempt["error"] == "timeout: no answer within 0.3 s", attempt
