"""Four third-party WeChat Pay clients drive the product families against a real loopback server.

Peers (pinned; tests/test_peers.py covers the protocol basics): ``wechatpayv3`` (PyPI, driven here in
Python), ``wechatpay-axios-plugin`` (peers/axios-families.js), ``wechatpay-node-v3``
(peers/node-v3-families.js) and ``pywechatpay`` (PyPI, here; recharge and enterprise payment only). Each signs with its own code, verifies our signed answers with its own
verifier and encrypts sensitive fields with its own helper; only the host is redirected.

Per family, peer and key mode, as the peers' own channel merchant (tests/peers_support.py):
- scan-to-recharge: R1 add, R2 list, R3 delete (a body-less POST), R2 again;
- enterprise payment: W1 authorization link, the employee consents (sandbox control API), W2 state,
  W3 issue (a scenario template), W4 query, W6 cancel, W8 revoke, W4 again;
- apply4subject: A1 with sensitive fields the peer encrypts itself (RSA-OAEP under the WeChat Pay key
  named in Wechatpay-Serial), A2 query, A3 cancel (204, signed empty body), A2 again.
Every answer's signature is checked by the peer; the server's records through the control API.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, Protocol
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
import requests

from live import LiveServer, start_live_server
from peers_support import (
    MODES,
    PEER_CONFIRM,
    PEER_TEMPLATE,
    PYPI_PIN,
    PYWECHATPAY_PIN,
    PeerMerchant,
    make_peer_merchant,
    npm_peer_ready,
    peer_config,
    peer_scenario,
    plan,
    run_node,
)
from support import World

pytestmark = [
    pytest.mark.peers,
    # wechatpayv3 2.0.4 reads Certificate.not_valid_after (deprecated in cryptography 42) in encrypt()
    pytest.mark.filterwarnings("ignore:Properties that return a na"),
]

FAMILIES = ["recharge", "webizpay", "apply4subject"]
MILLIS_CN = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+08:00")  # the seed's time format


@pytest.fixture(scope="module")
def peers() -> dict[str, PeerMerchant]:
    return {mode: make_peer_merchant(mode) for mode in MODES}


@pytest.fixture(scope="module")
def server(
    world: World, peers: dict[str, PeerMerchant], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """One loopback server for every peer, mode and family (each peer uses its own ids)."""
    scenario = peer_scenario(list(peers.values()))
    live = start_live_server(tmp_path_factory.mktemp("peer-families"), world, scenario=scenario)
    yield live
    live.stop()


@pytest.fixture(scope="module")
def sandbox(server: LiveServer) -> Iterator[httpx.Client]:
    """The live server's control API (token-guarded)."""
    with server.control() as client:
        yield client


# ---- what every peer must have seen, and what the server must have recorded ------------------------


def _ok(step: dict[str, Any], serial: str, status: int = 200) -> Any:
    """An answer whose signature the peer's own verifier accepted, signed with the key of the
    merchant's mode (platform certificate or WeChat Pay public key)."""
    assert step.get("status") == status, step
    assert step["verified"] is True, step
    assert step["serial"] == serial
    return step["body"]


def check_recharge(r: dict[str, Any], p: dict[str, Any], serial: str, sandbox: httpx.Client) -> None:
    added = _ok(r["add"], serial)
    assert added["state"] == "EFFECTIVE"
    assert (added["sub_mchid"], added["sp_openid"]) == (p["sub_mchid"], p["sp_openid"])
    assert MILLIS_CN.fullmatch(added["create_time"]) and added["update_time"] == added["create_time"]
    assert _ok(r["list"], serial) == {"employees": [added]}
    deleted = _ok(r["delete"], serial)
    assert deleted["state"] == "DELETED" and deleted["create_time"] == added["create_time"]
    assert deleted["update_time"] >= added["update_time"]
    assert _ok(r["list_after"], serial) == {"employees": []}
    stored = sandbox.get("/sandbox/recharge-employees", params={"sub_mchid": p["sub_mchid"]}).json()
    assert [(e["sp_openid"], e["state"]) for e in stored["employees"]] == [(p["sp_openid"], "DELETED")]
    # Another platform's second-level merchant: a signed WeChat error the peer verified.
    refused = _ok(r["refused"], serial, 403)
    assert (
        refused["code"] == "NO_AUTH"
        and refused["detail"]["issue"] == "not a second-level merchant of the caller"
    )


def check_webizpay(r: dict[str, Any], p: dict[str, Any], serial: str, _sandbox: httpx.Client) -> None:
    link = _ok(r["authorize"], serial)
    # user_id has "|" and "*" (allowed): whatever encoding the peer sent, we decoded the path.
    assert (link["user_id"], link["application_type"]) == (p["user_id"], "H5")
    assert r["consent"]["status"] == 200, r["consent"]
    employee_id = r["consent"]["body"]["employee_id"]
    state = _ok(r["state"], serial)
    assert [(e["employee_id"], e["authorization_state"]) for e in state["employee_list"]] == [
        (employee_id, "AUTHORIZED")
    ]
    issued = _ok(r["issue"], serial)
    card = p["card"]
    assert issued["employee_id"] == employee_id and issued["out_card_no"] == card["out_card_no"]
    assert issued["effective_end_time"] == card["effective_end_time"]
    queried = _ok(r["query"], serial)
    assert queried["card_no"] == issued["card_no"] and queried["card_state"] == "ACTIVE"
    # The template from the scenario, and Chinese text intact through the peer's JSON encoder.
    rules = (queried["card_template_id"], queried["card_rule"], queried["refund_rule"])
    assert rules == (PEER_TEMPLATE, "SINGLE", "NOT_RETURN")
    assert (queried["card_name"], queried["card_remark"]) == (card["card_name"], card["card_remark"])
    assert (queried["amount"], queried["remain_amount"]) == (10000, 10000)
    cancelled = _ok(r["cancel"], serial)
    assert cancelled["card_state"] == "DISABLED" and cancelled["card_no"] == issued["card_no"]
    revoked = _ok(r["revoke"], serial)
    assert (revoked["user_id"], revoked["authorization_state"]) == (p["user_id"], "REVOKED")
    after = _ok(r["query_after"], serial)
    # Cancelled before the revoke: the card keeps the cancel's reason and time.
    assert after["card_state"] == "DISABLED" and after["reason"] == p["cancel_reason"]
    assert after["card_disabled_time"] == cancelled["card_disabled_time"]


def check_apply4subject(r: dict[str, Any], p: dict[str, Any], serial: str, sandbox: httpx.Client) -> None:
    applyment_id = _ok(r["submit"], serial)["applyment_id"]
    assert isinstance(applyment_id, int)
    assert _ok(r["query"], serial) == {"applyment_state": "APPLYMENT_STATE_WAITTING_FOR_AUDIT"}
    assert _ok(r["cancel"], serial, 204) is None  # the signed empty body, accepted by the peer
    assert _ok(r["query_after"], serial) == {"applyment_state": "APPLYMENT_STATE_CANCELED"}
    # The server decrypted what the peer encrypted: the stored (masked) materials show the values.
    stored = sandbox.get(f"/sandbox/apply4subject/applyments/{applyment_id}").json()
    assert stored["business_code"] == p["applyment"]["business_code"]
    assert stored["confirm_mchid_list"] == [PEER_CONFIRM]
    contact = stored["materials"]["contact_info"]
    assert (contact["name"], contact["mobile"]) == ("张*", "13*******00")
    identification = stored["materials"]["identification_info"]
    assert identification["identification_number"] == "11**************11"
    assert identification["identification_address"] == "广东" + "*" * 15 + "A栋"


CHECKS: dict[str, Callable[[dict[str, Any], dict[str, Any], str, httpx.Client], None]] = {
    "recharge": check_recharge,
    "webizpay": check_webizpay,
    "apply4subject": check_apply4subject,
}


# ---- the npm peers -------------------------------------------------------------------------------------


def _run_npm_peer(
    script: str, tag: str, family: str, server: LiveServer, world: World, peer: PeerMerchant
) -> tuple[dict[str, Any], dict[str, Any]]:
    p = plan(peer, tag, family)
    config = {**peer_config(peer, world, server.url, server.token), "family": family, "plan": p}
    return run_node(script, config), p


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mode", list(MODES))
def test_axios_plugin(
    mode: str,
    family: str,
    server: LiveServer,
    world: World,
    peers: dict[str, PeerMerchant],
    sandbox: httpx.Client,
) -> None:
    npm_peer_ready("wechatpay-axios-plugin")
    peer = peers[mode]
    result, p = _run_npm_peer("axios-families.js", "axios", family, server, world, peer)
    CHECKS[family](result, p, peer.platform_key(world)[0], sandbox)
    if family == "apply4subject":
        assert result["cancel"]["tampered_verified"] is False


@pytest.mark.parametrize("family", FAMILIES)
def test_node_v3(
    family: str, server: LiveServer, world: World, peers: dict[str, PeerMerchant], sandbox: httpx.Client
) -> None:
    """Certificate mode only: 2.2.1 verifies with downloaded platform certificates, no public keys."""
    npm_peer_ready("wechatpay-node-v3")
    peer = peers["certificate"]
    result, p = _run_npm_peer("node-v3-families.js", "node", family, server, world, peer)
    CHECKS[family](result, p, world.platform_cert.key_id, sandbox)
    if family == "recharge":
        # Its signer drops the empty body's line on a body-less POST: refused, and we say why.
        refused = result["delete_bodyless"]
        assert refused["status"] == 401 and refused["verified"] is None  # 401s are not signed
        assert refused["body"]["code"] == "SIGN_ERROR"
        expected = refused["body"]["detail"]["sign_information"]["truncated_sign_message"]
        assert expected.endswith("\n\n")  # what we verified against: the empty body's line
    if family == "apply4subject":
        assert result["platform_serial"] == world.platform_cert.key_id  # from its own download
        assert result["cancel"]["tampered_verified"] is False


# ---- wechatpayv3 (Python) -------------------------------------------------------------------------------


class CallingPeer(Protocol):
    def call(self, path: str, method: str = "GET", data: Any = None) -> dict[str, Any]: ...


@dataclass
class Wechatpayv3Peer:
    pay: Any  # wechatpayv3.WeChatPay
    core: Any  # its Core (the loopback subclass below)
    request_type: Any  # wechatpayv3.type.RequestType
    utils: Any  # wechatpayv3.utils

    def call(self, path: str, method: str = "GET", data: Any = None) -> dict[str, Any]:
        """Core.request: its signer, and for 2xx its verifier (which raises on a bad signature)."""
        return self.answer(lambda: self.core.request(path, method=self.request_type[method], data=data))

    def refusal(self, path: str, data: dict[str, Any]) -> dict[str, Any]:
        """A POST expected to be refused: Core.request verifies only 2xx, so the answer to a request
        signed by its build_authorization goes to its verifier here (as in tests/test_peers.py)."""
        core = self.core
        body = json.dumps(data)  # what Core.request signs and sends
        auth = self.utils.build_authorization(
            path, "POST", core._mchid, core._cert_serial_no, core._private_key, body
        )
        headers = {"Authorization": auth, "Content-Type": "application/json", "Accept": "application/json"}
        resp = requests.post(core._gate_way + path, data=body.encode(), headers=headers, timeout=10)
        return {
            "status": resp.status_code,
            "body": resp.json(),
            "serial": resp.headers.get("Wechatpay-Serial"),
            "verified": core._verify_signature(resp.headers, resp.text),
        }

    def answer(self, send: Callable[[], tuple[int, Any]]) -> dict[str, Any]:
        before = len(self.core.checks)
        status, text = send()
        checks = self.core.checks[before:]
        return {
            "status": status,
            "body": json.loads(text) if text else None,
            "serial": checks[-1][0] if checks else None,
            "verified": checks[-1][1] if checks else None,
            "headers": checks[-1][2] if checks else None,
        }


def _wechatpayv3(server: LiveServer, world: World, peer: PeerMerchant) -> Wechatpayv3Peer:
    pkg = pytest.importorskip("wechatpayv3")
    core_mod = pytest.importorskip("wechatpayv3.core")
    type_mod = pytest.importorskip("wechatpayv3.type")
    assert version("wechatpayv3") == PYPI_PIN

    class LoopbackCore(core_mod.Core):  # type: ignore[misc,name-defined]
        """Only the gateway moves (its __init__ sets it, then may download certificates at once);
        its verifier's verdicts are recorded, not changed."""

        checks: list[tuple[str, bool, Any]]

        @property
        def _gate_way(self) -> str:
            return server.url

        @_gate_way.setter
        def _gate_way(self, _real_host: str) -> None:
            self.checks = []

        def _verify_signature(self, headers: Any, body: Any) -> bool:
            ok = bool(super()._verify_signature(headers, body))
            self.checks.append((headers.get("Wechatpay-Serial", ""), ok, headers))
            return ok

    keys: dict[str, str] = {}
    if peer.mode == "public_key":  # its public-key mode: no certificate download at all
        keys["public_key_id"], keys["public_key"] = peer.platform_key(world)
    # WeChatPay builds its Core inside __init__ (from .core import Core): hand it the loopback one.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(core_mod, "Core", LoopbackCore)
        pay = pkg.WeChatPay(
            wechatpay_type=type_mod.WeChatPayType.NATIVE,
            mchid=peer.mchid,
            private_key=peer.private_key_pem,
            cert_serial_no=peer.serial_no,
            appid="wx0000000000000000",
            apiv3_key=peer.apiv3_key,
            partner_mode=True,
            **keys,
        )
    assert isinstance(pay._core, LoopbackCore)
    return Wechatpayv3Peer(pay, pay._core, type_mod.RequestType, pytest.importorskip("wechatpayv3.utils"))


@pytest.fixture(scope="module")
def wechatpayv3(
    server: LiveServer, world: World, peers: dict[str, PeerMerchant]
) -> dict[str, Wechatpayv3Peer]:
    return {mode: _wechatpayv3(server, world, peer) for mode, peer in peers.items()}


def wechatpayv3_recharge(py: Wechatpayv3Peer, p: dict[str, Any], _sandbox: httpx.Client) -> dict[str, Any]:
    base = "/v3/platsolution/ecommerce/recharge-employees"
    one = f"{base}/sub-mchid/{p['sub_mchid']}"
    ids = {"sub_mchid": p["sub_mchid"], "sp_openid": p["sp_openid"]}
    return {
        "add": py.call(base, "POST", ids),
        "list": py.call(one),
        # data=None: it signs '' (the message ends "\n\n") and sends no body
        "delete": py.call(f"{one}/sp-openid/{p['sp_openid']}/delete", "POST"),
        "list_after": py.call(one),
        "refused": py.refusal(base, {**ids, "sub_mchid": p["foreign_sub_mchid"]}),
    }


def webizpay_flow(py: CallingPeer, p: dict[str, Any], sandbox: httpx.Client) -> dict[str, Any]:
    """W1 … W4 again through a Python peer's ``call``. The path is percent-encoded first: both Python
    peers sign it as given while requests sends "|" as "%7C" (wechatpayv3's test shows the refusal)."""
    who = {"sp_mchid": p["sp_mchid"], "sub_mchid": p["sub_mchid"]}
    qs = f"sp_mchid={p['sp_mchid']}&sub_mchid={p['sub_mchid']}"
    link_body = {**who, "application_type": p["application_type"]}
    out: dict[str, Any] = {}
    user = quote(p["user_id"], safe="*")
    out["authorize"] = py.call(f"/v3/webizpay/users/{user}/authorization-url", "POST", link_body)
    token = parse_qs(urlsplit(out["authorize"]["body"]["authorization_url"]).query)["token"][0]
    consent = sandbox.post("/sandbox/webizpay/authorizations", json={"token": token})  # the employee
    out["consent"] = {"status": consent.status_code, "body": consent.json()}
    employee = f"/v3/webizpay/employees/{consent.json()['employee_id']}"
    out["state"] = py.call(f"/v3/webizpay/users/{user}/authorization-state?{qs}")
    out["issue"] = py.call(f"{employee}/quota-cards", "POST", p["card"])
    card = f"{employee}/quota-cards/{out['issue']['body']['card_no']}"
    out["query"] = py.call(f"{card}?{qs}")
    out["cancel"] = py.call(f"{card}/cancel", "POST", {**who, "reason": p["cancel_reason"]})
    out["revoke"] = py.call(f"{employee}/revoke", "POST", who)
    out["query_after"] = py.call(f"{card}?{qs}")
    return out


def wechatpayv3_webizpay(py: Wechatpayv3Peer, p: dict[str, Any], sandbox: httpx.Client) -> dict[str, Any]:
    link_body = {
        "sp_mchid": p["sp_mchid"],
        "sub_mchid": p["sub_mchid"],
        "application_type": p["application_type"],
    }
    # user_id may hold "|" and "*": it signs the path as given, but requests sends "|" as "%7C".
    raw = py.call(f"/v3/webizpay/users/{p['user_id']}/authorization-url", "POST", link_body)
    # Its users' way out: percent-encode the path themselves, so the signed and sent bytes agree.
    return {"authorize_raw": raw, **webizpay_flow(py, p, sandbox)}


def wechatpayv3_apply4subject(
    py: Wechatpayv3Peer, p: dict[str, Any], _sandbox: httpx.Client
) -> dict[str, Any]:
    body = copy.deepcopy(p["applyment"])  # apply4subject_submit encrypts in place
    code = body["business_code"]
    out: dict[str, Any] = {}
    # Its own method: encrypts the sensitive fields with Core.encrypt (RSA-OAEP under its public key,
    # or its newest downloaded platform certificate) and names that key in Wechatpay-Serial.
    out["submit"] = py.answer(
        lambda: py.pay.apply4subject_submit(
            business_code=code,
            contact_info=body["contact_info"],
            subject_info=body["subject_info"],
            identification_info=body["identification_info"],
            addition_info=body["addition_info"],
        )
    )
    out["query"] = py.answer(lambda: py.pay.apply4subject_query(business_code=code))
    # Its apply4subject_cancel sends GET (a bug in the peer: the API is POST): refused with 405.
    out["cancel_get"] = py.answer(lambda: py.pay.apply4subject_cancel(business_code=code))
    out["query_after_get"] = py.answer(lambda: py.pay.apply4subject_query(business_code=code))
    out["cancel"] = py.call(f"/v3/apply4subject/applyment/{code}/cancel", "POST")
    out["query_after"] = py.answer(lambda: py.pay.apply4subject_query(business_code=code))
    return out


WECHATPAYV3_FLOWS: dict[str, Callable[[Wechatpayv3Peer, dict[str, Any], httpx.Client], dict[str, Any]]] = {
    "recharge": wechatpayv3_recharge,
    "webizpay": wechatpayv3_webizpay,
    "apply4subject": wechatpayv3_apply4subject,
}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mode", list(MODES))
def test_wechatpayv3(
    mode: str,
    family: str,
    wechatpayv3: dict[str, Wechatpayv3Peer],
    world: World,
    peers: dict[str, PeerMerchant],
    sandbox: httpx.Client,
) -> None:
    py, peer = wechatpayv3[mode], peers[mode]
    p = plan(peer, "py", family)
    result = WECHATPAYV3_FLOWS[family](py, p, sandbox)
    CHECKS[family](result, p, peer.platform_key(world)[0], sandbox)
    if family == "webizpay":
        # We verify over the request target as received ("%7C"), as WeChat does, and say so.
        refused = result["authorize_raw"]
        assert refused["status"] == 401 and refused["body"]["code"] == "SIGN_ERROR"
        sent = refused["body"]["detail"]["sign_information"]["url"]
        assert sent == f"/v3/webizpay/users/{quote(p['user_id'], safe='*')}/authorization-url"
    if family == "apply4subject":
        refused = result["cancel_get"]
        assert refused["status"] == 405 and refused["body"]["code"] == "METHOD_NOT_ALLOWED"
        assert refused["body"]["detail"]["allowed"] == ["POST"]
        assert result["query_after_get"]["body"] == {"applyment_state": "APPLYMENT_STATE_WAITTING_FOR_AUDIT"}
        # Its verifier is not vacuous on the empty 204 body: one byte more and it refuses.
        assert py.core._verify_signature(result["cancel"]["headers"], " ") is False


# ---- pywechatpay (Python) -------------------------------------------------------------------------------


@dataclass
class PywechatpayPeer:
    """pywechatpay (dormant since 2021; a port of wechatpay-go's core) verifies with one WeChat Pay key
    given up front: the public key, or the platform certificate, whichever the merchant's mode uses.
    It downloads no certificates, ignores Wechatpay-Serial and has no sensitive-field helper, so it
    drives the families that need none (no apply4subject: its A1 needs encrypted fields)."""

    pay: Any  # pywechatpay.core.WechatPay, its gateway moved to the loopback server
    not_verified: type[Exception]  # pywechatpay.exceptions.WechatPayException
    seen: list[requests.Response]  # what its session received (a response hook; nothing is changed)

    def call(self, path: str, method: str = "GET", data: Any = None) -> dict[str, Any]:
        """Its own request methods: they sign with its signer, raise for a non-2xx before verifying, and
        return only if its verifier accepts the answer. The GET one is given the path's last segment
        (with the query) apart from the rest, as it builds the URL from the two."""
        verified: bool | None = True
        try:
            if method == "GET":
                prefix, last = path.rsplit("/", 1)
                self.pay.verified_sync_response_for_get(last, prefix)
            else:
                self.pay.verified_sync_response(data, path, None)
        except self.not_verified:
            verified = False
        except requests.HTTPError:
            verified = None  # refused: it does not verify those (see refusal below)
        resp = self.seen[-1]
        return {
            "status": resp.status_code,
            "body": resp.json() if resp.content else None,
            "serial": resp.headers.get("Wechatpay-Serial"),
            "verified": verified,
        }

    def refusal(self, path: str, data: dict[str, Any]) -> dict[str, Any]:
        """A POST expected to be refused: signed by its authorization(), the answer checked by its
        verify() (what its request methods do for a 2xx)."""
        body = json.dumps(data)  # what verified_sync_response signs (and requests sends for json=)
        auth = self.pay.authorization(method="POST", url_path=path, request_body=body)
        headers = {"Authorization": auth, "Content-Type": "application/json", "Accept": "application/json"}
        resp = requests.post(self.pay._gateway + path, data=body.encode(), headers=headers, timeout=10)
        h = resp.headers
        return {
            "status": resp.status_code,
            "body": resp.json(),
            "serial": h.get("Wechatpay-Serial"),
            "verified": self.pay.verify(
                h["Wechatpay-Timestamp"], h["Wechatpay-Nonce"], resp.text, h["Wechatpay-Signature"]
            ),
        }


@pytest.fixture(scope="module")
def pywechatpay(
    server: LiveServer, world: World, peers: dict[str, PeerMerchant]
) -> dict[str, PywechatpayPeer]:
    core = pytest.importorskip("pywechatpay.core")
    exceptions = pytest.importorskip("pywechatpay.exceptions")
    assert version("pywechatpay") == PYWECHATPAY_PIN
    out: dict[str, PywechatpayPeer] = {}
    for mode, peer in peers.items():
        pay = core.WechatPay(
            mchid=peer.mchid,
            mch_serial_no=peer.serial_no,
            mch_private_key_string=peer.private_key_pem,
            wechat_public_key_string=peer.platform_key(world)[1],
            notify_url="https://merchant.example/notify",
            apiv3_key=peer.apiv3_key,
        )
        pay._gateway = server.url  # only the host moves (it hard-codes api.mch.weixin.qq.com)
        seen: list[requests.Response] = []
        pay._session.hooks["response"].append(lambda resp, *_a, seen=seen, **_k: seen.append(resp))
        out[mode] = PywechatpayPeer(pay, exceptions.WechatPayException, seen)
    return out


def pywechatpay_recharge(py: PywechatpayPeer, p: dict[str, Any]) -> dict[str, Any]:
    base = "/v3/platsolution/ecommerce/recharge-employees"
    one = f"{base}/sub-mchid/{p['sub_mchid']}"
    ids = {"sub_mchid": p["sub_mchid"], "sp_openid": p["sp_openid"]}
    delete = f"{one}/sp-openid/{p['sp_openid']}/delete"
    return {
        "add": py.call(base, "POST", ids),
        "list": py.call(one),
        # Without data it signs json.dumps(None), "null", while requests sends no body at all.
        "delete_none": py.call(delete, "POST", None),
        "delete": py.call(delete, "POST", {}),  # what its users send instead: "{}", signed and sent
        "list_after": py.call(one),
        "refused": py.refusal(base, {**ids, "sub_mchid": p["foreign_sub_mchid"]}),
    }


@pytest.mark.parametrize("family", ["recharge", "webizpay"])
@pytest.mark.parametrize("mode", list(MODES))
def test_pywechatpay(
    mode: str,
    family: str,
    pywechatpay: dict[str, PywechatpayPeer],
    world: World,
    peers: dict[str, PeerMerchant],
    sandbox: httpx.Client,
) -> None:
    py, peer = pywechatpay[mode], peers[mode]
    p = plan(peer, "pyw", family)
    if family == "recharge":
        result = pywechatpay_recharge(py, p)
        # Its body-less POST: refused, and the SIGN_ERROR says what we verified (the empty body's line).
        refused = result["delete_none"]
        assert refused["status"] == 401 and refused["verified"] is None  # 401s are not signed
        assert refused["body"]["code"] == "SIGN_ERROR"
        assert refused["body"]["detail"]["sign_information"]["truncated_sign_message"].endswith("\n\n")
    else:
        result = webizpay_flow(py, p, sandbox)
    CHECKS[family](result, p, peer.platform_key(world)[0], sandbox)
    # Its verifier is not vacuous: the last answer with one byte more is refused.
    last = py.seen[-1]
    h = last.headers
    assert (
        py.pay.verify(
            h["Wechatpay-Timestamp"], h["Wechatpay-Nonce"], last.text + " ", h["Wechatpay-Signature"]
        )
        is False
    )
