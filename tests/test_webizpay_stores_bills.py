"""webizpay W9–W12: store entity matching, funding proofs and trade bills (with the file download),
over real signed HTTP. The business clock is frozen at a fixed day so date windows are deterministic."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import threading
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from support import SP_A, SP_B, SUB_A, SUB_B, ApiClient
from wxpartner.domain.webizpay_bills import TradeRow
from wxpartner.protocol.times import CHINA_TZ, parse_rfc3339
from wxpartner.server.app import WxPartnerApp
from wxpartner.store import registry, webizpay_bills_repo, webizpay_merchants_tables

MATCHES = "/v3/webizpay/stores/entity-matches"
PROOF = "/v3/webizpay/bill/proof"
TRADE_BILL = "/v3/webizpay/bill/trade-bill"
GOOD_CODE = "91110000710926094P"  # check digit valid
BAD_CODE = "91110000710926094X"  # check digit wrong
TODAY = dt.date(2026, 3, 15)
TRADE_HEADER = [  # README: the trade bill's columns, also the proof's transaction table
    "交易时间",
    "服务商商户号",
    "出资子商户号",
    "额度卡号",
    "员工授权关系ID",
    "微信支付订单号",
    "商户订单号",
    "收款商户简称",
    "收款商户全称",
    "收款商户统一社会信用代码",
    "交易状态",
    "订单金额(元)",
    "退款金额(元)",
]
NOW = "2026-03-15T12:00:00+08:00"


@pytest.fixture
def frozen(control: TestClient) -> TestClient:
    resp = control.post("/sandbox/clock", json={"set": NOW, "freeze": True})
    assert resp.status_code == 200, resp.text
    return control


def advance(control: TestClient, seconds: float) -> None:
    assert control.post("/sandbox/clock", json={"advance": seconds}).status_code == 200


def assert_error(resp: httpx.Response, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    assert body["code"] == code, body
    if field is not None:
        assert body["detail"]["field"] == field, body
    assert resp.headers.get("Wechatpay-Signature"), "error answers are signed too"
    return body


def match_body(out_batch_id: str = "batch_0001", sp: str = SP_A, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "sp_mchid": sp,
        "out_batch_id": out_batch_id,
        "match_details": [
            {
                "organization_code": GOOD_CODE,
                "store_name": "北京某某餐饮有限公司",
                "product_type": "CODE_PAY",
            },
            {"organization_code": BAD_CODE, "store_name": "某某便利店", "product_type": "NONE"},
        ],
    }
    body.update(extra)
    return body


def query(client: ApiClient, batch_id: str, sp: str | None = None) -> httpx.Response:
    return client.get(f"{MATCHES}/{batch_id}?sp_mchid={sp or client.mchid}")


# --- W9 / W10 ------------------------------------------------------------------------------------


def test_start_match_returns_accepted_batch(client_a: ApiClient, frozen: TestClient) -> None:
    resp = client_a.post(MATCHES, match_body())
    assert resp.status_code == 200, resp.text
    assert resp.headers["Wechatpay-Signature"]
    body = resp.json()
    assert body["sp_mchid"] == SP_A and body["out_batch_id"] == "batch_0001"
    assert body["state"] == "ACCEPTED"
    assert re.fullmatch(r"1030000071\d{15}", body["batch_id"])
    assert parse_rfc3339(body["time"]) == parse_rfc3339(NOW)


def test_match_progresses_per_query_and_reports_results(client_a: ApiClient, frozen: TestClient) -> None:
    batch_id = client_a.post(MATCHES, match_body()).json()["batch_id"]
    first = query(client_a, batch_id)
    assert first.status_code == 200, first.text
    assert first.json() == {
        "sp_mchid": SP_A,
        "out_batch_id": "batch_0001",
        "batch_id": batch_id,
        "state": "IN_PROGRESS",
    }
    second = query(client_a, batch_id).json()
    assert second["state"] == "COMPLETED"
    assert second["match_results"] == [
        {"organization_code": GOOD_CODE, "store_name": "北京某某餐饮有限公司", "has_valid_mchid": True},
        {"organization_code": BAD_CODE, "store_name": "某某便利店", "has_valid_mchid": False},
    ]
    assert query(client_a, batch_id).json() == second  # terminal


def test_match_completes_after_business_time(client_a: ApiClient, frozen: TestClient) -> None:
    batch_id = client_a.post(MATCHES, match_body()).json()["batch_id"]
    advance(frozen, 10)
    assert query(client_a, batch_id).json()["state"] == "COMPLETED"


def test_start_match_is_idempotent_per_merchant(
    client_a: ApiClient, client_b: ApiClient, frozen: TestClient
) -> None:
    first = client_a.post(MATCHES, match_body()).json()
    query(client_a, first["batch_id"])
    again = client_a.post(MATCHES, match_body())
    assert again.status_code == 200, again.text
    assert again.json()["batch_id"] == first["batch_id"]
    assert again.json()["state"] == "IN_PROGRESS"  # the batch as it is now
    changed = match_body(
        match_details=[{"organization_code": GOOD_CODE, "store_name": "x", "product_type": "NONE"}]
    )
    assert_error(client_a.post(MATCHES, changed), 400, "INVALID_REQUEST")
    # The same out_batch_id is another batch for another merchant.
    other = client_b.post(MATCHES, match_body(sp=SP_B))
    assert other.status_code == 200, other.text
    assert other.json()["batch_id"] != first["batch_id"]
    # ... which SP_A cannot read, and vice versa.
    assert_error(query(client_a, other.json()["batch_id"]), 404, "RESOURCE_NOT_EXISTS")
    assert_error(query(client_b, first["batch_id"]), 404, "RESOURCE_NOT_EXISTS")


def test_start_match_validation(client_a: ApiClient, frozen: TestClient) -> None:
    assert_error(client_a.post(MATCHES, match_body("abc")), 400, "PARAM_ERROR", "/out_batch_id")
    assert_error(client_a.post(MATCHES, match_body("abc#defg")), 400, "PARAM_ERROR", "/out_batch_id")
    assert_error(client_a.post(MATCHES, match_body("a" * 33)), 400, "PARAM_ERROR", "/out_batch_id")
    bad_type = match_body(
        match_details=[{"organization_code": GOOD_CODE, "store_name": "x", "product_type": "H5"}]
    )
    assert_error(client_a.post(MATCHES, bad_type), 400, "PARAM_ERROR", "/match_details/0/product_type")
    no_name = match_body(match_details=[{"organization_code": GOOD_CODE, "product_type": "NONE"}])
    assert_error(client_a.post(MATCHES, no_name), 400, "PARAM_ERROR", "/match_details/0/store_name")
    long_code = match_body(
        match_details=[{"organization_code": "9" * 33, "store_name": "x", "product_type": "NONE"}]
    )
    assert_error(client_a.post(MATCHES, long_code), 400, "PARAM_ERROR", "/match_details/0/organization_code")
    assert_error(client_a.post(MATCHES, match_body(sp=SP_B)), 403, "NO_AUTH")
    # The official page's spelling CODEPAY is accepted too; the allowed id alphabet includes _ - | *.
    ok = match_body(
        "a_b-c|d*e",
        match_details=[{"organization_code": GOOD_CODE, "store_name": "x", "product_type": "CODEPAY"}],
    )
    assert client_a.post(MATCHES, ok).status_code == 200


def test_query_match_errors(client_a: ApiClient, frozen: TestClient) -> None:
    assert_error(query(client_a, "1030000071999999999999999"), 404, "RESOURCE_NOT_EXISTS")
    batch_id = client_a.post(MATCHES, match_body()).json()["batch_id"]
    assert_error(client_a.get(f"{MATCHES}/{batch_id}"), 400, "PARAM_ERROR", "sp_mchid")
    assert_error(query(client_a, batch_id, sp=SP_B), 403, "NO_AUTH")
    assert_error(query(client_a, "1" * 33), 400, "PARAM_ERROR", "batch_id")


def test_empty_batch_completes_without_results(client_a: ApiClient, frozen: TestClient) -> None:
    body = {"sp_mchid": SP_A, "out_batch_id": "empty_batch"}
    batch_id = client_a.post(MATCHES, body).json()["batch_id"]
    query(client_a, batch_id)
    done = query(client_a, batch_id).json()
    assert done["state"] == "COMPLETED" and done["match_results"] == []


def test_scenario_entities_decide_and_control_closes(client_a: ApiClient, frozen: TestClient) -> None:
    scenario = (
        "webizpay_store_entities:\n"
        f"  - organization_code: {GOOD_CODE}\n"
        "    has_valid_mchid: false\n"
        f"  - organization_code: {BAD_CODE}\n"
        "    has_valid_mchid: true\n"
        "    products: [CODE_PAY]\n"
    )
    resp = frozen.post("/sandbox/scenario", content=scenario)
    assert resp.status_code == 200, resp.text
    batch_id = client_a.post(MATCHES, match_body()).json()["batch_id"]
    advance(frozen, 60)
    results = query(client_a, batch_id).json()["match_results"]
    assert [r["has_valid_mchid"] for r in results] == [False, True]
    exported = frozen.get("/sandbox/scenario").json()["webizpay_store_entities"]
    assert {e["organization_code"] for e in exported} == {GOOD_CODE, BAD_CODE}

    open_batch = client_a.post(MATCHES, match_body("batch_0002")).json()["batch_id"]
    closed = frozen.post(f"/sandbox/webizpay/entity-matches/{open_batch}/close")
    assert closed.status_code == 200, closed.text
    assert closed.json()["state"] == "CLOSED"
    assert query(client_a, open_batch).json()["state"] == "CLOSED"
    # an IN_PROGRESS batch closes too; a COMPLETED one stays COMPLETED
    started = client_a.post(MATCHES, match_body("batch_0003")).json()["batch_id"]
    assert query(client_a, started).json()["state"] == "IN_PROGRESS"
    assert frozen.post(f"/sandbox/webizpay/entity-matches/{started}/close").json()["state"] == "CLOSED"
    assert frozen.post(f"/sandbox/webizpay/entity-matches/{batch_id}/close").json()["state"] == "COMPLETED"
    assert query(client_a, batch_id).json()["state"] == "COMPLETED"
    assert frozen.post("/sandbox/webizpay/entity-matches/nope/close").status_code == 404


def _with_check_char(first17: str) -> str:
    """GB 32100-2015 from its definition (weights 3^i mod 31), independent of the code's table."""
    alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    total = sum(alphabet.index(ch) * pow(3, i, 31) for i, ch in enumerate(first17))
    return first17 + alphabet[(31 - total % 31) % 31]


def test_unified_social_credit_code_check_character() -> None:
    from wxpartner.domain.webizpay_merchants import uscc_valid

    # published codes, and codes with a non-zero character at every position
    codes = [GOOD_CODE, "91440300708461136T"]
    codes += [
        _with_check_char(("91" + "0" * 15)[:i] + "7" + ("91" + "0" * 15)[i + 1 :]) for i in range(2, 17)
    ]
    codes += [_with_check_char("9" * 17), _with_check_char("Y" * 17), _with_check_char("12ABCDEFGHJKLMNPQ")]
    for code in codes:
        assert uscc_valid(code), code
        wrong = "0123456789ABCDEFGHJKLMNPQRTUWXY".replace(code[17], "")[0]
        assert uscc_valid(code[:17] + wrong) is False, code
    # too short or long; I, O, S, V and Z are not in the alphabet; lower case
    for bad in (GOOD_CODE[:17], GOOD_CODE + "0", GOOD_CODE[:16] + "I" + GOOD_CODE[17], "9111Z000710926094P"):
        assert uscc_valid(bad) is False, bad
    assert uscc_valid(GOOD_CODE.lower()) is False


@pytest.mark.parametrize(
    ("entity", "product_type", "matched"),
    [
        (None, "CODE_PAY", True),  # not configured: a well-formed code has a merchant
        ((False, ()), "NONE", False),
        ((True, ()), "CODE_PAY", True),
        ((True, ("CODE_PAY",)), "NONE", True),
        ((True, ("CODE_PAY",)), "CODE_PAY", True),
        ((True, ("CODEPAY",)), "CODEPAY", True),
        ((True, ("APP_PAY",)), "CODE_PAY", False),  # configured products without code payment
        ((True, ("APP_PAY",)), "NONE", True),
    ],
)
def test_configured_store_entities_decide_by_products(
    entity: tuple[bool, tuple[str, ...]] | None, product_type: str, matched: bool
) -> None:
    from wxpartner.domain.webizpay_merchants import StoreEntity, has_valid_mchid

    configured = StoreEntity(GOOD_CODE, *entity) if entity else None
    assert has_valid_mchid(GOOD_CODE, product_type, configured) is matched


@pytest.mark.parametrize(
    ("today", "earliest"),
    [
        ("2026-03-15", "2025-12-15"),
        ("2026-04-10", "2026-01-10"),
        ("2026-01-31", "2025-10-31"),
        ("2026-07-31", "2026-04-30"),  # clamped to the month's end
        ("2026-05-31", "2026-02-28"),
        ("2024-05-31", "2024-02-29"),
    ],
)
def test_three_months_back(today: str, earliest: str) -> None:
    from wxpartner.domain.webizpay_bills import earliest_date

    assert earliest_date(dt.date.fromisoformat(today)) == dt.date.fromisoformat(earliest)


# --- W11 / W12 and the download ------------------------------------------------------------------


def proof_body(out_operation_id: str = "proof_0001", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "sp_mchid": SP_A,
        "sub_mchid": SUB_A,
        "start_date": "2026-02-01",
        "end_date": "2026-03-14",
        "out_operation_id": out_operation_id,
    }
    body.update(extra)
    return body


def download(client: ApiClient, url: str) -> httpx.Response:
    parts = urlsplit(url)
    assert parts.path == "/v3/billdownload/file"
    return client.get(f"{parts.path}?{parts.query}")


def csv_rows(text: str) -> list[list[str]]:
    return [[v.lstrip("`") for v in row] for row in csv.reader(io.StringIO(text))]


@pytest.fixture
def trades(monkeypatch: pytest.MonkeyPatch) -> list[TradeRow]:
    """Stand in for the quota-card family's payment records (the TRADE_SOURCES hook)."""
    rows: list[TradeRow] = []

    def source(conn: Any, sp: str, sub: str, start: float, end: float) -> list[TradeRow]:
        return [r for r in rows if r.sp_mchid == sp and r.sub_mchid == sub and start <= r.time < end]

    monkeypatch.setattr(webizpay_bills_repo, "TRADE_SOURCES", [source])
    return rows


def trade(day: dt.date, amount: int, full_name: str = "北京某某餐饮有限公司", refund: int = 0) -> TradeRow:
    at = dt.datetime.combine(day, dt.time(10, 30), CHINA_TZ).timestamp()
    return TradeRow(
        time=at,
        sp_mchid=SP_A,
        sub_mchid=SUB_A,
        card_no="1068019671702503425",
        employee_id="WeBizPay_a968402a-73bb-43e2-9e1a-8371b0ca3d7c",
        transaction_id=f"42000001232026{amount:014d}",
        out_trade_no=f"out_{amount}",
        receive_mch_name="某某餐饮",
        receive_mch_full_name=full_name,
        receive_mch_organization_code=GOOD_CODE,
        state="REFUND" if refund else "SUCCESS",
        amount=amount,
        refund_amount=refund,
    )


def test_funding_proof_and_its_download(
    client_a: ApiClient, frozen: TestClient, trades: list[TradeRow]
) -> None:
    trades.append(trade(dt.date(2026, 3, 1), 1234))
    trades.append(trade(dt.date(2026, 3, 2), 500, full_name="上海另一家公司"))
    trades.append(trade(dt.date(2026, 1, 2), 999))  # outside the requested dates
    resp = client_a.post(PROOF, proof_body(entity_name="北京某某餐饮有限公司"))
    assert resp.status_code == 200, resp.text
    assert resp.headers["Wechatpay-Signature"]
    body = resp.json()
    for key in ("sp_mchid", "sub_mchid", "start_date", "end_date", "out_operation_id", "entity_name"):
        assert body[key] == proof_body(entity_name="北京某某餐饮有限公司")[key]
    assert re.fullmatch(r"\d{24}", body["proof_id"]) and re.fullmatch(r"\d{24}", body["operation_id"])
    assert body["proof_id"] != body["operation_id"]
    assert body["create_time"] == body["updated_time"]
    assert parse_rfc3339(body["create_time"]) == parse_rfc3339(NOW)

    file = download(client_a, body["download_url"])
    assert file.status_code == 200, file.text
    assert file.headers["Content-Type"].startswith("text/csv")
    assert file.headers["Wechatpay-Signature"]  # verified by ApiClient against the platform key
    rows = csv_rows(file.text)
    assert rows[:9] == [
        ["企业支付出资凭证", "funding proof"],
        ["凭证编号", body["proof_id"]],
        ["申请单号", body["operation_id"]],
        ["服务商商户号", SP_A],
        ["出资子商户号", SUB_A],
        ["起始日期", "2026-02-01"],
        ["结束日期", "2026-03-14"],
        ["收款主体名称", "北京某某餐饮有限公司"],
        ["生成时间", body["create_time"]],
    ]
    assert rows[9] == TRADE_HEADER
    tx_lines = [r for r in rows if r and r[0].startswith("2026-")]
    assert len(tx_lines) == 1 and tx_lines[0][5] == trades[0].transaction_id  # entity filter, date window
    assert rows[-1] == ["1", "12.34"]


def test_funding_proof_is_idempotent(client_a: ApiClient, frozen: TestClient) -> None:
    first = client_a.post(PROOF, proof_body()).json()
    assert first["entity_name"] == ""
    advance(frozen, 5)
    again = client_a.post(PROOF, proof_body())
    assert again.status_code == 200, again.text
    second = again.json()
    assert (second["proof_id"], second["operation_id"]) == (first["proof_id"], first["operation_id"])
    assert second["create_time"] == first["create_time"]
    assert parse_rfc3339(second["updated_time"]) > parse_rfc3339(first["updated_time"])
    assert second["download_url"] != first["download_url"]  # a fresh link each time
    assert download(client_a, first["download_url"]).text == download(client_a, second["download_url"]).text
    changed = client_a.post(PROOF, proof_body(end_date="2026-03-10"))
    assert assert_error(changed, 400, "INVALID_REQUEST")["detail"] == {
        "field": "/out_operation_id",
        "value": "proof_0001",
        "location": "body",
        "issue": "already used with different parameters",
    }
    no_entity = csv_rows(download(client_a, first["download_url"]).text)
    assert ["收款主体名称", "全部 (all)"] in no_entity


def test_funding_proof_rules(client_a: ApiClient, frozen: TestClient) -> None:
    unbound = assert_error(client_a.post(PROOF, proof_body(sub_mchid=SUB_B)), 403, "NO_AUTH")
    assert unbound["detail"] == {
        "field": "/sub_mchid",
        "location": "body",
        "value": SUB_B,
        "issue": "not a sub-merchant of sp_mchid",
    }
    foreign = assert_error(client_a.post(PROOF, proof_body(sp_mchid=SP_B)), 403, "NO_AUTH")
    assert foreign["detail"] == {
        "field": "/sp_mchid",
        "location": "body",
        "value": SP_B,
        "issue": "must equal the mchid of Authorization",
    }
    one_day = proof_body("proof_day", start_date="2026-03-14", end_date="2026-03-14")
    assert client_a.post(PROOF, one_day).status_code == 200
    assert_error(client_a.post(PROOF, proof_body(start_date="2025-12-14")), 400, "PARAM_ERROR", "/start_date")
    assert client_a.post(PROOF, proof_body("proof_edge", start_date="2025-12-15")).status_code == 200
    assert_error(client_a.post(PROOF, proof_body(end_date="2026-03-16")), 400, "PARAM_ERROR", "/end_date")
    reversed_dates = proof_body(start_date="2026-03-10", end_date="2026-03-01")
    assert_error(client_a.post(PROOF, reversed_dates), 400, "PARAM_ERROR", "/end_date")
    assert_error(client_a.post(PROOF, proof_body(start_date="2026/02/01")), 400, "PARAM_ERROR", "/start_date")
    assert_error(client_a.post(PROOF, proof_body(start_date="2026-02-30")), 400, "PARAM_ERROR", "/start_date")
    assert_error(client_a.post(PROOF, proof_body("short")), 400, "PARAM_ERROR", "/out_operation_id")
    assert_error(client_a.post(PROOF, proof_body(entity_name="x" * 257)), 400, "PARAM_ERROR", "/entity_name")
    body = proof_body()
    del body["sub_mchid"]
    assert_error(client_a.post(PROOF, body), 400, "PARAM_ERROR", "/sub_mchid")


def test_trade_bill_download(client_a: ApiClient, frozen: TestClient, trades: list[TradeRow]) -> None:
    yesterday = TODAY - dt.timedelta(days=1)
    trades.append(trade(yesterday, 1000))
    trades.append(trade(yesterday, 250))
    trades.append(trade(yesterday, 250, refund=250))  # its line carries the order's 2.50 too
    trades.append(trade(TODAY, 777))  # not in yesterday's bill
    resp = client_a.post(
        TRADE_BILL, {"sp_mchid": SP_A, "sub_mchid": SUB_A, "date": "2026-03-14", "type": "QYZFALL"}
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert {k: body[k] for k in ("sp_mchid", "sub_mchid", "date", "type")} == {
        "sp_mchid": SP_A,
        "sub_mchid": SUB_A,
        "date": "2026-03-14",
        "type": "QYZFALL",
    }
    file = download(client_a, body["download_url"])
    assert file.status_code == 200, file.text
    rows = csv_rows(file.text)
    assert rows[0] == TRADE_HEADER and len(rows) == 6  # header, 3 trades, summary header, summary
    assert rows[-2] == ["总交易单数", "总交易额(元)", "总退款金额(元)"]
    assert rows[-1] == ["3", "12.50", "2.50"]  # each order's amount once (the refund line's is not added)


def test_trade_bill_rules(client_a: ApiClient, frozen: TestClient) -> None:
    def bill(**extra: Any) -> httpx.Response:
        body = {"sp_mchid": SP_A, "sub_mchid": SUB_A, "date": "2026-03-14", "type": "QYZFALL", **extra}
        return client_a.post(TRADE_BILL, body)

    assert_error(bill(date="2026-03-15"), 400, "PARAM_ERROR", "/date")  # today is not finished
    assert_error(bill(date="2025-12-14"), 400, "PARAM_ERROR", "/date")
    assert bill(date="2025-12-15").status_code == 200
    assert_error(bill(type="ALL"), 400, "PARAM_ERROR", "/type")
    assert_error(bill(sub_mchid=SUB_B), 403, "NO_AUTH")
    assert_error(bill(sp_mchid=SP_B), 403, "NO_AUTH")
    empty = download(client_a, bill().json()["download_url"])
    assert csv_rows(empty.text)[-1] == ["0", "0.00", "0.00"]


def test_download_links_belong_to_the_applicant_and_expire(
    client_a: ApiClient, client_b: ApiClient, frozen: TestClient
) -> None:
    url = client_a.post(PROOF, proof_body()).json()["download_url"]
    assert_error(download(client_b, url), 404, "RESOURCE_NOT_EXISTS")
    assert_error(client_a.get("/v3/billdownload/file?token=unknown"), 404, "RESOURCE_NOT_EXISTS")
    assert_error(client_a.get("/v3/billdownload/file"), 400, "PARAM_ERROR", "token")
    # PostgreSQL text cannot hold NUL: refused before the lookup (it was a 500 there)
    nul = assert_error(client_a.get("/v3/billdownload/file?token=ab%00cd"), 400, "PARAM_ERROR", "token")
    assert nul["detail"]["location"] == "query" and "NUL" in nul["detail"]["issue"]
    advance(frozen, 299)
    assert download(client_a, url).status_code == 200
    advance(frozen, 1)
    expired = assert_error(download(client_a, url), 400, "INVALID_REQUEST")
    assert expired["detail"] == {"field": "token", "location": "query", "issue": "expired"}
    # A day later the dead link is pruned when new links are made: it is then simply unknown.
    advance(frozen, 86401)
    assert client_a.post(PROOF, proof_body("proof_0002")).status_code == 200
    assert_error(download(client_a, url), 404, "RESOURCE_NOT_EXISTS")


def test_bills_reset_with_the_merchant(client_a: ApiClient, frozen: TestClient) -> None:
    first = client_a.post(PROOF, proof_body()).json()
    assert frozen.post("/sandbox/reset", json={"mchid": SP_A}).status_code == 200
    assert_error(download(client_a, first["download_url"]), 404, "RESOURCE_NOT_EXISTS")
    fresh = client_a.post(PROOF, proof_body(end_date="2026-03-10"))  # the old out_operation_id is free again
    assert fresh.status_code == 200, fresh.text
    assert fresh.json()["proof_id"] != first["proof_id"]


def test_concurrent_duplicate_batches_make_one(app: Any) -> None:
    """Uniqueness of out_batch_id is the database's job: racing writers all get the same batch."""
    from concurrent.futures import ThreadPoolExecutor

    from wxpartner.domain.webizpay_merchants import start_match
    from wxpartner.models.webizpay_merchants import CreateEntityMatchRequest
    from wxpartner.store.webizpay_merchants_repo import MatchRepo

    db = app.state.db
    body = CreateEntityMatchRequest.model_validate(match_body("race_batch"))

    def one(_: int) -> str:
        with db.write() as conn:
            return start_match(MatchRepo(conn), 1_700_000_000.0, SP_A, body).batch_id

    with ThreadPoolExecutor(6) as pool:
        ids = set(pool.map(one, range(12)))
    assert len(ids) == 1


def test_proofs_and_bills_are_built_outside_the_writers_turn(
    client_a: ApiClient, frozen: TestClient, app: WxPartnerApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A quarter's trades can be 100,000 lines: reading and writing them out took ≈ 5 s, in the write
    transaction, which on SQLite held back every other writer of every process. The trade source here
    has another thread write while it is asked; it could not get its turn while the request held it."""
    writes: list[bool] = []

    def write_elsewhere() -> None:
        with app.state.db.write() as conn:
            registry.set_notify_url(conn, SP_B, "http://127.0.0.1:9/notify")

    def source(conn: Any, sp: str, sub: str, start: float, end: float) -> list[TradeRow]:
        writer = threading.Thread(target=write_elsewhere)
        writer.start()
        writer.join(timeout=20)  # not a speed assertion: a writer held back waits as long as we do
        writes.append(not writer.is_alive())
        writer.join()
        return []

    monkeypatch.setattr(webizpay_bills_repo, "TRADE_SOURCES", [source])
    assert client_a.post(PROOF, proof_body()).status_code == 200
    assert client_a.post(PROOF, proof_body()).status_code == 200  # a repeat lists no trades
    bill = {"sp_mchid": SP_A, "sub_mchid": SUB_A, "date": "2026-03-14", "type": "QYZFALL"}
    assert client_a.post(TRADE_BILL, bill).status_code == 200
    assert writes == [True, True]


@pytest.mark.parametrize("path", [PROOF, TRADE_BILL])
def test_a_long_bill_leaves_the_workers_loop_to_other_requests(
    client_a: ApiClient, frozen: TestClient, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """W11 and W12 can take seconds; on SQLite the pipeline runs on the event loop, where a small
    request on the same worker waited behind one (3.7–5.1 s, served, 100,000 trades). They run in a
    thread: here the trade source holds the bill until a request made meanwhile has been answered."""
    entered, release = threading.Event(), threading.Event()
    released: list[bool] = []

    def source(conn: Any, sp: str, sub: str, start: float, end: float) -> list[TradeRow]:
        entered.set()
        released.append(release.wait(timeout=20))  # not a speed assertion: a held loop never sets it
        return []

    monkeypatch.setattr(webizpay_bills_repo, "TRADE_SOURCES", [source])
    answers: dict[str, httpx.Response] = {}
    body = (
        proof_body()
        if path == PROOF
        else {"sp_mchid": SP_A, "sub_mchid": SUB_A, "date": "2026-03-14", "type": "QYZFALL"}
    )
    bill = threading.Thread(target=lambda: answers.update(bill=client_a.post(path, body)))
    bill.start()
    assert entered.wait(timeout=20)
    ranges = client_a.get(f"/v3/webizpay/avail-mch-ranges?sp_mchid={SP_A}")
    release.set()
    bill.join()
    assert ranges.status_code == 200, ranges.text
    assert answers["bill"].status_code == 200, answers["bill"].text
    assert released == [True]


def test_a_proofs_document_is_stored_once_with_the_proof(
    client_a: ApiClient, frozen: TestClient, trades: list[TradeRow], app: WxPartnerApp
) -> None:
    """Each link (W11 and each repeat) held its own copy of the document, 16 MB for a quarter; now
    the link names the proof. A link written before (migration 0021: its copy, no proof_id) serves."""
    trades.append(trade(dt.date(2026, 3, 1), 1234))
    first = client_a.post(PROOF, proof_body()).json()
    again = client_a.post(PROOF, proof_body()).json()
    files, proofs = (
        webizpay_merchants_tables.webizpay_bill_files,
        webizpay_merchants_tables.webizpay_funding_proofs,
    )
    with app.state.db.read() as conn:
        links = conn.execute(sa.select(files.c.content, files.c.proof_id)).all()
        document = conn.execute(sa.select(proofs.c.content)).scalar_one()
    assert [tuple(r) for r in links] == [("", first["proof_id"]), ("", first["proof_id"])]
    assert trades[0].transaction_id in document
    for answer in (first, again):
        assert download(client_a, answer["download_url"]).text == document
    with app.state.db.write() as conn:  # as a release before 0021 wrote a link
        conn.execute(files.update().values(content=document, proof_id=None))
    assert download(client_a, first["download_url"]).text == document
