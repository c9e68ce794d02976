"""Listings stay cheap however big the sandbox's tables grow (weeks of use, load tests): each page
reads about as much at 26,000 rows as at 6,000. Costs are counted, not timed (read_cost.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
import yaml
from starlette.testclient import TestClient

from conftest import SANDBOX_TOKEN
from read_cost import read_cost, statements_of
from support import SP_A, SP_B, SUB_A, SUB_B
from wxpartner.domain import apply4subject as d
from wxpartner.server.app import WxPartnerApp
from wxpartner.store import dashboard_reads, dashboard_tables, outbox, webizpay_trades
from wxpartner.store.apply4subject_repo import Apply4SubjectRepo
from wxpartner.store.apply4subject_tables import apply4subject_applyments
from wxpartner.store.outbox_tables import callback_notifications
from wxpartner.store.recharge_repo import RechargeStore
from wxpartner.store.recharge_tables import recharge_employees
from wxpartner.store.webizpay_tables import (
    webizpay_auth_links,
    webizpay_cards,
    webizpay_payments,
    webizpay_refunds,
    webizpay_relations,
)

T0 = 1_747_280_000.0
SMALL = 6_000  # > dashboard_reads.SORT_CAP
BIG = 20_000


def _analyze(app: WxPartnerApp, table: str) -> None:
    """PostgreSQL's planner statistics, as autovacuum would have them after a load."""
    with app.state.db.write() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"ANALYZE {table}")


def _notifications(app: WxPartnerApp, mchid: str, start: int, count: int) -> None:
    states = ("delivered", "failed", "pending")
    rows = [
        {
            "id": f"n-{mchid}-{i}",
            "mchid": mchid,
            "event_type": "WEBIZPAY.REVOKED",
            "resource_json": "{}",
            "create_time": T0 + i,
            "state": states[i % 3],
            "next_attempt_at": T0 + 86400 if i % 3 == 2 else None,
            "updated_at": T0 + i,
        }
        for i in range(start, start + count)
    ]
    with app.state.db.write() as conn:
        conn.execute(callback_notifications.insert(), rows)
    _analyze(app, "callback_notifications")


def _grows(
    app: WxPartnerApp,
    fill: Callable[[int, int], None],
    reads: dict[str, Callable[[], Any]],
    table: str,
    marker: str,
) -> None:
    """Cost of each read with SMALL rows, then with BIG more: it may not grow with the table. SMALL is
    past the dashboard's SORT_CAP, whose bounded count reads up to that many rows by design."""
    fill(0, SMALL)
    small = {name: read_cost(app.state.db, read, table, marker=marker) for name, read in reads.items()}
    fill(SMALL, BIG)
    big = {name: read_cost(app.state.db, read, table, marker=marker) for name, read in reads.items()}
    # a scan or a sort of every row: 4.3 times the cost (26,000 rows against 6,000)
    grown = {name: (small[name], big[name]) for name in reads if big[name] > 1.5 * small[name] + 100}
    assert not grown, grown


def test_the_callback_listings_read_one_page_not_the_outbox(app: WxPartnerApp) -> None:
    """GET /sandbox/callbacks and the dashboard's page sorted every matching notification by
    create_time (no index led with it): ≈ 0.6 s a page at 100,000 notifications on SQLite. The indexes
    of migration 0013 give the newest first, overall, by state and by merchant."""

    def page(**filters: Any) -> Callable[[], Any]:
        def read() -> Any:
            with app.state.db.read() as conn:
                return outbox.list_notifications(conn, limit=50, **filters)

        return read

    def fill(start: int, count: int) -> None:
        _notifications(app, SP_B, start, count)
        _notifications(app, SP_A, start, 3)

    reads = {
        "all": page(),
        "pending": page(state="pending"),
        "failed": page(state="failed"),
        "busy merchant": page(mchid=SP_B),
        "quiet merchant": page(mchid=SP_A),
        "busy merchant, delivered": page(mchid=SP_B, state="delivered"),
    }
    # the page's query (the total is a COUNT, answered from an index)
    _grows(app, fill, reads, "callback_notifications", marker="LIMIT")


def _cards(app: WxPartnerApp, sp: str, sub: str, start: int, count: int, employee: str | None = None) -> None:
    rows = [
        {
            "card_no": f"{sub}{i:09d}",
            "sp_mchid": sp,
            "sub_mchid": sub,
            "out_card_no": f"o{i}",
            "employee_id": employee or f"emp{i % 100}",
            "card_template_id": "template_123",
            "card_rule": "MULTIPLE",
            "refund_rule": "RETURN",
            "amount": 100,
            "remain_amount": 100,
            "card_name": "card",
            "begin_at": T0 + i,
            "end_at": T0 + 86400,
            "end_text": "2025-05-16T11:33:20+08:00",
            "state": "ACTIVE",
        }
        for i in range(start, start + count)
    ]
    with app.state.db.write() as conn:
        conn.execute(webizpay_cards.insert(), rows)
    _analyze(app, "webizpay_cards")


def test_the_cards_page_filtered_by_a_merchant_reads_one_page(app: WxPartnerApp) -> None:
    """The dashboard's cards page filtered by a merchant (service provider or sub-merchant): a
    sub-merchant with few cards, or a merchant with none, read every card (sub_mchid had no index;
    ≈ 0.6 s at 1,000,000 cards on SQLite). Migration 0014 indexes it, and a merchant that many cards
    match still gets its page by walking the primary key (an index on the filter would have every
    match read and sorted first)."""

    def page(**filters: Any) -> Callable[[], Any]:
        def read() -> Any:
            with app.state.db.read() as conn:
                found, _spends = dashboard_reads.cards(conn, offset=0, **filters)
                return found

        return read

    def fill(start: int, count: int) -> None:
        _cards(app, SP_B, SUB_B, start, count)
        if start == 0:
            _cards(app, SP_A, SUB_A, 0, 3)

    reads = {
        "busy service provider": page(mchid=SP_B, employee_id=None),
        "busy sub-merchant": page(mchid=SUB_B, employee_id=None),
        "quiet sub-merchant": page(mchid=SUB_A, employee_id=None),
        "no such merchant": page(mchid="1999999999", employee_id=None),
        "unfiltered": page(mchid=None, employee_id=None),
    }
    _grows(app, fill, reads, "webizpay_cards", marker="")
    with app.state.db.read() as conn:
        found, _ = dashboard_reads.cards(conn, mchid=SUB_A, employee_id=None, offset=0)
        assert [c["card_no"] for c in found.rows] == [f"{SUB_A}{i:09d}" for i in (2, 1, 0)]
        assert found.by_time
        found, _ = dashboard_reads.cards(conn, mchid=SUB_B, employee_id=None, offset=0)
        assert not found.by_time and found.more and len(found.rows) == dashboard_reads.PAGE
        assert {c["sub_mchid"] for c in found.rows} == {SUB_B}


def _recharge_employees(app: WxPartnerApp, start: int, count: int) -> None:
    rows = [
        {
            "mchid": SP_A,
            "sub_mchid": f"19{i // 3:08d}",
            "sp_openid": f"o{i:09d}",
            "state": "EFFECTIVE",
            "create_time": T0 - i,
            "update_time": T0 - i,
        }
        for i in range(start, start + count)
    ]
    with app.state.db.write() as conn:
        conn.execute(recharge_employees.insert(), rows)
    _analyze(app, "recharge_employees")


def test_the_recharge_employees_listing_answers_a_page(app: WxPartnerApp, control: TestClient) -> None:
    """GET /sandbox/recharge-employees answered every employee at once, sorted: 100,000 employees were
    18 MB built in memory in 1.9 s on SQLite. It answers 1,000 at most now, the next page by
    ``offset`` (``next_offset``), each page an index walk."""
    _recharge_employees(app, 0, 2_500)
    first = control.get("/sandbox/recharge-employees").json()
    assert len(first["employees"]) == 1000 and first["next_offset"] == 1000
    last = control.get("/sandbox/recharge-employees", params={"offset": 2000}).json()
    assert len(last["employees"]) == 500 and last["next_offset"] is None
    pages = [
        control.get("/sandbox/recharge-employees", params={"offset": o, "limit": 700}).json()["employees"]
        for o in range(0, 2500, 700)
    ]
    walked = [e["sp_openid"] for p in pages for e in p]
    assert len(walked) == len(set(walked)) == 2500
    # one merchant's employees, oldest first, as before
    assert [e["sp_openid"] for e in first["employees"][:3]] == ["o000000002", "o000000001", "o000000000"]
    for bad in ("0", "1001", "x"):
        assert control.get("/sandbox/recharge-employees", params={"limit": bad}).status_code == 400

    def page() -> Any:
        with app.state.db.read() as conn:
            return RechargeStore(conn).list_all(limit=1001)

    _grows(app, lambda s, n: _recharge_employees(app, 2_500 + s, n), {"page": page}, "recharge_employees", "")


def _applyments(app: WxPartnerApp, mchid: str, start: int, count: int, state: str) -> None:
    rows = [
        {
            "applyment_id": 20_000_000_000_000 + i,
            "mchid": mchid,
            "business_code": f"bc{i}",
            "state": state,
            "fingerprint": "f",
            "materials": "{}",
            "confirm_token": f"ct{i}",
            "state_since": T0 + i,
            "created_at": T0 + i,
            "updated_at": T0 + i,
        }
        for i in range(start, start + count)
    ]
    with app.state.db.write() as conn:
        conn.execute(apply4subject_applyments.insert(), rows)
    _analyze(app, "apply4subject_applyments")


def test_the_applyment_listings_read_one_page(app: WxPartnerApp) -> None:
    """The applyments by merchant (control API, dashboard) sorted all of the merchant's applyments, and
    the dashboard's ?state= of a state few are in walked every applyment (≈ 0.35 s and 0.2 s at
    100,000 applyments on SQLite): migration 0015 indexes (mchid, applyment_id) and (state,
    applyment_id)."""

    def fill(start: int, count: int) -> None:
        _applyments(app, SP_B, start, count, d.AUDIT)
        if start == 0:
            _applyments(app, SP_A, 10**9, 3, d.REJECTED)

    def dashboard(mchid: str | None, state: str | None) -> Callable[[], Any]:
        def read() -> Any:
            with app.state.db.read() as conn:
                return dashboard_reads.applyments(conn, mchid, state, 0)

        return read

    def control_list(mchid: str) -> Callable[[], Any]:
        def read() -> Any:
            with app.state.db.read() as conn:
                return Apply4SubjectRepo(conn).list_all(mchid)

        return read

    reads = {
        "busy merchant": dashboard(SP_B, None),
        "quiet merchant": dashboard(SP_A, None),
        "common state": dashboard(None, d.AUDIT),
        "rare state": dashboard(None, d.REJECTED),
        "control API, busy merchant": control_list(SP_B),
        "control API, quiet merchant": control_list(SP_A),
    }
    _grows(app, fill, reads, "apply4subject_applyments", "")


def test_the_family_data_browser_reads_one_page(app: WxPartnerApp) -> None:
    """/dashboard/data/<table> sorted the whole table by its time column, which most tables hold
    without an index (0.84 s for apply4subject_applyments, 0.63 s for callback_attempts at 100,000
    and 200,000 rows on SQLite). It follows an index now: the time column when one leads with it,
    else the primary key, highest first, and the page says which."""
    db = app.state.db

    def fill(start: int, count: int) -> None:
        _applyments(app, SP_B, start, count, d.AUDIT)
        _notifications(app, SP_B, start, count)
        _recharge_employees(app, start, count)

    tables = ("apply4subject_applyments", "callback_notifications", "recharge_employees")
    listed = {t for group in dashboard_tables.family_tables(db).values() for t in group}
    assert set(tables) <= listed

    def costs() -> dict[str, int]:
        return {t: read_cost(db, lambda t=t: dashboard_tables.read_table(db, t), t) for t in tables}

    fill(0, SMALL)
    small = costs()
    fill(SMALL, BIG)
    big = costs()
    assert not {t: (small[t], big[t]) for t in tables if big[t] > 1.5 * small[t] + 100}
    cols, rows, order = dashboard_tables.read_table(db, "callback_notifications")
    assert order == "newest create_time first" and len(rows) == dashboard_tables.MAX_ROWS
    assert rows[0][cols.index("id")] == f"n-{SP_B}-{SMALL + BIG - 1}"
    cols, rows, order = dashboard_tables.read_table(db, "apply4subject_applyments")
    assert order == "by applyment_id, highest first"
    assert rows[0][cols.index("applyment_id")] == 20_000_000_000_000 + SMALL + BIG - 1


def _payments(app: WxPartnerApp, start: int, count: int) -> None:
    """Payments of SUB_B one a minute back from T0 (day after day), every tenth refunded a minute later."""
    store = {
        "receive_mch_name": "s",
        "receive_mch_full_name": "s",
        "receive_mch_organization_code": "c",
        "acquirer": "a",
        "goods_name": "g",
    }
    payments = [
        {
            "transaction_id": f"42{i:026d}",
            "out_trade_no": f"t{i}",
            "card_no": "c",
            "sp_mchid": SP_B,
            "sub_mchid": SUB_B,
            "employee_id": "e",
            "amount": 100,
            "refunded_amount": 0,
            "paid_at": T0 - 60 * i,
            **store,
        }
        for i in range(start, start + count)
    ]
    refunds = [
        {
            "refund_id": f"50{i:026d}",
            "out_refund_no": f"r{i}",
            "transaction_id": f"42{i:026d}",
            "amount": 10,
            "created_at": T0 - 60 * i + 60,
            "succeeded_at": T0 - 60 * i + 60,
        }
        for i in range(start, start + count, 10)
    ]
    with app.state.db.write() as conn:
        conn.execute(webizpay_payments.insert(), payments)
        conn.execute(webizpay_refunds.insert(), refunds)
    _analyze(app, "webizpay_payments")
    _analyze(app, "webizpay_refunds")


def test_a_days_bill_reads_that_days_trades(app: WxPartnerApp) -> None:
    """The bills (W12 a day, W11 a span) read every payment of the sub-merchant, and for the refunds
    probed each one (≈ 0.15 s at 100,000 payments on SQLite, growing every day the sandbox runs):
    migration 0016 indexes payments by (sub_mchid, paid_at) and refunds by succeeded_at, and the
    refunds are read from the span's refunds."""
    last_hour = (T0 - 3600, T0 + 1)

    def bill() -> Any:
        with app.state.db.read() as conn:
            return webizpay_trades.trade_rows(conn, SP_B, SUB_B, *last_hour)

    def cost() -> int:
        return sum(read_cost(app.state.db, bill, t) for t in ("webizpay_payments", "webizpay_refunds"))

    _payments(app, 0, SMALL)
    small = cost()
    _payments(app, SMALL, BIG)
    big = cost()
    assert big <= 1.5 * small + 100, (small, big)
    rows = bill()
    assert sum(r.state == "SUCCESS" for r in rows) == 61 and sum(r.state == "REFUND" for r in rows) == 6


def test_the_employees_page_counts_an_employees_cards_up_to_a_cap(
    app: WxPartnerApp, http: TestClient
) -> None:
    """The employees page counted every card of each employee on it: an employee a load test gave a
    million cards (bench's does) cost every page load a walk of them all (≈ 60 ms at 1,000,000 on
    SQLite, growing with the cards). It counts to CARDS_COUNT_CAP + 1 and shows "1000+"."""
    with app.state.db.write() as conn:
        conn.execute(
            webizpay_relations.insert(),
            [
                {
                    "employee_id": f"emp{i}",
                    "sp_mchid": SP_B,
                    "sub_mchid": SUB_B,
                    "user_id": f"u{i}",
                    "state": "AUTHORIZED",
                    "authorized_at": T0 - i,
                }
                for i in (0, 1)
            ],
        )

    def page() -> Any:
        with app.state.db.read() as conn:
            return dashboard_reads.employees(conn, None, 0)

    def fill(start: int, count: int) -> None:
        # half of them emp0's, the rest spread as weeks of use would (PostgreSQL plans the count once
        # for every employee, from how many employees hold cards: with emp0 alone holding any, it
        # reads the whole table for an employee that has none)
        _cards(app, SP_B, SUB_B, start, count // 2, employee="emp0")
        _cards(app, SP_A, SUB_A, start + count // 2, count - count // 2)

    _grows(app, fill, {"page": page}, "webizpay_cards", "")
    with app.state.db.read() as conn:
        emp1 = conn.execute(
            sa.select(sa.func.count())
            .select_from(webizpay_cards)
            .where(webizpay_cards.c.employee_id == "emp1")
        ).scalar_one()
    assert 0 < emp1 <= dashboard_reads.CARDS_COUNT_CAP
    assert [row["cards"] for row in page().rows] == [dashboard_reads.CARDS_COUNT_CAP + 1, emp1]
    # counted in the page's own query, not one round trip per employee (on PostgreSQL 100 of them
    # were ≈ 50 ms)
    assert len(statements_of(app.state.db, page, "webizpay_cards")) == 1
    http.post("/dashboard/login", data={"token": SANDBOX_TOKEN})
    assert f"{dashboard_reads.CARDS_COUNT_CAP}+ card(s)" in http.get("/dashboard/employees").text


def test_the_open_authorization_links_are_found_without_reading_expired_ones(app: WxPartnerApp) -> None:
    """The employees page lists the W1 links still open; links are kept after they expire (one per W1
    call), and the list read every link ever made (no index on expires_at) on every page load.
    Migration 0012 indexes expires_at (the link sweep reads by it too)."""

    def fill(start: int, count: int) -> None:
        rows = [
            {
                "token": f"tok{i:09d}",
                "sp_mchid": SP_B,
                "sub_mchid": SUB_B,
                "user_id": f"u{i}",
                "application_type": "H5",
                "created_at": T0 - 86400 - i,
                "expires_at": T0 - 86400 - i + 600,
                "consumed_at": None if i % 2 else T0 - 86400 - i + 5,
            }
            for i in range(start, start + count)
        ]
        rows += [
            {
                **rows[0],
                "token": f"open{start}",
                "created_at": T0 + start,
                "expires_at": T0 + 600,
                "consumed_at": None,
            }
        ]
        with app.state.db.write() as conn:
            conn.execute(webizpay_auth_links.insert(), rows)
        _analyze(app, "webizpay_auth_links")

    def links() -> Any:
        with app.state.db.read() as conn:
            return dashboard_reads.open_links(conn, None, T0)

    _grows(app, fill, {"open links": links}, "webizpay_auth_links", "")
    assert [r["created_at"] for r in links()] == [T0 + SMALL, T0]


def test_the_scenario_export_keeps_every_applyment(app: WxPartnerApp, control: TestClient) -> None:
    """GET /sandbox/scenario exported the newest 10,000 applyments and silently left out the rest, so
    an export of a big sandbox loaded into a fresh server lost them; it exports all, oldest first."""
    _applyments(app, SP_B, 0, 10_005, d.AUDIT)
    exported = control.get("/sandbox/scenario", headers={"Accept": "application/json"})
    assert exported.status_code == 200, exported.text
    codes = [a["business_code"] for a in yaml.safe_load(exported.text)["apply4subject"]["applyments"]]
    assert codes == [f"bc{i}" for i in range(10_005)]
