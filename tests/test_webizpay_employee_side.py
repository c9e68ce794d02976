"""webizpay, the employee's side (sandbox): paying with a card on the payment page or through the
control API, refunds, card rules, card templates and the scenario section."""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.testclient import TestClient

from pg import wait_for_lock_waiters
from support import SP_A, SUB_A, ApiClient
from webizpay_support import authorize, events, get_card, issue, payment_token
from wxpartner.server.app import WxPartnerApp


def test_pay_on_the_page_spends_quota_and_notifies(
    client_a: ApiClient, control: TestClient, http: TestClient, app: WxPartnerApp
) -> None:
    emp = authorize(client_a, control, "employee123")
    card = issue(client_a, emp, "mch_card_123456")
    token = payment_token(client_a, emp, card["card_no"])
    paid = http.post("/webizpay/pay", data={"token": token, "amount": "2500", "goods_name": "午餐"})
    assert paid.status_code == 200, paid.text
    assert 'id="remain_amount">7500<' in paid.text
    shown = get_card(client_a, emp, card["card_no"]).json()
    assert shown["remain_amount"] == 7500 and shown["card_state"] == "ACTIVE"
    assert shown["transaction_id"] in paid.text and shown["card_usage_time"]
    (event,) = events(app, "WEBIZPAY.PAYMENTSUCCESS")
    assert event["out_trade_no"].startswith("SBX")
    assert event == {  # spec §4 (refund_id/out_refund_no are optional); the default sandbox store
        "mchid": SP_A,
        "summary": "企业支付成功",
        "sp_mchid": SP_A,
        "sub_mchid": SUB_A,
        "card_no": card["card_no"],
        "employee_id": emp,
        "receive_mch_name": "沙箱便利店",
        "receive_mch_full_name": "沙箱便利店有限公司",
        "receive_mch_organization_code": "91440300MA5SANDBOX",
        "acquirer": "财付通支付科技有限公司",
        "transaction_id": shown["transaction_id"],
        "out_trade_no": event["out_trade_no"],
        "transaction_state": "SUCCESS",
        "amount": 2500,
        "goods_name": "午餐",
        "pay_success_time": shown["card_usage_time"],
    }
    too_much = http.post("/webizpay/pay", data={"token": token, "amount": "7501"})
    assert too_much.status_code == 400 and "7500" in too_much.text
    over = control.post("/sandbox/webizpay/payments", json={"card_no": card["card_no"], "amount": 7501})
    assert over.status_code == 400 and over.json()["code"] == "INVALID_REQUEST", over.text
    rest = http.post("/webizpay/pay", data={"token": token, "amount": "7500"})  # all that is left
    assert rest.status_code == 200 and 'id="remain_amount">0<' in rest.text
    assert http.post("/webizpay/pay", data={"token": token, "amount": "abc"}).status_code == 400
    assert http.get("/webizpay/pay?token=unknown").status_code == 404


def test_payment_link_expires_and_disabled_cards_cannot_pay(
    client_a: ApiClient, control: TestClient, http: TestClient
) -> None:
    emp = authorize(client_a, control, "employee123")
    card = issue(client_a, emp, "mch_card_123456")
    assert control.post("/sandbox/clock", json={"freeze": True}).status_code == 200
    token = payment_token(client_a, emp, card["card_no"])
    # valid 5 min: it pays one second before, not at its expiry
    control.post("/sandbox/clock", json={"advance": 5 * 60 - 1})
    paid = control.post("/sandbox/webizpay/payments", json={"token": token, "amount": 1})
    assert paid.status_code == 200, paid.text
    control.post("/sandbox/clock", json={"advance": 1})
    late = control.post("/sandbox/webizpay/payments", json={"token": token, "amount": 1})
    assert late.status_code == 400 and late.json()["code"] == "INVALID_REQUEST", late.text
    assert http.post("/webizpay/pay", data={"token": token, "amount": "1"}).status_code == 400
    fresh = payment_token(client_a, emp, card["card_no"])
    client_a.post(f"/v3/webizpay/employees/{emp}/revoke", {"sp_mchid": SP_A, "sub_mchid": SUB_A})
    refused = control.post("/sandbox/webizpay/payments", json={"token": fresh, "amount": 1})
    assert refused.status_code == 400 and refused.json()["code"] == "INVALID_REQUEST"
    assert "DISABLED" in refused.json()["message"]  # refused by the card's state, before any spend
    assert get_card(client_a, emp, card["card_no"]).json()["remain_amount"] == 9999


def test_single_card_pays_once_and_refund_rules(
    client_a: ApiClient, control: TestClient, app: WxPartnerApp
) -> None:
    emp = authorize(client_a, control, "employee123")
    single = issue(client_a, emp, "single_card_1", card_template_id="template_single_return")
    first = control.post("/sandbox/webizpay/payments", json={"card_no": single["card_no"], "amount": 1000})
    assert first.status_code == 200, first.text
    second = control.post("/sandbox/webizpay/payments", json={"card_no": single["card_no"], "amount": 1000})
    assert second.status_code == 400 and "SINGLE" in second.json()["message"]
    assert second.json()["code"] == "INVALID_REQUEST"
    txid = first.json()["transaction_id"]
    # WeChat's shapes: 28 digits with the business day (China time), 29 for a refund
    day = get_card(client_a, emp, single["card_no"]).json()["card_usage_time"][:10].replace("-", "")
    assert re.fullmatch(r"4200\d{6}" + day + r"\d{10}", txid), txid
    refund = control.post(
        "/sandbox/webizpay/refunds", json={"transaction_id": txid, "amount": 400, "out_refund_no": "r1"}
    )
    assert refund.status_code == 200, refund.text
    assert re.fullmatch(r"50\d{27}", refund.json()["refund_id"]), refund.text
    assert refund.json()["remain_amount"] == 9400  # RETURN: the refund flows back
    replay = control.post(
        "/sandbox/webizpay/refunds", json={"transaction_id": txid, "amount": 400, "out_refund_no": "r1"}
    )
    assert replay.json()["refund_id"] == refund.json()["refund_id"]
    over = control.post("/sandbox/webizpay/refunds", json={"transaction_id": txid, "amount": 601})
    assert over.status_code == 400 and over.json()["code"] == "INVALID_REQUEST"
    assert "601 > 600" in over.json()["message"]  # refused against what is left of this payment
    (event,) = events(app, "WEBIZPAY.PAYMENTREFUNDSUCCESS")
    assert event == {  # spec §4: exactly these resource fields
        "mchid": SP_A,
        "summary": "企业支付退款成功",
        "sp_mchid": SP_A,
        "sub_mchid": SUB_A,
        "card_no": single["card_no"],
        "employee_id": emp,
        "transaction_id": txid,
        "out_trade_no": first.json()["out_trade_no"],
        "refund_id": refund.json()["refund_id"],
        "out_refund_no": "r1",
        "amount": 1000,
        "pay_success_time": get_card(client_a, emp, single["card_no"]).json()["card_usage_time"],
        "refunded_amount": 400,
        "refund_amount": 400,
        "refund_state": "SUCCESS",
        "refund_create_time": event["refund_success_time"],
        "refund_success_time": event["refund_create_time"],
    }
    # the smallest refund, then all that is left; a repeated out_refund_no still answers its refund
    for amount in (1, 599):
        rest = control.post("/sandbox/webizpay/refunds", json={"transaction_id": txid, "amount": amount})
        assert rest.status_code == 200, rest.text
    assert rest.json()["refunded_amount"] == 1000 and rest.json()["remain_amount"] == 10000
    replay = control.post(
        "/sandbox/webizpay/refunds", json={"transaction_id": txid, "amount": 400, "out_refund_no": "r1"}
    )
    assert replay.status_code == 200 and replay.json()["refund_id"] == refund.json()["refund_id"]

    multi = issue(client_a, emp, "multi_card_1", card_template_id="template_multiple_not_return")
    for _ in range(2):
        ok = control.post("/sandbox/webizpay/payments", json={"card_no": multi["card_no"], "amount": 3000})
        assert ok.status_code == 200
    tx = ok.json()["transaction_id"]
    back = control.post("/sandbox/webizpay/refunds", json={"transaction_id": tx, "amount": 3000})
    assert back.json()["remain_amount"] == 4000  # NOT_RETURN: the quota stays spent
    missing = control.post("/sandbox/webizpay/refunds", json={"transaction_id": "4200nope", "amount": 1})
    assert missing.status_code == 404


@pytest.mark.parametrize("amount", [0, -1])
def test_payments_and_refunds_of_no_or_negative_fen_are_refused(
    client_a: ApiClient, control: TestClient, app: WxPartnerApp, amount: int
) -> None:
    emp = authorize(client_a, control, "employee123")
    card = issue(client_a, emp, "mch_card_123456")
    pay = control.post("/sandbox/webizpay/payments", json={"card_no": card["card_no"], "amount": amount})
    assert pay.status_code == 400 and pay.json()["code"] == "PARAM_ERROR", pay.text
    assert "positive" in pay.json()["message"]
    paid = control.post("/sandbox/webizpay/payments", json={"card_no": card["card_no"], "amount": 100})
    txid = paid.json()["transaction_id"]
    back = control.post("/sandbox/webizpay/refunds", json={"transaction_id": txid, "amount": amount})
    assert back.status_code == 400 and back.json()["code"] == "PARAM_ERROR", back.text
    assert "positive" in back.json()["message"]
    assert get_card(client_a, emp, card["card_no"]).json()["remain_amount"] == 9900
    assert len(events(app, "WEBIZPAY.PAYMENTSUCCESS")) == 1
    assert events(app, "WEBIZPAY.PAYMENTREFUNDSUCCESS") == []


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("payments", {"card_no": "x", "amount": 1, "goods": "a misspelt goods_name"}),
        ("refunds", {"transaction_id": "4200nope", "amount": 1, "out_refund": "R1"}),
    ],
)
def test_a_misspelt_field_is_refused_not_ignored(
    control: TestClient, endpoint: str, body: dict[str, object]
) -> None:
    """Found in the sandbox audit: {"goods": ...} paid with no goods name; nothing is done now."""
    resp = control.post(f"/sandbox/webizpay/{endpoint}", json=body)
    assert resp.status_code == 400 and resp.json()["code"] == "PARAM_ERROR", resp.text
    assert "unknown field(s)" in resp.json()["message"]


def test_templates_and_scenario_section(client_a: ApiClient, control: TestClient) -> None:
    put = control.post(
        "/sandbox/webizpay/templates",
        json={
            "sp_mchid": SP_A,
            "card_template_id": "tpl_travel",
            "card_rule": "SINGLE",
            "refund_rule": "NOT_RETURN",
        },
    )
    assert put.status_code == 200, put.text
    bad = control.post(
        "/sandbox/webizpay/templates",
        json={"sp_mchid": SP_A, "card_template_id": "x", "card_rule": "ONCE"},
    )
    # a control-API refusal, not a scenario file's (it said SCENARIO_ERROR, found in the sandbox audit)
    assert bad.status_code == 400 and bad.json()["code"] == "PARAM_ERROR", bad.text
    assert bad.json()["message"].startswith("card_rule: ")
    extra = control.post(
        "/sandbox/webizpay/templates", json={"sp_mchid": SP_A, "card_template_id": "y", "x": 1}
    )
    assert extra.status_code == 400 and extra.json()["code"] == "PARAM_ERROR", extra.text
    listed = control.get("/sandbox/webizpay/templates").json()
    assert any(t["card_template_id"] == "tpl_travel" for t in listed["data"])
    scenario = f"""
webizpay:
  employees:
    - {{sp_mchid: "{SP_A}", sub_mchid: "{SUB_A}", user_id: emp_scn_01, employee_id: WeBizPay_scenario_01}}
  cards:
    - {{sp_mchid: "{SP_A}", sub_mchid: "{SUB_A}", user_id: emp_scn_01, out_card_no: scn_card_01,
        card_template_id: tpl_travel, amount: 5000, card_name: 差旅费用卡,
        effective_end_time: "2099-12-31T23:59:59+08:00"}}
"""
    loaded = control.post("/sandbox/scenario", content=scenario.encode())
    assert loaded.status_code == 200, loaded.text
    card = client_a.get(
        f"/v3/webizpay/employees/WeBizPay_scenario_01/out-quota-cards/scn_card_01?sp_mchid={SP_A}&sub_mchid={SUB_A}"
    )
    assert card.status_code == 200, card.text
    assert card.json()["card_rule"] == "SINGLE" and card.json()["amount"] == 5000
    bad = control.post("/sandbox/scenario", content=b"webizpay:\n  cards:\n    - {sp_mchid: x}\n")
    assert bad.status_code == 400 and bad.json()["code"] == "SCENARIO_ERROR"
    exported = control.get("/sandbox/scenario").json()
    assert exported["webizpay"]["templates"][0]["card_template_id"] == "tpl_travel"
    # reset removes the family's business data
    assert control.post("/sandbox/reset", json={"mchid": SP_A}).status_code == 200
    gone = client_a.get(
        f"/v3/webizpay/employees/WeBizPay_scenario_01/out-quota-cards/scn_card_01?sp_mchid={SP_A}&sub_mchid={SUB_A}"
    )
    assert gone.status_code == 404


def test_scenario_preloads_spends(client_a: ApiClient, control: TestClient) -> None:
    card_url = f"/v3/webizpay/employees/WeBizPay_spend_01/out-quota-cards/spend_card_01?sp_mchid={SP_A}&sub_mchid={SUB_A}"
    head = f"""
webizpay:
  employees:
    - {{sp_mchid: "{SP_A}", sub_mchid: "{SUB_A}", user_id: emp_spend_01, employee_id: WeBizPay_spend_01}}
  cards:
    - {{sp_mchid: "{SP_A}", sub_mchid: "{SUB_A}", user_id: emp_spend_01, out_card_no: spend_card_01,
        amount: 10000, card_name: 餐补卡, effective_end_time: "2099-12-31T23:59:59+08:00"}}
  spends:
"""
    too_much = (
        head
        + f'    - {{sp_mchid: "{SP_A}", sub_mchid: "{SUB_A}", out_card_no: spend_card_01, amount: 20000}}\n'
    )
    refused = control.post("/sandbox/scenario", content=too_much.encode())
    assert refused.status_code == 400 and "webizpay.spends[0]" in refused.json()["message"], refused.text
    assert client_a.get(card_url).status_code == 404  # the whole scenario loaded nothing
    spends = head + "".join(
        f'    - {{sp_mchid: "{SP_A}", sub_mchid: "{SUB_A}", out_card_no: spend_card_01, amount: {fen},'
        f" goods_name: 午餐, store: {{name: 食堂}}}}\n"
        for fen in (1500, 2500)
    )
    assert control.post("/sandbox/scenario", content=spends.encode()).status_code == 200
    card = client_a.get(card_url)
    assert card.status_code == 200, card.text
    assert card.json()["remain_amount"] == 6000


def test_payments_and_refunds_feed_the_bills(
    client_a: ApiClient, control: TestClient, app: WxPartnerApp
) -> None:
    from wxpartner.store.webizpay_trades import trade_rows

    emp = authorize(client_a, control, "employee123")
    card = issue(client_a, emp, "mch_card_123456")
    paid = control.post(
        "/sandbox/webizpay/payments", json={"card_no": card["card_no"], "amount": 1200}
    ).json()
    control.post("/sandbox/webizpay/refunds", json={"transaction_id": paid["transaction_id"], "amount": 200})
    with app.state.db.read() as conn:
        rows = trade_rows(conn, SP_A, SUB_A, 0, 1e12)
        assert trade_rows(conn, SP_A, "1230000999", 0, 1e12) == []
    assert [(r.state, r.amount, r.refund_amount) for r in rows] == [
        ("SUCCESS", 1200, 0),
        ("REFUND", 1200, 200),
    ]
    assert {r.transaction_id for r in rows} == {paid["transaction_id"]}


def test_a_funding_proof_counts_a_refunded_payment_once(
    client_a: ApiClient, control: TestClient, app: WxPartnerApp
) -> None:
    """W11's 出资总金额 is what was paid minus what was refunded. A refund's bill row also carries
    its order's amount: the proof counted the payment twice (22.00 for 12.00 paid, 2.00 refunded)."""
    import csv
    import io
    from urllib.parse import urlsplit

    emp = authorize(client_a, control, "employee123")
    card = issue(client_a, emp, "mch_card_123456")
    paid = control.post("/sandbox/webizpay/payments", json={"card_no": card["card_no"], "amount": 1200})
    refund = {"transaction_id": paid.json()["transaction_id"], "amount": 200}
    assert control.post("/sandbox/webizpay/refunds", json=refund).status_code == 200
    today = control.get("/sandbox/clock").json()["now"][:10]  # China time (+08:00)
    body = {"sp_mchid": SP_A, "sub_mchid": SUB_A, "start_date": today, "end_date": today}
    proof = client_a.post("/v3/webizpay/bill/proof", {**body, "out_operation_id": "proof_0001"})
    assert proof.status_code == 200, proof.text
    url = urlsplit(proof.json()["download_url"])
    file = client_a.get(f"{url.path}?{url.query}")
    assert file.status_code == 200, file.text
    rows = [[v.lstrip("`") for v in row] for row in csv.reader(io.StringIO(file.text))]
    assert [r[10] for r in rows if len(r) == 13][1:] == ["SUCCESS", "REFUND"]
    assert rows[-2:] == [["出资总笔数", "出资总金额(元)"], ["1", "10.00"]]  # one payment, less its refund


@pytest.mark.parametrize(
    "body",
    [
        # found by an audit: past a column's length, or holding a NUL, a 500 on PostgreSQL
        {"sp_mchid": SP_A, "sub_mchid": SUB_A, "user_id": "u" * 100},
        {"sp_mchid": SP_A, "sub_mchid": SUB_A, "user_id": "emp\x00loyee"},
        {"token": "t" * 100},
    ],
)
def test_consent_refuses_what_w1_would_refuse(control: TestClient, body: dict[str, Any]) -> None:
    resp = control.post("/sandbox/webizpay/authorizations", json=body)
    assert resp.status_code == 400 and resp.json()["code"] == "PARAM_ERROR", resp.text


@pytest.mark.parametrize(
    "extra",
    [
        {"amount": int("9" * 30)},
        {"goods_name": "g" * 300},
        {"goods_name": 5},
        {"out_trade_no": "o" * 65},
        {"store": {"name": "s" * 300}},
        {"store": {"organization_code": "9" * 65}},
        {"store": "a shop"},
    ],
)
def test_payments_refuse_values_past_their_columns_and_spend_nothing(
    client_a: ApiClient, control: TestClient, extra: dict[str, Any]
) -> None:
    emp = authorize(client_a, control, "employee123")
    card = issue(client_a, emp, "mch_card_123456")
    resp = control.post(
        "/sandbox/webizpay/payments", json={"card_no": card["card_no"], "amount": 100, **extra}
    )
    assert resp.status_code == 400 and resp.json()["code"] == "PARAM_ERROR", resp.text
    assert get_card(client_a, emp, card["card_no"]).json()["remain_amount"] == 10000


def test_the_payment_page_refuses_long_fields_and_refunds_long_numbers(
    client_a: ApiClient, control: TestClient, http: TestClient
) -> None:
    emp = authorize(client_a, control, "employee123")
    card = issue(client_a, emp, "mch_card_123456")
    token = payment_token(client_a, emp, card["card_no"])
    page = http.post("/webizpay/pay", data={"token": token, "amount": "100", "goods_name": "g" * 300})
    assert page.status_code == 400 and "goods_name must be at most 256 characters" in page.text
    assert http.post("/webizpay/pay", data={"token": "", "amount": "100"}).status_code == 404  # no such link
    paid = control.post("/sandbox/webizpay/payments", json={"card_no": card["card_no"], "amount": 100})
    txid = paid.json()["transaction_id"]
    refund = {"transaction_id": txid, "amount": 1, "out_refund_no": "r" * 65}
    resp = control.post("/sandbox/webizpay/refunds", json=refund)
    assert resp.status_code == 400 and resp.json()["code"] == "PARAM_ERROR", resp.text
    assert get_card(client_a, emp, card["card_no"]).json()["remain_amount"] == 9900


def test_the_end_user_pages_answer_a_nul_with_400(http: TestClient) -> None:
    """No login guards these pages; a NUL was a 500 on PostgreSQL (it cannot compare one)."""
    for resp in (
        http.get("/webizpay/authorize", params={"token": "a\x00b"}),
        http.get("/webizpay/pay", params={"token": "a\x00b"}),
        http.post("/webizpay/authorize", data={"token": "a\x00b"}),
        http.post("/webizpay/pay", data={"token": "a\x00b", "amount": "1"}),
    ):
        assert resp.status_code == 400 and "must not contain NUL" in resp.text, resp.text


def _hold_payment_row(database_url: str, txid: str) -> tuple[Any, Any]:
    """A second connection that row-locks the payment, as a refund in progress elsewhere would."""
    import sqlalchemy as sa

    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    conn = engine.connect()
    conn.exec_driver_sql("SELECT 1 FROM webizpay_payments WHERE transaction_id = %s FOR UPDATE", (txid,))
    return engine, conn


@pytest.mark.parametrize("same_out_refund_no", [False, True])
def test_concurrent_refunds_of_one_payment(
    client_a: ApiClient,
    control: TestClient,
    app: WxPartnerApp,
    database_url: str,
    same_out_refund_no: bool,
) -> None:
    """Two refunds of one payment at once (PostgreSQL runs them in parallel). Before, both read the
    payment before either bumped it: the second PAYMENTREFUNDSUCCESS said refunded_amount 300 where
    600 had been refunded, and the same out_refund_no twice made the second a 500 (unique violation)
    instead of the first refund's answer."""
    import threading

    emp = authorize(client_a, control, "employee123")
    card = issue(client_a, emp, "mch_card_123456")
    paid = control.post("/sandbox/webizpay/payments", json={"card_no": card["card_no"], "amount": 1000})
    txid = paid.json()["transaction_id"]
    answers: list[Any] = []
    names = ["r_same", "r_same"] if same_out_refund_no else ["r_one", "r_two"]

    def refund(out_no: str) -> None:
        body = {"transaction_id": txid, "amount": 300, "out_refund_no": out_no}
        answers.append(control.post("/sandbox/webizpay/refunds", json=body))

    threads = [threading.Thread(target=refund, args=(n,)) for n in names]
    if database_url.startswith("postgresql"):
        engine, holder = _hold_payment_row(database_url, txid)
        for t in threads:
            t.start()
        wait_for_lock_waiters(database_url, 2)  # both refunds wait on the row now
        holder.rollback()
        holder.close()
        engine.dispose()
    else:
        for t in threads:
            t.start()
    for t in threads:
        t.join(30)
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    refunded = sorted(events(app, "WEBIZPAY.PAYMENTREFUNDSUCCESS"), key=lambda e: e["refunded_amount"])
    if same_out_refund_no:
        assert len({a.json()["refund_id"] for a in answers}) == 1
        assert [e["refunded_amount"] for e in refunded] == [300]
    else:
        assert [e["refunded_amount"] for e in refunded] == [300, 600]
        assert sorted(a.json()["refunded_amount"] for a in answers) == [300, 600]


def test_control_refusals_carry_the_business_apis_detail(client_a: ApiClient, control: TestClient) -> None:
    """A business refusal through the control API has the business API's shape, detail included: how
    much is left, what is refundable, the card's state, the field that names no sub-merchant. It used to
    answer code and message only."""
    emp = authorize(client_a, control, "employee123")
    card = issue(client_a, emp, "mch_card_123456")  # 10000 fen
    over = control.post("/sandbox/webizpay/payments", json={"card_no": card["card_no"], "amount": 10001})
    assert over.status_code == 400, over.text
    assert over.json()["code"] == "INVALID_REQUEST"
    assert over.json()["detail"] == {"remain_amount": 10000}
    paid = control.post("/sandbox/webizpay/payments", json={"card_no": card["card_no"], "amount": 4000})
    assert paid.status_code == 200, paid.text
    too_much = control.post(
        "/sandbox/webizpay/refunds", json={"transaction_id": paid.json()["transaction_id"], "amount": 4001}
    )
    assert too_much.status_code == 400 and too_much.json()["detail"] == {"refundable": 4000}, too_much.text
    client_a.post(f"/v3/webizpay/employees/{emp}/revoke", {"sp_mchid": SP_A, "sub_mchid": SUB_A})
    disabled = control.post("/sandbox/webizpay/payments", json={"card_no": card["card_no"], "amount": 1})
    assert disabled.status_code == 400 and disabled.json()["detail"] == {"state": "DISABLED"}, disabled.text
    # refused before the domain: the control API's own refusal, in the same shape as a body field's
    stranger = control.post(
        "/sandbox/webizpay/authorizations",
        json={"sp_mchid": SP_A, "sub_mchid": "1999999999", "user_id": "emp_99"},
    )
    assert stranger.status_code == 400 and stranger.json()["code"] == "PARAM_ERROR", stranger.text
    assert stranger.json()["detail"] == {
        "field": "/sub_mchid",
        "location": "body",
        "value": "1999999999",
        "issue": "not a sub-merchant",
    }
    # a refusal without a detail has none (not "detail": null)
    missing = control.post("/sandbox/webizpay/refunds", json={"transaction_id": "4200nope", "amount": 1})
    assert missing.status_code == 404 and set(missing.json()) == {"code", "message"}, missing.text
