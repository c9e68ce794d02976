"""Upgrades keep a user's data: a database an older wxpartner migrated and filled is brought to the
current schema the way ``serve`` does (sandbox/bootstrap.py) and then served, on both backends.

No old commit is needed: Alembic migrates a fresh database to the revisions an older release stopped
at, rows are written as that release's code wrote them (SQLAlchemy core against the tables reflected
from that revision), then the current code upgrades and serves them, and the test uses them through
the real app (signed /v3 requests, the control API, the dashboard, callbacks sent over loopback)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from starlette.testclient import TestClient

from conftest import BACKENDS, SANDBOX_TOKEN
from pg import PgServer, create_database, drop_database
from receiver import start_receiver
from support import SECOND_A, SP_A, SP_B, SP_C, SUB_A, ApiClient, World
from wxpartner.sandbox.bootstrap import bootstrap
from wxpartner.server.app import create_app
from wxpartner.server.dashboard.auth import COOKIE, cookie_value
from wxpartner.server.settings import Settings
from wxpartner.store.db import MIGRATIONS_DIR, Database, SchemaTooNew, make_engine
from wxpartner.store.tables import metadata

# The revisions older releases stopped at (the head of each branch then).
RELEASES = {
    # 2026-11-23: the three families, the callback outbox, the journal (7ee9ae7)
    "first": ("0002", "0003", "0004", "0005", "0006", "0007"),
    # 2026-12-05, before the link sweep and the listing indexes (66e2591): journal generations
    "generations": ("0002", "0003", "0004", "0006", "0010", "0011"),
}

DAY = 86400.0
HOSTS = 3
_names = itertools.count()


@pytest.fixture(params=BACKENDS)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path, pg_server: PgServer | None) -> Iterator[str]:
    """A database with nothing in it (no template: the test migrates it)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.sqlite3'}"
        return
    if pg_server is None:
        pytest.skip("PostgreSQL is not installed here (apt-get install postgresql); .ci/run installs it")
    name = f"wx_up{os.getpid()}_{next(_names)}"
    yield create_database(pg_server, name)
    drop_database(pg_server, name)


def _alembic(conn: sa.Connection | None = None) -> Config:
    """The project's migration scripts, run on ``conn`` (env.py takes the connection given)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = conn
    return cfg


def migrate_to(url: str, revisions: tuple[str, ...]) -> None:
    """The schema an older release made: each branch up to its revision then, by the project's scripts."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            for revision in revisions:
                command.upgrade(_alembic(conn), revision)
    finally:
        engine.dispose()


def versions(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {str(v) for v in conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars()}
    finally:
        engine.dispose()


def write_old_rows(url: str, world: World, *, frozen: bool = False) -> None:
    """Rows as the older release's code wrote them, into the tables of that revision (reflected: a
    column added later is not there, and gets what its migration gives old rows); ``frozen``: the
    business clock frozen a second ahead of now."""
    now = time.time()
    engine = make_engine(url)
    md = sa.MetaData()
    rows: dict[str, list[dict[str, Any]]] = {
        "platform_keys": [
            {
                "key_id": k.key_id,
                "kind": k.kind,
                "mchid": k.mchid,
                "private_key_pem": k.private_key_pem,
                "public_key_pem": k.public_key_pem,
                "certificate_pem": k.certificate_pem,
                "not_before": k.not_before,
                "not_after": k.not_after,
                "retired": False,
                "created_at": now - 30 * DAY,
            }
            for k in (world.platform_pub, world.platform_cert)
        ],
        "merchants": [
            *(
                {
                    "mchid": m.mchid,
                    "name": f"Old {m.mchid}",
                    "role": "channel" if m.mchid == SP_C else "service_provider",
                    "apiv3_key": m.apiv3_key,
                    "key_mode": m.key_mode.value,
                    "notify_url": None,
                    "created_at": now - 30 * DAY,
                }
                for m in world.merchants.values()
            ),
            {
                "mchid": SUB_A,
                "name": "",
                "role": "sub_merchant",
                "apiv3_key": None,
                "key_mode": "public_key",
                "notify_url": None,
                "created_at": now - 30 * DAY,
            },
            {
                "mchid": SECOND_A,
                "name": "",
                "role": "second_level",
                "apiv3_key": None,
                "key_mode": "public_key",
                "notify_url": None,
                "created_at": now - 30 * DAY,
            },
        ],
        "merchant_certificates": [
            {
                "serial_no": m.serial_no,
                "mchid": m.mchid,
                "public_key_pem": _public_pem(m.private_key),
                "certificate_pem": m.certificate_pem,
                "revoked": False,
                "created_at": now - 30 * DAY,
            }
            for m in world.merchants.values()
        ],
        "merchant_relations": [
            {
                "parent_mchid": SP_A,
                "child_mchid": SUB_A,
                "kind": "sub_merchant",
                "created_at": now - 30 * DAY,
            },
            {
                "parent_mchid": SP_A,
                "child_mchid": SECOND_A,
                "kind": "second_level",
                "created_at": now - 30 * DAY,
            },
        ],
        "sandbox_clock": [{"id": 1, "offset_seconds": 0.0, "frozen_at": now + 1 if frozen else None}],
        "webizpay_relations": [
            {
                "employee_id": "WeBizPay_old_1",
                "sp_mchid": SP_A,
                "sub_mchid": SUB_A,
                "user_id": "old_user",
                "state": "AUTHORIZED",
                "authorized_at": now - 20 * DAY,
                "revoked_at": None,
                "reason": None,
            },
            {
                "employee_id": "WeBizPay_old_0",
                "sp_mchid": SP_A,
                "sub_mchid": SUB_A,
                "user_id": "old_user",
                "state": "REVOKED",
                "authorized_at": now - 25 * DAY,
                "revoked_at": now - 21 * DAY,
                "reason": "员工企业支付授权已解除",
            },
        ],
        "webizpay_templates": [
            {
                "sp_mchid": SP_A,
                "card_template_id": "tpl_old",
                "card_rule": "MULTIPLE",
                "refund_rule": "RETURN",
                "created_at": now - 20 * DAY,
            },
        ],
        "webizpay_cards": [
            _card("1000000000000000001", "old_card_active", now, amount=10000, remain=8500),
            _card("1000000000000000002", "old_card_to_cancel", now, amount=3000, remain=3000),
            _card(
                "1000000000000000003",
                "old_card_cancelled",
                now,
                amount=2000,
                remain=2000,
                state="DISABLED",
                disabled_at=now - 10 * DAY,
                reason="旧版本作废",
            ),
        ],
        "webizpay_payments": [
            {
                "transaction_id": "4200000000202611230000000001",
                "out_trade_no": "SBXOLD0001",
                "card_no": "1000000000000000001",
                "sp_mchid": SP_A,
                "sub_mchid": SUB_A,
                "employee_id": "WeBizPay_old_1",
                "amount": 2000,
                "refunded_amount": 500,
                "receive_mch_name": "食堂",
                "receive_mch_full_name": "沙箱便利店有限公司",
                "receive_mch_organization_code": "91440300MA5SANDBOX",
                "acquirer": "财付通支付科技有限公司",
                "goods_name": "午餐",
                "paid_at": now - 5 * DAY,
            },
        ],
        "webizpay_refunds": [
            {
                "refund_id": "50300000000000000000000000001",
                "out_refund_no": "old_refund_1",
                "transaction_id": "4200000000202611230000000001",
                "amount": 500,
                "created_at": now - 4 * DAY,
                "succeeded_at": now - 4 * DAY,
            },
        ],
        "webizpay_auth_links": [
            {
                "token": "old-open-auth-link",
                "sp_mchid": SP_A,
                "sub_mchid": SUB_A,
                "user_id": "old_user_2",
                "application_type": "H5",
                "created_at": now - 60,
                "expires_at": now + 1700,
                "consumed_at": None,
                "employee_id": None,
            },
        ],
        "webizpay_payment_links": [
            {
                "token": "old-open-pay-link",
                "card_no": "1000000000000000001",
                "sp_mchid": SP_A,
                "sub_mchid": SUB_A,
                "employee_id": "WeBizPay_old_1",
                "application_type": "H5",
                "created_at": now - 60,
                "expires_at": now + 240,
            },
        ],
        "webizpay_match_batches": [
            {
                "batch_id": "1030000000000000000000001",
                "sp_mchid": SP_A,
                "out_batch_id": "old_batch_01",
                "state": "ACCEPTED",
                "digest": "0" * 64,
                "details": json.dumps(
                    [
                        {
                            "organization_code": "91440300MA5OLD0001",
                            "store_name": "食堂",
                            "product_type": "CODE_PAY",
                        }
                    ],
                    ensure_ascii=False,
                ),
                "results": None,
                "created_at": now - DAY,
                "updated_at": now - DAY,
            }
        ],
        "webizpay_mch_ranges": [
            {
                "range_id": "old-range-1",
                "sp_mchid": SP_A,
                "identifier_type": "ORGANIZATION_CODE",
                "created_at": now - 9 * DAY,
            },
        ],
        "webizpay_mch_identifiers": [
            {
                "range_id": "old-range-1",
                "merchant_identifier": "91440300MA5OLD0001",
                "created_at": now - 9 * DAY,
            },
        ],
        "recharge_employees": [
            {
                "mchid": SP_A,
                "sub_mchid": SECOND_A,
                "sp_openid": "oOldEffective",
                "state": "EFFECTIVE",
                "create_time": now - 8 * DAY,
                "update_time": now - 8 * DAY,
            },
            {
                "mchid": SP_A,
                "sub_mchid": SECOND_A,
                "sp_openid": "oOldDeleted",
                "state": "DELETED",
                "create_time": now - 9 * DAY,
                "update_time": now - 7 * DAY,
            },
        ],
        "recharge_quotas": [{"sub_mchid": SECOND_A, "effective": 1, "day": "", "day_count": 0}],
        "apply4subject_applyments": [
            _applyment(
                20000000000001, "old_waiting", "APPLYMENT_STATE_WAITTING_FOR_AUDIT", now, query_count=1
            ),
            _applyment(20000000000002, "old_passed", "APPLYMENT_STATE_PASSED", now, confirm=["1900000109"]),
            _applyment(
                20000000000003,
                "old_rejected",
                "APPLYMENT_STATE_REJECTED",
                now,
                reject_param="merchant_name",
                reject_reason="公司名称与工商局登记不一致",
            ),
            _applyment(20000000000004, "old_cancelled", "APPLYMENT_STATE_CANCELED", now),
        ],
        "apply4subject_authorizations": [
            {
                "mchid": SP_C,
                "sub_mchid": "1900000109",
                "applyment_id": 20000000000002,
                "authorized_at": now - 3 * DAY,
            },
        ],
        "sandbox_kv": [
            {
                "key": "apply4subject:auto_policy",
                "value": json.dumps(
                    {
                        "outcome": "approve",
                        "after_seconds": None,
                        "after_queries": 2,
                        "reject_param": "merchant_name",
                        "reject_reason": "公司名称与工商局登记不一致",
                        "authorize": False,
                    },
                    ensure_ascii=False,
                ),
            },
            {"key": "seq:apply4subject.applyment_id", "value": "20000000000005"},
        ],
        "callback_notifications": [
            # queued while the business clock was 40 days ahead, the clock then moved back to real
            # time; the older code sent a notification never sent whatever its next_attempt_at said
            _notification("old-n-queued-ahead", now + 40 * DAY, sends=0, next_at=now + 40 * DAY),
            # a retry due now (two sends failed)
            _notification("old-n-retry", now - 600, sends=2, next_at=now - 30),
            # a retry scheduled while the clock was ahead (its delay after 3 sends is 30 s)
            _notification("old-n-retry-ahead", now - 600, sends=3, next_at=now + 10 * DAY),
            # a retry waiting its turn (1,800 s after the 5th send): not due yet, before or after
            _notification("old-n-retry-later", now - 600, sends=5, next_at=now + 1000),
            _notification(
                "old-n-delivered",
                now - 3 * DAY,
                sends=1,
                next_at=now - 3 * DAY,
                state="delivered",
                delivered_at=now - 3 * DAY,
            ),
        ],
        "callback_attempts": [
            {
                "notification_id": "old-n-delivered",
                "attempt_no": 1,
                "at": now - 3 * DAY,
                "sent_at": now - 3 * DAY,
                "url": "https://merchant.example/notify",
                "status": 200,
                "latency_ms": 12.5,
                "ok": True,
                "error": None,
                "signer_key_id": world.platform_pub.key_id,
                "request_id": "old-delivery",
            },
        ],
        "request_journal": [_journal(i, now - 100 + i) for i in (1, 2, 3)],
        "sandbox_faults": [
            {
                "id": "FOLDRULE0001",
                "kind": "SYSTEM_ERROR",
                "operation": "webizpay.get_quota_card",
                "path": None,
                "mchid": SP_B,
                "remaining": 2,
                "probability": 1.0,
                "latency_ms": 0,
                "hits": 1,
                "note": "kept from the old version",
                "created_at": now - DAY,
            },
        ],
    }
    try:
        with engine.begin() as conn:
            md.reflect(conn)
            for table, values in rows.items():
                t = md.tables[table]
                for value in values:
                    assert set(value) <= set(t.c.keys()), (table, set(value) - set(t.c.keys()))
                conn.execute(t.insert(), values)
    finally:
        engine.dispose()


def _public_pem(key: Any) -> str:
    from wxpartner.protocol import keys as k

    return k.public_key_pem(key.public_key())


def _card(
    card_no: str,
    out_card_no: str,
    now: float,
    *,
    amount: int,
    remain: int,
    state: str = "ACTIVE",
    disabled_at: float | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    end = now + 30 * DAY
    return {
        "card_no": card_no, "sp_mchid": SP_A, "sub_mchid": SUB_A, "out_card_no": out_card_no,
        "employee_id": "WeBizPay_old_1", "card_template_id": "tpl_old", "card_rule": "MULTIPLE",
        "refund_rule": "RETURN", "amount": amount, "remain_amount": remain, "card_name": "旧差旅卡",
        "card_remark": None, "begin_at": now - 20 * DAY, "end_at": end,
        "end_text": time.strftime("%Y-%m-%dT%H:%M:%S+08:00", time.gmtime(end + 8 * 3600)),
        "state": state, "disabled_at": disabled_at, "reason": reason, "used_at": None,
        "transaction_id": None, "avail_mch_range_id": None,
    }  # fmt: skip


def _applyment(
    applyment_id: int,
    business_code: str,
    state: str,
    now: float,
    *,
    query_count: int = 0,
    confirm: list[str] | None = None,
    reject_param: str | None = None,
    reject_reason: str | None = None,
) -> dict[str, Any]:
    return {
        "applyment_id": applyment_id, "mchid": SP_C, "business_code": business_code, "channel_id": None,
        "state": state, "fingerprint": "scenario", "materials": "{}",
        "confirm_mchids": json.dumps(confirm or []), "reject_param": reject_param,
        "reject_reason": reject_reason, "confirm_token": f"token-{business_code}",
        "query_count": query_count, "state_since": now - DAY, "created_at": now - 2 * DAY,
        "updated_at": now - DAY,
    }  # fmt: skip


def _notification(
    nid: str,
    created: float,
    *,
    sends: int,
    next_at: float,
    state: str = "pending",
    delivered_at: float | None = None,
) -> dict[str, Any]:
    resource = {"sp_mchid": SP_A, "sub_mchid": SUB_A, "employee_id": "WeBizPay_old_1", "note": nid}
    return {
        "id": nid, "mchid": SP_A, "event_type": "WEBIZPAY.QUOTACARDEXPIRED", "summary": "额度卡已失效",
        "resource_json": json.dumps(resource, ensure_ascii=False, separators=(",", ":")),
        "original_type": "webizpay", "create_time": created, "state": state, "sends": sends,
        "send_limit": 10, "next_attempt_at": next_at, "lease_owner": None, "lease_until": None,
        "delivered_at": delivered_at, "updated_at": created,
    }  # fmt: skip


def _journal(i: int, at: float) -> dict[str, Any]:
    return {
        "id": i, "request_id": f"OLD-REQUEST-{i}", "at": at, "mchid": SP_A, "method": "GET",
        "path": f"/v3/webizpay/users/old_user/authorization-state?i={i}",
        "operation": "webizpay.authorization_state", "status": 200, "code": None, "message": None,
        "latency_ms": 2.5, "verification": "ok", "verify_field": None, "verify_issue": None,
        "expected_message": None, "fault": None, "body_length": 0, "body_sha256": None,
        "client": "127.0.0.1:40000", "user_agent": "old-client/1.0",
    }  # fmt: skip


def upgrade_as_serve(url: str, data_dir: Path) -> None:
    db = Database(url, pool_size=2)
    try:
        bootstrap(db, data_dir, token=SANDBOX_TOKEN, demo=False)
    finally:
        db.dispose()


@pytest.fixture
def upgraded(
    request: pytest.FixtureRequest, empty_url: str, tmp_path: Path, world: World
) -> Iterator[tuple[TestClient, str, str]]:
    migrate_to(empty_url, RELEASES[request.param])
    write_old_rows(empty_url, world, frozen=request.param == "generations")
    upgrade_as_serve(empty_url, tmp_path / "data")
    settings = Settings(
        data_dir=str(tmp_path / "data"),
        database_url=empty_url,
        sandbox_token=SANDBOX_TOKEN,
        deliver_callbacks=False,
    )
    app = create_app(settings)
    try:
        with TestClient(app, base_url="http://testserver") as http:
            yield http, empty_url, request.param
    finally:
        app.state.db.dispose()


@pytest.mark.parametrize("upgraded", list(RELEASES), indirect=True)
def test_an_old_database_is_upgraded_and_served(upgraded: tuple[TestClient, str, str], world: World) -> None:
    http, url, release = upgraded
    heads = set(ScriptDirectory.from_config(_alembic()).get_heads())
    assert versions(url) == heads
    engine = make_engine(url)
    try:
        with engine.connect() as conn:  # the same schema a new database gets
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
            paid_at = conn.exec_driver_sql("SELECT paid_at FROM webizpay_payments").scalar_one()
    finally:
        engine.dispose()

    a, c = ApiClient(http, world, SP_A), ApiClient(http, world, SP_C)
    control = {"Authorization": f"Bearer {SANDBOX_TOKEN}"}
    q = f"sp_mchid={SP_A}&sub_mchid={SUB_A}"

    # webizpay: the authorization, cards in every state, payments and refunds
    resp = a.get(f"/v3/webizpay/users/old_user/authorization-state?{q}")
    assert resp.status_code == 200, resp.text
    states = {e["employee_id"]: e["authorization_state"] for e in resp.json()["employee_list"]}
    assert states["WeBizPay_old_1"] == "AUTHORIZED"
    card = a.get(f"/v3/webizpay/employees/WeBizPay_old_1/out-quota-cards/old_card_active?{q}").json()
    assert (card["card_state"], card["remain_amount"]) == ("ACTIVE", 8500), card
    card = a.get(f"/v3/webizpay/employees/WeBizPay_old_1/quota-cards/1000000000000000003?{q}").json()
    assert (card["card_state"], card["reason"]) == ("DISABLED", "旧版本作废"), card
    resp = a.post(
        "/v3/webizpay/employees/WeBizPay_old_1/quota-cards/1000000000000000002/cancel",
        {"sp_mchid": SP_A, "sub_mchid": SUB_A, "reason": "升级后作废"},
    )
    assert resp.status_code == 200 and resp.json()["card_state"] == "DISABLED", resp.text
    resp = http.post(
        "/sandbox/webizpay/payments",
        json={"card_no": "1000000000000000001", "amount": 1000, "goods_name": "晚餐"},
        headers=control,
    )
    assert resp.status_code == 200 and resp.json()["remain_amount"] == 7500, resp.text
    resp = http.post(
        "/sandbox/webizpay/refunds",
        json={"transaction_id": "4200000000202611230000000001", "amount": 1500, "out_refund_no": "new_rf"},
        headers=control,
    )
    assert resp.status_code == 200 and resp.json()["refunded_amount"] == 2000, resp.text
    resp = http.post(
        "/sandbox/webizpay/refunds",  # the whole payment is refunded now: the old refund counted
        json={"transaction_id": "4200000000202611230000000001", "amount": 1, "out_refund_no": "one_more"},
        headers=control,
    )
    assert resp.status_code == 400, resp.text
    assert http.get("/webizpay/authorize?token=old-open-auth-link").status_code == 200

    # the bill of the old payment's day lists it
    day = time.strftime("%Y-%m-%d", time.gmtime(paid_at + 8 * 3600))  # China's date
    bill = {"sp_mchid": SP_A, "sub_mchid": SUB_A, "date": day, "type": "QYZFALL"}
    resp = a.post("/v3/webizpay/bill/trade-bill", bill)
    assert resp.status_code == 200, resp.text
    link = urlsplit(resp.json()["download_url"])
    assert "4200000000202611230000000001" in a.get(f"{link.path}?{link.query}").text

    # store matching batches and ranges
    resp = a.get(f"/v3/webizpay/stores/entity-matches/1030000000000000000000001?sp_mchid={SP_A}")
    assert resp.status_code == 200 and resp.json()["out_batch_id"] == "old_batch_01", resp.text
    resp = a.get(f"/v3/webizpay/avail-mch-ranges?sp_mchid={SP_A}")
    assert [r["range_id"] for r in resp.json()["range_list"]] == ["old-range-1"], resp.text
    resp = a.get(
        f"/v3/webizpay/avail-mch-ranges/old-range-1/merchant-identifiers?sp_mchid={SP_A}&offset=0&limit=10"
    )
    assert "91440300MA5OLD0001" in resp.text, resp.text

    # recharge employees
    resp = http.get(f"/sandbox/recharge-employees?sub_mchid={SECOND_A}", headers=control)
    found = {e["sp_openid"]: e["state"] for e in resp.json()["employees"]}
    assert found == {"oOldEffective": "EFFECTIVE", "oOldDeleted": "DELETED"}, resp.text

    # applyments: the old auto policy moves the one waiting at its second query
    resp = c.get("/v3/apply4subject/applyment?business_code=old_waiting")
    assert resp.status_code == 200, resp.text
    assert resp.json()["applyment_state"] == "APPLYMENT_STATE_WAITTING_FOR_CONFIRM_CONTACT", resp.text
    resp = c.get("/v3/apply4subject/applyment?business_code=old_rejected")
    assert resp.json()["reject_reason"] == "公司名称与工商局登记不一致", resp.text
    resp = c.get("/v3/apply4subject/applyment/merchants/1900000109/state")
    assert resp.status_code == 200 and resp.json()["authorize_state"] == "AUTHORIZE_STATE_AUTHORIZED", (
        resp.text
    )
    listed = http.get(f"/sandbox/apply4subject/applyments?mchid={SP_C}", headers=control).json()
    assert {x["business_code"] for x in listed["data"]} >= {"old_passed", "old_cancelled"}, listed

    # the journal continues after the old rows; the fault rule is still there
    journal = http.get("/sandbox/journal?limit=1000", headers=control).json()["data"]
    ids = {r["request_id"]: r["id"] for r in journal}
    assert {"OLD-REQUEST-1", "OLD-REQUEST-3"} <= set(ids), ids
    assert min(i for r, i in ids.items() if not r.startswith("OLD-")) > 3
    faults = http.get("/sandbox/faults", headers=control).json()["data"]
    assert [(f["id"], f["remaining"]) for f in faults] == [("FOLDRULE0001", 2)], faults
    clock = http.get("/sandbox/clock", headers=control).json()
    assert clock["frozen"] is (release == "generations") and clock["offset_seconds"] == 0, clock

    # pending callbacks go out once the merchant has a URL, the one queued while the clock was ahead too
    receiver = start_receiver()
    try:
        resp = http.put(
            f"/sandbox/merchants/{SP_A}/notify-url", json={"notify_url": receiver.url}, headers=control
        )
        assert resp.status_code == 200, resp.text
        sent = http.post("/sandbox/callbacks/deliver", headers=control).json()["attempts"]
    finally:
        receiver.stop()
    sent_ids = {s["id"] for s in sent if s["ok"]}
    assert {"old-n-queued-ahead", "old-n-retry", "old-n-retry-ahead"} <= sent_ids, sent
    assert "old-n-retry-later" not in sent_ids, sent
    assert len(receiver.deliveries) == len(sent) and all(s["ok"] for s in sent), sent
    delivered = http.get("/sandbox/callbacks/old-n-delivered", headers=control).json()
    assert delivered["state"] == "delivered" and len(delivered["attempts"]) == 1, delivered

    # the dashboard's pages and the export read them all
    http.cookies.set(COOKIE, cookie_value(SANDBOX_TOKEN))
    for page, shown in (
        ("/dashboard", ""),
        ("/dashboard/employees", "WeBizPay_old_1"),
        ("/dashboard/cards", "old_card_active"),
        ("/dashboard/callbacks", "old-n-delivered"),
        ("/dashboard/journal", "OLD-REQUEST-2"),
        ("/dashboard/applyments", "old_rejected"),
        ("/dashboard/recharge", "oOldDeleted"),
        ("/dashboard/faults", "FOLDRULE0001"),
        ("/dashboard/clock", ""),
        ("/dashboard/merchants", SP_C),
    ):
        resp = http.get(page)
        assert resp.status_code == 200 and shown in resp.text, (page, resp.status_code)
    export = http.get("/sandbox/scenario", headers=control)
    assert export.status_code == 200 and "old_passed" in export.text and "oOldEffective" in export.text


def test_a_database_of_a_newer_version_is_refused_untouched(empty_url: str, tmp_path: Path) -> None:
    """A database migrated by a newer wxpartner names a revision this code has no script for: start-up
    stopped with Alembic's traceback ("Can't locate revision identified by …"). It is refused with
    one line, and nothing in it changes."""
    migrate_to(empty_url, RELEASES["generations"])
    engine = make_engine(empty_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0999' WHERE version_num = '0011'")
        conn.exec_driver_sql("INSERT INTO sandbox_kv (key, value) VALUES ('written_by', 'newer')")
    before = _contents(engine)
    engine.dispose()

    db = Database(empty_url)
    try:
        with pytest.raises(SchemaTooNew, match=r"newer wxpartner .*0999"):
            db.migrate()
    finally:
        db.dispose()

    data_dir = tmp_path / "data"
    proc = subprocess.run(
        [sys.executable, "-m", "wxpartner.cli", "serve", "--data-dir", str(data_dir), "--port", "1",
         "--database-url", empty_url, "--token", SANDBOX_TOKEN],
        capture_output=True, timeout=60,
    )  # fmt: skip
    err = proc.stderr.decode()
    assert proc.returncode == 1 and "Traceback" not in err and err.count("\n") == 1, err
    assert "written by a newer wxpartner (schema revision 0999" in err and "nothing was changed" in err, err
    engine = make_engine(empty_url)
    try:
        assert _contents(engine) == before
    finally:
        engine.dispose()


def _contents(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows and the set of tables, indexes included, as far as reflection sees them."""
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        out: dict[str, list[tuple[Any, ...]]] = {}
        for name in sorted(inspector.get_table_names()):
            out[name] = sorted(map(tuple, conn.execute(sa.text(f"SELECT * FROM {name}"))), key=repr)
            out[f"{name}:indexes"] = sorted(
                (i["name"] or "", *i["column_names"]) for i in inspector.get_indexes(name)
            )  # type: ignore[misc]
        return out


def test_a_migration_that_fails_leaves_the_old_database_usable(empty_url: str, world: World) -> None:
    """Every migration runs in one transaction (PostgreSQL's DDL is transactional, SQLite's too under
    the explicit BEGIN): one that fails halfway, here on an index the user made by hand under a name a
    later migration creates, leaves the old revision's schema and rows as they were, for the old
    version to go on with."""
    migrate_to(empty_url, RELEASES["first"])
    write_old_rows(empty_url, world)
    engine = make_engine(empty_url)
    with engine.begin() as conn:  # 0014 creates this index: the upgrade fails there, after 0008-0013
        conn.exec_driver_sql("CREATE INDEX ix_webizpay_cards_sub_mchid ON webizpay_cards (sub_mchid, state)")
    before = _contents(engine)
    engine.dispose()

    db = Database(empty_url)
    try:
        with pytest.raises(sa.exc.SQLAlchemyError, match="ix_webizpay_cards_sub_mchid"):
            db.migrate()
    finally:
        db.dispose()
    engine = make_engine(empty_url)
    try:
        assert _contents(engine) == before  # no column, index, table or row of a later revision
        assert versions(empty_url) == set(RELEASES["first"])
        with engine.begin() as conn:  # the old version's writes still fit
            conn.exec_driver_sql(
                "UPDATE webizpay_cards SET remain_amount = remain_amount - 1 WHERE card_no = '1000000000000000001'"
            )
    finally:
        engine.dispose()


def test_hosts_upgrading_one_old_database_at_once(empty_url: str, tmp_path: Path, world: World) -> None:
    """Hosts of a deployment restarted on a new version together: one upgrades (under the migration's
    advisory lock on PostgreSQL, the set-up file lock on SQLite), the others wait and find the schema at
    its heads; every one starts, and the old rows are there once, upgraded once."""
    migrate_to(empty_url, RELEASES["first"])
    write_old_rows(empty_url, world)
    with ThreadPoolExecutor(HOSTS) as pool:
        list(pool.map(lambda i: upgrade_as_serve(empty_url, tmp_path / f"host{i}"), range(HOSTS)))
    assert versions(empty_url) == set(ScriptDirectory.from_config(_alembic()).get_heads())
    engine = make_engine(empty_url)
    try:
        with engine.connect() as conn:
            due = conn.exec_driver_sql(
                "SELECT id, next_attempt_at FROM callback_notifications WHERE state = 'pending'"
            ).all()
            cards = conn.exec_driver_sql("SELECT count(*) FROM webizpay_cards").scalar_one()
    finally:
        engine.dispose()
    waiting = {nid for nid, at in due if at > time.time()}
    assert cards == 3 and len(due) == 4 and waiting == {"old-n-retry-later"}, due


def test_migrations_started_at_once_take_turns(empty_url: str, world: World) -> None:
    """Database.migrate on its own, without start-up's set-up lock (the pytest plugin migrates before
    it loads a scenario's baseline): on SQLite each migration read the old revision in a deferred
    transaction, and of three started at once one or two failed, "database is locked" or "index …
    already exists" (in 8 runs of 8). Now each takes the write lock first (BEGIN IMMEDIATE), as PostgreSQL's
    take the migration's advisory lock, and the later ones find the schema upgraded."""
    migrate_to(empty_url, RELEASES["first"])
    write_old_rows(empty_url, world)
    dbs = [Database(empty_url) for _ in range(HOSTS)]
    start = threading.Barrier(HOSTS)

    def migrate(db: Database) -> None:
        start.wait()
        db.migrate()

    try:
        with ThreadPoolExecutor(HOSTS) as pool:
            list(pool.map(migrate, dbs))  # raises what any of them raised
    finally:
        for db in dbs:
            db.dispose()
    assert versions(empty_url) == set(ScriptDirectory.from_config(_alembic()).get_heads())
