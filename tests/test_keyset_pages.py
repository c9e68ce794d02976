"""?after= on the control API's long lists (callbacks, applyments, recharge employees): the page after
the row the previous page ended with, through the index however deep (``offset`` walks every row
before the page: ≈ 0.1 s at offset 90,000 of the callbacks, and a script walking 100,000 rows 100 at a
time walked ≈ 50 million). Costs are counted, not timed (read_cost.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from starlette.testclient import TestClient

from read_cost import read_cost
from support import SP_A, SP_B
from test_big_store_reads import BIG, SMALL, T0, _applyments, _notifications, _recharge_employees
from wxpartner.domain import apply4subject as d
from wxpartner.server.app import WxPartnerApp
from wxpartner.server.cursors import encode
from wxpartner.store import outbox
from wxpartner.store.apply4subject_repo import Apply4SubjectRepo
from wxpartner.store.apply4subject_tables import apply4subject_applyments
from wxpartner.store.outbox_tables import callback_notifications
from wxpartner.store.recharge_repo import RechargeStore
from wxpartner.store.recharge_tables import recharge_employees


def _walk(control: TestClient, path: str, key: str, limit: int, **params: Any) -> list[dict[str, Any]]:
    """Every row of a list, page after page by next_after."""
    rows: list[dict[str, Any]] = []
    after: str | None = None
    for _ in range(1000):
        page = control.get(path, params={**params, "limit": limit, **({"after": after} if after else {})})
        assert page.status_code == 200, page.text
        rows += page.json()[key]
        after = page.json()["next_after"]
        if after is None:
            return rows
    raise AssertionError("next_after never ended")


def _by_offset(control: TestClient, path: str, key: str, limit: int, **params: Any) -> list[dict[str, Any]]:
    return control.get(path, params={**params, "limit": 500}).json()[key]


def test_walking_each_list_by_next_after_gives_every_row_once_in_order(
    app: WxPartnerApp, control: TestClient
) -> None:
    """Ties on the time a list sorts by (callbacks, recharge employees) are broken by the id, so
    a page boundary between equal times neither skips nor repeats a row."""
    _notifications(app, SP_A, 0, 23)
    with app.state.db.write() as conn:  # five more at one instant
        conn.execute(
            callback_notifications.insert(),
            [
                {
                    "id": f"tie-{i}",
                    "mchid": SP_A,
                    "event_type": "WEBIZPAY.REVOKED",
                    "resource_json": "{}",
                    "create_time": T0 + 7,
                    "state": "delivered",
                    "updated_at": T0,
                }
                for i in range(5)
            ],
        )
        conn.execute(
            recharge_employees.insert(),
            [
                {
                    "mchid": SP_A,
                    "sub_mchid": "1900000000",
                    "sp_openid": f"t{i}",
                    "state": "EFFECTIVE",
                    "create_time": T0,
                    "update_time": T0,
                }
                for i in range(5)
            ],
        )
    _applyments(app, SP_A, 0, 17, d.AUDIT)
    _recharge_employees(app, 0, 19)
    for path, key, limit, ident in (
        ("/sandbox/callbacks", "data", 4, "id"),
        ("/sandbox/apply4subject/applyments", "data", 3, "applyment_id"),
        ("/sandbox/recharge-employees", "employees", 4, "sp_openid"),
    ):
        walked = [r[ident] for r in _walk(control, path, key, limit)]
        assert walked == [r[ident] for r in _by_offset(control, path, key, limit)], path
        assert len(walked) == len(set(walked)) > limit
    # a filter holds across pages
    pending = _walk(control, "/sandbox/callbacks", "data", 2, state="pending")
    assert pending and {r["state"] for r in pending} == {"pending"}


def test_a_page_after_a_row_that_is_gone_starts_where_it_was(app: WxPartnerApp, control: TestClient) -> None:
    """A retention pruning callbacks, or a reset, between two pages: the cursor is a sort key, not a
    row, so the next page is the rows after where that row was (an offset would skip rows)."""
    _notifications(app, SP_A, 0, 10)
    first = control.get("/sandbox/callbacks", params={"limit": 4}).json()
    gone = first["data"][-1]["id"]
    with app.state.db.write() as conn:
        conn.execute(
            sa.delete(callback_notifications).where(
                callback_notifications.c.id.in_([gone, first["data"][0]["id"]])
            )
        )
    rest = control.get("/sandbox/callbacks", params={"limit": 10, "after": first["next_after"]}).json()
    assert [r["id"] for r in rest["data"]] == [f"n-{SP_A}-{i}" for i in range(5, -1, -1)]


def test_a_cursor_that_is_not_one_is_a_param_error(control: TestClient) -> None:
    for path in ("/sandbox/callbacks", "/sandbox/apply4subject/applyments", "/sandbox/recharge-employees"):
        for bad in ("x", "bm90IGpzb24", encode(["a"]), encode([1, 2, 3, 4, 5]), encode([True, "x"])):
            answer = control.get(path, params={"after": bad})
            assert answer.status_code == 400, (path, bad, answer.text)
            assert answer.json()["code"] == "PARAM_ERROR"
            assert answer.json()["detail"] == {
                "field": "after",
                "location": "query",
                "issue": "not a cursor of this list",
            }
        both = control.get(path, params={"after": encode([1]), "offset": 5})
        assert both.status_code == 400 and both.json()["detail"]["issue"] == "contradictory"


def _deep(
    app: WxPartnerApp, fill: Callable[[int, int], None], page: Callable[[], Callable[[], Any]], table: str
) -> None:
    """A page's cost with SMALL rows, then with BIG more: a keyset page may not grow (an offset page at
    the same depth does: 4.3 times at 26,000 rows against 6,000). ``page()`` finds the cursor (not
    counted) and returns the read to count."""
    fill(0, SMALL)
    small = read_cost(app.state.db, page(), table, marker="LIMIT")
    fill(SMALL, BIG)
    big = read_cost(app.state.db, page(), table, marker="LIMIT")
    assert big <= 1.5 * small + 100, (table, small, big)


def test_a_deep_page_by_after_costs_what_the_first_page_does(app: WxPartnerApp) -> None:
    """The page 50 rows before each list's end, by ``after``: an index range on both backends."""

    def callbacks() -> Callable[[], Any]:
        n = callback_notifications.c
        with app.state.db.read() as conn:
            t, nid = conn.execute(
                sa.select(n.create_time, n.id).order_by(n.create_time, n.id.desc()).offset(50).limit(1)
            ).one()

        def read() -> Any:
            with app.state.db.read() as conn:
                return outbox.list_notifications(conn, limit=50, after=(t, nid))

        return read

    def applyments() -> Callable[[], Any]:
        a = apply4subject_applyments.c
        with app.state.db.read() as conn:
            before = conn.execute(
                sa.select(a.applyment_id).order_by(a.applyment_id).offset(50).limit(1)
            ).scalar_one()

        def read() -> Any:
            with app.state.db.read() as conn:
                return Apply4SubjectRepo(conn).list_all(SP_B, limit=50, before_id=before)

        return read

    def employees() -> Callable[[], Any]:
        e = recharge_employees.c
        with app.state.db.read() as conn:
            m, s, c, o = conn.execute(
                sa.select(e.mchid, e.sub_mchid, e.create_time, e.sp_openid)
                .order_by(e.mchid.desc(), e.sub_mchid.desc(), e.create_time.desc(), e.sp_openid.desc())
                .offset(50)
                .limit(1)
            ).one()

        def read() -> Any:
            with app.state.db.read() as conn:
                return RechargeStore(conn).list_all(limit=50, after=(m, s, float(c), o))

        return read

    _deep(app, lambda s, n: _notifications(app, SP_B, s, n), callbacks, "callback_notifications")
    _deep(app, lambda s, n: _applyments(app, SP_B, s, n, d.AUDIT), applyments, "apply4subject_applyments")
    _deep(app, lambda s, n: _recharge_employees(app, s, n), employees, "recharge_employees")


def _one_merchants_employees(app: WxPartnerApp, sub: str, start: int, count: int) -> None:
    """``count`` employees of one second-level merchant, newest openid oldest (the sort is not the key)."""
    with app.state.db.write() as conn:
        conn.execute(
            recharge_employees.insert(),
            [
                {
                    "mchid": SP_A,
                    "sub_mchid": sub,
                    "sp_openid": f"o{i:09d}",
                    "state": "DELETED",
                    "create_time": T0 - i,
                    "update_time": T0 - i,
                }
                for i in range(start, start + count)
            ],
        )
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE recharge_employees")


def test_a_page_of_one_merchants_employees_costs_the_same_at_any_depth(app: WxPartnerApp) -> None:
    """The recharge employees of one second-level merchant (DELETED ones pile up: 3 a day, or a
    preload of history) are listed oldest first, which no index gave: the first page and every page
    by ``after`` sorted all of that merchant's rows, unfiltered and by ``?sub_mchid=``. Migration 0020
    indexes the listing's order."""
    sub = "1900000000"

    def cursor(offset: int) -> tuple[str, str, float, str]:
        e = recharge_employees.c
        with app.state.db.read() as conn:
            m, s, c, o = conn.execute(
                sa.select(e.mchid, e.sub_mchid, e.create_time, e.sp_openid)
                .order_by(e.mchid, e.sub_mchid, e.create_time, e.sp_openid)
                .offset(offset)
                .limit(1)
            ).one()
        return m, s, float(c), o

    def page(sub_mchid: str | None, deep: bool) -> Callable[[], Any]:
        after = cursor(SMALL - 100) if deep else None

        def read() -> Any:
            with app.state.db.read() as conn:
                return RechargeStore(conn).list_all(sub_mchid, limit=51, after=after)

        return read

    reads = {
        "first page": lambda: page(None, False),
        "deep page": lambda: page(None, True),
        "first page, ?sub_mchid=": lambda: page(sub, False),
        "deep page, ?sub_mchid=": lambda: page(sub, True),
    }
    _one_merchants_employees(app, sub, 0, SMALL)
    small = {
        name: read_cost(app.state.db, make(), "recharge_employees", marker="LIMIT")
        for name, make in reads.items()
    }
    _one_merchants_employees(app, sub, SMALL, BIG)
    big = {
        name: read_cost(app.state.db, make(), "recharge_employees", marker="LIMIT")
        for name, make in reads.items()
    }
    grown = {name: (small[name], big[name]) for name in reads if big[name] > 1.5 * small[name] + 100}
    assert not grown, grown
    with app.state.db.read() as conn:
        listed = RechargeStore(conn).list_all(sub, limit=3, after=cursor(5))
    assert [e.sp_openid for e in listed] == [
        f"o{i:09d}" for i in (SMALL + BIG - 7, SMALL + BIG - 8, SMALL + BIG - 9)
    ]
