"""The SDK pipeline against a real loopback stub (a tiny threaded HTTP server that answers from a
script): response verification refusals, retries that cannot double-spend, Retry-After, failover to a
backup host, sensitive-field encryption, and sync/async parity on the same paths."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import re
import socket
import ssl
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
import httpx
import pytest
from pydantic import Field, ValidationError

from live import free_port
from support import APIV3_KEY, SP_A, World
from wxpartner.client import (
    NO_RETRIES,
    ApiError,
    AsyncClient,
    Client,
    ConfigurationError,
    DecodeError,
    InvalidRequestError,
    MethodNotAllowedError,
    NoAuthError,
    NotFoundError,
    ParamError,
    RateLimitedError,
    RetryPolicy,
    ServerError,
    ServiceUnavailableError,
    SignError,
    TransportError,
    VerificationError,
)
from wxpartner.client.base import generic_call
from wxpartner.client.core import answer
from wxpartner.client.operations import Op
from wxpartner.models.common import WxModel
from wxpartner.protocol import constants as c
from wxpartner.protocol.authorization import parse_authorization
from wxpartner.protocol.crypto import aes_gcm_encrypt, oaep_decrypt
from wxpartner.protocol.keys import load_private_key, private_key_pem
from wxpartner.protocol.messages import request_message, response_message
from wxpartner.protocol.signing import new_hex_nonce, sign, verify
from wxpartner.sandbox.material import make_platform_certificate

FAST = RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_max=0.05)


@dataclass
class Seen:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    port: int = 0  # the client's side of the connection


_KEYS: dict[str, Any] = {}


def _platform_key(world: World) -> Any:
    """Parsing a PEM key costs tens of milliseconds: once per session."""
    pem = world.platform_pub.private_key_pem
    if pem not in _KEYS:
        _KEYS[pem] = load_private_key(pem)
    return _KEYS[pem]


@dataclass
class Stub:
    """Answers each request with the next scripted step; records what arrived."""

    world: World
    steps: list[Callable[[Stub, Seen], tuple[int, dict[str, str], bytes] | None]] = field(
        default_factory=list
    )
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    def signed(
        self,
        body: bytes,
        *,
        status: int = 200,
        ts: int | None = None,
        skew: int = 0,
        serial: str | None = None,
        probe: bool = False,
        tamper: bool = False,
        signature_type: str = c.SIGNATURE_TYPE,
    ) -> tuple[int, dict[str, str], bytes]:
        key = _platform_key(self.world)
        stamp = str(int(time.time()) + skew if ts is None else ts)
        nonce = new_hex_nonce()
        signature = sign(key, response_message(stamp, nonce, body))
        if probe:
            signature = c.SIGNATURE_PROBE_PREFIX + signature
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Request-ID": f"stub-{len(self.seen)}",
            c.H_TIMESTAMP: stamp,
            c.H_NONCE: nonce,
            c.H_SIGNATURE: signature,
            c.H_SERIAL: serial or self.world.platform_pub.key_id,
            c.H_SIGNATURE_TYPE: signature_type,
        }
        return status, headers, (body + b" " if tamper else body)


def ok(
    body: dict[str, Any] | None = None, **kw: Any
) -> Callable[[Stub, Seen], tuple[int, dict[str, str], bytes]]:
    return lambda stub, _seen: stub.signed(json.dumps(body or {"ok": True}).encode(), **kw)


def error(status: int, code: str, headers: dict[str, str] | None = None) -> Callable[..., Any]:
    body = json.dumps({"code": code, "message": "stub"}).encode()
    return lambda stub, _seen: (
        status,
        {"Content-Type": "application/json", "Request-ID": "err-1", **(headers or {})},
        body,
    )


def drop(_stub: Stub, _seen: Seen) -> None:
    return None  # read the request, answer nothing, close: "sent" from the client's side


@pytest.fixture
def stub(world: World) -> Iterator[Stub]:
    state = Stub(world)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            seen = Seen(
                self.command,
                self.path,
                {k.lower(): v for k, v in self.headers.items()},
                self.rfile.read(length),
                self.client_address[1],
            )
            state.seen.append(seen)
            step = state.steps.pop(0) if state.steps else ok()
            answer = step(state, seen)
            if answer is None:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            status, headers, body = answer
            try:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (read-timeout test)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def make_client(world: World, base_url: str, **kw: Any) -> Client:
    m = world.merchants[SP_A]
    kw.setdefault("retry", FAST)
    kw.setdefault("timeout", 5)
    key = kw.pop("private_key", m.private_key)
    return Client(
        SP_A,
        m.serial_no,
        key,
        wechatpay_public_key=world.platform_pub.public_key_pem,
        wechatpay_public_key_id=world.platform_pub.key_id,
        base_url=base_url,
        **kw,
    )


def make_async(world: World, base_url: str, **kw: Any) -> AsyncClient:
    m = world.merchants[SP_A]
    kw.setdefault("retry", FAST)
    kw.setdefault("timeout", 5)
    return AsyncClient(
        SP_A,
        m.serial_no,
        m.private_key,
        wechatpay_public_key=world.platform_pub.public_key_pem,
        wechatpay_public_key_id=world.platform_pub.key_id,
        base_url=base_url,
        **kw,
    )


# -- what goes out ----------------------------------------------------------------------------------
def test_request_is_signed_over_the_exact_wire_bytes(stub: Stub, world: World) -> None:
    with make_client(world, stub.url) as client:
        resp = client.request("POST", "/v3/x/a%2Fb/c", query={"q": "中 文", "n": 1}, json={"名": "值"})
    assert resp.json() == {"ok": True} and resp.verified_by == world.platform_pub.key_id
    seen = stub.seen[0]
    assert seen.target.startswith("/v3/x/a%2Fb/c?q=")
    auth = parse_authorization(seen.headers["authorization"])
    assert auth.mchid == SP_A and auth.serial_no == world.merchants[SP_A].serial_no
    message = request_message("POST", seen.target, auth.timestamp, auth.nonce_str, seen.body)
    assert verify(world.merchants[SP_A].private_key.public_key(), message, auth.signature)
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["accept"] == "application/json"
    assert seen.headers["user-agent"].startswith("wxpartner/")
    assert seen.headers["wechatpay-serial"] == world.platform_pub.key_id
    assert json.loads(seen.body) == {"名": "值"}
    raw = b'{"b": 1,  "a": 2}'  # content=: these bytes exactly, signed as they are
    with make_client(world, stub.url) as client:
        client.request("POST", "/v3/raw", content=raw)
    seen = stub.seen[1]
    auth = parse_authorization(seen.headers["authorization"])
    assert seen.body == raw and seen.headers["content-type"] == "application/json"
    message = request_message("POST", "/v3/raw", auth.timestamp, auth.nonce_str, raw)
    assert verify(world.merchants[SP_A].private_key.public_key(), message, auth.signature)


@pytest.mark.parametrize("as_proxy", [False, True], ids=["dict", "mapping"])
def test_sensitive_fields_are_encrypted_for_the_named_key(stub: Stub, world: World, as_proxy: bool) -> None:
    body = {
        "contact": {"name": "张三", "mobile": "", "title": "经理"},
        "list": [{"id": "110"}, {"id": "120"}],
        "by_key": {"a": {"id": "130"}, "b": {"id": "140", "note": "n"}},  # '*' over an object's values
        "plain": "x",
        "count": 5,  # listed but no string: left as it is
    }
    with make_client(world, stub.url) as client:
        client.request(
            "POST",
            "/v3/s",
            json=types.MappingProxyType(body) if as_proxy else body,
            # a pointer to nothing ('/list/2/id' of two items, '/list/x/id', '/absent') encrypts nothing
            sensitive=[
                "/contact/name",
                "/contact/mobile",
                "/list/*/id",
                "/by_key/*/id",
                "/count",
                "/list/2/id",
                "/list/x/id",
                "/absent",
            ],
        )
    sent = json.loads(stub.seen[0].body)
    assert stub.seen[0].headers["wechatpay-serial"] == world.platform_pub.key_id
    key = load_private_key(world.platform_pub.private_key_pem)
    assert oaep_decrypt(key, sent["contact"]["name"]) == "张三"
    assert [oaep_decrypt(key, item["id"]) for item in sent["list"]] == ["110", "120"]
    assert [oaep_decrypt(key, item["id"]) for item in sent["by_key"].values()] == ["130", "140"]
    assert sent["contact"]["mobile"] == "" and sent["plain"] == "x"  # empty stays empty
    assert sent["contact"]["title"] == "经理" and sent["by_key"]["b"]["note"] == "n" and sent["count"] == 5
    assert body["contact"]["name"] == "张三"  # the caller's object is not modified


def test_listed_sensitive_fields_inside_a_tuple_are_encrypted(stub: Stub, world: World) -> None:
    """A mapping body may hold tuples (they go out as JSON arrays): '*' and an index reach into them."""
    body = {"list": ({"id": "110"}, {"id": "120"}), "pair": ("a", "b")}
    with make_client(world, stub.url) as client:
        client.request("POST", "/v3/s", json=body, sensitive=["/list/*/id", "/pair/1"])
    sent = json.loads(stub.seen[0].body)
    key = load_private_key(world.platform_pub.private_key_pem)
    assert [oaep_decrypt(key, item["id"]) for item in sent["list"]] == ["110", "120"]
    assert sent["pair"][0] == "a" and oaep_decrypt(key, sent["pair"][1]) == "b"


def test_sensitive_fields_use_the_newest_valid_certificate(stub: Stub, world: World) -> None:
    """Certificate mode: the valid certificate that expires last encrypts (and is named); an expired
    one never does, and with none valid nothing is sent."""
    short, long = make_platform_certificate(valid_days=1), world.platform_cert
    assert long.certificate_pem is not None and short.certificate_pem is not None
    m, now = world.merchants[SP_A], time.time()

    def send(at: float) -> str:
        client = Client(SP_A, m.serial_no, m.private_key, base_url=stub.url, retry=NO_RETRIES, clock=lambda: at,
                        platform_certificates=[long.certificate_pem, short.certificate_pem])  # fmt: skip
        stub.steps = [_unsigned_csv]
        with client:
            client.request("POST", "/v3/s", json={"name": "张三"}, sensitive=["/name"], unsigned_ok=True)
        return stub.seen[-1].headers["wechatpay-serial"]

    assert send(now) == long.key_id
    assert send(now + 2 * 86400) == long.key_id  # the short one has expired
    with pytest.raises(ConfigurationError, match="sensitive fields to encrypt but no WeChat Pay key"):
        send(now + 6 * 365 * 86400)  # both expired
    assert len(stub.seen) == 2


def test_a_plaintext_too_long_to_encrypt_is_named_before_sending(stub: Stub, world: World) -> None:
    body = {"contact": {"name": "张三"}, "identification_address": "地" * 72}  # 216 bytes of UTF-8
    with make_client(world, stub.url) as client, pytest.raises(ValueError) as info:
        client.request("POST", "/v3/s", json=body, sensitive=["/contact/name", "/identification_address"])
    assert str(info.value).startswith("/identification_address: 216 bytes") and "at most 214" in str(
        info.value
    )
    assert stub.seen == []
    with make_client(world, stub.url) as client:  # 214 bytes fit
        client.request("POST", "/v3/s", json={"a": "地" * 71 + "x"}, sensitive=["/a"])
    assert len(stub.seen) == 1


def test_nulls_in_a_mapping_body_are_not_sent(stub: Stub, world: World) -> None:
    """WeChat Pay's basic rules forbid null values; a model body drops them (exclude_none), and so does
    the SDK for a mapping, at any depth, without touching the caller's object."""
    body = {"a": None, "b": {"c": None, "d": 1}, "e": [{"f": None}, 2], "g": "x"}
    plain = {"g": "x", "h": [1, {"i": "j"}]}
    with make_client(world, stub.url) as client:
        client.request("POST", "/v3/n", json=body)
        client.request("POST", "/v3/n", json=plain)
    assert stub.seen[0].body == b'{"b":{"d":1},"e":[{},2],"g":"x"}'
    assert body == {"a": None, "b": {"c": None, "d": 1}, "e": [{"f": None}, 2], "g": "x"}
    assert stub.seen[1].body == b'{"g":"x","h":[1,{"i":"j"}]}'


# -- verification refusals ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("step", "reason"),
    [
        (ok(tamper=True), "bad_signature"),
        (ok(probe=True), "probe"),
        (ok(skew=-301), "stale_timestamp"),
        (ok(skew=400), "stale_timestamp"),
        (ok(serial="PUB_KEY_ID_0000000000000000000000000042"), "unknown_serial"),
        (ok(signature_type="WECHATPAY2-SM2-WITH-SM3"), "bad_signature_type"),
        (
            lambda stub, seen: (200, {"Content-Type": "application/json", "Request-ID": "r"}, b"{}"),
            "missing_header",
        ),
    ],
    ids=["tampered", "probe", "stale", "future", "unknown-serial", "signature-type", "unsigned"],
)
def test_unverifiable_2xx_is_refused(stub: Stub, world: World, step: Any, reason: str) -> None:
    stub.steps = [step, step]
    with make_client(world, stub.url) as client:
        with pytest.raises(VerificationError) as info:
            client.request("GET", "/v3/anything")
        assert info.value.reason == reason
        assert info.value.status == 200 and info.value.request_id  # the refused answer's
        with pytest.raises(VerificationError) as info:  # an operation of the table, too
            client.webizpay.ranges.list(sp_mchid=SP_A)
        assert info.value.reason == reason
    assert len(stub.seen) == 2  # a forged answer is not retried into a "success"


def test_the_answer_timestamp_window_is_strict_on_the_clients_clock(stub: Stub, world: World) -> None:
    """protocol.md §5.4: |now - Wechatpay-Timestamp| < 300 s (time_window), else refused."""
    now = 1_800_000_000
    cases = [
        (-299, 300, None),
        (299, 300, None),
        (-300, 300, "stale_timestamp"),
        (300, 300, "stale_timestamp"),
    ]
    cases += [(-59, 60, None), (-60, 60, "stale_timestamp")]
    stub.steps = [ok(ts=now + shift) for shift, _, _ in cases]
    for shift, window, reason in cases:
        with make_client(world, stub.url, clock=lambda: float(now), time_window=window) as client:
            if reason is None:
                assert client.request("GET", "/v3/x").json() == {"ok": True}, shift
                continue
            with pytest.raises(VerificationError) as info:
                client.request("GET", "/v3/x")
            assert info.value.reason == reason, shift
    assert len(stub.seen) == len(cases)


def test_non_json_2xx_body_is_refused(stub: Stub, world: World) -> None:
    def html(s: Stub, seen: Seen) -> tuple[int, dict[str, str], bytes]:
        status, headers, body = s.signed(b"<html></html>")
        return status, {**headers, "Content-Type": "text/html"}, body

    stub.steps = [html, html]
    with make_client(world, stub.url) as client:
        with pytest.raises(VerificationError) as info:
            client.request("GET", "/v3/anything")
        assert info.value.reason == "bad_content_type"
        with pytest.raises(VerificationError) as info:
            client.webizpay.ranges.list(sp_mchid=SP_A)
        assert info.value.reason == "bad_content_type"


# -- platform certificates downloaded from /v3/certificates ------------------------------------------------
def _certificates(
    entries: list[tuple[Any, str]], signer: Any, *, serial: str | None = None, key: str = APIV3_KEY
) -> Callable[[Stub, Seen], tuple[int, dict[str, str], bytes]]:
    """A /v3/certificates answer listing each (PlatformKeyRow, listed serial), signed by ``signer``."""

    def answer(stub: Stub, _seen: Seen) -> tuple[int, dict[str, str], bytes]:
        data = []
        for row, listed in entries:
            nonce = new_hex_nonce()[:12]
            ciphertext = aes_gcm_encrypt(key, nonce, "certificate", row.certificate_pem)
            data.append({"serial_no": listed, "encrypt_certificate": {
                "algorithm": "AEAD_AES_256_GCM", "nonce": nonce, "associated_data": "certificate",
                "ciphertext": ciphertext}})  # fmt: skip
        return _signed_by(signer, json.dumps({"data": data}).encode(), serial=serial)

    return answer


def _signed_by(signer: Any, body: bytes, *, serial: str | None = None) -> tuple[int, dict[str, str], bytes]:
    stamp, nonce = str(int(time.time())), new_hex_nonce()
    signature = sign(load_private_key(signer.private_key_pem), response_message(stamp, nonce, body))
    headers = {"Content-Type": "application/json", c.H_TIMESTAMP: stamp, c.H_NONCE: nonce,
               c.H_SIGNATURE: signature, c.H_SERIAL: serial or signer.key_id}  # fmt: skip
    return 200, headers, body


def test_downloaded_certificates_are_checked_before_they_are_trusted(stub: Stub, world: World) -> None:
    cert, expired = (
        world.platform_cert,
        make_platform_certificate(valid_days=1, not_before=time.time() - 3 * 86400),
    )
    other = make_platform_certificate()
    m = world.merchants[SP_A]
    stub.steps = [
        _certificates([(cert, other.key_id)], cert),  # listed under another certificate's serial
        lambda s, seen: s.signed(b'{"data": 1}'),  # not a list of certificates
        lambda s, seen: s.signed(b'{"data": [1]}'),  # nor of certificate objects
        lambda s, seen: s.signed(b'{"data": [{"serial_no": "AB12"}]}'),  # no encrypt_certificate
        _certificates([(cert, cert.key_id)], cert, key="f" * 32),  # another merchant's APIv3 key
        _certificates([(cert, cert.key_id)], other),  # signed by a key neither listed nor trusted
        _certificates([(expired, expired.key_id), (cert, cert.key_id.lower())], cert),
        lambda s, seen: _signed_by(cert, b'{"ok": 1}', serial=cert.key_id.lower()),  # serials are hex
    ]
    client = Client(SP_A, m.serial_no, m.private_key, base_url=stub.url, apiv3_key=APIV3_KEY, retry=NO_RETRIES,
                    wechatpay_public_key=world.platform_pub.public_key_pem,
                    wechatpay_public_key_id=world.platform_pub.key_id)  # fmt: skip
    with client:
        for reason, says in (
            ("bad_certificates", f"differs from the listed {other.key_id}"),
            ("bad_certificates", "answer is not understood"),
            ("bad_certificates", "answer is not understood"),
            ("bad_certificates", "AB12 does not decrypt under the configured APIv3 key"),
            ("bad_certificates", f"{cert.key_id} does not decrypt under the configured APIv3 key"),
            ("unknown_serial", "the certificate download itself is signed by an unknown key"),
        ):
            with pytest.raises(VerificationError) as info:
                client.refresh_certificates()
            assert info.value.reason == reason and says in str(info.value)
            assert client.keys.certificate_serials == []
        assert client.refresh_certificates() == [cert.key_id]  # the expired one is left out
        assert client.request("GET", "/v3/x").verified_by == cert.key_id
    assert client.keys.certificate_serials == [cert.key_id]


# -- typed errors and retries -----------------------------------------------------------------------------
def test_system_error_is_retried_with_a_fresh_signature(stub: Stub, world: World) -> None:
    stub.steps = [error(500, "SYSTEM_ERROR"), ok({"card": 1})]
    with make_client(world, stub.url) as client:  # keyed by out_card_no: idempotent
        resp = client.request("POST", "/v3/issue", json={"out_card_no": "abc123"}, idempotent=True)
    assert resp.json() == {"card": 1}
    assert len(stub.seen) == 2
    nonces = {parse_authorization(s.headers["authorization"]).nonce_str for s in stub.seen}
    assert len(nonces) == 2  # a replayed nonce would be refused by WeChat Pay
    assert stub.seen[0].body == stub.seen[1].body  # same parameters, as WeChat asks


def test_rate_limit_honours_retry_after(stub: Stub, world: World) -> None:
    stub.steps = [error(429, "FREQUENCY_LIMITED", {"Retry-After": "0.3"}), ok()]
    with make_client(world, stub.url) as client:
        started = time.monotonic()
        client.request("POST", "/v3/x", json={})
        assert time.monotonic() - started >= 0.3
    assert len(stub.seen) == 2


@pytest.mark.parametrize("seconds", ["10.5", "60"])
def test_long_retry_after_is_not_waited_for(stub: Stub, world: World, seconds: str) -> None:
    stub.steps = [error(429, "FREQUENCY_LIMITED", {"Retry-After": seconds}), ok()]
    with make_client(world, stub.url) as client, pytest.raises(RateLimitedError) as info:
        client.request("GET", "/v3/x")  # FAST keeps the default max_retry_after (10 s)
    assert info.value.status == 429 and info.value.request_id == "err-1"
    assert len(stub.seen) == 1


def test_a_retry_after_that_is_not_a_number_is_ignored(stub: Stub, world: World) -> None:
    """'nan' parses as a float; the retry falls back to backoff, as for any unreadable Retry-After."""
    stub.steps = [error(429, "FREQUENCY_LIMITED", {"Retry-After": "nan"}), ok()]
    with make_client(world, stub.url) as client:
        assert client.request("GET", "/v3/x").json() == {"ok": True}
    stub.steps = [error(429, "FREQUENCY_LIMITED", {"Retry-After": "nan"}), ok()]

    async def main() -> int:
        async with make_async(world, stub.url) as client:
            return (await client.request("GET", "/v3/x")).status

    assert anyio.run(main) == 200
    assert len(stub.seen) == 4


def test_a_retry_after_of_exactly_max_retry_after_is_waited_for(stub: Stub, world: World) -> None:
    policy = RetryPolicy(max_attempts=2, max_retry_after=0.2)
    stub.steps = [error(429, "FREQUENCY_LIMITED", {"Retry-After": "0.2"}), ok()]
    with make_client(world, stub.url, retry=policy) as client:
        assert client.request("GET", "/v3/x").json() == {"ok": True}
    assert len(stub.seen) == 2


def test_retries_give_up_with_the_typed_error(stub: Stub, world: World) -> None:
    stub.steps = [error(500, "SYSTEM_ERROR")] * 3
    with make_client(world, stub.url) as client, pytest.raises(ServerError) as info:
        client.request("POST", "/v3/x", json={}, idempotent=True)
    assert info.value.code == "SYSTEM_ERROR" and info.value.status == 500
    assert len(stub.seen) == 3


def test_a_system_error_is_repeated_only_for_an_idempotent_call(stub: Stub, world: World) -> None:
    """A 500 may follow a change that took effect (a commit whose acknowledgement was lost): WeChat's
    "retry with the same parameters" is one effect only where the parameters identify the call. A
    non-idempotent POST (W13 has no caller key) is raised at once, saying why; 429 and
    SERVICE_UNAVAILABLE turn the request away unhandled and are still retried for any call."""
    stub.steps = [error(500, "SYSTEM_ERROR"), ok()]
    with make_client(world, stub.url) as client:
        with pytest.raises(ServerError) as info:
            client.request("POST", "/v3/webizpay/avail-mch-ranges", json={"sp_mchid": SP_A})
        assert len(stub.seen) == 1 and info.value.code == "SYSTEM_ERROR"
        assert "not retried: POST /v3/webizpay/avail-mch-ranges is not idempotent" in str(info.value)
        assert "pass idempotent=True" in str(info.value)
        stub.steps = [error(500, "SYSTEM_ERROR"), ok({"range_id": "r1"})]
        with pytest.raises(ServerError) as info:
            client.webizpay.ranges.create({"sp_mchid": SP_A, "identifier_type": "TRANSACTION_ID"})
        assert len(stub.seen) == 2
        assert "not retried: webizpay.create_avail_mch_range is not idempotent" in str(info.value)
        stub.steps = [
            error(429, "FREQUENCY_LIMITED", {"Retry-After": "0"}),
            error(503, "SERVICE_UNAVAILABLE"),
        ]
        stub.steps.append(ok({"range_id": "r2"}))
        created = client.webizpay.ranges.create({"sp_mchid": SP_A, "identifier_type": "TRANSACTION_ID"})
        assert created.range_id == "r2" and len(stub.seen) == 5


def test_business_errors_are_not_retried(stub: Stub, world: World) -> None:
    stub.steps = [error(400, "INVALID_REQUEST")]
    with make_client(world, stub.url) as client, pytest.raises(ApiError) as info:
        client.request("GET", "/v3/x")
    assert info.value.code == "INVALID_REQUEST" and len(stub.seen) == 1


def test_dropped_connection_after_sending_is_not_retried_for_a_non_idempotent_call(
    stub: Stub, world: World
) -> None:
    stub.steps = [drop, ok()]
    with make_client(world, stub.url) as client, pytest.raises(TransportError) as info:
        client.request("POST", "/v3/avail-mch-ranges", json={"sp_mchid": SP_A})
    assert info.value.sent is True
    assert "may have taken effect" in str(info.value)
    assert len(stub.seen) == 1


def test_dropped_connection_is_retried_for_an_idempotent_call(stub: Stub, world: World) -> None:
    stub.steps = [drop, ok({"again": True})]
    with make_client(world, stub.url) as client:
        assert client.request("GET", "/v3/x").json() == {"again": True}
    assert len(stub.seen) == 2


def test_proxy_502_is_repeated_only_when_idempotent(stub: Stub, world: World) -> None:
    bad_gateway = lambda s, seen: (502, {"Content-Type": "text/html"}, b"<html>bad gateway</html>")  # noqa: E731
    stub.steps = [bad_gateway, ok()]
    with make_client(world, stub.url) as client:
        with pytest.raises(ApiError) as info:
            client.request("POST", "/v3/x", json={})
        assert info.value.code == "HTTP_502" and info.value.status == 502 and len(stub.seen) == 1
        stub.steps = [bad_gateway, ok()]
        client.request("POST", "/v3/x", json={}, idempotent=True)
        stub.steps = [lambda s, seen: (500, {"Content-Type": "text/html"}, b"<html>oops</html>"), ok()]
        client.request("GET", "/v3/x")  # a 500 without a WeChat code: any 5xx, for an idempotent call
    assert len(stub.seen) == 5


def test_connection_refused_fails_over_to_the_backup_host(stub: Stub, world: World) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with make_client(world, closed, backup_url=stub.url, retry=NO_RETRIES) as client:
        resp = client.request("POST", "/v3/x", json={"a": 1})  # never reached the primary: safe
    assert resp.json() == {"ok": True} and len(stub.seen) == 1


def test_failing_over_leaves_the_backup_every_attempt(stub: Stub, world: World) -> None:
    """Reaching the backup because the primary was unreachable is no attempt of max_attempts: the backup's
    SYSTEM_ERROR is still retried once under max_attempts=2."""
    closed = f"http://127.0.0.1:{free_port()}"
    stub.steps = [error(500, "SYSTEM_ERROR"), ok({"second": True})]
    policy = RetryPolicy(max_attempts=2, backoff_base=0.01, backoff_max=0.05)
    with make_client(world, closed, backup_url=stub.url, retry=policy) as client:
        assert client.request("GET", "/v3/x").json() == {"second": True}
        stub.steps = [error(500, "SYSTEM_ERROR")] * 3
        with pytest.raises(ServerError):
            client.request("GET", "/v3/x")
    assert len(stub.seen) == 4  # two attempts each, and no more


def test_a_request_that_was_sent_fails_over_only_when_idempotent(stub: Stub, world: World) -> None:
    """README: the backup is used when the primary cannot be reached, or, for idempotent calls, answered
    nothing; a dropped POST may have taken effect and must not go to the backup (here the same stub)."""
    stub.steps = [drop, ok()]
    with make_client(world, stub.url, backup_url=stub.url, retry=NO_RETRIES) as client:
        with pytest.raises(TransportError) as info:
            client.request("POST", "/v3/x", json={})
        assert info.value.sent is True and len(stub.seen) == 1
        assert "failed after the request was sent" in str(info.value)
        stub.steps = [drop, ok({"backup": True})]
        assert client.request("POST", "/v3/x", json={}, idempotent=True).json() == {"backup": True}
    assert len(stub.seen) == 3


def test_connection_refused_without_backup_reports_not_sent(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    caplog.set_level("INFO", logger="wxpartner.client")
    with make_client(world, closed) as client, pytest.raises(TransportError) as info:
        client.request("POST", "/v3/x", json={})  # not idempotent, but never sent: retried
    assert info.value.sent is False and "failed before the request was sent" in str(info.value)
    assert sum("ConnectError (not sent)" in r.getMessage() for r in caplog.records) == 3  # every attempt


def test_read_timeout_is_configurable_and_reported_as_sent(stub: Stub, world: World) -> None:
    def slow(s: Stub, seen: Seen) -> tuple[int, dict[str, str], bytes]:
        time.sleep(0.5)
        return s.signed(b"{}")

    stub.steps = [slow, slow]
    with make_client(world, stub.url, timeout=0.2) as client, pytest.raises(TransportError) as info:
        client.request("POST", "/v3/x", json={})
    assert info.value.sent is True and len(stub.seen) == 1
    # The error names the phase and the seconds configured (it said "ReadTimeout: timed out").
    assert "ReadTimeout: nothing received within 0.2 s (the read timeout" in str(info.value)

    async def main() -> None:
        async with make_async(world, stub.url, timeout=0.2) as client:
            with pytest.raises(TransportError) as ainfo:
                await client.request("POST", "/v3/x", json={})
            assert "ReadTimeout: nothing received within 0.2 s (the read timeout" in str(ainfo.value)

    anyio.run(main)
    assert len(stub.seen) == 2


def test_the_clients_timeouts_govern_a_given_http_client(stub: Stub, world: World) -> None:
    """An http_client= without timeouts of its own still gives up at the SDK's read timeout."""

    def slow(s: Stub, seen: Seen) -> tuple[int, dict[str, str], bytes]:
        time.sleep(0.5)
        return s.signed(b"{}")

    stub.steps = [slow]
    with httpx.Client(timeout=None) as http:
        client = make_client(world, stub.url, timeout=0.2, http_client=http)
        with pytest.raises(TransportError) as info:
            client.request("POST", "/v3/x", json={})
    assert info.value.sent is True


class _Counting(httpx.HTTPTransport):
    """A real HTTP transport that notes what it carried."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return super().handle_request(request)


def test_a_sync_client_sends_through_the_transport_it_is_given(stub: Stub, world: World) -> None:
    transport = _Counting()
    with make_client(world, stub.url, transport=transport) as client:
        assert client.request("GET", "/v3/through").json() == {"ok": True}
    assert transport.paths == ["/v3/through"] and stub.seen[0].target == "/v3/through"


def test_request_repeats_only_get_and_head_unless_told_and_leaves_none_out_of_the_query() -> None:
    assert [generic_call(m, "/v3/x").idempotent for m in ("GET", "head", "POST", "DELETE")] == [
        True, True, False, False
    ]  # fmt: skip
    assert generic_call("POST", "/v3/x", idempotent=True).idempotent is True
    assert generic_call("GET", "/v3/x", idempotent=False).idempotent is False
    assert generic_call("GET", "/v3/x", query={"a": 1, "b": None, "c": "中"}).query == (
        ("a", "1"),
        ("c", "中"),
    )
    # Booleans as the typed operations send them (and JSON writes them), not Python's "True".
    assert generic_call("GET", "/v3/x", query=[("on", True), ("off", False)]).query == (
        ("on", "true"),
        ("off", "false"),
    )


def test_a_request_path_without_its_leading_slash_is_refused_before_sending(stub: Stub, world: World) -> None:
    """``request("GET", "v3/...")`` went out as ``GET v3/... HTTP/1.1`` (no valid request target: the stub
    took it, a real server answers 400) and on httpx failed as a bare ``InvalidURL: Invalid port:
    '8080v3'``: the path glued to the host."""
    with make_client(world, stub.url, retry=NO_RETRIES) as client:
        for path in ("v3/webizpay/avail-mch-ranges", "https://api.mch.weixin.qq.com/v3/x"):
            with pytest.raises(ValueError, match=r"starting with /v3/ \(the host comes from base_url\)"):
                client.request("GET", path)
    assert stub.seen == []


def test_a_query_in_the_path_beside_query_is_refused_before_sending(stub: Stub, world: World) -> None:
    """``request("GET", "/v3/x?sp_mchid=1", query={"offset": 0})`` sent ``/v3/x?offset=0``: query= replaced
    the path's own query (as httpx's params do), so the server answered that sp_mchid is required. A
    query in the path alone, or in query= alone, goes out as given."""
    stub.steps = [ok({"n": 1}), ok({"n": 2})]
    with make_client(world, stub.url, retry=NO_RETRIES) as client:
        with pytest.raises(ValueError, match=r"has a query and query= is given too"):
            client.request("GET", "/v3/x?sp_mchid=1", query={"offset": 0})
        assert stub.seen == []
        client.request("GET", "/v3/x?sp_mchid=1")
        client.request("GET", "/v3/x", query={"sp_mchid": "1", "offset": 0})
    assert [seen.target for seen in stub.seen] == ["/v3/x?sp_mchid=1", "/v3/x?sp_mchid=1&offset=0"]


# -- async parity -------------------------------------------------------------------------------------------
def test_async_client_runs_the_same_pipeline(stub: Stub, world: World) -> None:
    stub.steps = [error(500, "SYSTEM_ERROR"), ok({"n": 1}), error(500, "SYSTEM_ERROR"), ok(tamper=True), drop]

    async def main() -> None:
        async with make_async(world, stub.url) as client:
            resp = await client.request("POST", "/v3/x", json={"a": 1}, idempotent=True)
            assert resp.json() == {"n": 1}
            with pytest.raises(ServerError):  # not idempotent: not repeated
                await client.request("POST", "/v3/x", json={"a": 1})
            with pytest.raises(VerificationError):
                await client.request("GET", "/v3/y")
            with pytest.raises(TransportError) as info:
                await client.request("POST", "/v3/z", json={})
            assert info.value.sent is True

    anyio.run(main)
    assert len(stub.seen) == 5


def test_an_async_client_serves_one_event_loop_after_another(stub: Stub, world: World) -> None:
    """``asyncio.run`` per call (a script, a worker's task, a test framework's loop per test): a pooled
    connection of the loop before was reused and every other call failed with a bare
    ``RuntimeError: Event loop is closed``. Now a connection is reused only in the loop that opened it."""
    client = make_async(world, stub.url, retry=NO_RETRIES)
    ports: list[int] = []

    async def call() -> int:
        resp = await client.request("GET", "/v3/x")
        assert client._pooled is not None
        ports.extend(conn.stream.extra(anyio.abc.SocketAttribute.local_port) for conn in _idle(client))
        return resp.status

    assert [asyncio.run(call()) for _ in range(4)] == [200] * 4
    assert len(stub.seen) == 4 and len(set(ports)) == 4  # a connection of its own in each loop

    async def twice() -> list[int]:  # within one loop the pool still reuses its connection
        return [(await client.request("GET", "/v3/x")).status for _ in range(2)]

    assert asyncio.run(twice()) == [200, 200] and len(_idle(client)) == 1
    asyncio.run(client.aclose())  # closing in yet another loop abandons the old loop's connection cleanly
    assert _idle(client) == []


def test_a_cancelled_async_call_leaves_the_client_and_its_pool_usable(stub: Stub, world: World) -> None:
    """README: a call cut short by a cancel scope or ``task.cancel()`` closes its own connection (never
    pooled half-read, where the next call would read the late answer as its own) and later calls work."""

    def slow(s: Stub, seen: Seen) -> tuple[int, dict[str, str], bytes]:
        time.sleep(0.6)
        return s.signed(b'{"late":true}')

    stub.steps = [slow, slow]

    async def main() -> None:
        async with make_async(world, stub.url) as client:
            with anyio.move_on_after(0.1) as scope:
                await client.request("GET", "/v3/slow")
            assert scope.cancelled_caught and _idle(client) == []
            task = asyncio.create_task(client.request("GET", "/v3/slow"))
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert _idle(client) == []
            answers = await asyncio.gather(*(client.request("GET", "/v3/x") for _ in range(3)))
            assert [a.json() for a in answers] == [{"ok": True}] * 3  # none reads a late answer
            assert 1 <= len(_idle(client)) <= 3

    asyncio.run(main())
    assert [seen.target for seen in stub.seen] == ["/v3/slow"] * 2 + ["/v3/x"] * 3


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork here")
# The fork is the point (what Celery prefork and gunicorn --preload do); 3.12+ warns that a process with
# threads (the stub server's) is forked.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded, use of fork:DeprecationWarning")
def test_a_forked_child_never_shares_its_parents_pooled_connection(stub: Stub, world: World) -> None:
    """multiprocessing, Celery prefork, gunicorn --preload: a client that made a call before the fork has
    a pooled connection the child inherits. Both processes wrote to that one socket and read each
    other's answers (measured: 1 to 4 of 20 answers went to the wrong process, validly signed, so
    nothing noticed); now a child opens connections of its own and leaves the parent's untouched."""

    def echo(s: Stub, seen: Seen) -> tuple[int, dict[str, str], bytes]:
        return s.signed(json.dumps({"target": seen.target}).encode())

    stub.steps = [echo] * 8
    ctx = multiprocessing.get_context("fork")
    for make in (make_client, make_async):
        stub.seen.clear()
        client = make(world, stub.url, retry=NO_RETRIES)

        def call(target: str, client: Client | AsyncClient = client) -> Any:
            if isinstance(client, Client):
                return client.request("GET", target).json()
            return asyncio.run(client.request("GET", target)).json()

        assert call("/v3/parent/1") == {"target": "/v3/parent/1"}
        child = ctx.Process(target=lambda: sys.exit(call("/v3/child/1") != {"target": "/v3/child/1"}))
        child.start()
        child.join(20)
        assert child.exitcode == 0
        assert call("/v3/parent/2") == {"target": "/v3/parent/2"}  # the parent's connection still works
        ports = {seen.target: seen.port for seen in stub.seen}
        assert ports["/v3/child/1"] != ports["/v3/parent/1"], make.__name__
        assert ports["/v3/parent/2"] == ports["/v3/parent/1"] or make is make_async  # reused (one loop each)
        if isinstance(client, Client):
            client.close()
        else:
            asyncio.run(client.aclose())


def _idle(client: AsyncClient) -> list[Any]:
    assert client._pooled is not None
    return [conn for conns in client._pooled._idle._idle.values() for conn in conns]


class Sensitive:
    """A marker class of the caller's own, used bare (README: ``Annotated[..., Sensitive]``)."""


class SensitiveMarker:
    pass


class _Flagged:
    sensitive = True


class _Holder(WxModel):
    name: Annotated[str, Field(json_schema_extra={"sensitive": True})]
    note: str = ""
    id_number: Annotated[str, Sensitive] = ""
    passport: Annotated[str, Sensitive()] = ""
    mobile: Annotated[str, SensitiveMarker()] = ""
    address: Annotated[str, _Flagged()] = ""
    hint: Annotated[str, Field(json_schema_extra={"sensitive": False})] = ""  # not marked: plain


class _Marked(WxModel):
    holders: list[_Holder]
    extra_id: str | None = None


MARKED = Op[_Marked]("test.marked", "POST", "/v3/marked/{id}", _Marked, body=_Marked)


class _Nested(WxModel):
    """Every way a model can hold a marked model: the walk must reach each one."""

    direct: _Holder
    optional: None | _Holder = None  # noqa: RUF036  # None first: the union's first member is no model
    either: _Holder | int = 0
    several: tuple[_Holder, ...] = ()
    sequence: Sequence[_Holder] = ()
    annotated: Annotated[list[_Holder], Field(max_length=5)] = Field(default_factory=list)
    tagged: list[Annotated[_Holder, Field(description="an Annotated inside the list")]] = Field(
        default_factory=list
    )
    anything: Any = None
    kind: Literal["A", "B"] = "A"


NESTED = Op[None]("test.nested", "POST", "/v3/nested", None, body=_Nested)


def test_marked_fields_are_found_at_any_depth_and_shape(stub: Stub, world: World) -> None:
    h = lambda where: _Holder(name=f"n-{where}")  # noqa: E731
    body = _Nested(direct=h("direct"), optional=h("optional"), either=h("either"), several=(h("several"),),
                   sequence=[h("sequence")], annotated=[h("annotated")], tagged=[h("tagged")],
                   anything=h("anything"))  # fmt: skip
    with make_client(world, stub.url) as client:
        client.execute(NESTED.call(body=body))
    sent = json.loads(stub.seen[0].body)
    key = load_private_key(world.platform_pub.private_key_pem)
    names = {n: v if isinstance(v, dict) else v[0] for n, v in sent.items() if n != "kind"}
    assert {n: oaep_decrypt(key, v["name"]) for n, v in names.items()} == {n: f"n-{n}" for n in names}
    assert len(names) == 8 and sent["kind"] == "A"


class _Containers(WxModel):
    """Models held in dicts and in lists of lists: the walk goes through every level."""

    by_key: dict[str, _Holder] = Field(default_factory=dict)
    grid: list[list[_Holder]] = Field(default_factory=list)
    lists_by_key: dict[str, list[_Holder]] = Field(default_factory=dict)
    by_number: dict[int, _Holder] = Field(default_factory=dict)  # dumped under "7"


CONTAINERS = Op[None]("test.containers", "POST", "/v3/containers", None, body=_Containers)


@pytest.mark.parametrize("as_dict", [False, True], ids=["model", "dict"])
def test_marked_fields_in_dicts_and_nested_lists_are_encrypted(
    stub: Stub, world: World, as_dict: bool
) -> None:
    h = lambda where: {"name": f"n-{where}", "note": where}  # noqa: E731
    body = {
        "by_key": {"k": h("by_key")},
        "grid": [[h("grid")]],
        "lists_by_key": {"k": [h("lists")]},
        "by_number": {7: h("number")},
    }
    with make_client(world, stub.url) as client:
        client.execute(CONTAINERS.call(body=body if as_dict else _Containers.model_validate(body)))
    sent = json.loads(stub.seen[0].body)
    key = load_private_key(world.platform_pub.private_key_pem)
    held = [sent["by_key"]["k"], sent["grid"][0][0], sent["lists_by_key"]["k"][0], sent["by_number"]["7"]]
    assert [oaep_decrypt(key, item["name"]) for item in held] == ["n-by_key", "n-grid", "n-lists", "n-number"]
    assert [item["note"] for item in held] == ["by_key", "grid", "lists", "number"]  # unmarked: plain


class _Aliased(WxModel):
    """A marked field is found under the key it has in the body, whichever alias put it there."""

    dumped_as: Annotated[str, Sensitive] = Field("", serialization_alias="dumpedAs")
    aliased: Annotated[str, Sensitive] = Field("", alias="aliasedKey")
    validated_as: Annotated[str, Sensitive] = Field("", validation_alias="validatedAs")
    holder: _Holder | None = Field(None, alias="holderKey")


ALIASED = Op[None]("test.aliased", "POST", "/v3/aliased", None, body=_Aliased)


@pytest.mark.parametrize("as_dict", [False, True], ids=["model", "dict"])
def test_marked_fields_are_found_under_their_aliases(stub: Stub, world: World, as_dict: bool) -> None:
    # A dict goes out as written: an aliased field by its name (populate_by_name), or by its
    # validation alias; a model goes out by its serialization alias, else its alias.
    given = {"dumped_as": "1", "aliased": "2", "validatedAs": "3", "holder": {"name": "4"}}
    with make_client(world, stub.url) as client:
        client.execute(ALIASED.call(body=given if as_dict else _Aliased.model_validate(given)))
    sent = json.loads(stub.seen[0].body)
    keys = (
        ["dumped_as", "aliased", "validatedAs", "holder"]
        if as_dict
        else ["dumpedAs", "aliasedKey", "validated_as", "holderKey"]
    )
    assert list(sent) == keys
    key = load_private_key(world.platform_pub.private_key_pem)
    plain = [
        oaep_decrypt(key, v) for v in (sent[keys[0]], sent[keys[1]], sent[keys[2]], sent[keys[3]]["name"])
    ]
    assert plain == ["1", "2", "3", "4"]


@pytest.mark.parametrize("as_dict", [False, True], ids=["model", "dict"])
def test_model_markers_select_the_sensitive_fields(stub: Stub, world: World, as_dict: bool) -> None:
    stub.steps = [ok({"holders": [{"name": "x"}]})]
    marked = {"name": "李四", "id_number": "110", "passport": "E1", "mobile": "139", "address": "北京"}
    body: Any = {"holders": [{**marked, "note": "n", "hint": "h"}], "brand_new_key": 1}
    with make_client(world, stub.url) as client:
        result = client.execute(
            MARKED.call({"id": "a/b"}, body=body if as_dict else _Marked.model_validate(body))
        )
    assert isinstance(result, _Marked)
    seen = stub.seen[0]
    assert seen.target == "/v3/marked/a%2Fb"
    sent = json.loads(seen.body)
    key = load_private_key(world.platform_pub.private_key_pem)
    assert {k: oaep_decrypt(key, sent["holders"][0][k]) for k in marked} == marked
    assert sent["holders"][0]["note"] == "n" and sent["holders"][0]["hint"] == "h"
    assert ("brand_new_key" in sent) is as_dict  # a dict goes out as given (keys newer than the model)


PLAIN_QUERY = Op[None]("test.query", "GET", "/v3/q/{id}", None, idempotent=True)


class _Query(WxModel):
    limit: int
    sub_mchid: str | None = Field(None, alias="sub_mchid_alias")


MODEL_QUERY = Op[None]("test.model_query", "GET", "/v3/mq", None, query=_Query, idempotent=True)


def test_an_operations_mapping_query_is_checked_by_its_model_before_sending(stub: Stub, world: World) -> None:
    """A mapping passes the operation's query model (strict: a string is no number) and goes out as
    the model writes it (by alias, None left out)."""
    stub.steps = [lambda stub, _seen: stub.signed(b"", status=204)]
    with make_client(world, stub.url) as client:
        with pytest.raises(ValidationError):
            client.execute(MODEL_QUERY.call(query={"limit": "5"}))
        client.execute(MODEL_QUERY.call(query={"limit": 5, "sub_mchid": "S1"}))
    assert [seen.target for seen in stub.seen] == ["/v3/mq?limit=5&sub_mchid_alias=S1"]


def test_an_operations_mapping_query_and_path_are_written_as_wechat_reads_them(
    stub: Stub, world: World
) -> None:
    """Without a query model, a mapping's booleans go out as true/false (not Python's True), None is
    left out, and every path parameter must be given (a '{name}' left in the path is refused unsent)."""
    stub.steps = [lambda stub, _seen: stub.signed(b"", status=204)]
    with make_client(world, stub.url) as client:
        client.execute(
            PLAIN_QUERY.call({"id": "a b"}, query={"on": True, "off": False, "n": 2, "gone": None})
        )
        with pytest.raises(ValueError, match=re.escape("path parameter missing in /v3/q/{id}")):
            client.execute(PLAIN_QUERY.call({"other": "x"}))
    assert [seen.target for seen in stub.seen] == ["/v3/q/a%20b?on=true&off=false&n=2"]


def test_private_key_forms_and_default_hosts(stub: Stub, world: World, tmp_path: Path) -> None:
    m = world.merchants[SP_A]
    pkcs1 = private_key_pem(m.private_key, pkcs1=True)
    assert "BEGIN RSA PRIVATE KEY" in pkcs1
    path = tmp_path / "apiclient_key.pem"
    path.write_text(m.private_key_pem)  # PKCS#8, by path (str and Path)
    for source in (pkcs1, str(path), path):
        with make_client(world, stub.url, private_key=source) as client:
            client.request("GET", "/v3/ping")
    assert len(stub.seen) == 3  # all three signed acceptably (the stub answered each)
    real = Client(SP_A, m.serial_no, m.private_key, wechatpay_public_key=world.platform_pub.public_key_pem,
                  wechatpay_public_key_id=world.platform_pub.key_id, failover=True)  # fmt: skip
    assert real.config.base_url == "https://api.mch.weixin.qq.com"
    assert real.config.backup_url == "https://api2.mch.weixin.qq.com"
    assert "PRIVATE" not in repr(real) and "PRIVATE" not in repr(real.config)
    real.close()


def test_unknown_error_codes_stay_usable(stub: Stub, world: World) -> None:
    stub.steps = [error(403, "BRAND_NEW_CODE"), error(500, "SOMETHING_ELSE")]
    with make_client(world, stub.url) as client:
        with pytest.raises(ApiError) as info:
            client.request("POST", "/v3/x", json={})
        assert type(info.value) is ApiError
        assert (info.value.status, info.value.code, info.value.message, info.value.request_id) == (
            403, "BRAND_NEW_CODE", "stub", "err-1",
        )  # fmt: skip
        with pytest.raises(ServerError) as server:  # typed by status, but not a code WeChat asks to retry
            client.request("POST", "/v3/x", json={})
        assert server.value.code == "SOMETHING_ELSE" and not server.value.retryable
    assert len(stub.seen) == 2


# README's error tree: the class each WeChat code (or, without a known code, the status) raises, and
# whether WeChat Pay asks for the call to be repeated.
ERROR_TABLE: list[tuple[int, str, type[ApiError], bool]] = [
    (400, "PARAM_ERROR", ParamError, False),
    (400, "INVALID_REQUEST", InvalidRequestError, False),
    (401, "SIGN_ERROR", SignError, False),
    (403, "NO_AUTH", NoAuthError, False),
    (403, "NOAUTH", NoAuthError, False),
    (404, "RESOURCE_NOT_EXISTS", NotFoundError, False),
    (404, "NOT_FOUND", NotFoundError, False),
    (404, "ORDER_NOT_EXIST", NotFoundError, False),
    (404, "MCH_NOT_EXISTS", NotFoundError, False),
    (405, "METHOD_NOT_ALLOWED", MethodNotAllowedError, False),
    (429, "FREQUENCY_LIMITED", RateLimitedError, True),
    (429, "RATELIMIT_EXCEEDED", RateLimitedError, True),
    (429, "", RateLimitedError, True),
    (500, "SYSTEM_ERROR", ServerError, True),
    (500, "SYSTEMERROR", ServerError, True),
    (500, "", ServerError, False),
    (503, "SERVICE_UNAVAILABLE", ServiceUnavailableError, True),
    (502, "SERVICE_UNAVAILABLE", ServiceUnavailableError, True),  # protocol.md: "502/503"
    (503, "", ServiceUnavailableError, False),
    (502, "", ApiError, False),
    (300, "", ApiError, False),  # only 2xx is an answer to verify
]


def test_each_error_code_raises_its_class(stub: Stub, world: World) -> None:
    bare = lambda status: lambda s, seen: (status, {"Content-Type": "text/html"}, b"<html>x</html>")  # noqa: E731
    stub.steps = [error(status, code) if code else bare(status) for status, code, _, _ in ERROR_TABLE]
    with make_client(world, stub.url, retry=NO_RETRIES) as client:
        for status, code, cls, retryable in ERROR_TABLE:
            with pytest.raises(ApiError) as info:
                client.request("POST", "/v3/x", json={})
            got = info.value
            assert (type(got), got.status, got.code, got.retryable) == (
                cls, status, code or f"HTTP_{status}", retryable,
            )  # fmt: skip


def test_verified_answer_of_another_shape_is_a_decode_error(stub: Stub, world: World) -> None:
    stub.steps = [ok({"holders": "not a list"})]
    with make_client(world, stub.url) as client, pytest.raises(DecodeError) as info:
        client.execute(MARKED.call({"id": "1"}, body={"holders": []}))
    assert (
        b"not a list" in info.value.body and info.value.request_id == "stub-1"
    )  # the stub numbers answers after recording
    assert "_Marked" in str(info.value)


def test_backoff_is_exponential_capped_and_jittered() -> None:
    policy = RetryPolicy(backoff_base=0.2, backoff_max=1.0, jitter=0.5)
    for attempt, base in ((1, 0.2), (2, 0.4), (3, 0.8), (6, 1.0)):
        delays = {policy.delay(attempt) for _ in range(50)}
        assert all(base * 0.5 <= d <= base * 1.5 for d in delays)
        assert len(delays) > 1  # jitter: concurrent clients do not retry in lockstep
    after = [policy.delay(1, retry_after=2.0) for _ in range(50)]
    assert all(2.0 <= d <= 2.0 * 1.1 for d in after)  # Retry-After is a floor


def test_the_default_policy_is_the_documented_one(stub: Stub, world: World) -> None:
    """README: RetryPolicy(max_attempts=3, backoff_base=0.2, backoff_max=5.0, jitter=0.5,
    max_retry_after=10) when no retry= is given."""
    default = RetryPolicy()
    for attempt, base in ((1, 0.2), (2, 0.4), (9, 5.0)):
        delays = [default.delay(attempt) for _ in range(200)]
        assert all(base * 0.5 <= d <= base * 1.5 for d in delays)
        assert min(delays) < base * 0.75 and max(delays) > base * 1.25  # ±50 %, not less
    stub.steps = [error(503, "SERVICE_UNAVAILABLE")] * 4
    with make_client(world, stub.url, retry=None) as client, pytest.raises(ApiError) as info:
        client.request("POST", "/v3/x", json={})
    assert info.value.code == "SERVICE_UNAVAILABLE" and len(stub.seen) == 3


def test_answer_headers_are_lower_cased_joined_and_decoded_like_httpx() -> None:
    raw = [
        (b"Request-ID", b"r-1"),
        (b"Set-Cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
        (b"X-Note", "说明".encode()),  # not ASCII: httpx falls back to UTF-8 for every header
    ]
    headers = httpx.Headers(raw)
    resp = answer(200, headers, b"{}")
    assert resp.headers == {"request-id": "r-1", "set-cookie": "a=1, b=2", "x-note": "说明"}
    assert resp.headers == dict(headers.items())  # what httpx's own view says
    latin = httpx.Headers([(b"X-Old", "café".encode("latin-1"))])
    assert answer(200, latin, b"").headers == {"x-old": "café"} == dict(latin.items())


# -- the bill file: WeChat Pay does not sign it (its download page says to skip verification) -------------
CSV = "交易时间,额度卡号\r\n`2026-12-01 10:00:00,`1000\r\n".encode()


def _unsigned_csv(stub: Stub, _seen: Seen) -> tuple[int, dict[str, str], bytes]:
    return 200, {"Content-Type": "text/csv; charset=utf-8", "Request-ID": "file-1"}, CSV


def _signed_csv(**kw: Any) -> Callable[[Stub, Seen], tuple[int, dict[str, str], bytes]]:
    def answer(stub: Stub, _seen: Seen) -> tuple[int, dict[str, str], bytes]:
        status, headers, body = stub.signed(CSV, **kw)
        return status, {**headers, "Content-Type": "text/csv; charset=utf-8"}, body

    return answer


def _partly_signed_csv(stub: Stub, seen: Seen) -> tuple[int, dict[str, str], bytes]:
    status, headers, body = _unsigned_csv(stub, seen)
    return status, {**headers, c.H_SERIAL: stub.world.platform_pub.key_id}, body


def test_an_unsigned_bill_file_is_accepted_a_signed_one_still_verified(stub: Stub, world: World) -> None:
    url = "https://api.mch.weixin.qq.com/v3/billdownload/file?token=abc%2B1"
    stub.steps = [_unsigned_csv, _signed_csv(), _signed_csv(tamper=True), _partly_signed_csv]
    with make_client(world, stub.url) as client:
        assert client.webizpay.bills.download(url) == CSV  # as real WeChat Pay answers it
        assert client.webizpay.bills.download(url) == CSV  # as wxpartner answers it
        with pytest.raises(VerificationError) as tampered:
            client.webizpay.bills.download(url)
        assert tampered.value.reason == "bad_signature"
        with pytest.raises(VerificationError) as partly:
            client.webizpay.bills.download(url)
        assert partly.value.reason == "missing_header"
    assert [s.target for s in stub.seen] == ["/v3/billdownload/file?token=abc%2B1"] * 4


def test_request_accepts_an_unsigned_answer_only_when_told(stub: Stub, world: World) -> None:
    stub.steps = [_unsigned_csv, _unsigned_csv]
    with make_client(world, stub.url) as client:
        with pytest.raises(VerificationError) as info:
            client.request("GET", "/v3/billdownload/file", query={"token": "t"})
        assert info.value.reason == "missing_header"
        answer = client.request("GET", "/v3/billdownload/file", query={"token": "t"}, unsigned_ok=True)
        assert answer.content == CSV and answer.verified_by is None
    stub.steps = [_signed_csv()]  # told so, a signed answer need not be JSON either (it is verified)
    with make_client(world, stub.url) as client:
        answer = client.request("GET", "/v3/billdownload/file", query={"token": "t"}, unsigned_ok=True)
        assert answer.content == CSV and answer.verified_by == world.platform_pub.key_id

    async def main() -> None:
        stub.steps = [_unsigned_csv]
        async with make_async(world, stub.url) as ac:
            assert await ac.webizpay.bills.download(f"{stub.url}/v3/billdownload/file?token=t") == CSV

    anyio.run(main)


def test_answers_take_enum_values_and_time_forms_the_models_do_not_know(stub: Stub, world: World) -> None:
    """WeChat Pay adds enum values; an answer (here to writes that took effect) must still decode.
    Requests stay closed: the server refuses values it does not know (test_conformance.py)."""
    card = {
        "sp_mchid": SP_A, "sub_mchid": "1900000101", "card_no": "1", "out_card_no": "card_0001",
        "employee_id": "e", "card_template_id": "t", "card_rule": "WEEKLY", "refund_rule": "RETURN",
        "amount": 1, "remain_amount": 1, "effective_end_time": "2099-12-31T23:59+08:00",
        "effective_begin_time": "2023-01-01T00:00+08:00", "card_state": "FROZEN", "card_name": "n",
    }  # fmt: skip
    employee = {"sub_mchid": "1900000101", "sp_openid": "o", "state": "SUSPENDED",
                "create_time": "2015-05-20T13:29+08:00"}  # fmt: skip
    stub.steps = [ok(card), ok({"applyment_state": "APPLYMENT_STATE_AUDITING"}), ok(employee)]
    with make_client(world, stub.url) as client:
        got = client.webizpay.quota_cards.get("e", "1", sp_mchid=SP_A, sub_mchid="1900000101")
        assert (got.card_state, got.card_rule) == ("FROZEN", "WEEKLY")
        assert client.apply4subject.get(business_code="b").applyment_state == "APPLYMENT_STATE_AUDITING"
        added = client.recharge_employees.add({"sub_mchid": "1900000101", "sp_openid": "o"})
        assert (added.state, added.create_time) == ("SUSPENDED", "2015-05-20T13:29+08:00")


def test_an_empty_list_left_out_of_an_answer_reads_as_empty(stub: Stub, world: World) -> None:
    stub.steps = [ok({"sp_mchid": SP_A}), ok({"offset": 0, "limit": 100, "count": 0, "total_count": 0})]
    with make_client(world, stub.url) as client:
        assert client.webizpay.ranges.list(sp_mchid=SP_A).range_list == []
        assert client.webizpay.ranges.list_identifiers("r", sp_mchid=SP_A).data == []


@pytest.mark.parametrize("own", ["http_client", "transport"])
def test_a_tls_context_beside_the_callers_own_http_is_refused(world: World, own: str) -> None:
    """httpx drops ``verify`` when a transport is given, and a caller's client trusts as it was made to:
    a tls_context there would be a trust setting silently not in force."""
    m = world.merchants[SP_A]
    keys = {
        "wechatpay_public_key": world.platform_pub.public_key_pem,
        "wechatpay_public_key_id": world.platform_pub.key_id,
    }
    context = ssl.create_default_context()
    sync_http = httpx.Client() if own == "http_client" else httpx.HTTPTransport()
    async_http = httpx.AsyncClient() if own == "http_client" else httpx.AsyncHTTPTransport()
    for cls, http in ((Client, sync_http), (AsyncClient, async_http)):
        with pytest.raises(ConfigurationError, match=f"tls_context has no effect with {own}="):
            cls(SP_A, m.serial_no, m.private_key, tls_context=context, **keys, **{own: http})  # type: ignore[operator]
        # Without the context the same client is made, and trusts as its own HTTP was made to.
        cls(SP_A, m.serial_no, m.private_key, **keys, **{own: http})  # type: ignore[operator]
    sync_http.close()
    anyio.run(async_http.aclose)
