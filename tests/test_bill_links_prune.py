"""The download links' prune stays cheap however many live links the table holds: each W11/W12 link
added first deletes the links dead for a day (``add_file``), and without an index on ``expires_at``
that delete read every row (a day of links) on every link handed out. Costs are counted, not timed:
SQLite's virtual-machine instructions, PostgreSQL's rows read by the plan (as read_cost.py)."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from support import SP_B, SUB_B
from wxpartner.domain.webizpay_bills import BillFile
from wxpartner.server.app import WxPartnerApp
from wxpartner.store.webizpay_bills_repo import BillRepo
from wxpartner.store.webizpay_merchants_tables import webizpay_bill_files

T0 = 1_747_280_000.0
SMALL = 2_000
BIG = 20_000


def _links(app: WxPartnerApp, start: int, count: int) -> None:
    """Live links (expiring an hour after T0): the prune finds none of them dead."""
    rows = [
        {
            "token": f"tok{i:020d}",
            "sp_mchid": SP_B,
            "sub_mchid": SUB_B,
            "kind": "TRADE_BILL",
            "filename": "bill.csv",
            "content": "",
            "created_at": T0,
            "expires_at": T0 + 3600,
        }
        for i in range(start, start + count)
    ]
    with app.state.db.write() as conn:
        conn.execute(webizpay_bill_files.insert(), rows)
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE webizpay_bill_files")


def _add_cost(app: WxPartnerApp, n: int) -> int:
    """What one add_file costs the database, its prune included; rolled back, so the table is unchanged."""
    link = BillFile(f"new{n:020d}", SP_B, SUB_B, "TRADE_BILL", "b.csv", "", T0 + 60, T0 + 3660)
    cost = [0]
    try:
        with app.state.db.write() as conn:
            cost[0] = (
                _sqlite_steps(conn, link) if conn.dialect.name == "sqlite" else _pg_rows_read(conn, link)
            )
            raise _Undo
    except _Undo:
        return cost[0]


class _Undo(Exception):
    """Raised to roll the measured add back."""


def _sqlite_steps(conn: Connection, link: BillFile) -> int:
    steps = [0]

    def step() -> int:
        steps[0] += 1
        return 0

    raw: Any = conn.connection.driver_connection
    raw.set_progress_handler(step, 10)
    try:
        BillRepo(conn).add_file(link)
    finally:
        raw.set_progress_handler(None, 0)
    return steps[0] * 10


def _pg_rows_read(conn: Connection, link: BillFile) -> int:
    """The rows of the table the prune's plan reads, its statement as add_file sends it."""
    sent: list[tuple[str, Any]] = []

    def seen(_c: Any, _cursor: Any, statement: str, parameters: Any, *_a: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            sent.append((statement, parameters))

    sa.event.listen(conn.engine, "before_cursor_execute", seen)
    try:
        BillRepo(conn).add_file(link)
    finally:
        sa.event.remove(conn.engine, "before_cursor_execute", seen)
    [(statement, parameters)] = sent
    [[explained]] = conn.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters).all()
    plans = json.loads(explained) if isinstance(explained, str) else explained

    def rows_read(plan: dict[str, Any]) -> int:
        own = 0
        if plan.get("Relation Name") == "webizpay_bill_files" and "Scan" in plan.get("Node Type", ""):
            own = sum(int(plan.get(k, 0)) for k in ("Actual Rows", "Rows Removed by Filter"))
        return own + sum(rows_read(p) for p in plan.get("Plans", []))

    return rows_read(plans[0]["Plan"])


def test_adding_a_download_link_does_not_read_every_live_link(app: WxPartnerApp) -> None:
    _links(app, 0, SMALL)
    small = _add_cost(app, 1)
    _links(app, SMALL, BIG)
    big = _add_cost(app, 2)
    # a scan: 11 times the cost (22,000 links against 2,000)
    assert big <= 1.5 * small + 100, (small, big)
    with app.state.db.read() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(webizpay_bill_files)).scalar_one()
    assert count == SMALL + BIG  # the measured adds were rolled back
