"""What a read costs the database, independent of the machine's speed: run an action, catch the
SELECT statements it sends that name a table, and run them again measured. On SQLite the count is the
virtual-machine instructions they execute (a progress handler, deterministic); on PostgreSQL the rows
their plans read from that table (EXPLAIN ANALYZE: rows returned plus rows filtered out, per loop).
A read that walks an index costs about the same at 100 rows as at 20,000; a scan or a sort of every
row costs in proportion to the table."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from wxpartner.store.db import Database


def statements_of(db: Database, action: Callable[[], Any], table: str, *, marker: str = "") -> list[Any]:
    """The SELECTs ``action`` sends that name ``table`` (and contain ``marker``), with parameters. Only
    this thread's: an app's background work (the card sweep of a lifespan the test started) reads the
    same tables, and its statements, caught along under load, made a read look like a scan."""
    caught: list[tuple[str, Any]] = []
    mine = threading.get_ident()

    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        if threading.get_ident() != mine:
            return
        text = statement.lstrip().upper()
        if text.startswith(("SELECT", "WITH")) and table in statement and marker.upper() in text:
            caught.append((statement, parameters))

    for engine in db.engines:
        sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        action()
    finally:
        for engine in db.engines:
            sa.event.remove(engine, "before_cursor_execute", seen)
    return caught


def read_cost(db: Database, action: Callable[[], Any], table: str, *, marker: str = "") -> int:
    statements = statements_of(db, action, table, marker=marker)
    assert statements, f"no SELECT on {table} was sent"
    return statements_cost(db, statements, table)


def statements_cost(db: Database, statements: list[Any], table: str, *, write: bool = False) -> int:
    """What ``statements`` cost (see the module); run in a write transaction when they lock rows
    (``SELECT … FOR UPDATE``, which a read-only transaction refuses)."""
    with db.write() if write else db.read() as conn:
        if conn.dialect.name == "sqlite":
            steps = [0]

            def step() -> int:
                steps[0] += 1
                return 0

            raw = conn.connection.driver_connection
            assert raw is not None
            raw.set_progress_handler(step, 10)
            try:
                for statement, parameters in statements:
                    conn.exec_driver_sql(statement, parameters).all()
            finally:
                raw.set_progress_handler(None, 0)
            return steps[0] * 10

        def rows_read(plan: dict[str, Any]) -> int:
            own = 0
            if plan.get("Relation Name") == table:
                per_loop = sum(int(plan.get(k, 0)) for k in ("Actual Rows", "Rows Removed by Filter"))
                own = per_loop * int(plan.get("Actual Loops", 1))
            return own + sum(rows_read(p) for p in plan.get("Plans", []))

        cost = 0
        for statement, parameters in statements:
            [[explained]] = conn.exec_driver_sql(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters
            ).all()
            plans = json.loads(explained) if isinstance(explained, str) else explained
            cost += rows_read(plans[0]["Plan"])
        return cost
