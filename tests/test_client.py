"""The SDK against the real server in-process (Starlette TestClient / httpx ASGI transport: real
ASGI, no port), on SQLite and PostgreSQL: key modes, typed errors with Request-ID, certificate download
and refresh on rotation, sandbox faults, callbacks, one call per operation, async parity."""

from __future__ import annotations

import datetime as dt
import http.client
import inspect
import io
import json
import pickle
import pydoc
import textwrap
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.testclient import TestClient

from a1_support import a1_body
from live import free_port
from support import APIV3_KEY, SECOND_A, SP_A, SP_B, SP_C, SUB_A, SUB_B, World
from webizpay_support import future, link_token
from wxpartner.client import (
    NO_RETRIES,
    AsyncClient,
    Client,
    ClientClosedError,
    ConfigurationError,
    DecodeError,
    KeySet,
    NotFoundError,
    ParamError,
    RetryPolicy,
    ServerError,
    TransportError,
    VerificationError,
    WxPayError,
    parse_notification,
)
from wxpartner.client.notifications import typed_resource
from wxpartner.models import webizpay as w
from wxpartner.models.recharge import RechargeEmployeeList
from wxpartner.protocol.keys import KeyLoadError, load_private_key
from wxpartner.protocol.notification import encrypt_resource, sign_notification
from wxpartner.server.app import WxPartnerApp
from wxpartner.server.families import ROUTE_MODULES
from wxpartner.server.journal import writer
from wxpartner.store import ops_repo

# Tests where the database plays no part run on SQLite only (indirect parametrization of the fixture).
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
FAST = RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_max=0.05)
FAULT = "Wechatpay-Sandbox-Fault"


def sdk(http: httpx.Client, world: World, mchid: str, **kw: Any) -> Client:
    """SP_A: public key; SP_B: certificates downloaded with the APIv3 key; SP_C: both (migrating)."""
    m = world.merchants[mchid]
    keys: dict[str, Any] = {}
    if mchid in (SP_A, SP_C):
        keys.update(
            wechatpay_public_key=world.platform_pub.public_key_pem,
            wechatpay_public_key_id=world.platform_pub.key_id,
        )
    if mchid in (SP_B, SP_C):
        keys["apiv3_key"] = APIV3_KEY
    kw.setdefault("retry", FAST)
    return Client(
        mchid, m.serial_no, m.private_key, base_url="http://testserver", http_client=http, **{**keys, **kw}
    )


def authorize(client: Client, control: TestClient, user_id: str, sp: str = SP_A, sub: str = SUB_A) -> str:
    link = client.webizpay.users.authorization_url(
        user_id, {"sp_mchid": sp, "sub_mchid": sub, "application_type": "H5"}
    )
    assert link.authorization_url
    done = control.post(
        "/sandbox/webizpay/authorizations", json={"token": link_token(link.authorization_url)}
    )
    assert done.status_code == 200, done.text
    return str(done.json()["employee_id"])


# -- key modes and verification ------------------------------------------------------------------------------
@SQLITE_ONLY
def test_public_key_mode_verifies_with_the_pub_key_id(http: TestClient, world: World) -> None:
    client = sdk(http, world, SP_A)
    resp = client.request(
        "GET", f"/v3/webizpay/users/user_0001/authorization-state?sp_mchid={SP_A}&sub_mchid={SUB_A}"
    )
    assert resp.verified_by == world.platform_pub.key_id
    assert client.keys.certificate_serials == []  # nothing downloaded: public-key mode needs no certificates


def test_certificate_mode_downloads_certificates_lazily_and_refreshes_on_rotation(
    http: TestClient, control: TestClient, world: World
) -> None:
    client = sdk(http, world, SP_B, refresh_backoff=0)
    assert client.keys.certificate_serials == []
    first = client.request("GET", "/v3/certificates")
    assert first.verified_by == world.platform_cert.key_id
    assert client.keys.certificate_serials == [world.platform_cert.key_id]

    rotated = control.post("/sandbox/platform-keys/rotate", json={"kind": "certificate"})
    assert rotated.status_code == 200, rotated.text
    new_serial = rotated.json()["key_id"]
    answer = client.webizpay.users.authorization_state("user_0001", sp_mchid=SP_B, sub_mchid=SUB_B)
    assert answer.user_id == "user_0001"
    assert new_serial in client.keys.certificate_serials  # an unknown serial triggered one refresh
    assert world.platform_cert.key_id in client.keys.certificate_serials  # the old one stays trusted


@SQLITE_ONLY
def test_concurrent_first_calls_download_certificates_once(
    app: WxPartnerApp, http: TestClient, world: World
) -> None:
    downloads: list[str] = []
    app.state.observers.append(lambda ctx, req, resp, rid, op_id, *rest: downloads.append(op_id))
    client = sdk(http, world, SP_B)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            client.webizpay.users.authorization_state("user_0001", sp_mchid=SP_B, sub_mchid=SUB_B)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert downloads.count("certificates.list") == 1


@SQLITE_ONLY
def test_forged_serials_cannot_make_the_client_hammer_certificates(
    app: WxPartnerApp, http: TestClient, world: World
) -> None:
    downloads: list[str] = []
    app.state.observers.append(lambda ctx, req, resp, rid, op_id, *rest: downloads.append(op_id))
    client = sdk(http, world, SP_B)
    headers, raw = _callback(world)
    for _ in range(3):
        forged = {**headers, "Wechatpay-Serial": "5157F09EFDC096DE15EBE81A47057A72ABCDEF12"}
        with pytest.raises(VerificationError) as info:
            client.parse_notification(forged, raw)
        assert info.value.reason == "unknown_serial" and "5157F09E" in str(info.value)
    assert downloads.count("certificates.list") == 1


@SQLITE_ONLY
def test_certificate_downloads_are_a_second_apart_and_a_missed_serial_waits_refresh_backoff(
    app: WxPartnerApp, http: TestClient, world: World
) -> None:
    """The README's two throttles, on the client's clock: a new forged serial each time cannot make
    downloads closer than 1 s, and a serial a download did not find waits 60 s (the default)."""
    downloads: list[str] = []
    app.state.observers.append(lambda ctx, req, resp, rid, op_id, *rest: downloads.append(op_id))
    now = [float(int(time.time()))]
    client = sdk(http, world, SP_B, clock=lambda: now[0])

    def forged(serial: str) -> int:
        headers, raw = _callback(world, ts=int(now[0]))
        with pytest.raises(VerificationError) as info:
            client.parse_notification({**headers, "Wechatpay-Serial": serial}, raw)
        assert info.value.reason == "unknown_serial"
        return downloads.count("certificates.list")

    first, second = "5157F09EFDC096DE15EBE81A47057A72ABCDEF01", "5157F09EFDC096DE15EBE81A47057A72ABCDEF02"
    assert forged(first) == 1
    assert forged(second) == 1  # another serial at once: the last download is not a second old
    now[0] += 1.0
    assert forged(second) == 2  # a second later it may
    now[0] += 58.0
    assert forged(first) == 2  # 59 s after the download that missed it
    now[0] += 1.0
    assert forged(first) == 3  # 60 s: looked up again


@SQLITE_ONLY
def test_migrating_merchant_trusts_both_key_kinds(http: TestClient, world: World) -> None:
    client = sdk(http, world, SP_C)
    resp = client.request("GET", "/v3/certificates")  # names PUB_KEY_ID in Wechatpay-Serial
    assert resp.verified_by == world.platform_pub.key_id
    assert client.refresh_certificates() == [world.platform_cert.key_id]


@SQLITE_ONLY
def test_public_key_merchant_with_apiv3_key_survives_the_404_of_certificates(
    http: TestClient, world: World
) -> None:
    """The most reported start-up failure of other SDKs: /v3/certificates answers 404 in public-key mode."""
    client = sdk(http, world, SP_A, apiv3_key=APIV3_KEY)
    assert client.refresh_certificates() == []
    client.request(
        "GET", f"/v3/webizpay/users/user_0001/authorization-state?sp_mchid={SP_A}&sub_mchid={SUB_A}"
    )


def test_client_needs_a_way_to_verify(world: World) -> None:
    m = world.merchants[SP_A]
    with pytest.raises(ConfigurationError, match="no way to verify"):
        Client(SP_A, m.serial_no, m.private_key_pem)
    with pytest.raises(ConfigurationError, match="PUB_KEY_ID"):
        Client(SP_A, m.serial_no, m.private_key_pem, wechatpay_public_key=world.platform_pub.public_key_pem)
    # The APIv3 key given but told not to download: the message said to pass apiv3_key.
    with pytest.raises(ConfigurationError) as info:
        Client(SP_A, m.serial_no, m.private_key_pem, apiv3_key=APIV3_KEY, download_certificates=False)
    assert "download_certificates=False leaves no WeChat Pay key" in str(info.value)
    assert "or apiv3_key" not in str(info.value)


def test_client_configuration_refusals_and_timeout_forms(world: World) -> None:
    m, pub = world.merchants[SP_A], world.platform_pub
    keys: dict[str, Any] = {"wechatpay_public_key": pub.public_key_pem, "wechatpay_public_key_id": pub.key_id}
    for mchid, serial in (("", m.serial_no), (SP_A, "")):
        with pytest.raises(ConfigurationError, match="mchid and serial_no"):
            Client(mchid, serial, m.private_key, **keys)
    with pytest.raises(ConfigurationError, match="download_certificates needs apiv3_key"):
        Client(SP_A, m.serial_no, m.private_key, download_certificates=True, **keys)
    # A key that cannot be read is a configuration error too (it was a bare ValueError that
    # ``except ConfigurationError`` / ``except WxPayError`` let through), naming the argument.
    broken = m.private_key_pem.replace("A", "B", 3)
    with pytest.raises(ConfigurationError, match=r"^private_key: not an unencrypted PEM RSA private key"):
        Client(SP_A, m.serial_no, broken, **keys)
    with pytest.raises(WxPayError, match="not a PEM RSA public key") as bad_public:
        Client(SP_A, m.serial_no, m.private_key, wechatpay_public_key=m.private_key_pem,
               wechatpay_public_key_id=pub.key_id)  # fmt: skip
    assert isinstance(bad_public.value, KeyLoadError | ConfigurationError)
    with pytest.raises(ConfigurationError, match="certificate"):
        AsyncClient(SP_A, m.serial_no, m.private_key, platform_certificates=[pub.public_key_pem])
    # A base_url that is no origin is refused at once. Without a scheme it failed at every call as a
    # TransportError saying the request had been sent; a path was dropped by the SDK's own HTTP and
    # kept by httpx (then the signature, over the API path alone, did not match).
    for url, says in (("127.0.0.1:8080", "must be http:// or https://"), ("ftp://h", "must be http://"),
                      ("http://h:port", "must be http://"), ("http://127.0.0.1:8080/wxpay", "without a path")):  # fmt: skip
        with pytest.raises(ConfigurationError, match=f"^base_url .*{says}"):
            Client(SP_A, m.serial_no, m.private_key, base_url=url, **keys)
        with pytest.raises(ConfigurationError, match=f"^backup_url .*{says}"):
            AsyncClient(SP_A, m.serial_no, m.private_key, backup_url=url, **keys)
    assert Client(
        SP_A, m.serial_no, m.private_key, base_url="HTTP://[::1]:8080/", **keys
    ).config.base_url == ("http://[::1]:8080")
    with pytest.raises(ConfigurationError, match="custom base_url needs backup_url"):
        Client(SP_A, m.serial_no, m.private_key, base_url="http://127.0.0.1:1", failover=True, **keys)
    given = Client(SP_A, m.serial_no, m.private_key, base_url="http://127.0.0.1:1/", failover=True,
                   backup_url="http://127.0.0.1:2/", **keys).config  # fmt: skip
    assert (given.base_url, given.backup_url) == ("http://127.0.0.1:1", "http://127.0.0.1:2")
    # README: "timeout=10 (seconds; connect is capped at 5 s) ... the default is 5 s connect, 30 s
    # read/write, 5 s pool"
    timeouts = {
        t: Client(SP_A, m.serial_no, m.private_key, timeout=t, **keys).config.timeout for t in (None, 10, 2)
    }
    assert timeouts[None] == httpx.Timeout(connect=5.0, read=30.0, write=30.0, pool=5.0)
    assert timeouts[10] == httpx.Timeout(10.0, connect=5.0) and timeouts[2] == httpx.Timeout(2.0)


@pytest.mark.parametrize("apiv3_key", ["short", "é" * 16, "é" * 32, "\x00" * 32])
def test_client_refuses_an_apiv3_key_that_is_no_aes_key(world: World, apiv3_key: str) -> None:
    """Found by an audit: 16 two-byte characters (32 UTF-8 bytes) were taken, and every callback
    then failed as "the callback body is not a WeChat Pay notification"."""
    m = world.merchants[SP_A]
    pub = world.platform_pub
    with pytest.raises(ConfigurationError, match="32 printable ASCII characters"):
        Client(
            SP_A,
            m.serial_no,
            m.private_key_pem,
            wechatpay_public_key=pub.public_key_pem,
            wechatpay_public_key_id=pub.key_id,
            apiv3_key=apiv3_key,
        )


@pytest.mark.parametrize("apiv3_key", ["short", "é" * 16])
def test_parse_notification_with_keys_refuses_an_apiv3_key_that_is_no_aes_key(
    world: World, apiv3_key: str
) -> None:
    """parse_notification(keys=..., apiv3_key=...) took any key and then refused the genuine
    callback as 'bad_resource: the callback body is not a WeChat Pay notification'."""
    from wxpartner.client import KeySet, parse_notification

    pub = world.platform_pub
    body = json.dumps(
        {
            "id": "EV-1",
            "event_type": "WEBIZPAY.REVOKED",
            "resource": encrypt_resource(APIV3_KEY, {"user_id": "u1"}, original_type="webizpay"),
        }
    ).encode()
    signed = sign_notification(
        body,
        private_key=load_private_key(pub.private_key_pem.encode()),
        key_id=pub.key_id,
        timestamp=int(time.time()),
        request_id="RID-1",
    )
    keys = KeySet(public_key=pub.public_key_pem, public_key_id=pub.key_id)
    with pytest.raises(ConfigurationError, match="32 printable ASCII characters"):
        parse_notification(signed.headers, body, keys=keys, apiv3_key=apiv3_key)
    # A refused callback is not called a response ("response verification failed" before).
    with pytest.raises(VerificationError) as refused:
        parse_notification(signed.headers, body + b" ", keys=keys, apiv3_key=APIV3_KEY)
    assert str(refused.value).startswith("verification failed (bad_signature): the signature does not")
    assert "callback" in str(refused.value) and "response" not in str(refused.value)
    assert parse_notification(signed.headers, body, keys=keys, apiv3_key=APIV3_KEY).plaintext == {
        "user_id": "u1"
    }


@pytest.mark.skipif("wxpartner.server.ops" not in ROUTE_MODULES, reason="fault injection not registered")
@pytest.mark.parametrize(
    ("fault", "reason"), [("BAD_SIGNATURE", "bad_signature"), ("SIGNATURE_PROBE", "probe")]
)
@SQLITE_ONLY
def test_sandbox_response_faults_are_refused(http: TestClient, world: World, fault: str, reason: str) -> None:
    client = sdk(http, world, SP_A)
    with pytest.raises(VerificationError) as info:
        client.request(
            "GET", "/v3/webizpay/avail-mch-ranges", query={"sp_mchid": SP_A}, headers={FAULT: fault}
        )
    assert info.value.reason == reason and info.value.request_id


@pytest.mark.skipif("wxpartner.server.ops" not in ROUTE_MODULES, reason="fault injection not registered")
@SQLITE_ONLY
def test_injected_system_error_is_retried_then_succeeds(
    http: TestClient, control: TestClient, world: World
) -> None:
    rule = control.post("/sandbox/faults", json={"kind": "SYSTEM_ERROR", "count": 1, "mchid": SP_A})
    assert rule.status_code == 201, rule.text
    client = sdk(http, world, SP_A)
    ranges = client.webizpay.ranges.list(sp_mchid=SP_A)
    assert ranges.sp_mchid == SP_A
    with pytest.raises(ServerError) as info:  # every attempt carries the header: retries run out
        client.request(
            "GET", "/v3/webizpay/avail-mch-ranges", query={"sp_mchid": SP_A}, headers={FAULT: "SYSTEM_ERROR"}
        )
    assert info.value.code == "SYSTEM_ERROR" and info.value.request_id


# -- typed errors -----------------------------------------------------------------------------------------------
@SQLITE_ONLY
def test_not_found_is_typed_and_carries_the_request_id(http: TestClient, world: World) -> None:
    client = sdk(http, world, SP_A)
    with pytest.raises(NotFoundError) as info:
        client.webizpay.quota_cards.get(
            "WeBizPay_nobody", "1068019671702503425", sp_mchid=SP_A, sub_mchid=SUB_A
        )
    err = info.value
    assert err.status == 404 and err.code == "RESOURCE_NOT_EXISTS" and err.message
    assert err.request_id and err.request_id in str(err)


@SQLITE_ONLY
def test_param_error_has_the_field_pointer(http: TestClient, world: World) -> None:
    client = sdk(http, world, SP_A)
    with pytest.raises(ParamError) as info:  # valid for the model, refused by the server (wrong sp)
        client.request("POST", "/v3/webizpay/users/user_0001/authorization-url", json={"sp_mchid": SP_A})
    assert info.value.status == 400 and isinstance(info.value.detail, dict) and info.value.detail.get("field")


@SQLITE_ONLY
def test_errors_cross_process_boundaries_intact(http: TestClient, world: World) -> None:
    """Users hand errors from worker processes to their parent (multiprocessing, concurrent.futures,
    Celery): every SDK error pickles with its attributes; before, ``cls(*args)`` missed the
    keyword-only arguments and the parent got a TypeError instead of the error."""
    client = sdk(http, world, SP_A)
    errors: list[WxPayError] = []
    with pytest.raises(NotFoundError) as nf:
        client.webizpay.quota_cards.get("WeBizPay_nobody", "1", sp_mchid=SP_A, sub_mchid=SUB_A)
    errors.append(nf.value)
    with pytest.raises(ParamError) as pe:
        client.request("POST", "/v3/webizpay/users/user_0001/authorization-url", json={"sp_mchid": SP_A})
    errors.append(pe.value)
    headers, raw = _callback(world)
    with pytest.raises(VerificationError) as ve:
        sdk(http, world, SP_C).parse_notification(headers, raw + b" ")
    errors.append(ve.value)
    closed = Client(SP_A, world.merchants[SP_A].serial_no, world.merchants[SP_A].private_key,
                    base_url=f"http://127.0.0.1:{free_port()}", retry=NO_RETRIES,
                    wechatpay_public_key=world.platform_pub.public_key_pem,
                    wechatpay_public_key_id=world.platform_pub.key_id)  # fmt: skip
    with pytest.raises(TransportError) as te:
        closed.webizpay.ranges.list(sp_mchid=SP_A)
    errors.append(te.value)
    errors += [DecodeError("no fit", body=b"{}", request_id="r-1"), ConfigurationError("add apiv3_key")]
    for err in errors:
        copy = pickle.loads(pickle.dumps(err))
        assert type(copy) is type(err) and str(copy) == str(err) and copy.args == err.args
        assert vars(copy) == vars(err)
    api = pickle.loads(pickle.dumps(nf.value))
    assert (api.status, api.code, api.request_id) == (404, "RESOURCE_NOT_EXISTS", nf.value.request_id)
    assert pickle.loads(pickle.dumps(ve.value)).reason == "bad_signature"
    assert pickle.loads(pickle.dumps(te.value)).sent is False


@SQLITE_ONLY
def test_a_closed_client_refuses_calls_clearly_whatever_its_http(
    app: WxPartnerApp, http: TestClient, world: World
) -> None:
    """After close() / aclose() (twice is fine) every call raises ClientClosedError, with each kind of
    HTTP. Before, the own pool quietly opened connections nothing would close again, a client on the
    caller's http_client went on, and one on an owned httpx client raised a bare RuntimeError."""
    m = world.merchants[SP_A]
    keys: dict[str, Any] = {
        "wechatpay_public_key": world.platform_pub.public_key_pem,
        "wechatpay_public_key_id": world.platform_pub.key_id,
        "apiv3_key": APIV3_KEY,
    }
    own_pool = Client(SP_A, m.serial_no, m.private_key, base_url=f"http://127.0.0.1:{free_port()}", **keys)
    theirs = sdk(http, world, SP_A, apiv3_key=APIV3_KEY)
    owned = Client(
        SP_A, m.serial_no, m.private_key, transport=httpx.WSGITransport(app=lambda e, s: []), **keys
    )
    headers, raw = _callback(world)
    for client in (own_pool, theirs, owned):
        with client:
            pass
        client.close()  # closing twice is harmless
        with pytest.raises(ClientClosedError, match=f"Client for {SP_A} is closed"):
            client.webizpay.ranges.list(sp_mchid=SP_A)
        with pytest.raises(ClientClosedError):
            client.request("GET", "/v3/webizpay/avail-mch-ranges", query={"sp_mchid": SP_A})
        # nothing to send: a callback still verifies with the keys the client holds
        assert client.parse_notification(headers, raw).event_type == "WEBIZPAY.AUTHORIZED"
    assert not http.is_closed  # the caller's own HTTP client stays open

    async def main() -> None:
        own = AsyncClient(
            SP_A, m.serial_no, m.private_key, base_url=f"http://127.0.0.1:{free_port()}", **keys
        )
        asgi = AsyncClient(SP_A, m.serial_no, m.private_key, base_url="http://testserver",
                           transport=httpx.ASGITransport(app=app), **keys)  # fmt: skip
        for client in (own, asgi):
            async with client:
                if client is asgi:
                    assert (await client.webizpay.ranges.list(sp_mchid=SP_A)).range_list == []
            await client.aclose()
            with pytest.raises(ClientClosedError, match=f"AsyncClient for {SP_A} is closed"):
                await client.webizpay.ranges.list(sp_mchid=SP_A)
            with pytest.raises(RuntimeError):  # what httpx raises, for code written against it
                await client.request("GET", "/v3/webizpay/avail-mch-ranges", query={"sp_mchid": SP_A})

    anyio.run(main)


@SQLITE_ONLY
def test_models_refuse_bad_bodies_before_anything_is_sent(http: TestClient, world: World) -> None:
    client = sdk(http, world, SP_A)
    with pytest.raises(ValueError, match="amount"):
        client.webizpay.quota_cards.issue("WeBizPay_x", {"sp_mchid": SP_A, "amount": "100"})


# -- one call per operation -----------------------------------------------------------------------------------
def test_webizpay_w1_to_w8(http: TestClient, control: TestClient, world: World) -> None:
    client = sdk(http, world, SP_A)
    wz = client.webizpay
    employee_id = authorize(client, control, "user_0001")
    state = wz.users.authorization_state("user_0001", sp_mchid=SP_A, sub_mchid=SUB_A)
    assert [e.employee_id for e in state.employee_list or []] == [employee_id]

    body = w.IssueQuotaCardRequest(
        sp_mchid=SP_A, sub_mchid=SUB_A, card_template_id="template_123", amount=10000,
        card_name="报销额度卡", out_card_no="card_0001", effective_end_time=future(),
    )  # fmt: skip
    card = wz.quota_cards.issue(employee_id, body)
    assert isinstance(card, w.IssueQuotaCardResponse) and card.out_card_no == "card_0001"
    assert wz.quota_cards.issue(employee_id, body).card_no == card.card_no  # safe to repeat
    got = wz.quota_cards.get(employee_id, card.card_no, sp_mchid=SP_A, sub_mchid=SUB_A)
    assert got.card_state == "ACTIVE" and got.amount == 10000
    by_out = wz.quota_cards.get_by_out_card_no(employee_id, "card_0001", sp_mchid=SP_A, sub_mchid=SUB_A)
    assert by_out.card_no == card.card_no
    link = wz.quota_cards.payment_url(
        employee_id, card.card_no, sp_mchid=SP_A, sub_mchid=SUB_A, application_type="H5"
    )
    assert link.payment_url
    cancelled = wz.quota_cards.cancel(
        employee_id, card.card_no, {"sp_mchid": SP_A, "sub_mchid": SUB_A, "reason": "离职"}
    )
    assert cancelled.card_state == "DISABLED"
    revoked = wz.employees.revoke(employee_id, w.RevokeAuthorizationRequest(sp_mchid=SP_A, sub_mchid=SUB_A))
    assert revoked.authorization_state == "REVOKED" and revoked.user_id == "user_0001"


def test_webizpay_w9_to_w17(http: TestClient, world: World) -> None:
    client = sdk(http, world, SP_A)
    wz = client.webizpay
    batch = wz.stores.create_entity_match(
        {"sp_mchid": SP_A, "out_batch_id": "batch_0001",
         "match_details": [{"organization_code": "91440300MA5EXAMPLE", "store_name": "店", "product_type": "CODE_PAY"}]}
    )  # fmt: skip
    result = wz.stores.get_entity_match(batch.batch_id, sp_mchid=SP_A)
    assert result.batch_id == batch.batch_id
    proof = wz.bills.apply_proof(
        {"sp_mchid": SP_A, "sub_mchid": SUB_A, "start_date": _day(-5), "end_date": _day(-3),
         "out_operation_id": "proof_0001"}
    )  # fmt: skip
    assert proof.out_operation_id == "proof_0001" and proof.download_url
    assert wz.bills.download(proof.download_url)  # signed CSV, verified without the JSON rule
    bill = wz.bills.apply_trade_bill(
        {"sp_mchid": SP_A, "sub_mchid": SUB_A, "date": _day(-2), "type": "QYZFALL"}
    )
    assert bill.download_url
    created = wz.ranges.create({"sp_mchid": SP_A, "identifier_type": "ORGANIZATION_CODE"})
    assert [r.range_id for r in wz.ranges.list(sp_mchid=SP_A).range_list] == [created.range_id]
    wz.ranges.add_identifier(
        created.range_id, {"sp_mchid": SP_A, "merchant_identifier": "91440300MA5EXAMPLE"}
    )
    page = wz.ranges.list_identifiers(created.range_id, sp_mchid=SP_A, offset=0, limit=10)
    assert page.data == ["91440300MA5EXAMPLE"]
    gone = wz.ranges.delete_identifier(created.range_id, "91440300MA5EXAMPLE", {"sp_mchid": SP_A})
    assert gone.range_id == created.range_id
    assert wz.ranges.list_identifiers(created.range_id, sp_mchid=SP_A).data == []


@pytest.mark.skipif("wxpartner.server.routes.recharge" not in ROUTE_MODULES, reason="recharge not registered")
def test_w16_identifiers_walks_every_page_sync_and_async(
    app: WxPartnerApp, http: TestClient, world: World
) -> None:
    """W16 pages by offset/limit; ``ranges.identifiers`` walks all pages (``for`` / ``async for``), one
    request per page, stopping at a short page. Before, every user wrote this loop."""
    client = sdk(http, world, SP_A)
    wz = client.webizpay
    created = wz.ranges.create({"sp_mchid": SP_A, "identifier_type": "ORGANIZATION_CODE"})
    idents = [f"91440300MA5EXAM{i:03d}" for i in range(7)]
    for ident in idents:
        wz.ranges.add_identifier(created.range_id, {"sp_mchid": SP_A, "merchant_identifier": ident})
    calls = 0
    real_execute = client.execute

    def counting(call: Any) -> Any:
        nonlocal calls
        calls += 1
        return real_execute(call)

    client.execute = counting  # type: ignore[method-assign]
    walk = wz.ranges.identifiers(created.range_id, sp_mchid=SP_A, page_size=3)
    assert calls == 0  # lazy: nothing is asked before the first item is wanted
    seen = list(walk)
    assert sorted(seen) == idents and len(seen) == 7 and calls == 3  # 3 + 3 + 1
    assert list(inspect.signature(wz.ranges.identifiers).parameters) == [
        "range_id", "sp_mchid", "page_size", "timeout"
    ]  # fmt: skip
    empty = wz.ranges.create({"sp_mchid": SP_A, "identifier_type": "ORGANIZATION_CODE"})
    assert list(wz.ranges.identifiers(empty.range_id, sp_mchid=SP_A)) == []

    async def main() -> list[str]:
        m = world.merchants[SP_A]
        async with AsyncClient(
            SP_A, m.serial_no, m.private_key, base_url="http://testserver", transport=httpx.ASGITransport(app=app),
            wechatpay_public_key=world.platform_pub.public_key_pem, wechatpay_public_key_id=world.platform_pub.key_id,
        ) as aclient:  # fmt: skip
            return [
                i
                async for i in aclient.webizpay.ranges.identifiers(
                    created.range_id, sp_mchid=SP_A, page_size=2
                )
            ]

    assert anyio.run(main) == seen


def test_recharge_r1_to_r3(http: TestClient, world: World) -> None:
    client = sdk(http, world, SP_A)
    added = client.recharge_employees.add(
        {"sub_mchid": SECOND_A, "sp_openid": "oLTPCuCsfN3ABBz50VUZBNlHDbUU"}
    )
    assert added.state == "EFFECTIVE"
    listed = client.recharge_employees.list(SECOND_A)
    assert [e.sp_openid for e in listed.employees or []] == ["oLTPCuCsfN3ABBz50VUZBNlHDbUU"]
    deleted = client.recharge_employees.delete(SECOND_A, "oLTPCuCsfN3ABBz50VUZBNlHDbUU")
    assert deleted.state == "DELETED"


def _day(offset: int) -> str:
    return (dt.date.today() + dt.timedelta(days=offset)).isoformat()


def _applyment(code: str, channel: str | None = None) -> dict[str, Any]:
    return a1_body(code, channel_id=channel or None)


def test_a_body_refused_before_sending_does_not_show_its_personal_data(
    http: TestClient, world: World, app: WxPartnerApp
) -> None:
    """The SDK validates the caller's plaintext before encrypting it; pydantic's error text showed each
    refused value (``input_value=13800138000``), so logging the exception logged the ID number and the
    mobile. The error still names every field and why; the server never saw the request."""
    from pydantic import ValidationError

    from apply4subject_support import IDNO, MOBILE

    client = sdk(http, world, SP_A)
    body = _applyment(f"{SP_A}_0009")
    body["contact_info"]["mobile"] = int(MOBILE)  # a number kept as an int
    body["identification_info"]["identification_number"] = IDNO * 60  # too long
    body["ubo_info_list"] = [{"ubo_id_doc_number": IDNO}]  # the rest of the owner missing
    with app.state.db.read() as conn:
        before = ops_repo.count_journal(conn)
    with pytest.raises(ValidationError) as refused:
        client.apply4subject.submit(body)
    shown = f"{refused.value}\n{refused.value!r}"
    assert MOBILE not in shown and IDNO not in shown, shown
    for field in ("contact_info.mobile", "identification_info.identification_number", "ubo_info_list.0"):
        assert field in shown, shown
    writer(app.state).flush()
    with app.state.db.read() as conn:
        assert ops_repo.count_journal(conn) == before  # refused before sending


@pytest.mark.parametrize("mchid", [SP_A, SP_B], ids=["public-key", "certificate"])
def test_apply4subject_a1_to_a4_encrypts_sensitive_fields(
    http: TestClient, app: WxPartnerApp, control: TestClient, world: World, mchid: str
) -> None:
    from apply4subject_support import CHANNEL_B, SUB_X, set_roles

    set_roles(app, world)
    client = sdk(http, world, mchid)
    submitted = client.apply4subject.submit(_applyment(f"{mchid}_0001", CHANNEL_B if mchid == SP_B else None))
    stored = control.get(f"/sandbox/apply4subject/applyments/{submitted.applyment_id}")
    assert stored.status_code == 200, stored.text
    assert "张三" in stored.text  # the server decrypted what the SDK encrypted under the right key
    state = client.apply4subject.get(applyment_id=submitted.applyment_id)
    assert state.applyment_state.startswith("APPLYMENT_STATE_")
    assert client.apply4subject.get(business_code=f"{mchid}_0001").applyment_state == state.applyment_state
    assert client.apply4subject.cancel(business_code=f"{mchid}_0001") is None  # 204
    assert (
        client.apply4subject.get(applyment_id=submitted.applyment_id).applyment_state
        == "APPLYMENT_STATE_CANCELED"
    )
    merchant = client.apply4subject.merchant_state(SUB_X)
    assert merchant.authorize_state in ("AUTHORIZE_STATE_UNAUTHORIZED", "AUTHORIZE_STATE_AUTHORIZED")


def test_apply4subject_cancel_with_both_keys_is_the_seeds_form(
    http: TestClient, app: WxPartnerApp, world: World
) -> None:
    """Seed 003's demo request carries both applyment_id and business_code: business_code in the path,
    applyment_id in the query. The SDK sends that form when given both (it used to refuse them)."""
    from apply4subject_support import set_roles

    set_roles(app, world)
    client = sdk(http, world, SP_A)
    first = client.apply4subject.submit(_applyment(f"{SP_A}_both_1")).applyment_id
    other = client.apply4subject.submit(_applyment(f"{SP_A}_both_2")).applyment_id
    # a query naming another applyment is refused: the applyment_id went out with the business_code
    with pytest.raises(ParamError) as info:
        client.apply4subject.cancel(business_code=f"{SP_A}_both_1", applyment_id=other)
    assert info.value.detail == {
        "field": "applyment_id",
        "location": "query",
        "issue": f"denotes a different applyment than {SP_A}_both_1",
        "value": str(other),
    }
    assert client.apply4subject.cancel(business_code=f"{SP_A}_both_1", applyment_id=first) is None  # 204
    assert client.apply4subject.get(applyment_id=first).applyment_state == "APPLYMENT_STATE_CANCELED"
    assert client.apply4subject.get(applyment_id=other).applyment_state != "APPLYMENT_STATE_CANCELED"
    with pytest.raises(ValueError, match="applyment_id, business_code or both"):
        client.apply4subject.cancel()


def test_apply4subject_get_with_both_keys_sends_both(
    http: TestClient, app: WxPartnerApp, world: World
) -> None:
    """The official A2 demo code puts applyment_id and business_code both into the query when both are
    set; the SDK does the same (it used to refuse them)."""
    from apply4subject_support import set_roles

    set_roles(app, world)
    client = sdk(http, world, SP_A)
    first = client.apply4subject.submit(_applyment(f"{SP_A}_get_1")).applyment_id
    other = client.apply4subject.submit(_applyment(f"{SP_A}_get_2")).applyment_id
    both = client.apply4subject.get(applyment_id=first, business_code=f"{SP_A}_get_1")
    assert both.applyment_state == "APPLYMENT_STATE_WAITTING_FOR_AUDIT"
    with pytest.raises(ParamError) as info:  # both went out: the server saw them disagree
        client.apply4subject.get(applyment_id=other, business_code=f"{SP_A}_get_1")
    assert info.value.detail is not None and info.value.detail["field"] == "applyment_id"
    with pytest.raises(ValueError, match="applyment_id, business_code or both"):
        client.apply4subject.get()


# -- the SDK as a user's tools see it ------------------------------------------------------------------------
@SQLITE_ONLY
def test_resource_methods_show_their_parameters_and_async_ones_are_coroutine_functions(
    http: TestClient, world: World
) -> None:
    """help(), IPython and inspect.signature showed every operation as ``bound(*args, **kwargs)`` and the
    async ones were plain functions (inspect.iscoroutinefunction False)."""
    client = sdk(http, world, SP_A)
    m = world.merchants[SP_A]
    aclient = AsyncClient(SP_A, m.serial_no, m.private_key, apiv3_key=APIV3_KEY)
    for c in (client, aclient):
        issue = c.webizpay.quota_cards.issue
        assert list(inspect.signature(issue).parameters) == ["employee_id", "request", "timeout"]
        get = c.webizpay.quota_cards.get
        params = inspect.signature(get).parameters
        assert [p.name for p in params.values() if p.kind is p.KEYWORD_ONLY] == [
            "sp_mchid",
            "sub_mchid",
            "timeout",
        ]
        assert issue.__qualname__ == "QuotaCards.issue" and issue.__doc__ and "W3" in issue.__doc__
        assert inspect.iscoroutinefunction(issue) is (c is aclient)
        assert "QuotaCards.issue" in repr(issue)
    assert client.webizpay.ranges.list(sp_mchid=SP_A).range_list == []  # still a working method


@SQLITE_ONLY
def test_help_on_an_operation_names_its_response_model(http: TestClient, world: World) -> None:
    """A newcomer reading ``help()`` saw ``issue(employee_id: 'str', request: 'w.IssueQuotaCardRequest
    | Body')``: no return type (the response model could only be found in the source) and unevaluated
    strings; ``help(client.webizpay.quota_cards)`` showed each operation as ``<endpoint object at …>``."""
    client = sdk(http, world, SP_A)
    m = world.merchants[SP_A]
    aclient = AsyncClient(SP_A, m.serial_no, m.private_key, apiv3_key=APIV3_KEY)
    for c in (client, aclient):
        sig = inspect.signature(c.webizpay.quota_cards.issue)
        assert sig.return_annotation is w.IssueQuotaCardResponse
        assert sig.parameters["request"].annotation == w.IssueQuotaCardRequest | Mapping[str, Any]
        assert inspect.signature(c.recharge_employees.list).return_annotation is RechargeEmployeeList
        assert inspect.signature(c.apply4subject.cancel).return_annotation is None  # 204
    shown = pydoc.render_doc(client.webizpay.quota_cards, renderer=pydoc.plaintext)
    assert "issue = <operation issue(employee_id, request) -> IssueQuotaCardResponse>" in shown
    assert "get = <operation get(employee_id, card_no, *, sp_mchid, sub_mchid) -> QuotaCard>" in shown


def test_a_strictly_typed_user_project_sees_precise_types(tmp_path: Path) -> None:
    """mypy --strict on code written as a user writes it: results are the models (no Any), async ones
    awaitables of them, a callback's resource a union to narrow, a subclass's ``with`` gives the
    subclass, the headers of http.server / raw ASGI are accepted, and a misspelt or mistyped option of
    ``from_connection_info`` is refused (an unused ``type: ignore`` is an error under --strict), and so are
    a misspelt ``merchant=`` and a ``timeout=`` of a call that is no number."""
    mypy_api = pytest.importorskip("mypy.api")
    user = tmp_path / "user_app.py"
    user.write_text(
        textwrap.dedent(
            """
            import http.server
            from wxpartner.client import AsyncClient, Client, ClientClosedError
            from wxpartner.models import webizpay as w

            class MyClient(Client): ...

            def sync(c: MyClient, handler: http.server.BaseHTTPRequestHandler) -> None:
                reveal_type(c.webizpay.quota_cards.get("e", "1", sp_mchid="1", sub_mchid="2"))
                reveal_type(c.webizpay.ranges.list_identifiers("r", sp_mchid="1", offset=0, limit=10).data)
                reveal_type(c.apply4subject.cancel(business_code="b"))
                # absent when empty: read as [], so state.employee_list[0] needs no None check
                reveal_type(c.webizpay.users.authorization_state("u", sp_mchid="1", sub_mchid="2").employee_list)
                reveal_type(c.recharge_employees.list("s").employees)
                with c as entered:
                    reveal_type(entered)
                event = c.parse_notification(handler.headers, b"{}")
                reveal_type(event.resource)
                if isinstance(event.resource, w.AuthorizedEvent):
                    reveal_type(event.resource.employee_id)
                c.parse_notification([(b"wechatpay-serial", b"PUB_KEY_ID_1")], b"{}")
                # from_connection_info's options are checked as the constructor's (they were **Any)
                Client.from_connection_info("c.json", timeout="soon")  # type: ignore[arg-type]
                Client.from_connection_info("c.json", retyr=None)  # type: ignore[call-arg]
                # the channel merchant by name (a Literal: a misspelt one is refused), a call's timeout
                Client.from_connection_info("c.json", merchant="channel", timeout=5).close()
                Client.from_connection_info("c.json", merchant="chanel")  # type: ignore[arg-type]
                c.webizpay.ranges.list(sp_mchid="1", timeout=2.0)
                c.webizpay.ranges.list(sp_mchid="1", timeout="2")  # type: ignore[arg-type]

            async def aio(c: AsyncClient) -> None:
                reveal_type(c.webizpay.quota_cards.get)
                reveal_type(await c.recharge_employees.list("s"))
                async with c as entered:
                    reveal_type(entered)
                try:
                    await c.webizpay.ranges.list(sp_mchid="1")
                except ClientClosedError as err:
                    reveal_type(err)
            """
        )
    )
    out, err, status = mypy_api.run(
        ["--strict", "--no-incremental", "--cache-dir", str(tmp_path / ".mypy"), str(user)]
    )
    revealed = [
        line.split("Revealed type is ", 1)[1].strip('"').replace("builtins.", "")
        for line in out.splitlines()
        if "Revealed" in line
    ]
    assert status == 0 and "Success: no issues found" in out, out + err
    models = "wxpartner.models."
    assert revealed == [
        models + "webizpay.QuotaCard",
        "list[str]",
        "None",
        f"list[{models}webizpay.EmployeeRelation]",
        f"list[{models}recharge.RechargeEmployee]",
        "user_app.MyClient",
        f"{models}webizpay.AuthorizedEvent | {models}webizpay.RevokedEvent | {models}webizpay.QuotaCardExpiredEvent"
        f" | {models}webizpay.PaymentSuccessEvent | {models}webizpay.PaymentRefundSuccessEvent"
        " | dict[str, Any]",
        "str",
        "def (employee_id: str, card_no: str, *, sp_mchid: str, sub_mchid: str, timeout: float | "
        f"httpx._config.Timeout | None =) -> typing.Awaitable[{models}webizpay.QuotaCard]",
        models + "recharge.RechargeEmployeeList",
        "wxpartner.client.aio.AsyncClient",
        "wxpartner.client.errors.ClientClosedError",
    ], out


# -- callbacks ------------------------------------------------------------------------------------------------
def _callback(
    world: World, *, ts: int | None = None, probe: bool = False, key: str = APIV3_KEY
) -> tuple[dict[str, str], bytes]:
    plaintext = {
        "sp_mchid": SP_A, "sub_mchid": SUB_A, "user_id": "user_0001",
        "employee_id": "WeBizPay_1", "authorization_time": "2025-05-20T13:29:35+08:00",
    }  # fmt: skip
    body = {
        "id": "EV-2018022511223320873",
        "create_time": "2025-05-20T13:29:35+08:00",
        "event_type": "WEBIZPAY.AUTHORIZED",
        "resource_type": "encrypt-resource",
        "summary": "授权成功",
        "resource": encrypt_resource(key, plaintext, original_type="webizpay"),
    }
    raw = json.dumps(body, ensure_ascii=False).encode()
    signed = sign_notification(
        raw,
        private_key=load_private_key(world.platform_pub.private_key_pem),
        key_id=world.platform_pub.key_id,
        timestamp=int(time.time()) if ts is None else ts,
        request_id="cb-1",
        probe=probe,
    )
    return signed.headers, signed.body


def test_parse_notification_round_trip(world: World) -> None:
    client = sdk(httpx.Client(), world, SP_C)
    headers, raw = _callback(world)
    event = client.parse_notification(headers, raw)
    assert event.event_type == "WEBIZPAY.AUTHORIZED" and event.id == "EV-2018022511223320873"
    assert isinstance(event.resource, w.AuthorizedEvent) and event.resource.employee_id == "WeBizPay_1"
    assert event.verified_by == world.platform_pub.key_id and event.request_id == "cb-1"
    assert (event.create_time, event.resource_type, event.summary, event.original_type) == (
        "2025-05-20T13:29:35+08:00", "encrypt-resource", "授权成功", "webizpay",
    )  # fmt: skip
    assert event.plaintext["employee_id"] == "WeBizPay_1" and event.body == json.loads(raw)
    # the module-level function: with a sync client it parses; an AsyncClient is refused with the way
    # to do it, not answered with an un-awaited coroutine
    assert parse_notification(headers, raw, client=client).id == event.id
    # the body as text (a framework that decoded it) is the same UTF-8 bytes
    keys = KeySet(public_key=world.platform_pub.public_key_pem, public_key_id=world.platform_pub.key_id)
    assert client.parse_notification(headers, raw.decode()).plaintext == event.plaintext
    assert parse_notification(headers, raw.decode(), keys=keys, apiv3_key=APIV3_KEY).summary == "授权成功"
    m = world.merchants[SP_C]
    aclient = AsyncClient(SP_C, m.serial_no, m.private_key, apiv3_key=APIV3_KEY)
    with pytest.raises(ConfigurationError, match=r"await client\.parse_notification"):
        parse_notification(headers, raw, client=aclient)
    with pytest.raises(ConfigurationError, match=r"needs client=\.\.\., or keys=\.\.\. and apiv3_key"):
        parse_notification(headers, raw, keys=keys)
    public_only = sdk(httpx.Client(), world, SP_A)  # no APIv3 key: nothing to decrypt with
    with pytest.raises(ConfigurationError, match="parsing callbacks needs the APIv3 key"):
        public_only.parse_notification(headers, raw)


def test_parse_notification_takes_headers_as_each_framework_hands_them(world: World) -> None:
    """Raw ASGI ``scope["headers"]`` (bytes pairs) and ``http.server``'s ``self.headers`` (an
    email Message, no Mapping) were refused as unsigned or crashed unpacking; a WSGI environ /
    Django ``request.META`` now gets a reason that says what to pass instead."""
    from werkzeug.datastructures import EnvironHeaders

    client = sdk(httpx.Client(), world, SP_C)
    headers, raw = _callback(world)
    asgi = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    wire = "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode() + b"\r\n"
    http_server = http.client.parse_headers(io.BytesIO(wire))  # what BaseHTTPRequestHandler.headers is
    environ = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()}
    for given in (asgi, http_server, EnvironHeaders(environ), list(headers.items())):
        event = client.parse_notification(given, raw)
        assert event.request_id == "cb-1" and isinstance(event.resource, w.AuthorizedEvent)
    with pytest.raises(VerificationError, match=r"request\.META.*pass the request's headers") as info:
        client.parse_notification(environ, raw)
    assert info.value.reason == "missing_header"
    with pytest.raises(TypeError, match=r"mapping, an object with items\(\), or \(name, value\) pairs"):
        client.parse_notification(["Wechatpay-Serial"], raw)  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("reserialized", "bad_signature"),
        ("probe", "probe"),
        ("stale", "stale_timestamp"),
        ("wrong_apiv3_key", "bad_resource"),
        ("no_resource", "bad_resource"),
    ],
)
def test_parse_notification_refusals(world: World, change: str, reason: str) -> None:
    client = sdk(httpx.Client(), world, SP_C)
    headers, raw = _callback(
        world,
        probe=change == "probe",
        ts=int(time.time()) - 600 if change == "stale" else None,
        key="f" * 32 if change == "wrong_apiv3_key" else APIV3_KEY,
    )
    if change == "reserialized":  # what a web framework does when it hands over parsed JSON
        raw = json.dumps(json.loads(raw), indent=1).encode()
    if change == "no_resource":  # genuinely signed, but no notification
        pub = world.platform_pub
        raw = b'{"id":"EV-1"}'
        headers = sign_notification(raw, private_key=load_private_key(pub.private_key_pem),
                                    key_id=pub.key_id, timestamp=int(time.time()), request_id="cb-2").headers  # fmt: skip
    with pytest.raises(VerificationError) as info:
        client.parse_notification(headers, raw)
    assert info.value.reason == reason
    keys = KeySet(public_key=world.platform_pub.public_key_pem, public_key_id=world.platform_pub.key_id)
    with pytest.raises(VerificationError) as info:  # parse_notification(keys=...) refuses it alike
        parse_notification(headers, raw, keys=keys, apiv3_key=APIV3_KEY)
    assert info.value.reason == reason


# -- async parity ------------------------------------------------------------------------------------------
def test_async_client_in_process(app: WxPartnerApp, control: TestClient, world: World) -> None:
    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        m = world.merchants[SP_B]
        async with AsyncClient(
            SP_B,
            m.serial_no,
            m.private_key,
            apiv3_key=APIV3_KEY,
            base_url="http://testserver",
            transport=transport,
        ) as client:
            state = await client.webizpay.users.authorization_state(
                "user_0002", sp_mchid=SP_B, sub_mchid=SUB_B
            )
            assert state.user_id == "user_0002" and state.employee_list in (None, [])
            assert client.keys.certificate_serials == [world.platform_cert.key_id]
            with pytest.raises(NotFoundError) as info:
                await client.webizpay.quota_cards.get("WeBizPay_nobody", "1", sp_mchid=SP_B, sub_mchid=SUB_B)
            assert info.value.request_id
            created = await client.webizpay.ranges.create(
                {"sp_mchid": SP_B, "identifier_type": "TRANSACTION_ID"}
            )
            listed = await client.webizpay.ranges.list(sp_mchid=SP_B)
            assert [r.range_id for r in listed.range_list] == [created.range_id]
            headers, raw = _callback(world)
            pub = AsyncClient(
                SP_C, world.merchants[SP_C].serial_no, world.merchants[SP_C].private_key, apiv3_key=APIV3_KEY,
                wechatpay_public_key=world.platform_pub.public_key_pem, wechatpay_public_key_id=world.platform_pub.key_id,
            )  # fmt: skip
            event = await pub.parse_notification(headers, raw)
            assert isinstance(event.resource, w.AuthorizedEvent)
            await pub.aclose()

    anyio.run(main)


def test_a_callback_with_a_new_enum_value_keeps_its_typed_resource() -> None:
    payment = {
        "sp_mchid": SP_A, "sub_mchid": SUB_A, "card_no": "1", "employee_id": "e", "receive_mch_name": "n",
        "receive_mch_full_name": "n", "receive_mch_organization_code": "c", "acquirer": "a",
        "transaction_id": "t", "out_trade_no": "o", "transaction_state": "PARTIAL_REFUND", "amount": 1,
        "goods_name": "g", "pay_success_time": "2025-05-20T13:29+08:00",
    }  # fmt: skip
    event = typed_resource("WEBIZPAY.PAYMENTSUCCESS", payment)
    assert isinstance(event, w.PaymentSuccessEvent) and event.transaction_state == "PARTIAL_REFUND"
    assert typed_resource("WEBIZPAY.BRAND_NEW_EVENT", payment) == payment  # an event we have no model for
