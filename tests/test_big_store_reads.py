"""Listings stay cheap however big the sandbox's tables grow (weeks of use, load tests): each page
reads about as much at 20,000 rows as at 200. Costs are counted, not timed (read_cost.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from read_cost import read_cost
from support import SP_A, SP_B
from wxpartner.server.app import WxPartnerApp
from wxpartner.store import outbox
from wxpartner.store.outbox_tables import callback_notifications

T0 = 1_747_280_000.0
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
    """Cost of each read with 200 rows, then with BIG more: it may not grow with the table."""
    fill(0, 200)
    small = {name: read_cost(app.state.db, read, table, marker=marker) for name, read in reads.items()}
    fill(200, BIG)
    big = {name: read_cost(app.state.db, read, table, marker=marker) for name, read in reads.items()}
    grown = {name: (small[name], big[name]) for name in reads if big[name] > 2 * small[name] + 100}
    assert not grown, grown


def test_the_callback_listings_read_one_page_not_the_outbox(app: WxPartnerApp) -> None:
    """GET /sandbox/callbacks and the dashboard's page sorted every matching notification by
    create_time (no index led with it): ≈ 0.6 s a page at 100,000 notifications on SQLite. The indexes
    of migration 0012 give the newest first, overall, by state and by merchant."""

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
