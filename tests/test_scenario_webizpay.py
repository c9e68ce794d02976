"""The webizpay section of a scenario export loads back into the same sandbox: relations (AUTHORIZED
and REVOKED, with their employee_ids and times), cards (ACTIVE, cancelled, expired, used, with their
card_no, amounts and state) and payments. The export wrote only the templates: an export, reset and
load lost every employee, card and payment."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import pytest
from starlette.testclient import TestClient

from support import SP_A, SUB_A, SUB_B, ApiClient
from webizpay_support import authorize, events, get_card, issue
from wxpartner.domain.webizpay import quota_cards
from wxpartner.protocol.times import parse_rfc3339
from wxpartner.sandbox import scenario
from wxpartner.server import webizpay_scenario
from wxpartner.server.app import WxPartnerApp


def _w2(client: ApiClient, user_id: str) -> Any:
    resp = client.get(f"/v3/webizpay/users/{user_id}/authorization-state?sp_mchid={SP_A}&sub_mchid={SUB_A}")
    assert resp.status_code == 200, resp.text
    return resp.json()


def _pay(control: TestClient, card_no: str, amount: int, out_trade_no: str) -> str:
    resp = control.post(
        "/sandbox/webizpay/payments",
        json={"card_no": card_no, "amount": amount, "out_trade_no": out_trade_no, "store": {"name": "食堂"}},
    )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["transaction_id"])


def _sandbox(client: ApiClient, control: TestClient) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Employees (one revoked), and cards: used (MULTIPLE, partly refunded), SINGLE used up, cancelled,
    expired, and a revoked employee's. Returns user_id -> employee_id and the (employee_id, card_no)s."""
    now = control.get("/sandbox/clock").json()["now_ts"]
    assert control.post("/sandbox/clock", json={"set": now, "freeze": True}).status_code == 200
    emp = {u: authorize(client, control, u) for u in ("user_rt_01", "user_rt_02", "user_rt_03")}
    end = "2200-01-01T00:00:00+08:00"  # the clock moves past 2099 (the expired card's end) below
    used = issue(client, emp["user_rt_01"], "rt_used", effective_end_time=end)
    single = issue(
        client,
        emp["user_rt_01"],
        "rt_single",
        card_template_id="template_single_return",
        effective_end_time=end,
    )
    cancelled = issue(client, emp["user_rt_01"], "rt_cancelled", card_remark=None, effective_end_time=end)
    expiring = issue(client, emp["user_rt_02"], "rt_expired", effective_end_time="2099-01-01T00:00:00+08:00")
    revoked = issue(client, emp["user_rt_03"], "rt_revoked", effective_end_time=end)
    tx = _pay(control, used["card_no"], 1500, "trade_1")
    _pay(control, used["card_no"], 200, "trade_2")
    _pay(control, single["card_no"], 300, "trade_3")
    refund = control.post("/sandbox/webizpay/refunds", json={"transaction_id": tx, "amount": 500})
    assert refund.status_code == 200, refund.text
    cancel = client.post(
        f"/v3/webizpay/employees/{emp['user_rt_01']}/quota-cards/{cancelled['card_no']}/cancel",
        {"sp_mchid": SP_A, "sub_mchid": SUB_A, "reason": "商户主动作废"},
    )
    assert cancel.status_code == 200, cancel.text
    revoke = client.post(
        f"/v3/webizpay/employees/{emp['user_rt_03']}/revoke", {"sp_mchid": SP_A, "sub_mchid": SUB_A}
    )
    assert revoke.status_code == 200, revoke.text
    moved = control.post("/sandbox/clock", json={"set": 4_070_966_400 + 60, "freeze": True})  # past 2099
    assert moved.status_code == 200, moved.text
    assert control.post("/sandbox/webizpay/sweep").status_code == 200  # (a clock move may have swept)
    cards = [
        (emp[u], c["card_no"])
        for u, c in (
            ("user_rt_01", used),
            ("user_rt_01", single),
            ("user_rt_01", cancelled),
            ("user_rt_02", expiring),
            ("user_rt_03", revoked),
        )
    ]
    return emp, cards


def _answers(client: ApiClient, emp: dict[str, str], cards: list[tuple[str, str]]) -> Any:
    w2 = {u: _w2(client, u) for u in emp}
    w4 = []
    for e, card_no in cards:
        resp = get_card(client, e, card_no)
        assert resp.status_code == 200, resp.text
        w4.append(resp.json())
    return w2, w4


def test_an_export_loads_back_into_the_same_answers(
    client_a: ApiClient, control: TestClient, app: WxPartnerApp
) -> None:
    emp, cards = _sandbox(client_a, control)
    before = _answers(client_a, emp, cards)
    states = {c["out_card_no"]: (c["card_state"], c["remain_amount"]) for c in before[1]}
    assert states == {
        "rt_used": ("ACTIVE", 10000 - 1500 - 200 + 500),
        "rt_single": ("ACTIVE", 9700),
        "rt_cancelled": ("DISABLED", 10000),
        "rt_expired": ("DISABLED", 10000),
        "rt_revoked": ("DISABLED", 10000),
    }
    exported = control.get("/sandbox/scenario")
    assert exported.status_code == 200
    document = exported.json()
    section = document["webizpay"]
    assert len(section["employees"]) == 3 and len(section["cards"]) == 5 and len(section["spends"]) == 3
    assert {e["state"] for e in section["employees"]} == {"AUTHORIZED", "REVOKED"}

    assert control.post("/sandbox/reset", json={}).status_code == 200
    assert "webizpay" not in control.get("/sandbox/scenario").json()
    loaded = control.post("/sandbox/scenario", content=exported.content)
    assert loaded.status_code == 200, loaded.text
    assert loaded.json()["webizpay"]["card_nos"] == [c["card_no"] for c in section["cards"]]
    assert control.get("/sandbox/scenario").json() == document
    assert _answers(client_a, emp, cards) == before

    # the same file again: nothing more (no second relation, card or payment)
    again = control.post("/sandbox/scenario", content=exported.content)
    assert again.status_code == 200, again.text
    assert control.get("/sandbox/scenario").json() == document
    assert _answers(client_a, emp, cards) == before
    # and what loaded back is alive: the used card pays on
    _pay(control, cards[0][1], 100, "trade_after")
    assert get_card(client_a, *cards[0]).json()["remain_amount"] == 8700


def test_an_old_file_loads_as_it_did(control: TestClient, client_a: ApiClient, app: WxPartnerApp) -> None:
    """Without the new fields, a card is issued now (W3), a spend paid now (its callback queued)."""
    old = {
        "webizpay": {
            "employees": [{"sp_mchid": SP_A, "sub_mchid": SUB_A, "user_id": "user_old_1"}],
            "cards": [
                {
                    "sp_mchid": SP_A,
                    "sub_mchid": SUB_A,
                    "user_id": "user_old_1",
                    "out_card_no": "old_card_1",
                    "amount": 1000,
                    "card_name": "差旅费用卡",
                    "effective_end_time": "2099-12-31T23:59:59+08:00",
                }
            ],
            "spends": [
                {"sp_mchid": SP_A, "sub_mchid": SUB_A, "out_card_no": "old_card_1", "amount": 150},
                {"sp_mchid": SP_A, "sub_mchid": SUB_A, "out_card_no": "old_card_1", "amount": 50},
            ],
        }
    }
    loaded = control.post("/sandbox/scenario", json=old)
    assert loaded.status_code == 200, loaded.text
    report = loaded.json()["webizpay"]
    [employee_id], [card_no] = report["employee_ids"], report["card_nos"]
    assert len(report["transaction_ids"]) == 2
    card = get_card(client_a, employee_id, card_no).json()
    assert (card["card_state"], card["remain_amount"]) == ("ACTIVE", 800)
    assert len(events(app, "WEBIZPAY.PAYMENTSUCCESS")) == 2
    # an old card entry still refuses an end in the past, as W3 does
    old["webizpay"]["cards"][0].update(
        out_card_no="old_card_2", effective_end_time="2001-01-01T00:00:00+08:00"
    )
    del old["webizpay"]["spends"]
    refused = control.post("/sandbox/scenario", json=old)
    assert refused.status_code == 400
    assert refused.json()["message"].startswith("webizpay.cards[0].effective_end_time: ")


def _restored_card(**over: Any) -> dict[str, Any]:
    card = {
        "sp_mchid": SP_A,
        "sub_mchid": SUB_A,
        "user_id": "user_taken_1",
        "out_card_no": "taken_card_2",
        "amount": 1000,
        "card_name": "差旅费用卡",
        "effective_end_time": "2099-12-31T23:59:59+08:00",
        "card_no": "1000000000000000002",
    }
    return {**card, **over}


def test_a_taken_card_no_is_refused_naming_its_path(control: TestClient) -> None:
    first = {
        "webizpay": {
            "employees": [{"sp_mchid": SP_A, "sub_mchid": SUB_A, "user_id": "user_taken_1"}],
            "cards": [_restored_card(out_card_no="taken_card_1", card_no="1000000000000000001")],
        }
    }
    assert control.post("/sandbox/scenario", json=first).status_code == 200
    second = {
        "webizpay": {
            "cards": [
                _restored_card(),
                _restored_card(out_card_no="taken_card_3", card_no="1000000000000000001"),
            ]
        }
    }
    refused = control.post("/sandbox/scenario", json=second)
    assert refused.status_code == 400, refused.text
    body = refused.json()
    assert body["code"] == "SCENARIO_ERROR"
    assert body["detail"]["field"] == "webizpay.cards[1].card_no", body
    assert "1000000000000000001 is taken" in body["message"]
    # nothing of the file was written (its first card neither)
    cards = control.get("/sandbox/scenario").json()["webizpay"]["cards"]
    assert [c["card_no"] for c in cards] == ["1000000000000000001"]


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        (_restored_card(state="CANCELLED"), "webizpay.cards[0].state"),
        (_restored_card(remain_amount=1001), "webizpay.cards[0].remain_amount"),
        (_restored_card(remain_amount=-1), "webizpay.cards[0].remain_amount"),
        (_restored_card(card_no="a/b"), "webizpay.cards[0].card_no"),
        (_restored_card(card_no="1" * 65), "webizpay.cards[0].card_no"),
        (_restored_card(effective_begin_time="yesterday"), "webizpay.cards[0].effective_begin_time"),
        (_restored_card(reason="作废"), "webizpay.cards[0].reason"),  # an ACTIVE card has none
        (_restored_card(card_rule="TWICE"), "webizpay.cards[0].card_rule"),
        (_restored_card(employee_id="WeBizPay_nobody"), "webizpay.cards[0].employee_id"),
    ],
)
def test_a_restored_card_is_validated_strictly(
    control: TestClient, entry: dict[str, Any], field: str
) -> None:
    data = {
        "webizpay": {
            "employees": [{"sp_mchid": SP_A, "sub_mchid": SUB_A, "user_id": "user_taken_1"}],
            "cards": [entry],
        }
    }
    refused = control.post("/sandbox/scenario", json=data)
    assert refused.status_code == 400, refused.text
    assert refused.json()["detail"]["field"] == field, refused.json()


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"state": "REVOKED"}, "webizpay.employees[0].employee_id"),  # loaded twice, it made two
        ({"state": "GONE", "employee_id": "WeBizPay_x"}, "webizpay.employees[0].state"),
        ({"reason": "员工注销"}, "webizpay.employees[0].reason"),  # an AUTHORIZED one has none
        ({"authorization_time": "2025-13-01T00:00:00Z"}, "webizpay.employees[0].authorization_time"),
    ],
)
def test_an_employee_entry_is_validated_strictly(
    control: TestClient, entry: dict[str, Any], field: str
) -> None:
    data = {
        "webizpay": {"employees": [{"sp_mchid": SP_A, "sub_mchid": SUB_A, "user_id": "user_bad_1", **entry}]}
    }
    refused = control.post("/sandbox/scenario", json=data)
    assert refused.status_code == 400, refused.text
    assert refused.json()["detail"]["field"] == field, refused.json()


def test_an_export_of_many_cards_streams(
    app: WxPartnerApp, control: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cards and payments are lists read EXPORT_BATCH rows at a time (``scenario.Rows``), not
    materialised: the answer comes in chunks of no more than a batch of them."""
    monkeypatch.setattr(scenario, "EXPORT_BATCH", 10)
    n = 45
    data = {
        "webizpay": {
            "employees": [
                {
                    "sp_mchid": SP_A,
                    "sub_mchid": SUB_A,
                    "user_id": "user_many_1",
                    "authorization_time": "1970-01-01T00:00:00Z",
                }
            ],
            "cards": [
                _restored_card(
                    user_id="user_many_1",
                    out_card_no=f"many_{i:04d}",
                    card_no=f"1{i:018d}",
                    effective_begin_time="1970-01-01T00:00:00Z",
                    transaction_id=f"42{i:026d}",
                    card_usage_time=PAID_AT,
                )
                for i in range(n)
            ],
            "spends": [
                {
                    "sp_mchid": SP_A,
                    "sub_mchid": SUB_A,
                    "out_card_no": f"many_{i:04d}",
                    "amount": 1,
                    "transaction_id": f"42{i:026d}",
                    "success_time": PAID_AT,
                }
                for i in range(n)
            ],
        }
    }
    assert control.post("/sandbox/scenario", json=data).status_code == 200
    with app.state.db.snapshot() as conn:
        value = scenario.export_value(conn)["webizpay"]
        assert all(isinstance(value[k], scenario.Rows) for k in ("employees", "cards", "spends"))
    chunks = list(scenario.export_json(app.state.db))
    assert len(chunks) >= 2 * n // 10
    for chunk in chunks:
        assert chunk.count(b'"card_name"') <= 10 and chunk.count(b'"goods_name"') <= 10
    exported = json.loads(b"".join(chunks))["webizpay"]
    assert len(exported["cards"]) == n and len(exported["spends"]) == n


TRADE_BILL = "/v3/webizpay/bill/trade-bill"


def _trade_bill(client: ApiClient, date: str) -> bytes:
    """W12's trade bill of ``date``: the downloaded file's bytes."""
    body = {"sp_mchid": SP_A, "sub_mchid": SUB_A, "date": date, "type": "QYZFALL"}
    resp = client.post(TRADE_BILL, body)
    assert resp.status_code == 200, resp.text
    url = urlsplit(resp.json()["download_url"])
    file = client.get(f"{url.path}?{url.query}")
    assert file.status_code == 200, file.text
    return file.content


def _refund(control: TestClient, transaction_id: str, amount: int, out_refund_no: str | None = None) -> Any:
    body: dict[str, Any] = {"transaction_id": transaction_id, "amount": amount}
    if out_refund_no is not None:
        body["out_refund_no"] = out_refund_no
    resp = control.post("/sandbox/webizpay/refunds", json=body)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_a_round_trip_keeps_the_refunds(client_a: ApiClient, control: TestClient) -> None:
    """The refunds are exported (``refunds``) and load back as they were: the trade bill's REFUND lines,
    and a refund asked again with its out_refund_no answers the same refund. The export kept only each
    payment's refunded_amount: the bill lost its refund lines."""
    day = "2026-03-14"
    assert (
        control.post("/sandbox/clock", json={"set": f"{day}T10:00:00+08:00", "freeze": True}).status_code
        == 200
    )
    employee_id = authorize(client_a, control, "user_rf_01")
    card = issue(client_a, employee_id, "rf_card", effective_end_time="2099-01-01T00:00:00+08:00")
    first = _pay(control, card["card_no"], 1500, "trade_rf_1")
    second = _pay(control, card["card_no"], 800, "trade_rf_2")
    control.post("/sandbox/clock", json={"advance": 60})
    r1 = _refund(control, first, 500, "refund_rf_1")
    control.post("/sandbox/clock", json={"advance": 60})
    r2 = _refund(control, first, 300)  # its out_refund_no made up by the sandbox
    control.post("/sandbox/clock", json={"advance": 60})  # (the export lists them by time, then refund_id)
    r3 = _refund(control, second, 800, "refund_rf_3")
    assert (
        control.post("/sandbox/clock", json={"set": f"{day}T23:00:00+08:00", "freeze": True}).status_code
        == 200
    )
    control.post("/sandbox/clock", json={"advance": 3600 * 2})  # the next day: the bill of the day is ready
    bill = _trade_bill(client_a, day)
    assert bill.count(b"REFUND") == 3
    exported = control.get("/sandbox/scenario")
    document = exported.json()
    refunds = document["webizpay"]["refunds"]
    assert [(r["refund_id"], r["amount"]) for r in refunds] == [
        (r1["refund_id"], 500),
        (r2["refund_id"], 300),
        (r3["refund_id"], 800),
    ]
    assert refunds[0]["out_refund_no"] == "refund_rf_1" and refunds[1]["out_refund_no"] == r2["out_refund_no"]
    clock = control.get("/sandbox/clock").json()["now_ts"]

    assert control.post("/sandbox/reset", json={}).status_code == 200
    assert control.post("/sandbox/clock", json={"set": clock, "freeze": True}).status_code == 200
    loaded = control.post("/sandbox/scenario", content=exported.content)
    assert loaded.status_code == 200, loaded.text
    assert loaded.json()["webizpay"]["refund_ids"] == [r["refund_id"] for r in refunds]
    assert control.get("/sandbox/scenario").json() == document
    assert _trade_bill(client_a, day) == bill
    # the control API knows them: the same out_refund_no answers the same refund, nothing more refunded
    again = _refund(control, first, 500, "refund_rf_1")
    assert (again["refund_id"], again["refunded_amount"]) == (r1["refund_id"], 800)

    # the same file again duplicates nothing
    twice = control.post("/sandbox/scenario", content=exported.content)
    assert twice.status_code == 200, twice.text
    assert control.get("/sandbox/scenario").json() == document
    assert _trade_bill(client_a, day) == bill


TX = "4200000000000000000000000001"
PAID_AT = "2026-03-14T09:30:00.000+08:00"


def _restored_file(
    *, spend: dict[str, Any] | None = None, refunds: list[dict[str, Any]] | None = None
) -> Any:
    """One employee, one restored card, one recorded spend of 600 with 500 refunded in two refunds;
    in the order the sandbox makes them: authorized, issued, paid (the card's last payment), refunded."""
    return {
        "webizpay": {
            "employees": [
                {
                    "sp_mchid": SP_A,
                    "sub_mchid": SUB_A,
                    "user_id": "user_taken_1",
                    "authorization_time": "2026-03-01T09:00:00.000+08:00",
                }
            ],
            "cards": [
                _restored_card(
                    out_card_no="rf_card_1",
                    remain_amount=900,
                    effective_begin_time="2026-03-10T10:00:00.000+08:00",
                    transaction_id=TX,
                    card_usage_time=PAID_AT,
                )
            ],
            "spends": [
                {
                    "sp_mchid": SP_A,
                    "sub_mchid": SUB_A,
                    "out_card_no": "rf_card_1",
                    "amount": 600,
                    "transaction_id": TX,
                    "refunded_amount": 500,
                    "success_time": PAID_AT,
                    **(spend or {}),
                }
            ],
            "refunds": [
                _refund_entry(),
                _refund_entry(refund_id="5000000000000000000000000002", out_refund_no="r2", amount=200),
            ]
            if refunds is None
            else refunds,
        }
    }


def _refund_entry(**over: Any) -> dict[str, Any]:
    entry = {
        "transaction_id": TX,
        "refund_id": "5000000000000000000000000001",
        "out_refund_no": "r1",
        "amount": 300,
        "create_time": "2026-03-14T10:00:00.000+08:00",
        "success_time": "2026-03-14T10:00:00.000+08:00",
    }
    return {**entry, **over}


@pytest.mark.parametrize(
    ("spend", "refunds", "field"),
    [
        ({"refunded_amount": 400}, None, "webizpay.spends[0].refunded_amount"),  # 300 + 200 is 500
        (None, [_refund_entry()], "webizpay.spends[0].refunded_amount"),
        ({"refunded_amount": None}, None, "webizpay.spends[0].refunded_amount"),
        (
            None,
            [_refund_entry(), _refund_entry(out_refund_no="r2", amount=200)],
            "webizpay.refunds[1].refund_id",
        ),
        (
            None,
            [_refund_entry(), _refund_entry(refund_id="5000000000000000000000000002")],
            "webizpay.refunds[1].out_refund_no",
        ),
        (
            None,
            [_refund_entry(transaction_id="4200000000000000000000000009")],
            "webizpay.refunds[0].transaction_id",
        ),
        (None, [_refund_entry(amount=0)], "webizpay.refunds[0].amount"),
        (None, [_refund_entry(refund_id="a/b")], "webizpay.refunds[0].refund_id"),
        (
            None,
            [_refund_entry(success_time="2026-03-14T09:59:59.999+08:00")],
            "webizpay.refunds[0].success_time",
        ),
        (None, [_refund_entry(note="x")], "webizpay.refunds[0].note"),
    ],
)
def test_refunds_are_checked_against_their_spend(
    control: TestClient, spend: dict[str, Any] | None, refunds: list[dict[str, Any]] | None, field: str
) -> None:
    refused = control.post("/sandbox/scenario", json=_restored_file(spend=spend, refunds=refunds))
    assert refused.status_code == 400, refused.text
    body = refused.json()
    assert (body["code"], body["detail"]["field"]) == ("SCENARIO_ERROR", field), body
    assert body["message"].startswith(f"{field}: "), body
    assert "webizpay" not in control.get("/sandbox/scenario").json()  # nothing written
    assert control.post("/sandbox/scenario", json=_restored_file()).status_code == 200


# ---- hostile input: each restored field, wrong ---------------------------------------------------
HUGE = 2**70  # past int64
TX2 = "4200000000000000000000000002"


def _full_file() -> dict[str, Any]:
    """_restored_file with a second employee (REVOKED), a SINGLE card and a DISABLED one."""
    data = _restored_file()
    w = data["webizpay"]
    w["employees"].append(
        {
            "sp_mchid": SP_A,
            "sub_mchid": SUB_A,
            "user_id": "user_gone_1",
            "employee_id": "WeBizPay_gone_1",
            "state": "REVOKED",
            "authorization_time": "2026-03-01T10:00:00.000+08:00",
            "authorization_revoked_time": "2026-03-02T10:00:00.000+08:00",
            "reason": "员工注销",
        }
    )
    w["cards"] += [
        _restored_card(
            out_card_no="rf_single_1",
            card_no="1000000000000000003",
            effective_begin_time="2026-03-10T10:00:00.000+08:00",
            card_template_id="template_single_return",
            card_rule="SINGLE",
            refund_rule="RETURN",
            remain_amount=700,
            transaction_id=TX2,
            card_usage_time="2026-03-14T09:00:00.000+08:00",
        ),
        _restored_card(
            user_id="user_gone_1",
            employee_id="WeBizPay_gone_1",
            out_card_no="rf_gone_1",
            card_no="1000000000000000004",
            effective_begin_time="2026-03-01T12:00:00.000+08:00",
            state="DISABLED",
            card_disabled_time="2026-03-02T10:00:00.000+08:00",
            reason="员工已解除授权",
        ),
    ]
    w["spends"].append(
        {
            "sp_mchid": SP_A,
            "sub_mchid": SUB_A,
            "out_card_no": "rf_single_1",
            "amount": 300,
            "transaction_id": TX2,
            "success_time": "2026-03-14T09:00:00.000+08:00",
        }
    )
    return data


def _set(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """``data`` with the field at ``path`` (webizpay.cards[1].amount) set (or, for _DROP, removed)."""
    *parents, last = path.replace("]", "").replace("[", ".").split(".")
    node: Any = data
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    if value is _DROP:
        del node[last]
    elif last.isdigit():  # a list's item, or one more at its end
        index = int(last)
        if index == len(node):
            node.append(value)
        else:
            node[index] = value
    else:
        node[last] = value
    return data


_DROP = object()
_WRONG_VALUES: list[tuple[Any, ...]] = [
    # (path, value[, the path named when not that one]): the whole file refused
    ("webizpay.employees[0].user_id", 123456789),
    ("webizpay.employees[0].employee_id", ""),
    ("webizpay.employees[0].employee_id", 7),
    ("webizpay.employees[1].employee_id", _DROP),
    ("webizpay.employees[1].employee_id", "WeBizPay\x00gone"),
    ("webizpay.employees[1].authorization_time", "1969-12-31T23:59:59.000Z"),
    ("webizpay.employees[1].authorization_time", "10000-01-01T00:00:00Z"),
    ("webizpay.employees[1].authorization_time", "2026-03-01T10:00:00\x00Z"),
    ("webizpay.employees[1].authorization_time", 1772330400),
    ("webizpay.employees[1].authorization_revoked_time", "2026-02-01T10:00:00.000+08:00"),
    ("webizpay.employees[1].reason", True),
    ("webizpay.employees[1].state", "revoked"),
    ("webizpay.cards[0].amount", -1),
    ("webizpay.cards[0].amount", 0),
    ("webizpay.cards[0].amount", HUGE),
    ("webizpay.cards[0].amount", 1000.5),
    ("webizpay.cards[0].amount", True),
    ("webizpay.cards[0].amount", "1000"),
    ("webizpay.cards[0].remain_amount", 1001),
    ("webizpay.cards[0].remain_amount", -1),
    ("webizpay.cards[0].remain_amount", HUGE),
    ("webizpay.cards[0].remain_amount", 900.0),
    ("webizpay.cards[0].remain_amount", True),
    ("webizpay.cards[0].remain_amount", "900"),
    ("webizpay.cards[0].card_no", 1000000000000000002),
    ("webizpay.cards[0].card_no", "1000\x00"),
    ("webizpay.cards[0].state", "active"),
    ("webizpay.cards[0].state", "CANCELLED"),
    ("webizpay.cards[0].effective_begin_time", "0000-01-01T00:00:00Z"),
    ("webizpay.cards[0].effective_begin_time", "9999-12-31T23:59:59-23:59"),
    ("webizpay.cards[0].effective_end_time", "2026-03-14T10:00:00\x00+08:00"),
    ("webizpay.cards[0].card_usage_time", "1969-01-01T00:00:00Z"),
    ("webizpay.cards[0].sub_mchid", SUB_B, "webizpay.cards[0].user_id"),  # no relation of its user there
    ("webizpay.cards[2].state", "ACTIVE"),  # of a REVOKED relation
    ("webizpay.cards[2].card_disabled_time", _DROP),
    ("webizpay.cards[2].reason", _DROP),
    ("webizpay.cards[0].transaction_id", TX2),  # the SINGLE card's payment
    ("webizpay.cards[0].remain_amount", 400, "webizpay.cards[0].remain_amount"),  # 1000 - 600 + 500 (RETURN)
    ("webizpay.cards[1].remain_amount", 0),  # a SINGLE card's payment of 300 left 700
    ("webizpay.cards[1].transaction_id", _DROP),  # a used SINGLE card names its payment
    ("webizpay.spends[1].amount", 301, "webizpay.cards[1].remain_amount"),  # 1000 - 301 is not 700
    ("webizpay.spends[0].out_card_no", "rf_single_1", "webizpay.spends[1]"),  # a SINGLE card paid twice
    ("webizpay.spends[0].amount", -1),
    ("webizpay.spends[0].amount", HUGE),
    ("webizpay.spends[0].amount", 600.0),
    ("webizpay.spends[0].amount", True),
    ("webizpay.spends[0].refunded_amount", 601),
    ("webizpay.spends[0].refunded_amount", HUGE),
    ("webizpay.spends[0].refunded_amount", 500.0),
    ("webizpay.spends[0].refunded_amount", -1),
    ("webizpay.spends[0].transaction_id", TX2, "webizpay.spends[1].transaction_id"),  # twice in the file
    ("webizpay.spends[0].transaction_id", "4200\x00"),
    ("webizpay.spends[0].success_time", "10000-01-01T00:00:00Z"),
    ("webizpay.spends[0].success_time", "2026-03-14T10:00:00.000+08:00\x00"),
    ("webizpay.spends[0].sub_mchid", SUB_B, "webizpay.spends[0].out_card_no"),  # its card is SUB_A's
    ("webizpay.spends[0].out_card_no", "rf_gone_x"),
    ("webizpay.spends[0].store", {"name": 5}, "webizpay.spends[0].store.name"),
    ("webizpay.spends[0].goods_name", ["午餐"]),
    ("webizpay.refunds[0].amount", -300),
    ("webizpay.refunds[0].amount", HUGE),
    ("webizpay.refunds[0].amount", 300.0),
    ("webizpay.refunds[0].amount", True),
    ("webizpay.refunds[0].refund_id", None),
    ("webizpay.refunds[0].create_time", "1969-12-31T23:59:59Z"),
    ("webizpay.refunds[0].success_time", "2026-03-14T10:00:00\x00Z"),
    # a REVOKED relation has its revoke time and reason (W8 answers both; every revoke stores them)
    ("webizpay.employees[1].reason", _DROP),
    ("webizpay.employees[1].authorization_revoked_time", _DROP),
    # a used card (MULTIPLE too) names its last payment and when it was made
    ("webizpay.cards[0].transaction_id", _DROP),
    ("webizpay.cards[0].card_usage_time", _DROP),
    ("webizpay.cards[0].card_usage_time", "2026-03-14T09:31:00.000+08:00"),
    # times in the order the sandbox makes them
    ("webizpay.refunds[0].create_time", "2026-03-14T09:29:59.999+08:00"),  # before its payment
    ("webizpay.spends[0].success_time", "2026-03-10T09:59:59.999+08:00"),  # before its card began
    (
        "webizpay.cards[0].effective_end_time",
        "2026-03-14T09:00:00+08:00",
        "webizpay.cards[0].card_usage_time",
    ),
    ("webizpay.cards[0].effective_begin_time", "2026-03-01T08:59:59.999+08:00"),  # before its relation
    ("webizpay.cards[0].effective_begin_time", "2099-12-31T23:59:59+08:00"),  # not before its end
    ("webizpay.cards[2].effective_begin_time", "2026-03-02T10:00:00.001+08:00"),  # after the revoke
    ("webizpay.cards[2].card_disabled_time", "2026-03-02T10:00:00.001+08:00"),  # after the revoke
    ("webizpay.cards[2].card_disabled_time", "2026-03-01T11:59:59.999+08:00"),  # before it began
]


def _case_id(case: tuple[Any, ...]) -> str:
    path, value = case[:2]
    shown = "DROP" if value is _DROP else repr(value)[:24]
    return f"{path.removeprefix('webizpay.')}={shown}"


def test_the_full_file_loads_with_lowercase_times(control: TestClient) -> None:
    data = _full_file()
    _set(data, "webizpay.employees[1].authorization_time", "2026-03-01t02:00:00.000z")  # 10:00+08:00
    loaded = control.post("/sandbox/scenario", json=data)
    assert loaded.status_code == 200, loaded.text


@pytest.mark.parametrize("case", _WRONG_VALUES, ids=[_case_id(c) for c in _WRONG_VALUES])
def test_a_wrong_restored_field_is_refused_naming_its_path(
    control: TestClient, case: tuple[Any, ...]
) -> None:
    path, value = case[:2]
    named = case[2] if len(case) > 2 else path
    refused = control.post("/sandbox/scenario", json=_set(_full_file(), path, value))
    assert refused.status_code == 400, refused.text
    body = refused.json()
    # a NUL is refused by the control API before the scenario is read (PARAM_ERROR), naming it alike
    code = "PARAM_ERROR" if "\x00" in str(value) else "SCENARIO_ERROR"
    assert (body["code"], body["detail"]["field"]) == (code, named), body
    assert body["message"].startswith(f"{named}: "), body
    assert "webizpay" not in control.get("/sandbox/scenario").json()  # nothing written


def _edited(*edits: tuple[str, Any]) -> dict[str, Any]:
    data = _full_file()
    for path, value in edits:
        _set(data, path, value)
    return data


_TX3 = "4200000000000000000000000003"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        # paid with a card after it was disabled (its relation revoked)
        (
            _edited(
                ("webizpay.spends[0].out_card_no", "rf_gone_1"),
                ("webizpay.spends[0].success_time", "2026-03-02T10:00:00.001+08:00"),
            ),
            "webizpay.spends[0].success_time",
        ),
        # paid with a card after its end
        (
            _edited(
                ("webizpay.cards[0].effective_end_time", "2026-03-14T09:45:00+08:00"),
                ("webizpay.spends[0].success_time", "2026-03-14T09:45:00.001+08:00"),
            ),
            "webizpay.spends[0].success_time",
        ),
        # a MULTIPLE card paid twice names the later payment, not the earlier one
        (
            _edited(
                ("webizpay.cards[0].remain_amount", 800),
                (
                    "webizpay.spends[2]",
                    {
                        "sp_mchid": SP_A,
                        "sub_mchid": SUB_A,
                        "out_card_no": "rf_card_1",
                        "amount": 100,
                        "transaction_id": _TX3,
                        "success_time": "2026-03-14T09:40:00.000+08:00",
                    },
                ),
            ),
            "webizpay.cards[0].transaction_id",
        ),
        # a payment recorded as it was, with a card issued now (its remain_amount and last use would
        # be W3's, as if never paid): the card must be restored too
        (
            _edited(
                (
                    "webizpay.cards[2]",
                    {
                        "sp_mchid": SP_A,
                        "sub_mchid": SUB_A,
                        "user_id": "user_taken_1",
                        "out_card_no": "plain_card_1",
                        "amount": 1000,
                        "card_name": "差旅费用卡",
                        "effective_end_time": "2099-12-31T23:59:59+08:00",
                    },
                ),
                (
                    "webizpay.spends[2]",
                    {
                        "sp_mchid": SP_A,
                        "sub_mchid": SUB_A,
                        "out_card_no": "plain_card_1",
                        "amount": 100,
                        "transaction_id": "4200000000000000000000000009",
                    },
                ),
            ),
            "webizpay.spends[2].transaction_id",
        ),
    ],
    ids=["paid-after-disabled", "paid-after-end", "names-an-earlier-payment", "paid-with-a-card-issued-now"],
)
def test_a_history_the_sandbox_could_not_have_made_is_refused(
    control: TestClient, data: dict[str, Any], field: str
) -> None:
    refused = control.post("/sandbox/scenario", json=data)
    assert refused.status_code == 400, refused.text
    body = refused.json()
    assert (body["code"], body["detail"]["field"]) == ("SCENARIO_ERROR", field), body
    assert body["message"].startswith(f"{field}: "), body
    assert "webizpay" not in control.get("/sandbox/scenario").json()  # nothing written


def test_a_multiple_card_paid_twice_loads_naming_its_last_payment(control: TestClient) -> None:
    """The case above, right: the card names the later payment and its time; loaded twice, once."""
    data = _edited(
        ("webizpay.cards[0].remain_amount", 800),
        ("webizpay.cards[0].transaction_id", _TX3),
        ("webizpay.cards[0].card_usage_time", "2026-03-14T01:40:00Z"),  # 09:40+08:00
        (
            "webizpay.spends[2]",
            {
                "sp_mchid": SP_A,
                "sub_mchid": SUB_A,
                "out_card_no": "rf_card_1",
                "amount": 100,
                "transaction_id": _TX3,
                "success_time": "2026-03-14T09:40:00.000+08:00",
            },
        ),
    )
    loaded = control.post("/sandbox/scenario", json=data)
    assert loaded.status_code == 200, loaded.text
    exported = control.get("/sandbox/scenario").json()
    assert control.post("/sandbox/scenario", json=data).status_code == 200
    assert control.get("/sandbox/scenario").json() == exported
    [card] = [c for c in exported["webizpay"]["cards"] if c["out_card_no"] == "rf_card_1"]
    assert (card["transaction_id"], card["remain_amount"]) == (_TX3, 800)


def test_an_issued_card_of_a_user_without_relation_names_its_user_id(control: TestClient) -> None:
    """A card entry issued now (no restored field) names the field that points at nothing, as the
    restored one does."""
    card = _restored_card(user_id="user_nobody_1")
    del card["card_no"]
    refused = control.post("/sandbox/scenario", json={"webizpay": {"cards": [card]}})
    assert refused.status_code == 400, refused.text
    assert refused.json()["detail"]["field"] == "webizpay.cards[0].user_id", refused.json()


def test_the_latest_end_is_the_domain_s_one() -> None:
    """One definition of the latest end time taken (W3's, public in the domain), not a copy of it
    recomputed in the scenario loader."""
    assert parse_rfc3339(quota_cards.LATEST_END).timestamp() == quota_cards.LATEST_END_AT
    assert not hasattr(webizpay_scenario, "_LATEST_END_AT")


def test_a_file_whose_last_entry_is_wrong_writes_nothing(control: TestClient) -> None:
    """One transaction: the employees, cards, spends and refunds before the wrong one are not written."""
    assert control.post("/sandbox/scenario", json=_full_file()).status_code == 200
    before = control.get("/sandbox/scenario").json()
    tx = "4200000000000000000000000003"
    more = {
        "webizpay": {
            "employees": [{"sp_mchid": SP_A, "sub_mchid": SUB_A, "user_id": "user_more_1"}],
            "cards": [
                _restored_card(user_id="user_more_1", out_card_no="more_1", card_no="1000000000000000009")
            ],
            "spends": [
                {
                    "sp_mchid": SP_A,
                    "sub_mchid": SUB_A,
                    "out_card_no": "more_1",
                    "amount": 100,
                    "transaction_id": tx,
                    "refunded_amount": 100,
                }
            ],
            "refunds": [
                _refund_entry(transaction_id=tx, refund_id="5000000000000000000000000009", amount=True)
            ],
        }
    }
    refused = control.post("/sandbox/scenario", json=more)
    assert refused.status_code == 400, refused.text
    assert refused.json()["detail"]["field"] == "webizpay.refunds[0].amount"
    assert control.get("/sandbox/scenario").json() == before


def _twice(name: str, i: int, **over: Any) -> dict[str, Any]:
    """_full_file with its ``name``[i] entry given again at the end (changed by ``over``)."""
    data = _full_file()
    entries = data["webizpay"][name]
    entries.append({**entries[i], **over})
    return data


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (_twice("employees", 1), "webizpay.employees[2].employee_id"),
        (_twice("employees", 0, employee_id="WeBizPay_other_1"), "webizpay.employees[2].user_id"),
        (_twice("cards", 0), "webizpay.cards[3].out_card_no"),
        (_twice("cards", 0, out_card_no="rf_card_9"), "webizpay.cards[3].card_no"),
        (_twice("spends", 0), "webizpay.spends[2].transaction_id"),
        (_twice("spends", 0, transaction_id=None, out_trade_no="t1"), "webizpay.spends[2].out_trade_no"),
        (_twice("refunds", 0), "webizpay.refunds[2].refund_id"),
    ],
)
def test_an_entry_given_twice_in_one_file_is_refused(control: TestClient, data: Any, field: str) -> None:
    if field.endswith("out_trade_no"):  # the first of the two names the same out_trade_no
        data["webizpay"]["spends"][0]["out_trade_no"] = "t1"
    refused = control.post("/sandbox/scenario", json=data)
    assert refused.status_code == 400, refused.text
    assert refused.json()["detail"]["field"] == field, refused.json()
    assert "webizpay" not in control.get("/sandbox/scenario").json()


def test_an_authorized_employee_keeps_its_employee_id(control: TestClient) -> None:
    """Loaded into a sandbox where the user is authorized under another employee_id, the entry was
    taken for that relation, its employee_id dropped silently."""
    first = {"webizpay": {"employees": [{"sp_mchid": SP_A, "sub_mchid": SUB_A, "user_id": "user_keep_1"}]}}
    assert control.post("/sandbox/scenario", json=first).status_code == 200
    first["webizpay"]["employees"][0]["employee_id"] = "WeBizPay_keep_2"
    refused = control.post("/sandbox/scenario", json=first)
    assert refused.status_code == 400, refused.text
    assert refused.json()["detail"]["field"] == "webizpay.employees[0].employee_id"
