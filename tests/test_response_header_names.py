"""Response header names on the wire as WeChat Pay writes them (``Request-ID``, ``Wechatpay-Signature``,
``Content-Type``), in the order of its answers (spec: protocol.md §5.2, §11.4), read as raw bytes from a
real ``wxpartner serve`` on loopback: a signed answer, an unsigned refusal, unparseable HTTP, an interim
``100 Continue``, pipelined requests and the control API."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from live import Served
from wxpartner.protocol.header_names import canonical_head, canonical_name
from wxpartner.protocol.messages import request_message, response_message
from wxpartner.protocol.signing import new_nonce, sign, verify
from wxpartner.server.http_protocol import _CanonicalHeads

SIGNED_ORDER = [
    "Wechatpay-Timestamp",
    "Wechatpay-Nonce",
    "Wechatpay-Serial",
    "Wechatpay-Signature-Type",
    "Wechatpay-Signature",
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = Served(tmp_path_factory.mktemp("names") / "data")
    yield server
    server.stop()


def authorization(info: dict[str, Any], method: str, target: str, body: bytes = b"") -> bytes:
    key = serialization.load_pem_private_key(Path(info["private_key_path"]).read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    ts, nonce = str(int(time.time())), new_nonce()
    path, _, query = target.partition("?")
    url = path + ("?" + query if query else "")
    signature = sign(key, request_message(method, url, ts, nonce, body))
    value = (
        f'WECHATPAY2-SHA256-RSA2048 mchid="{info["mchid"]}",nonce_str="{nonce}",'
        f'signature="{signature}",timestamp="{ts}",serial_no="{info["serial_no"]}"'
    )
    return value.encode()


def exchange(port: int, data: bytes, answers: int = 1) -> list[tuple[bytes, list[bytes], bytes]]:
    """Send ``data`` and read ``answers`` complete answers (each sized by its Content-Length): for
    each, its status line, its header lines and its body, as bytes."""
    got: list[tuple[bytes, list[bytes], bytes]] = []
    buf = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        while len(got) < answers:
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(65536)
                assert chunk, f"closed after {len(got)} answers: {buf[:300]!r}"
                buf += chunk
            head, _, buf = buf.partition(b"\r\n\r\n")
            status, *lines = head.split(b"\r\n")
            if status.startswith(b"HTTP/1.1 100 "):
                got.append((status, lines, b""))
                continue
            length = next(
                int(v) for n, _, v in (x.partition(b": ") for x in lines) if n.lower() == b"content-length"
            )
            while len(buf) < length:
                chunk = sock.recv(65536)
                assert chunk
                buf += chunk
            got.append((status, lines, buf[:length]))
            buf = buf[length:]
    return got


def names(lines: list[bytes]) -> list[str]:
    return [line.partition(b":")[0].decode() for line in lines]


def assert_canonical(lines: list[bytes]) -> None:
    for name in names(lines):
        words = name.split("-")
        assert name == "Request-ID" or all(w[:1].isupper() and w[1:].islower() for w in words), lines


def get(target: str, host_headers: bytes = b"") -> bytes:
    return (
        f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\nUser-Agent: names-test/1\r\n".encode()
        + host_headers
    )


def test_a_signed_answer_names_its_headers_as_wechat_pay_does(served: Served) -> None:
    target = (
        f"/v3/webizpay/employees/nobody/quota-cards/0?sp_mchid={served.info['mchid']}&sub_mchid=1900000101"
    )
    request = get(target, b"Authorization: " + authorization(served.info, "GET", target) + b"\r\n\r\n")
    ((status, lines, body),) = exchange(served.port, request)
    assert status.startswith(b"HTTP/1.1 4"), (status, body)
    assert_canonical(lines)
    found = names(lines)
    assert "Request-ID" in found and "Content-Type" in found and "Content-Length" in found, found
    assert [n for n in found if n.startswith("Wechatpay-")] == SIGNED_ORDER, found
    # The answer is signed as before: the names changed, not what is signed.
    headers = {n.lower(): v for n, _, v in (line.decode().partition(": ") for line in lines)}
    pub = serialization.load_pem_public_key(Path(served.info["wechatpay_public_key_path"]).read_bytes())
    assert isinstance(pub, rsa.RSAPublicKey)
    message = response_message(headers["wechatpay-timestamp"], headers["wechatpay-nonce"], body)
    assert verify(pub, message, headers["wechatpay-signature"])
    assert json.loads(body)["code"]


def test_an_unsigned_refusal_and_the_control_api_too(served: Served) -> None:
    ((status, lines, body),) = exchange(served.port, get("/v3/certificates", b"\r\n"))
    assert status == b"HTTP/1.1 401 Unauthorized" and json.loads(body)["code"] == "SIGN_ERROR"
    assert_canonical(lines)
    assert any(line.startswith(b"Request-ID: 08") for line in lines), lines
    ((status, lines, _),) = exchange(served.port, get("/healthz", b"\r\n"))
    assert status == b"HTTP/1.1 200 OK"
    assert_canonical(lines)


def test_unparseable_http_is_refused_with_canonical_names(served: Served) -> None:
    ((status, lines, body),) = exchange(served.port, b"GARBAGE\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 400 "), status
    assert_canonical(lines)
    assert b"Connection: close" in lines and json.loads(body)["code"] == "INVALID_REQUEST"


def test_interim_continue_then_the_answer(served: Served) -> None:
    body = b"{}"
    request = (
        b"POST /v3/webizpay/nothing-here HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n" + body
    )
    interim, (status, lines, answer) = exchange(served.port, request, answers=2)
    assert interim == (b"HTTP/1.1 100 Continue", [], b"")
    assert status == b"HTTP/1.1 404 Not Found" and json.loads(answer)["code"] == "NOT_FOUND"
    assert_canonical(lines)


def test_pipelined_requests_each_answer_canonical(served: Served) -> None:
    two = get("/v3/certificates", b"\r\n") + get("/v3/no/such/thing", b"\r\n")
    answers = exchange(served.port, two, answers=2)
    assert [a[0].split(b" ")[1] for a in answers] == [b"401", b"404"]
    for _, lines, _ in answers:
        assert_canonical(lines)


def test_canonical_head_changes_names_only() -> None:
    head = (
        b"HTTP/1.1 200 OK\r\nrequest-id: a-b\r\nwechatpay-signature-type: X\r\nx-note: content-type: y\r\n"
        b'www-authenticate: Bearer\r\netag: "1"\r\nContent-Length: 0\r\n\r\n'
    )
    assert canonical_head(head) == (
        b"HTTP/1.1 200 OK\r\nRequest-ID: a-b\r\nWechatpay-Signature-Type: X\r\nX-Note: content-type: y\r\n"
        b'WWW-Authenticate: Bearer\r\nETag: "1"\r\nContent-Length: 0\r\n\r\n'
    )
    assert canonical_name(b"REQUEST-ID") == b"Request-ID"
    assert canonical_name(b"x--odd-") == b"X--Odd-"


class _Collected:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return False


def test_only_heads_are_rewritten() -> None:
    out = _Collected()
    t = _CanonicalHeads(out)  # type: ignore[arg-type]
    t.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    t.write(b"HTTP/1.1 200 OK\r\ncontent-length: 24\r\n\r\n")
    t.write(b"HTTP/1.1 200 ok\r\nx-a: b\r\n")  # a body that looks like a head passes as it is
    assert out.written == [
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 24\r\n\r\n",
        b"HTTP/1.1 200 ok\r\nx-a: b\r\n",
    ]
    assert t.is_closing() is False  # everything else is the transport's own
