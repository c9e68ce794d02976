"""webizpay W1, W2, W8 and the employee's consent, over real signed HTTP."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.testclient import TestClient

from support import SP_A, SP_B, SP_C, SUB_A, SUB_B, ApiClient
from webizpay_support import authorize, events, get_card, issue, link_token, start_url
from wxpartner.protocol.times import parse_rfc3339
from wxpartner.server.app import WxPartnerApp


def test_w1_h5_link_and_miniprogram_fields(client_a: ApiClient) -> None:
    resp = start_url(client_a, "employee123")
    assert resp.status_code == 200, resp.text
    assert resp.headers["Wechatpay-Signature"]
    body = resp.json()
    assert list(body) == [
        "sp_mchid",
        "sub_mchid",
        "user_id",
        "authorization_url",
        "expire_time",
        "application_type",
    ]
    assert body["user_id"] == "employee123" and body["application_type"] == "H5"
    assert urlsplit(body["authorization_url"]).path == "/webizpay/authorize"
    parse_rfc3339(body["expire_time"])
    assert body["expire_time"].endswith("+08:00")

    mini = start_url(client_a, "employee123", app_type="MINIPROGRAM").json()
    assert mini["mp_business_type"] == "liteAppWebizPayRegister"
    assert mini["mp_query"].startswith("token=")
    assert mini["mp_query"] != "token=" + link_token(body["authorization_url"])  # a fresh link per call


def test_w1_param_errors(client_a: ApiClient) -> None:
    short = start_url(client_a, "abc")
    assert short.status_code == 400 and short.json()["detail"]["field"] == "user_id"
    assert short.json()["detail"]["location"] == "path"
    bad_char = start_url(client_a, "emp%23001")  # '#' is outside [0-9A-Za-z_-|*]
    assert bad_char.status_code == 400 and bad_char.json()["code"] == "PARAM_ERROR"
    ok_chars = start_url(client_a, "a_b-c|d*e")
    assert ok_chars.status_code == 200, ok_chars.text
    app_type = start_url(client_a, "employee123", app_type="APP")
    assert app_type.status_code == 400
    assert app_type.json()["detail"]["field"] == "/application_type"
    missing = client_a.post("/v3/webizpay/users/employee123/authorization-url", {"sp_mchid": SP_A})
    assert missing.status_code == 400 and missing.json()["detail"]["field"] == "/sub_mchid"


def test_w1_refuses_foreign_merchants(client_a: ApiClient, client_b: ApiClient) -> None:
    not_signer = start_url(client_b, "employee123", sp=SP_A, sub=SUB_A)
    assert not_signer.status_code == 403 and not_signer.json()["code"] == "NO_AUTH"
    unbound = start_url(client_a, "employee123", sp=SP_A, sub=SUB_B)
    assert unbound.status_code == 403 and unbound.json()["code"] == "NO_AUTH"
    assert unbound.headers["Wechatpay-Signature"]


def test_consent_page_authorizes_and_notifies(
    client_a: ApiClient, http: TestClient, app: WxPartnerApp
) -> None:
    url = start_url(client_a, "employee123").json()["authorization_url"]
    token = link_token(url)
    page = http.get(f"/webizpay/authorize?token={token}")
    assert page.status_code == 200 and "employee123" in page.text and SP_A in page.text
    assert 'name="token"' in page.text
    done = http.post("/webizpay/authorize", data={"token": token})
    assert done.status_code == 200 and 'id="employee_id"' in done.text
    state = client_a.get(
        f"/v3/webizpay/users/employee123/authorization-state?sp_mchid={SP_A}&sub_mchid={SUB_A}"
    )
    assert state.status_code == 200, state.text
    (rel,) = state.json()["employee_list"]
    assert rel["authorization_state"] == "AUTHORIZED" and rel["employee_id"].startswith("WeBizPay_")
    assert "authorization_revoked_time" not in rel
    assert rel["employee_id"] in done.text
    (event,) = events(app, "WEBIZPAY.AUTHORIZED")
    assert event == {  # spec §4: exactly these resource fields
        "mchid": SP_A,
        "summary": "员工企业支付授权成功",
        "sp_mchid": SP_A,
        "sub_mchid": SUB_A,
        "user_id": "employee123",
        "employee_id": rel["employee_id"],
        "authorization_time": rel["authorization_time"],
    }
    # consenting again through the same link is idempotent: same relation, no second callback
    again = http.post("/webizpay/authorize", data={"token": token})
    assert again.status_code == 200 and rel["employee_id"] in again.text
    assert len(events(app, "WEBIZPAY.AUTHORIZED")) == 1
    # already AUTHORIZED: no new link
    refused = start_url(client_a, "employee123")
    assert refused.status_code == 400 and refused.json()["code"] == "INVALID_REQUEST"
    assert "AUTHORIZED" in refused.json()["message"]
    assert refused.json()["detail"] == {"state": "AUTHORIZED", "employee_id": rel["employee_id"]}
    # the link stays used up: after a revoke it shows the revoked relation and authorizes nobody
    revoke = client_a.post(
        f"/v3/webizpay/employees/{rel['employee_id']}/revoke", {"sp_mchid": SP_A, "sub_mchid": SUB_A}
    )
    assert revoke.status_code == 200, revoke.text
    reused = http.post("/webizpay/authorize", data={"token": token})
    assert reused.status_code == 200 and rel["employee_id"] in reused.text
    after = client_a.get(
        f"/v3/webizpay/users/employee123/authorization-state?sp_mchid={SP_A}&sub_mchid={SUB_A}"
    )
    assert [r["authorization_state"] for r in after.json()["employee_list"]] == ["REVOKED"]
    assert len(events(app, "WEBIZPAY.AUTHORIZED")) == 1


def test_consent_page_unknown_or_expired_link(
    client_a: ApiClient, http: TestClient, control: TestClient
) -> None:
    assert http.get("/webizpay/authorize?token=nope").status_code == 404
    assert control.post("/sandbox/clock", json={"freeze": True}).status_code == 200
    token = link_token(start_url(client_a, "employee777").json()["authorization_url"])
    # valid 30 min: usable one second before expire_time, expired at it
    control.post("/sandbox/clock", json={"advance": 30 * 60 - 1})
    assert http.get(f"/webizpay/authorize?token={token}").status_code == 200
    control.post("/sandbox/clock", json={"advance": 1})
    expired = http.post("/webizpay/authorize", data={"token": token})
    assert expired.status_code == 400 and "过期" in expired.text


def test_w2_unknown_user_and_foreign_query(client_a: ApiClient, client_b: ApiClient) -> None:
    resp = client_a.get(
        f"/v3/webizpay/users/nobody_here/authorization-state?sp_mchid={SP_A}&sub_mchid={SUB_A}"
    )
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"sp_mchid": SP_A, "sub_mchid": SUB_A, "user_id": "nobody_here"}
    foreign = client_b.get(
        f"/v3/webizpay/users/nobody_here/authorization-state?sp_mchid={SP_A}&sub_mchid={SUB_A}"
    )
    assert foreign.status_code == 403 and foreign.json()["code"] == "NO_AUTH"
    missing = client_a.get(f"/v3/webizpay/users/nobody_here/authorization-state?sp_mchid={SP_A}")
    assert missing.status_code == 400 and missing.json()["detail"]["field"] == "sub_mchid"


def test_w8_revoke_seed_path_and_plural_path(
    client_a: ApiClient, control: TestClient, app: WxPartnerApp
) -> None:
    first = authorize(client_a, control, "employee123")
    card = issue(client_a, first, "mch_card_123456")
    # seed 004 spelling: /employee/ (singular)
    resp = client_a.post(f"/v3/webizpay/employee/{first}/revoke", {"sp_mchid": SP_A, "sub_mchid": SUB_A})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert list(body) == [
        "sp_mchid",
        "sub_mchid",
        "user_id",
        "authorization_state",
        "authorization_revoked_time",
        "reason",
    ]
    assert body["user_id"] == "employee123" and body["authorization_state"] == "REVOKED"
    assert body["reason"] == "企业发起"
    # revoking again (plural spelling): same answer, original time, no second callback
    again = client_a.post(f"/v3/webizpay/employees/{first}/revoke", {"sp_mchid": SP_A, "sub_mchid": SUB_A})
    assert again.status_code == 200 and again.json() == body
    (revoked,) = events(app, "WEBIZPAY.REVOKED")
    assert revoked == {  # spec §4: exactly these resource fields
        "mchid": SP_A,
        "summary": "员工企业支付授权已解除",
        "sp_mchid": SP_A,
        "sub_mchid": SUB_A,
        "user_id": "employee123",
        "authorization_state": "REVOKED",
        "authorization_revoked_time": body["authorization_revoked_time"],
        "reason": "企业发起",
    }
    # every card of the relation is voided at the same time
    voided = get_card(client_a, first, card["card_no"]).json()
    assert voided["card_state"] == "DISABLED"
    assert voided["card_disabled_time"] == body["authorization_revoked_time"]
    assert voided["reason"] == "员工企业支付授权已解除"
    (expired,) = events(app, "WEBIZPAY.QUOTACARDEXPIRED")
    assert expired == {
        "mchid": SP_A,
        "summary": "额度卡已失效",
        "sp_mchid": SP_A,
        "sub_mchid": SUB_A,
        "card_no": card["card_no"],
        "employee_id": first,
        "card_state": "DISABLED",
        "card_disabled_time": body["authorization_revoked_time"],
        "reason": "员工企业支付授权已解除",
    }
    # re-authorizing creates a new relation; W2 lists both
    second = authorize(client_a, control, "employee123")
    assert second != first
    listing = client_a.get(
        f"/v3/webizpay/users/employee123/authorization-state?sp_mchid={SP_A}&sub_mchid={SUB_A}"
    )
    rels = {r["employee_id"]: r for r in listing.json()["employee_list"]}
    assert rels[first]["authorization_state"] == "REVOKED"
    assert rels[first]["authorization_revoked_time"] == body["authorization_revoked_time"]
    assert rels[second]["authorization_state"] == "AUTHORIZED"


def test_w8_unknown_and_foreign_relations(
    client_a: ApiClient, client_b: ApiClient, client_c: ApiClient, control: TestClient
) -> None:
    missing = client_a.post(
        "/v3/webizpay/employees/WeBizPay_nope/revoke", {"sp_mchid": SP_A, "sub_mchid": SUB_A}
    )
    assert missing.status_code == 404 and missing.json()["code"] == "RESOURCE_NOT_EXISTS"
    emp = authorize(client_a, control, "employee123")
    # SP_B is not the owner and SUB_A is not its sub-merchant
    b = client_b.post(f"/v3/webizpay/employees/{emp}/revoke", {"sp_mchid": SP_B, "sub_mchid": SUB_B})
    assert b.status_code == 404
    # SP_C also serves SUB_A, but the relation belongs to SP_A: invisible
    c = client_c.post(f"/v3/webizpay/employees/{emp}/revoke", {"sp_mchid": SP_C, "sub_mchid": SUB_A})
    assert c.status_code == 404
    still = client_a.get(
        f"/v3/webizpay/users/employee123/authorization-state?sp_mchid={SP_A}&sub_mchid={SUB_A}"
    )
    assert still.json()["employee_list"][0]["authorization_state"] == "AUTHORIZED"
    empty = client_a.post(f"/v3/webizpay/employees/{emp}/revoke", {"sp_mchid": SP_A})
    assert empty.status_code == 400 and empty.json()["detail"]["field"] == "/sub_mchid"


def test_control_consent_by_ids_and_employee_deregister(
    client_a: ApiClient, control: TestClient, app: WxPartnerApp
) -> None:
    done = control.post(
        "/sandbox/webizpay/authorizations",
        json={"sp_mchid": SP_A, "sub_mchid": SUB_A, "user_id": "emp_direct"},
    )
    assert done.status_code == 200, done.text
    emp = done.json()["employee_id"]
    again = control.post(
        "/sandbox/webizpay/authorizations",
        json={"sp_mchid": SP_A, "sub_mchid": SUB_A, "user_id": "emp_direct"},
    )
    assert again.json()["employee_id"] == emp
    gone = control.post(f"/sandbox/webizpay/employees/{emp}/deregister")
    assert gone.status_code == 200 and gone.json()["reason"] == "员工注销"
    (revoked,) = events(app, "WEBIZPAY.REVOKED")
    assert revoked["reason"] == "员工注销" and revoked["user_id"] == "emp_direct"
    # W8 afterwards answers the stored reason and time, not its own 企业发起
    w8 = client_a.post(f"/v3/webizpay/employees/{emp}/revoke", {"sp_mchid": SP_A, "sub_mchid": SUB_A})
    assert w8.status_code == 200, w8.text
    assert w8.json()["reason"] == "员工注销"
    assert w8.json()["authorization_revoked_time"] == gone.json()["authorization_revoked_time"]
    unguarded = TestClient(app).post("/sandbox/webizpay/authorizations", json={"token": "x"})
    assert unguarded.status_code == 401
