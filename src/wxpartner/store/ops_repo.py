"""SQL for sandbox operations: journal batches and queries, fault rules and their atomic counters."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DataError

from ..domain.faults import FaultKind, FaultRule
from .db import Database, LeanStatement
from .ops_tables import JOURNAL_GENERATIONS, request_journal, sandbox_faults
from .schema import BIGINT_MAX

JOURNAL_COLUMNS = tuple(c.name for c in request_journal.columns)
DEFAULT_KEEP = 10_000  # rows per generation (Settings.extra["journal_keep"])
JOURNAL_LOCK = 7365928  # pg_advisory_xact_lock: one journal write at a time across hosts (see db.py's)
log = logging.getLogger("wxpartner.journal")


@dataclass(frozen=True, slots=True)
class JournalFilter:
    mchid: str | None = None
    operation: str | None = None  # exact op id, or a prefix ending in '*'
    status: int | None = None
    code: str | None = None
    verification: str | None = None  # ok | refused | not_verified
    failed: bool = False  # status >= 400 or dropped
    request_id: str | None = None
    before_id: int | None = None  # paging: rows older than this id
    limit: int = 100


# A flush writes hundreds of rows at once: one driver executemany of a statement compiled once
# (through conn.execute, SQLAlchemy's per-row parameter processing cost ~13 µs a row here).
_INSERTS = tuple(
    LeanStatement(g.insert().values({name: sa.bindparam(name) for name in JOURNAL_COLUMNS}))
    for g in JOURNAL_GENERATIONS
)
# Where each generation's ids start and end, in one statement (four lookups of primary keys).
_SPANS = LeanStatement(
    sa.select(
        *(
            sa.select(agg(g.c.id)).scalar_subquery()
            for g in JOURNAL_GENERATIONS
            for agg in (sa.func.min, sa.func.max)
        )
    )
)
# No WHERE: SQLite frees the table's pages without visiting its rows (its truncate optimisation).
_EMPTY_SQLITE = tuple(LeanStatement(sa.delete(g)) for g in JOURNAL_GENERATIONS)


def insert_journal(conn: Connection, rows: Sequence[dict[str, Any]], *, keep: int = DEFAULT_KEEP) -> None:
    """Append ``rows`` to the journal, in the caller's write transaction, and keep it bounded.

    Rows go to the newer generation until it holds ``keep`` rows; then the older generation is
    emptied in one statement and takes the rows. So the newest ``keep`` rows at least are always
    there, and at most about twice as many. Deleting the oldest rows one by one instead cost ≈ 20 µs
    a row, more than writing it. Ids are given here, one past the newest of either generation: the
    writers take turns (SQLite's single writer; a transaction-scoped advisory lock on PostgreSQL),
    so they run on across both generations without gaps. Absent keys are NULL (``body_length`` 0);
    the journal's own rows have every column but the id."""
    if not rows:
        return
    postgres = conn.dialect.name == "postgresql"
    if postgres:
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({JOURNAL_LOCK})")
    spans = _SPANS.first(conn, {}) or (None,) * 4
    newer = 1 if (spans[3] or 0) > (spans[1] or 0) else 0
    low, high = spans[2 * newer], spans[2 * newer + 1]
    next_id = max(spans[1] or 0, spans[3] or 0) + 1
    if low is not None and high is not None and high - low + 1 >= keep:
        newer = 1 - newer
        if postgres:
            _empty_postgres(conn, JOURNAL_GENERATIONS[newer].name)
        else:
            _EMPTY_SQLITE[newer].rows(conn, {})
    _INSERTS[newer].run_many(
        conn,
        [
            {**(r if len(r) == len(JOURNAL_COLUMNS) - 1 else _full(r)), "id": next_id + i}
            for i, r in enumerate(rows)
        ],
    )


def write_journal_chunk(
    db: Database, chunk: Sequence[dict[str, Any]], keep: int
) -> tuple[int, int, Exception | None]:
    """``chunk`` in one short write transaction (the writer slot is shared with every request of
    every worker: a quarter second's rows, ~300 under load, in one transaction held it for ~10 ms).
    A chunk the database refuses for its data is written row by row instead (a failed statement ends
    a PostgreSQL transaction), and a row it cannot store is dropped: kept, it would fail every later
    write and no request of any merchant would be journaled again. Returns (rows done with, rows
    dropped among them, the failure that stopped it): on a failure the rows from the first count on
    are not written, and the caller keeps them for its next try."""
    try:
        with db.write() as conn:
            insert_journal(conn, chunk, keep=keep)
        return len(chunk), 0, None
    except DataError:
        pass
    except Exception as exc:
        return 0, 0, exc
    dropped = 0
    for i, row in enumerate(chunk):
        try:
            with db.write() as conn:
                insert_journal(conn, [row], keep=keep)
        except DataError as exc:
            dropped += 1
            log.warning(
                "journal row %s dropped: the database cannot store it (%s)",
                str(row.get("request_id"))[:64],
                type(exc.orig).__name__,
            )
        except Exception as exc:
            return i, dropped, exc
    return len(chunk), dropped, None


def journaled_request_ids(db: Database, request_ids: Sequence[str]) -> set[str]:
    """Which of ``request_ids`` the journal holds (by its request_id index, both generations)."""
    if not request_ids:
        return set()
    with db.read() as conn:
        return {
            str(v)
            for t in JOURNAL_GENERATIONS
            for v in conn.execute(
                sa.select(t.c.request_id).where(t.c.request_id.in_(list(request_ids)))
            ).scalars()
        }


def _empty_postgres(conn: Connection, table: str) -> None:
    """TRUNCATE: a DELETE would leave every row behind for VACUUM. A role granted DELETE but not
    TRUNCATE (an application role narrower than the one that migrated) deletes instead; the savepoint
    keeps the refused TRUNCATE from ending the transaction."""
    try:
        with conn.begin_nested():
            conn.exec_driver_sql(f"TRUNCATE {table}")
    except sa.exc.ProgrammingError:  # InsufficientPrivilege
        conn.exec_driver_sql(f"DELETE FROM {table}")


def _full(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row.get(name) for name in JOURNAL_COLUMNS} | {"body_length": row.get("body_length") or 0}


def _journal_query(t: sa.Table, f: JournalFilter, limit: int) -> sa.Select[Any]:
    q = sa.select(t).order_by(t.c.id.desc()).limit(limit)
    if f.mchid:
        q = q.where(t.c.mchid == f.mchid)
    if f.operation:
        if f.operation.endswith("*"):
            q = q.where(t.c.operation.startswith(f.operation[:-1], autoescape=True))
        else:
            q = q.where(t.c.operation == f.operation)
    if f.status is not None:
        q = q.where(t.c.status == f.status)
    if f.code:
        q = q.where(t.c.code == f.code)
    if f.verification:
        q = q.where(t.c.verification == f.verification)
    if f.failed:
        q = q.where(sa.or_(t.c.status >= 400, t.c.status == 0))
    if f.request_id:
        q = q.where(t.c.request_id == f.request_id)
    if f.before_id is not None:
        q = q.where(t.c.id < f.before_id)
    return q


def shown(row: dict[str, Any]) -> dict[str, Any]:
    """A journal row as every view shows it: ``mchid_verified`` is true only when the request's
    signature was verified; otherwise ``mchid`` is what its Authorization header claimed (anyone can
    send a request claiming any merchant)."""
    row["mchid_verified"] = row.get("verification") == "ok" and row.get("mchid") is not None
    return row


def list_journal(conn: Connection, f: JournalFilter) -> list[dict[str, Any]]:
    """Newest first, across both generations (each read by its own index, then merged)."""
    limit = max(1, min(f.limit, 1000))
    rows = [dict(r._mapping) for g in JOURNAL_GENERATIONS for r in conn.execute(_journal_query(g, f, limit))]
    return [shown(r) for r in sorted(rows, key=lambda r: r["id"], reverse=True)[:limit]]


def get_journal(conn: Connection, key: str) -> dict[str, Any] | None:
    """By Request-ID, or by the numeric row id (the newest match of either generation)."""
    # ASCII digits only (int() refuses "²", which isdigit() accepts); past 64 bits they name no row id
    row_id = (
        int(key) if key.isascii() and key.isdigit() and len(key) <= 19 and int(key) <= BIGINT_MAX else None
    )
    found = []
    for t in JOURNAL_GENERATIONS:
        cond = t.c.request_id == key if row_id is None else sa.or_(t.c.request_id == key, t.c.id == row_id)
        row = conn.execute(sa.select(t).where(cond).order_by(t.c.id.desc()).limit(1)).first()
        if row is not None:
            found.append(dict(row._mapping))
    return shown(max(found, key=lambda r: r["id"])) if found else None


def journal_latencies(conn: Connection, since: float, until: float) -> list[float]:
    """``latency_ms`` of the requests recorded between two times (the benchmark's server-side view)."""
    return [
        float(v)
        for t in JOURNAL_GENERATIONS
        for v in conn.execute(sa.select(t.c.latency_ms).where(t.c.at >= since, t.c.at <= until)).scalars()
    ]


def count_journal(conn: Connection) -> int:
    return sum(
        int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar() or 0)
        for t in JOURNAL_GENERATIONS
    )


# Every test's reset runs them: compiled once (db.LeanStatement).
_CLEAR_JOURNAL = tuple(LeanStatement(sa.delete(t)) for t in JOURNAL_GENERATIONS)
_CLEAR_FAULTS = LeanStatement(sa.delete(sandbox_faults))


def clear_journal(conn: Connection) -> int:
    return sum(stmt.count(conn) for stmt in _CLEAR_JOURNAL)


def _rule(row: Any) -> FaultRule:
    m = row if isinstance(row, dict) else row._mapping
    return FaultRule(
        id=m["id"],
        kind=FaultKind(m["kind"]),
        operation=m["operation"],
        path=m["path"],
        mchid=m["mchid"],
        remaining=m["remaining"],
        probability=float(m["probability"]),
        latency_ms=int(m["latency_ms"]),
        hits=int(m["hits"]),
        note=m["note"],
        created_at=float(m["created_at"]),
    )


def add_fault(
    conn: Connection,
    *,
    kind: FaultKind,
    operation: str | None,
    path: str | None,
    mchid: str | None,
    count: int | None,
    probability: float,
    latency_ms: int,
    note: str,
    now: float,
) -> FaultRule:
    rule_id = "F" + secrets.token_hex(8).upper()
    _INSERT_FAULT.rows(
        conn,
        {
            "id": rule_id,
            "kind": kind.value,
            "operation": operation or None,
            "path": path or None,
            "mchid": mchid or None,
            "remaining": count,
            "probability": probability,
            "latency_ms": latency_ms,
            "hits": 0,
            "note": note,
            "created_at": now,
        },
    )
    found = get_fault(conn, rule_id)
    assert found is not None
    return found


# The control API's rule changes (a test's fault rules): compiled once (db.LeanStatement).
_INSERT_FAULT = LeanStatement(
    sandbox_faults.insert().values({c.name: sa.bindparam(c.name) for c in sandbox_faults.c})
)
_FAULT = LeanStatement(
    sa.select(sandbox_faults).where(sandbox_faults.c.id == sa.bindparam("id")), tuple(sandbox_faults.c.keys())
)
_DELETE_FAULT = LeanStatement(
    sa.delete(sandbox_faults).where(sandbox_faults.c.id == sa.bindparam("id")).returning(sandbox_faults.c.id)
)


def get_fault(conn: Connection, rule_id: str) -> FaultRule | None:
    m = _FAULT.first_mapping(conn, {"id": rule_id})
    return _rule(m) if m else None


def list_faults(conn: Connection, *, active_only: bool = False) -> list[FaultRule]:
    q = sa.select(sandbox_faults).order_by(sandbox_faults.c.created_at, sandbox_faults.c.id)
    if active_only:
        q = q.where(sa.or_(sandbox_faults.c.remaining.is_(None), sandbox_faults.c.remaining > 0))
    return [_rule(r) for r in conn.execute(q)]


def rearm_fault(conn: Connection, rule_id: str, count: int | None) -> None:
    """Give a rule ``count`` uses again (None: unlimited)."""
    conn.execute(sa.update(sandbox_faults).where(sandbox_faults.c.id == rule_id).values(remaining=count))


def delete_fault(conn: Connection, rule_id: str) -> bool:
    return _DELETE_FAULT.first(conn, {"id": rule_id}) is not None


def clear_faults(conn: Connection) -> int:
    return _CLEAR_FAULTS.count(conn)


def consume_fault(conn: Connection, rule_id: str) -> bool:
    """Take one use of a rule; False when another request (or process) took the last one. Atomic."""
    t = sandbox_faults
    stmt = (
        sa.update(t)
        .where(t.c.id == rule_id, sa.or_(t.c.remaining.is_(None), t.c.remaining > 0))
        .values(
            hits=t.c.hits + 1,
            remaining=sa.case((t.c.remaining.is_(None), None), else_=t.c.remaining - 1),
        )
        .returning(t.c.hits)
    )
    return conn.execute(stmt).first() is not None
