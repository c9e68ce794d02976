"""Every refusal of server/verify.py through real HTTP (protocol.md §4.1), in the spec's order.

Each case asserts the exact status, code, message and detail; SIGN_ERROR mismatches carry
``sign_information`` in explain mode (the default) and not with explain off; and the nonce of a refused
request is never burned: the same nonce, correctly signed, then succeeds.

A few cases need an operation with a JSON body or a 204; a private echo operation is added to the
router of this test's app instance only (the global REGISTRY is untouched).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, field_validator
from starlette.testclient import TestClient

from conftest import SANDBOX_TOKEN
from live import LiveServer
from support import SP_A, SP_B, ApiClient, MerchantKeys, World, assert_signed, sign_request
from wxpartner.protocol import keys as k
from wxpartner.protocol.authorization import Authorization
from wxpartner.protocol.messages import request_message
from wxpartner.protocol.signing import new_nonce, sign
from wxpartner.server.app import WxPartnerApp, create_app
from wxpartner.server.context import Ctx
from wxpartner.server.operations import Operation, Router
from wxpartner.server.pipeline import Reply
from wxpartner.server.settings import Settings
from wxpartner.server.verify import Verifier
from wxpartner.store import registry, sandbox

CERTS = "/v3/certificates"
# Checks that never reach the store run on SQLite only; the store-backed ones (merchant, revocation,
# nonces) run on every backend.
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
MALFORMED = "Http头Authorization值格式错误，请参考《微信支付商户REST API签名规则》"
# The issue of a header without key="value" pairs (a bare "expected" also matched the scheme and
# parameter refusals).
NO_PARAMETERS = "expected 'WECHATPAY2-SHA256-RSA2048 key=\"value\",...'"


class EchoBody(BaseModel):
    name: str
    count: int = 0

    @field_validator("count")
    @classmethod
    def _not_negative(cls, value: int) -> int:
        if value < 0:
            raise ValueError("must not be negative")
        return value


def _echo(ctx: Ctx, path: dict[str, str], body: EchoBody) -> Reply:
    return Reply(200, {"name": body.name, "count": body.count, "mchid": ctx.caller.merchant.mchid})


def _empty(ctx: Ctx, path: dict[str, str]) -> None:
    return None


def _add_test_operations(app: WxPartnerApp) -> None:
    st = app.state
    extra = [
        Operation(
            op_id="test.echo",
            method="POST",
            template="/v3/wxpartner-test/echo",
            handler=_echo,
            body_model=EchoBody,
        ),
        Operation(op_id="test.empty", method="POST", template="/v3/wxpartner-test/empty", handler=_empty),
    ]
    st.router = Router(st.router.operations + extra)


@pytest.fixture
def api(http: TestClient, app: WxPartnerApp) -> TestClient:
    _add_test_operations(app)
    return http


def _send(http: httpx.Client, signed: Any, **overrides: str | None) -> httpx.Response:
    """Send a signed request; an override of None removes the header (even httpx's defaults)."""
    merged = {**signed.headers, **overrides}
    headers = {k: v for k, v in merged.items() if v is not None}
    request = http.build_request(signed.method, signed.url, content=signed.body or None, headers=headers)
    for name, value in merged.items():
        if value is None and name in request.headers:
            del request.headers[name]
    return http.send(request)


def _sign_error(
    resp: httpx.Response, *, field: str, message: str, issue: str | None = None
) -> dict[str, Any]:
    assert resp.status_code == 401, resp.text
    body: dict[str, Any] = resp.json()
    assert body["code"] == "SIGN_ERROR"
    assert body["message"] == message
    assert body["detail"]["field"] == field
    assert body["detail"]["location"] == "authorization"
    if issue is not None:
        assert issue in body["detail"]["detail"]["issue"], body
    # 401s are never signed (observed WeChat behaviour), but always carry a Request-ID.
    assert "Wechatpay-Signature" not in resp.headers
    assert resp.headers["Request-ID"]
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    return body


def _nonce_still_usable(http: httpx.Client, world: World, nonce: str) -> None:
    resp = ApiClient(http, world, SP_B).get(CERTS, nonce=nonce)
    assert resp.status_code == 200, resp.text
    assert "Wechatpay-Signature" in resp.headers


# --- 1. headers -> 400 INVALID_REQUEST --------------------------------------------------------


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("override", "field", "issue"),
    [
        ({"Accept": None}, "Accept", "missing Accept header"),
        ({"Accept": "text/html"}, "Accept", "Accept must admit application/json, got 'text/html'"),
        ({"Accept": "text/xml, image/png"}, "Accept", "Accept must admit application/json"),
        ({"User-Agent": ""}, "User-Agent", "missing User-Agent header"),
        ({"User-Agent": "   "}, "User-Agent", "missing User-Agent header"),
    ],
)
def test_bad_headers_are_invalid_request(
    api: TestClient, world: World, override: dict[str, str | None], field: str, issue: str
) -> None:
    signed = sign_request(world.merchants[SP_B], "GET", CERTS)
    resp = _send(api, signed, **override)
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["code"] == "INVALID_REQUEST"
    assert body["message"].startswith(f"Http头{field}缺失或无效")
    assert body["detail"] == {"field": field, "location": "header", "issue": body["detail"]["issue"]}
    assert issue in body["detail"]["issue"]
    assert "Wechatpay-Signature" not in resp.headers and resp.headers["Request-ID"]
    _nonce_still_usable(api, world, signed.headers["Authorization"].split('nonce_str="')[1].split('"')[0])


@SQLITE_ONLY
def test_missing_user_agent_header_entirely(api: TestClient, world: World) -> None:
    signed = sign_request(world.merchants[SP_B], "GET", CERTS)
    # httpx adds a default User-Agent; build the request and drop it.
    request = api.build_request("GET", CERTS, headers=signed.headers)
    del request.headers["User-Agent"]
    resp = api.send(request)
    assert resp.status_code == 400 and resp.json()["detail"]["field"] == "User-Agent"


def test_json_body_needs_json_content_type(api: TestClient, world: World) -> None:
    signed = sign_request(world.merchants[SP_B], "POST", "/v3/wxpartner-test/echo", {"name": "x"})
    for ctype in ("text/plain", None, "application/xml"):
        resp = _send(api, signed, **{"Content-Type": ctype})
        assert resp.status_code == 400, resp.text
        body = resp.json()
        assert body["code"] == "INVALID_REQUEST" and body["detail"]["field"] == "Content-Type"
    # the nonce was not burned by any of these
    resp = _send(api, signed)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"name": "x", "count": 0, "mchid": SP_B}


@SQLITE_ONLY
@pytest.mark.parametrize(
    "accept",
    ["application/json", "*/*", "application/*", "text/plain, application/json;q=0.9", "APPLICATION/JSON"],
)
def test_accept_values_admitting_json(api: TestClient, world: World, accept: str) -> None:
    resp = ApiClient(api, world, SP_B).get(CERTS, headers={"Accept": accept})
    assert resp.status_code == 200, resp.text


@SQLITE_ONLY
def test_content_type_json_on_get_is_accepted(api: TestClient, world: World) -> None:
    resp = ApiClient(api, world, SP_B).get(CERTS, headers={"Content-Type": "application/json; charset=utf-8"})
    assert resp.status_code == 200, resp.text


# --- 2. Authorization present and well-formed ------------------------------------------------


@SQLITE_ONLY
def test_missing_authorization(api: TestClient, world: World) -> None:
    signed = sign_request(world.merchants[SP_B], "GET", CERTS)
    resp = _send(api, signed, Authorization=None)
    _sign_error(
        resp, field="Authorization", message="Http头Authorization缺失", issue="missing Authorization header"
    )


@SQLITE_ONLY
def test_duplicate_authorization_header(api: TestClient, world: World) -> None:
    signed = sign_request(world.merchants[SP_B], "GET", CERTS)
    headers = [(k, v) for k, v in signed.headers.items()] + [
        ("Authorization", signed.headers["Authorization"])
    ]
    resp = api.request("GET", CERTS, headers=headers)
    _sign_error(resp, field="Authorization", message="Http头Authorization重复", issue="more than once")
    _nonce_still_usable(api, world, signed.headers["Authorization"].split('nonce_str="')[1].split('"')[0])


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("mutate", "issue"),
    [
        (lambda a: a.replace("WECHATPAY2-SHA256-RSA2048", "WECHATPAY2-SM2-WITH-SM3"), "unsupported scheme"),
        (lambda a: a.replace("WECHATPAY2-SHA256-RSA2048 ", "WECHATPAY2-SHA256-RSA2048"), NO_PARAMETERS),
        (
            lambda a: a.replace('mchid="', "mchid=").replace('",nonce_str', ",nonce_str", 1),
            "malformed parameter",
        ),
        (lambda a: a + ',mchid="1230000002"', "duplicate parameter 'mchid'"),
        (lambda a: a + ',foo="bar"', "unknown parameter 'foo'"),
        (lambda a: a.split(",signature=")[0], "missing parameter(s): signature"),
        (lambda a: a.replace('timestamp="', 'timestamp="x'), "timestamp must be decimal Unix seconds"),
        (lambda a: "WECHATPAY2-SHA256-RSA2048", NO_PARAMETERS),
        (lambda a: "", NO_PARAMETERS),
    ],
)
def test_malformed_authorization(api: TestClient, world: World, mutate: Any, issue: str) -> None:
    signed = sign_request(world.merchants[SP_B], "GET", CERTS)
    resp = _send(api, signed, Authorization=mutate(signed.headers["Authorization"]))
    body = _sign_error(resp, field="Authorization", message=MALFORMED, issue=issue)
    assert "sign_information" not in body["detail"]
    _nonce_still_usable(api, world, signed.headers["Authorization"].split('nonce_str="')[1].split('"')[0])


@pytest.mark.parametrize("key", ["mchid", "serial_no"])
def test_a_control_character_in_mchid_or_serial_is_sign_error_not_500(
    api: TestClient, world: World, key: str
) -> None:
    """Over HTTP the server's parser refuses a NUL in a header; in-process (ASGI) it reached the lookup,
    and PostgreSQL answered 500."""
    signed = sign_request(world.merchants[SP_B], "GET", CERTS)
    header = signed.headers["Authorization"].replace(f'{key}="', f'{key}="\x00', 1)
    resp = _send(api, signed, Authorization=header)
    _sign_error(resp, field="Authorization", message=MALFORMED, issue=f"{key} must be printable")


@pytest.mark.parametrize(
    ("nonce", "timestamp", "issue"),
    [
        ("N" * 65, None, "nonce_str must be 1-64 printable ASCII characters (got 65)"),
        ("N" * 4000, None, "nonce_str must be 1-64"),
        (None, "9" * 5000, "timestamp must be decimal Unix seconds"),
    ],
)
def test_oversized_nonce_or_timestamp_is_sign_error_not_500(
    api: TestClient, world: World, nonce: str | None, timestamp: str | None, issue: str
) -> None:
    """Found by this suite: both used to answer 500 (PostgreSQL column overflow; int() digit limit)."""
    signed = sign_request(world.merchants[SP_B], "GET", CERTS, nonce=nonce)
    auth = signed.headers["Authorization"]
    if timestamp is not None:
        auth = auth.split(',timestamp="')[0] + f',timestamp="{timestamp}",' + auth.split('",', 3)[-1]
    _sign_error(_send(api, signed, Authorization=auth), field="Authorization", message=MALFORMED, issue=issue)


def test_64_character_nonce_is_recorded(api: TestClient, world: World) -> None:
    nonce = "n" * 64
    assert ApiClient(api, world, SP_B).get(CERTS, nonce=nonce).status_code == 200
    _sign_error(
        ApiClient(api, world, SP_B).get(CERTS, nonce=nonce),
        field="nonce_str",
        message="请求重放，nonce_str已使用",
    )


# --- 3. merchant and certificate -------------------------------------------------------------


def test_unknown_mchid(api: TestClient, world: World) -> None:
    signed = sign_request(world.merchants[SP_B], "GET", CERTS, mchid="1999999999")
    _sign_error(
        _send(api, signed), field="mchid", message="商户号不存在或未注册", issue="unknown mchid '1999999999'"
    )


def test_unknown_serial(api: TestClient, world: World) -> None:
    nonce = new_nonce()
    signed = sign_request(world.merchants[SP_B], "GET", CERTS, serial_no="ABCDEF0123", nonce=nonce)
    _sign_error(
        _send(api, signed),
        field="serial_no",
        message="商户证书序列号有误",
        issue=f"serial_no 'ABCDEF0123' is not a certificate registered to mchid {SP_B}",
    )
    _nonce_still_usable(api, world, nonce)


def _spellings(serial: str) -> list[tuple[str, str]]:
    pairs = [serial[i : i + 2] for i in range(0, len(serial), 2)]
    return [
        (serial.lower(), "in lower case"),
        (str(int(serial, 16)), "in decimal"),
        ("serial=0" + serial, "as OpenSSL prints it"),
        (":".join(pairs).lower(), "as OpenSSL prints it"),
    ]


def test_a_misspelt_serial_is_refused_naming_the_serial_it_spells(
    api: TestClient, quiet_http: TestClient, world: World
) -> None:
    """Decimal (Go's big.Int.String(), Java's BigInteger.toString()), lower case and OpenSSL's form
    stay unknown serials, as WeChat Pay compares them, and the refusal says which serial was meant."""
    m = world.merchants[SP_B]
    for sent, how in _spellings(m.serial_no):
        nonce = new_nonce()
        signed = sign_request(m, "GET", CERTS, serial_no=sent, nonce=nonce)
        body = _sign_error(_send(api, signed), field="serial_no", message="商户证书序列号有误")
        issue = body["detail"]["detail"]["issue"]
        assert f"it is the registered serial {m.serial_no} written {how}" in issue, (sent, issue)
        _nonce_still_usable(api, world, nonce)
        # --no-explain: the plain refusal, and nothing is read to explain it
        quiet = _sign_error(_send(quiet_http, signed), field="serial_no", message="商户证书序列号有误")
        assert "registered serial" not in quiet["detail"]["detail"]["issue"]
    # a serial that spells none of the merchant's (here another merchant's) gets no hint
    other = sign_request(m, "GET", CERTS, serial_no=world.merchants[SP_A].serial_no.lower())
    body = _sign_error(_send(api, other), field="serial_no", message="商户证书序列号有误")
    assert "registered serial" not in body["detail"]["detail"]["issue"]


def test_serial_of_another_merchant(api: TestClient, world: World) -> None:
    other = world.merchants[SP_A]
    signed = sign_request(
        world.merchants[SP_B], "GET", CERTS, serial_no=other.serial_no, private_key=other.private_key
    )
    _sign_error(
        _send(api, signed),
        field="serial_no",
        message="商户证书序列号有误",
        issue="not a certificate registered",
    )


def test_revoked_certificate(api: TestClient, world: World) -> None:
    m = world.merchants[SP_B]
    assert ApiClient(api, world, SP_B).get(CERTS).status_code == 200
    revoke = api.post(
        f"/sandbox/certificates/{m.serial_no}/revoke", headers={"Authorization": f"Bearer {SANDBOX_TOKEN}"}
    )
    assert revoke.status_code == 200 and revoke.json() == {"serial_no": m.serial_no, "revoked": True}
    nonce = new_nonce()
    resp = ApiClient(api, world, SP_B).get(CERTS, nonce=nonce)
    _sign_error(
        resp, field="serial_no", message="商户证书已作废", issue=f"certificate {m.serial_no} has been revoked"
    )
    # other merchants are unaffected (and the refused nonce was not burned)
    assert ApiClient(api, world, SP_A).get(CERTS, nonce=nonce).status_code == 404


def test_a_serial_given_a_new_key_is_checked_against_the_new_key(
    api: TestClient, app: WxPartnerApp, world: World
) -> None:
    """A serial re-registered with another key (sandbox upload): nothing remembered of the old key
    (parsed keys are cached in-process) lets a request signed with it in."""
    m = world.merchants[SP_B]
    assert ApiClient(api, world, SP_B).get(CERTS).status_code == 200  # the old key is parsed and cached
    new_key = k.generate_private_key()
    with app.state.db.write() as conn:
        registry.add_certificate(conn, SP_B, m.serial_no, k.public_key_pem(new_key.public_key()))
    nonce = new_nonce()
    _sign_error(
        _send(api, sign_request(m, "GET", CERTS, nonce=nonce)),  # signed with the replaced key
        field="signature",
        message="错误的签名，验签失败",
        issue="sign not match",
    )
    assert _send(api, sign_request(m, "GET", CERTS, nonce=nonce, private_key=new_key)).status_code == 200
    # and the other way round: the new key is remembered now, the old one stays refused
    _sign_error(_send(api, sign_request(m, "GET", CERTS)), field="signature", message="错误的签名，验签失败")


# --- 4. timestamp -----------------------------------------------------------------------------


@pytest.mark.parametrize(("offset", "direction"), [(-301, "behind"), (301, "ahead of"), (-100_000, "behind")])
def test_timestamp_outside_window(api: TestClient, world: World, offset: int, direction: str) -> None:
    nonce = new_nonce()
    # Whole seconds rounded away from now, so the request is at least |offset| s off when signed (int()
    # would make "301 ahead" only 300.x ahead, and a busy machine's delay would bring it inside).
    now = time.time()
    stamp = (math.ceil(now) if offset > 0 else math.floor(now)) + offset
    signed = sign_request(world.merchants[SP_B], "GET", CERTS, timestamp=stamp, nonce=nonce)
    body = _sign_error(
        _send(api, signed), field="timestamp", message="请求时间戳已过期或无效", issue=direction
    )
    assert "allowed ±300s" in body["detail"]["detail"]["issue"]
    _nonce_still_usable(api, world, nonce)


@pytest.mark.parametrize("offset", [-290, 290])
def test_timestamp_inside_window(api: TestClient, world: World, offset: int) -> None:
    resp = ApiClient(api, world, SP_B).get(CERTS, timestamp=int(time.time()) + offset)
    assert resp.status_code == 200, resp.text


# --- 5. nonce replay --------------------------------------------------------------------------


def test_replayed_nonce(api: TestClient, world: World) -> None:
    client = ApiClient(api, world, SP_B)
    signed = sign_request(world.merchants[SP_B], "GET", CERTS)
    assert _send(api, signed).status_code == 200
    nonce = signed.headers["Authorization"].split('nonce_str="')[1].split('"')[0]
    body = _sign_error(
        _send(api, signed), field="nonce_str", message="请求重放，nonce_str已使用", issue="replayed request"
    )
    assert nonce in body["detail"]["detail"]["issue"]
    # the span it names is how long a nonce is remembered, 2 x the 300 s window (it said 300 s, while a
    # nonce first used 590 s ago, under a timestamp 299 s ahead, is refused too)
    assert "already used within the last 600s" in body["detail"]["detail"]["issue"]
    # the same nonce freshly signed (new timestamp) is still a replay
    _sign_error(
        client.get(CERTS, nonce=nonce, timestamp=int(time.time()) - 5),
        field="nonce_str",
        message="请求重放，nonce_str已使用",
    )
    # a replay with a forged signature is reported as a replay (the order puts 5 before 6)
    forged = sign_request(world.merchants[SP_B], "GET", CERTS, nonce=nonce, private_key=world.other_key)
    _sign_error(_send(api, forged), field="nonce_str", message="请求重放，nonce_str已使用")
    # nonces are per merchant
    assert ApiClient(api, world, SP_A).get(CERTS, nonce=nonce).status_code == 404


def test_the_nonce_table_forgets_only_nonces_no_replay_can_reach(
    api: TestClient, app: WxPartnerApp, world: World
) -> None:
    """PostgreSQL keeps nonces in request_nonces, pruned every so many requests (every one here): a
    nonce is kept 2 × the window (600 s), the longest an accepted timestamp can be replayed, plus
    CLOCK_MARGIN_S (60 s) for hosts whose clocks differ (test_security_replay_skew.py)."""
    db = app.state.db
    if db.replay_window is not None:
        pytest.skip("SQLite on a file keeps nonces in its shared-memory window (test_replay_window.py)")
    app.state.verifier = Verifier(db, time_window=300, prune_every=1)
    now = time.time()
    with db.write() as conn:
        sandbox.record_nonce(conn, SP_B, "seen-670s-ago", now - 670)
        sandbox.record_nonce(conn, SP_B, "seen-650s-ago", now - 650)
        sandbox.record_nonce(conn, SP_B, "seen-590s-ago", now - 590)
    client = ApiClient(api, world, SP_B)
    just_used = new_nonce()
    assert client.get(CERTS, nonce=just_used).status_code == 200  # recorded, then the table is pruned
    assert client.get(CERTS).status_code == 200  # and pruned again
    replay = "请求重放，nonce_str已使用"
    _sign_error(client.get(CERTS, nonce=just_used), field="nonce_str", message=replay)
    _sign_error(client.get(CERTS, nonce="seen-590s-ago"), field="nonce_str", message=replay, issue="600s")
    _sign_error(client.get(CERTS, nonce="seen-650s-ago"), field="nonce_str", message=replay)  # the margin
    assert client.get(CERTS, nonce="seen-670s-ago").status_code == 200


# --- 6. signature -----------------------------------------------------------------------------


def _expect_mismatch(resp: httpx.Response, method: str, url: str, expected: bytes) -> dict[str, Any]:
    body = _sign_error(resp, field="signature", message="错误的签名，验签失败", issue="sign not match")
    info = body["detail"]["sign_information"]
    assert info == {
        "method": method,
        "url": url,
        "sign_message_length": len(expected),
        "truncated_sign_message": expected.decode(),
    }
    return body


def test_signature_by_wrong_key(api: TestClient, world: World) -> None:
    nonce = new_nonce()
    signed = sign_request(
        world.merchants[SP_B], "GET", CERTS + "?algorithm_type=RSA", private_key=world.other_key, nonce=nonce
    )
    _expect_mismatch(_send(api, signed), "GET", CERTS + "?algorithm_type=RSA", signed.message)
    _nonce_still_usable(api, world, nonce)


def _signed_target(keys: MerchantKeys, target: str) -> tuple[dict[str, str], bytes]:
    """GET headers signed over exactly ``target`` (sign_request drops a bare '?', as urlsplit does)."""
    ts, nonce = str(int(time.time())), new_nonce()
    message = request_message("GET", target, ts, nonce, b"")
    auth = Authorization(keys.mchid, nonce, ts, keys.serial_no, sign(keys.private_key, message))
    headers = {"Authorization": auth.header_value(), "Accept": "application/json", "User-Agent": "t/1"}
    return headers, message


# A URL written with a bare '?' is sent as "/v3/certificates?"; Go's url.RequestURI() signs it that way,
# other libraries sign the path without it. Both verify; a signature over anything else does not.
# Over real HTTP: uvicorn's ASGI scope (and Starlette's TestClient) cannot tell "/x?" from "/x", so the
# serving protocol marks it (server/http_protocol.py).
def test_a_bare_question_mark_verifies_signed_with_or_without_it(
    live_server: LiveServer, world: World
) -> None:
    keys = world.merchants[SP_B]
    with httpx.Client(base_url=live_server.url) as http:
        for signed_as in (CERTS + "?", CERTS):
            headers, _ = _signed_target(keys, signed_as)
            resp = http.get(CERTS + "?", headers=headers)
            assert resp.status_code == 200, (signed_as, resp.text)
            assert_signed(resp, world)

        headers, _ = _signed_target(keys, CERTS + "?")  # signed with it, sent without it
        ts = headers["Authorization"].split('timestamp="')[1].split('"')[0]
        nonce = headers["Authorization"].split('nonce_str="')[1].split('"')[0]
        _expect_mismatch(
            http.get(CERTS, headers=headers), "GET", CERTS, request_message("GET", CERTS, ts, nonce, b"")
        )

        wrong = dataclasses.replace(keys, private_key=world.other_key)
        headers, message = _signed_target(wrong, CERTS + "?")  # a mismatch shows the target as received
        _expect_mismatch(http.get(CERTS + "?", headers=headers), "GET", CERTS + "?", message)


@SQLITE_ONLY
def test_signature_not_base64(api: TestClient, world: World) -> None:
    signed = sign_request(world.merchants[SP_B], "GET", CERTS)
    auth = signed.headers["Authorization"].split(',signature="')[0] + ',signature="!!!not-base64!!!"'
    _expect_mismatch(_send(api, signed, Authorization=auth), "GET", CERTS, signed.message)


def test_body_changed_after_signing_shows_the_message_received(api: TestClient, world: World) -> None:
    signed = sign_request(world.merchants[SP_B], "POST", "/v3/wxpartner-test/echo", {"name": "甲"})
    changed = dataclasses.replace(signed, body=signed.body.replace(b"}", b" }"))
    ts, nonce = signed.message.split(b"\n")[2:4]
    server_message = request_message(
        "POST", "/v3/wxpartner-test/echo", ts.decode(), nonce.decode(), changed.body
    )
    _expect_mismatch(_send(api, changed), "POST", "/v3/wxpartner-test/echo", server_message)
    # the body is verified from the exact bytes: the original, unchanged, passes with the same nonce
    resp = _send(api, signed)
    assert resp.status_code == 200 and resp.json()["name"] == "甲"
    assert_signed(resp, world)


@SQLITE_ONLY
def test_query_reordered_after_signing(api: TestClient, world: World) -> None:
    signed = sign_request(world.merchants[SP_B], "GET", CERTS + "?algorithm_type=RSA&x=1")
    moved = dataclasses.replace(signed, url=CERTS + "?x=1&algorithm_type=RSA")
    body = _sign_error(_send(api, moved), field="signature", message="错误的签名，验签失败")
    assert body["detail"]["sign_information"]["url"] == CERTS + "?x=1&algorithm_type=RSA"


@SQLITE_ONLY
def test_method_changed_after_signing(api: TestClient, world: World) -> None:
    signed = sign_request(world.merchants[SP_B], "GET", "/v3/wxpartner-test/empty")
    as_post = dataclasses.replace(signed, method="POST")
    body = _sign_error(_send(api, as_post), field="signature", message="错误的签名，验签失败")
    info = body["detail"]["sign_information"]
    assert info["method"] == "POST"
    assert info["truncated_sign_message"] == "POST" + signed.message.decode()[3:]


@SQLITE_ONLY
def test_percent_encoded_path_signed_raw(api: TestClient, world: World) -> None:
    """A request signed over a decoded path is refused; the raw (encoded) form is what counts."""
    signed = sign_request(world.merchants[SP_B], "GET", CERTS + "?q=%E4%B8%AD")
    assert _send(api, signed).status_code == 200
    decoded = sign_request(world.merchants[SP_B], "GET", CERTS + "?q=中")
    wire = dataclasses.replace(decoded, url=CERTS + "?q=%E4%B8%AD")
    body = _sign_error(_send(api, wire), field="signature", message="错误的签名，验签失败")
    assert body["detail"]["sign_information"]["url"] == CERTS + "?q=%E4%B8%AD"


# --- order of the checks ----------------------------------------------------------------------


@SQLITE_ONLY
def test_order_headers_before_authorization(api: TestClient, world: World) -> None:
    signed = sign_request(world.merchants[SP_B], "GET", CERTS, mchid="1999999999")
    resp = _send(api, signed, Accept="text/html")
    assert resp.status_code == 400 and resp.json()["code"] == "INVALID_REQUEST"


def test_order_merchant_before_timestamp_before_signature(api: TestClient, world: World) -> None:
    old = int(time.time()) - 3600
    unknown = sign_request(
        world.merchants[SP_B], "GET", CERTS, mchid="1999999999", timestamp=old, private_key=world.other_key
    )
    assert _send(api, unknown).json()["detail"]["field"] == "mchid"
    stale = sign_request(world.merchants[SP_B], "GET", CERTS, timestamp=old, private_key=world.other_key)
    assert _send(api, stale).json()["detail"]["field"] == "timestamp"


# --- responses to authenticated requests ------------------------------------------------------


@SQLITE_ONLY
def test_error_after_authentication_is_signed(api: TestClient, world: World) -> None:
    resp = ApiClient(api, world, SP_B).get(CERTS + "?algorithm_type=BOGUS")
    assert resp.status_code == 400
    body = resp.json()
    assert body["code"] == "PARAM_ERROR" and body["detail"]["location"] == "query"
    assert body["detail"]["field"] == "algorithm_type"
    assert_signed(resp, world)


@SQLITE_ONLY
def test_204_is_signed_over_empty_body(api: TestClient, world: World) -> None:
    resp = ApiClient(api, world, SP_B).post("/v3/wxpartner-test/empty")
    assert resp.status_code == 204 and resp.content == b""
    assert "Content-Type" not in resp.headers
    assert_signed(resp, world)


@SQLITE_ONLY
def test_body_not_json_is_param_error(api: TestClient, world: World) -> None:
    client = ApiClient(api, world, SP_B)
    for raw, issue in ((b'{"name": ', "not valid JSON"), (b"[1,2]", "JSON object"), (b"  ", "required")):
        resp = client.post("/v3/wxpartner-test/echo", raw, headers={"Content-Type": "application/json"})
        assert resp.status_code == 400, (raw, resp.text)
        body = resp.json()
        assert body["code"] == "PARAM_ERROR" and issue in body["detail"]["issue"], body
        assert_signed(resp, world)
    resp = client.post("/v3/wxpartner-test/echo", {"count": 1})
    assert resp.status_code == 400 and resp.json()["detail"]["field"] == "/name"


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("body", "field", "issue", "value"),
    [
        ({"count": 1}, "/name", "is required", None),
        # a validator's message without pydantic's "Value error, " prefix; other messages whole
        ({"name": "x", "count": -1}, "/count", "must not be negative", -1),
        ({"name": "x", "count": "x"}, "/count", "Input should be a valid integer", "x"),
        # a value is echoed up to 64 characters (as the control API), longer ones cut there and marked;
        # nested objects not at all
        ({"name": "x", "count": "c" * 64}, "/count", "Input should be", "c" * 64),
        ({"name": "x", "count": "c" * 65}, "/count", "Input should be", "c" * 64 + "…"),
        ({"name": {"nested": 1}}, "/name", "Input should be a valid string", None),
        # characters beyond U+FFFF (not U+FFFF itself) are refused, keys named as JSON pointers
        ({"name": "a\U00010000"}, "/name", "characters outside the 1–3 byte", "a\U00010000"),
        ({"name": "a\uffff", "zz": "b\U00010000"}, "/zz", "characters outside the 1–3 byte", "b\U00010000"),
        ({"name": "x", "we/ird~field": "\x00"}, "/we~1ird~0field", "the NUL character", "\x00"),
        ("\x00", "/", "the NUL character", "\x00"),
    ],
)
def test_body_refusals_name_the_field_the_issue_and_the_value(
    api: TestClient, world: World, body: Any, field: str, issue: str, value: Any
) -> None:
    resp = ApiClient(api, world, SP_B).post("/v3/wxpartner-test/echo", json.dumps(body).encode())
    assert resp.status_code == 400, resp.text
    err = resp.json()
    assert err["code"] == "PARAM_ERROR"
    detail = err["detail"]
    assert detail["field"] == field and detail["location"] == "body", detail
    assert detail["issue"].startswith(issue), detail
    assert detail.get("value") == value


@SQLITE_ONLY
def test_body_verified_from_exact_bytes(api: TestClient, world: World) -> None:
    raw = b'{ "count" : 2,\n  "name":"\\u4e2d" }'
    resp = ApiClient(api, world, SP_B).post("/v3/wxpartner-test/echo", raw)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"name": "中", "count": 2, "mchid": SP_B}


@SQLITE_ONLY
def test_unknown_route_and_wrong_method(api: TestClient) -> None:
    resp = api.get("/v3/no/such/thing")
    assert resp.status_code == 404
    assert resp.json()["code"] == "NOT_FOUND" and "/v3/no/such/thing" in resp.json()["message"]
    assert resp.headers["Request-ID"]
    resp = api.post(CERTS)
    assert resp.status_code == 405
    assert resp.json()["code"] == "METHOD_NOT_ALLOWED" and resp.json()["detail"]["allowed"] == ["GET"]
    assert resp.headers["Allow"] == "GET"


# --- explain off ------------------------------------------------------------------------------


@pytest.fixture
def quiet_http(settings: Settings) -> Iterator[TestClient]:
    application = create_app(dataclasses.replace(settings, explain=False))
    with TestClient(application, base_url="http://testserver") as client:
        yield client
    application.state.db.dispose()


def test_explain_off_has_no_sign_information(quiet_http: TestClient, world: World) -> None:
    nonce = new_nonce()
    signed = sign_request(world.merchants[SP_B], "GET", CERTS, private_key=world.other_key, nonce=nonce)
    body = _sign_error(
        _send(quiet_http, signed), field="signature", message="错误的签名，验签失败", issue="sign not match"
    )
    assert "sign_information" not in body["detail"]
    assert "sign_information" not in str(body)
    _nonce_still_usable(quiet_http, world, nonce)


def test_a_bug_while_verifying_is_a_system_error_with_a_request_id(
    app: WxPartnerApp, http: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a database error was caught while verifying: anything else (a bug) went up to uvicorn,
    which answered its own plain-text 500, with no Request-ID and nothing in the journal."""

    def broken(_req: Any) -> Any:
        raise RuntimeError("a bug in verification")

    monkeypatch.setattr(app.state.verifier, "verify", broken)
    resp = http.get("/v3/certificates")
    assert resp.status_code == 500, resp.text
    assert resp.json()["code"] == "SYSTEM_ERROR"
    request_id = resp.headers["Request-ID"]
    entry = http.get(f"/sandbox/journal/{request_id}", headers={"Authorization": f"Bearer {SANDBOX_TOKEN}"})
    assert entry.status_code == 200 and entry.json()["status"] == 500, entry.text
