"""Fidelity audit of the five seed pages (shared/seeds/000–004) against the server, over HTTP on both
backends: what tests/test_conformance.py does not already pin. Each test names the seed line it holds
the server to."""

from __future__ import annotations

import json

import httpx
import pytest
from starlette.testclient import TestClient

from apply4subject_support import BASE, set_roles, state_of, submit_ok
from support import SECOND_A, ApiClient, World
from webizpay_support import authorize, issue_body
from wxpartner.server.app import WxPartnerApp

A = BASE
FAULT = "Wechatpay-Sandbox-Fault"
RE = "/v3/platsolution/ecommerce/recharge-employees"
OPENID = "oLTPCuCsfN3ABBz50VUZBNlHDbUU"  # seed 002


def _refused(resp: httpx.Response, status: int, code: str) -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["code"] == code, body
    assert body["message"], body
    assert "sandbox fault" in body["detail"]["issue"], body
    assert resp.headers["Wechatpay-Signature"]  # signed (ApiClient verified it)


# --- seeds 002 and 003: every business code they list can be provoked ------------------------------
# Seed 003 (A3 cancel) lists 403 NO_AUTH "商户权限异常", and no sandbox rule yields it for A3 (another
# caller's applyment is 404, a caller of the wrong type the observed PARAM_ERROR); seed 002 (R3) lists
# 403 NO_AUTH and the business 400 INVALID_REQUEST. The fault vocabulary had neither code.


@pytest.mark.parametrize(("kind", "status", "code"), [("NO_AUTH", 403, "NO_AUTH"), ("NOAUTH", 403, "NO_AUTH"),
                                                       ("403", 403, "NO_AUTH"),
                                                       ("INVALID_REQUEST", 400, "INVALID_REQUEST")])  # fmt: skip
def test_a3_answers_the_seed_business_codes_by_fault_header(
    app: WxPartnerApp, world: World, client_a: ApiClient, kind: str, status: int, code: str
) -> None:
    set_roles(app, world)
    aid = submit_ok(client_a, "1230000001_fid1")
    _refused(client_a.post(f"{A}/{aid}/cancel", headers={FAULT: kind}), status, code)
    assert state_of(client_a, aid) == "APPLYMENT_STATE_WAITTING_FOR_AUDIT"  # nothing changed


@pytest.mark.parametrize(("kind", "status"), [("NO_AUTH", 403), ("INVALID_REQUEST", 400)])
def test_r3_answers_the_seed_business_codes_by_fault_header(
    client_a: ApiClient, kind: str, status: int
) -> None:
    added = client_a.post(RE, {"sub_mchid": SECOND_A, "sp_openid": OPENID})
    assert added.status_code == 200, added.text
    _refused(
        client_a.post(f"{RE}/sub-mchid/{SECOND_A}/sp-openid/{OPENID}/delete", headers={FAULT: kind}),
        status,
        kind,
    )
    listed = client_a.get(f"{RE}/sub-mchid/{SECOND_A}").json()["employees"]
    assert [e["sp_openid"] for e in listed] == [OPENID]  # still in effect


def test_a_no_auth_rule_fires_on_a3_once(
    app: WxPartnerApp, world: World, client_a: ApiClient, control: TestClient
) -> None:
    set_roles(app, world)
    aid = submit_ok(client_a, "1230000001_fid2")
    rule = control.post(
        "/sandbox/faults", json={"kind": "NO_AUTH", "operation": "apply4subject.cancel", "count": 1}
    )
    assert rule.status_code == 201, rule.text
    assert rule.json()["kind"] == "NO_AUTH"
    _refused(client_a.post(f"{A}/{aid}/cancel"), 403, "NO_AUTH")
    assert client_a.post(f"{A}/{aid}/cancel").status_code == 204
    assert state_of(client_a, aid) == "APPLYMENT_STATE_CANCELED"


# --- seed 003: applyment_id is an integer (uint64) -------------------------------------------------
# A number past 2^64-1 is no applyment_id: it was a 404 in A2, and in A3's seed form (business_code in
# the path, ?applyment_id=) a PARAM_ERROR saying it "denotes a different applyment".
UINT64_MAX = 2**64 - 1


def test_an_applyment_id_past_uint64_is_a_param_error(
    app: WxPartnerApp, world: World, client_a: ApiClient
) -> None:
    set_roles(app, world)
    aid = submit_ok(client_a, "1230000001_fid3")
    for resp in (
        client_a.get(f"{A}?applyment_id={UINT64_MAX + 1}"),
        client_a.post(f"{A}/1230000001_fid3/cancel?applyment_id={UINT64_MAX + 1}"),
    ):
        assert resp.status_code == 400, resp.text
        body = resp.json()
        assert body["code"] == "PARAM_ERROR"
        assert body["detail"]["field"] == "applyment_id" and body["detail"]["location"] == "query", body
        assert body["detail"]["value"] == str(UINT64_MAX + 1)
        assert "unsigned 64-bit" in body["detail"]["issue"] and "applyment_id" in body["message"], body
    # at the limit: a well-formed id that names nothing
    at_limit = client_a.get(f"{A}?applyment_id={UINT64_MAX}")
    assert at_limit.status_code == 404 and at_limit.json()["code"] == "RESOURCE_NOT_EXISTS", at_limit.text
    assert state_of(client_a, aid) == "APPLYMENT_STATE_WAITTING_FOR_AUDIT"


# --- the seeds' demo code sends Wechatpay-Serial on pages without an encrypted field ---------------
# Seeds 000, 001 and 002 (Java, Go) add `Wechatpay-Serial: <WeChat Pay public key ID>` to W6, W3 and the
# body-less R3 (with `Content-Type: application/json` and an empty body); seed 004 posts to the singular
# /employee/ path. None of those pages has a sensitive field: the header is accepted and changes nothing.


def test_the_seeds_demo_headers_are_accepted(client_a: ApiClient, control: TestClient, world: World) -> None:
    serial = {"Wechatpay-Serial": world.platform_pub.key_id}
    employee = authorize(client_a, control, "fidelity_user1")
    issued = client_a.post(
        f"/v3/webizpay/employees/{employee}/quota-cards", issue_body("fid_card_1"), headers=serial
    )
    assert issued.status_code == 200, issued.text
    card_no = issued.json()["card_no"]
    cancelled = client_a.post(
        f"/v3/webizpay/employees/{employee}/quota-cards/{card_no}/cancel",
        {
            "sp_mchid": issued.json()["sp_mchid"],
            "sub_mchid": issued.json()["sub_mchid"],
            "reason": "商户主动作废",
        },
        headers=serial,
    )
    assert cancelled.status_code == 200 and cancelled.json()["card_state"] == "DISABLED", cancelled.text
    revoked = client_a.post(
        f"/v3/webizpay/employee/{employee}/revoke",
        {"sp_mchid": issued.json()["sp_mchid"], "sub_mchid": issued.json()["sub_mchid"]},
        headers=serial,
    )
    assert revoked.status_code == 200 and revoked.json()["authorization_state"] == "REVOKED", revoked.text
    assert client_a.post(RE, {"sub_mchid": SECOND_A, "sp_openid": OPENID}).status_code == 200
    deleted = client_a.post(
        f"{RE}/sub-mchid/{SECOND_A}/sp-openid/{OPENID}/delete",
        headers={**serial, "Content-Type": "application/json"},
    )
    assert deleted.status_code == 200 and deleted.json()["state"] == "DELETED", deleted.text


# --- a body behind a byte order mark ---------------------------------------------------------------
# Seed 001's body is JSON; a UTF-8 BOM before it (what some Windows tools and .NET encoders write) was
# refused as "body must be a JSON object", which it is. The refusal now says what is wrong.


def test_a_body_behind_a_byte_order_mark_is_refused_by_name(client_a: ApiClient, control: TestClient) -> None:
    employee = authorize(client_a, control, "fidelity_user2")
    raw = json.dumps(issue_body("fid_bom_1"), ensure_ascii=False).encode()
    for url, body in (
        (f"/v3/webizpay/employees/{employee}/quota-cards", raw),
        (RE, json.dumps({"sub_mchid": SECOND_A, "sp_openid": OPENID}).encode()),
    ):
        resp = client_a.post(url, b"\xef\xbb\xbf" + body)
        assert resp.status_code == 400, resp.text
        got = resp.json()
        assert got["code"] == "PARAM_ERROR" and got["detail"]["field"] == "/", got
        assert "byte order mark" in got["detail"]["issue"] and "BOM" in got["message"], got
    nothing = client_a.get(
        f"/v3/webizpay/employees/{employee}/out-quota-cards/fid_bom_1?sp_mchid=1230000001&sub_mchid=1230000101"
    )
    assert nothing.status_code == 404, nothing.text
    assert client_a.get(f"{RE}/sub-mchid/{SECOND_A}").json()["employees"] == []


# --- seed 001: effective_end_time "要求必须大于当前时间" (must be later than now), at the boundary ------


def test_an_end_time_equal_to_now_is_refused_and_one_second_later_accepted(
    client_a: ApiClient, control: TestClient
) -> None:
    employee = authorize(client_a, control, "fidelity_user3")
    frozen = control.post("/sandbox/clock", json={"set": "2030-06-01T12:00:00+08:00", "freeze": True})
    assert frozen.status_code == 200, frozen.text
    url = f"/v3/webizpay/employees/{employee}/quota-cards"
    same = client_a.post(url, issue_body("fid_end_1", effective_end_time="2030-06-01T04:00:00Z"))  # = now
    assert same.status_code == 400, same.text
    assert same.json()["code"] == "PARAM_ERROR" and same.json()["detail"]["field"] == "/effective_end_time"
    later = client_a.post(url, issue_body("fid_end_2", effective_end_time="2030-06-01T04:00:01Z"))
    assert later.status_code == 200, later.text
    assert later.json()["effective_end_time"] == "2030-06-01T12:00:01+08:00"  # the instant, in +08:00
    assert later.json()["effective_begin_time"] == "2030-06-01T12:00:00+08:00"


# --- seed 001: out_card_no is "用于后续查询、作废等操作" (used later for queries, cancels) ---------------
# Seed 000's cancel path takes the card_no W3 answered ("由请求微信支付发放额度卡时返回"), as do W4 and W7;
# only W5 reads a card by out_card_no. A client that read seed 001 literally and cancelled by its own
# card number got "quota card out_card_123456 does not exist" and no word of why.


def test_a_card_named_by_its_other_number_is_a_404_that_says_so(
    client_a: ApiClient, control: TestClient
) -> None:
    employee = authorize(client_a, control, "fidelity_user4")
    other = authorize(client_a, control, "fidelity_user5")
    issued = client_a.post(f"/v3/webizpay/employees/{employee}/quota-cards", issue_body("fid_out_1"))
    assert issued.status_code == 200, issued.text
    card_no = issued.json()["card_no"]
    base = f"/v3/webizpay/employees/{employee}"
    sp_sub = "sp_mchid=1230000001&sub_mchid=1230000101"
    cancel = {"sp_mchid": "1230000001", "sub_mchid": "1230000101", "reason": "商户主动作废"}
    for resp in (
        client_a.post(f"{base}/quota-cards/fid_out_1/cancel", cancel),
        client_a.get(f"{base}/quota-cards/fid_out_1?{sp_sub}"),
        client_a.get(f"{base}/quota-cards/fid_out_1/payment-url?{sp_sub}&application_type=H5"),
    ):
        assert resp.status_code == 404, resp.text
        body = resp.json()
        assert body["code"] == "RESOURCE_NOT_EXISTS", body
        detail = body["detail"]
        assert (detail["field"], detail["location"], detail["value"]) == ("card_no", "path", "fid_out_1"), (
            body
        )
        assert f"out_card_no of card {card_no}" in detail["issue"], body
    by_card_no = client_a.get(f"{base}/out-quota-cards/{card_no}?{sp_sub}")
    assert by_card_no.status_code == 404, by_card_no.text
    detail = by_card_no.json()["detail"]
    assert (detail["field"], detail["location"], detail["value"]) == ("out_card_no", "path", card_no)
    assert "card_no of the card whose out_card_no is fid_out_1" in detail["issue"], detail
    # another employee's card is not named: a plain 404, as for any unknown card
    elsewhere = client_a.post(f"/v3/webizpay/employees/{other}/quota-cards/fid_out_1/cancel", cancel)
    assert elsewhere.status_code == 404 and "detail" not in elsewhere.json(), elsewhere.text
    assert client_a.get(f"{base}/quota-cards/{card_no}?{sp_sub}").json()["card_state"] == "ACTIVE"


# --- seed 003: business_code and applyment_id are both 选填, "至少传一个" (at least one) --------------
# The seed's demo code puts business_code in the path and applyment_id in the query, so a client that
# has only the id and leaves business_code empty sends /applyment//cancel?applyment_id=…; the empty
# segment stays a PARAM_ERROR (README), and now says where the id goes instead of "String should have
# at least 1 character".


def test_an_empty_business_code_names_the_applyment_id_form(
    app: WxPartnerApp, world: World, client_a: ApiClient
) -> None:
    set_roles(app, world)
    aid = submit_ok(client_a, "1230000001_fid5")
    for url in (f"{A}//cancel?applyment_id={aid}", f"{A}//cancel"):
        resp = client_a.post(url)
        assert resp.status_code == 400, resp.text
        body = resp.json()
        assert body["code"] == "PARAM_ERROR", body
        assert (body["detail"]["field"], body["detail"]["location"]) == ("business_code", "path"), body
        assert "/v3/apply4subject/applyment/{applyment_id}/cancel" in body["detail"]["issue"], body
    assert state_of(client_a, aid) == "APPLYMENT_STATE_WAITTING_FOR_AUDIT"  # nothing changed
    assert client_a.post(f"{A}/{aid}/cancel").status_code == 204
