"""Cross-process sandbox state kept in the database: the clock, the replay window, rate counters, kv."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..domain.clock import ClockState
from . import outbox
from .change_signal import GENERATION_KEY, note_change
from .db import LeanStatement, insert_for
from .schema import rate_counters, request_nonces, sandbox_clock, sandbox_kv

# Statements of the per-request hot path are built once (building them cost more than running them).
_CLOCK = LeanStatement(
    sa.select(sandbox_clock.c.offset_seconds, sandbox_clock.c.frozen_at).where(sandbox_clock.c.id == 1)
)
# A clock's change (a control call's, a test's reset): the row's update says RETURNING, and the insert
# runs iff no row came back (the first change of a new database's clock).
_UPDATE_CLOCK = LeanStatement(
    sandbox_clock.update()
    .where(sandbox_clock.c.id == 1)
    .values(offset_seconds=sa.bindparam("offset"), frozen_at=sa.bindparam("frozen"))
    .returning(sandbox_clock.c.id)
)
_INSERT_CLOCK = LeanStatement(
    sandbox_clock.insert().values(
        id=1, offset_seconds=sa.bindparam("offset"), frozen_at=sa.bindparam("frozen")
    )
)
_RECORD_NONCE = LeanStatement(
    lambda dialect: (
        insert_for(dialect, request_nonces)
        .values({k: sa.bindparam(k) for k in ("mchid", "nonce", "seen_at")})
        .on_conflict_do_nothing()
        .returning(request_nonces.c.seen_at)
    )
)


def read_clock(conn: Connection) -> ClockState:
    row = _CLOCK.first(conn, {})
    return ClockState.stored(row[0], row[1]) if row else ClockState()


def clock_for_change(conn: Connection) -> ClockState:
    """The clock, read to be changed and written back (``write_clock``) in this write transaction.
    Concurrent changes (advance, freeze, …) through several processes or hosts are serialised: the
    change is marked first (on PostgreSQL the change generation's row, locked until commit; SQLite
    writers are serialised anyway), and the clock is read after, so each change starts from the one
    before it instead of two reading the same clock and one of them being lost."""
    note_change(conn)
    return read_clock(conn)


def write_clock(conn: Connection, state: ClockState) -> None:
    """Every change of the clock comes here: the callbacks a clock moved back would hold are made due
    in the same transaction (outbox.clock_set)."""
    note_change(conn)
    values = {"offset": state.offset_seconds, "frozen": state.frozen_at}
    if _UPDATE_CLOCK.first(conn, values) is None:
        _INSERT_CLOCK.rows(conn, values)
    outbox.clock_set(conn, state.now_ts())


# A reset's deletes (every test's): compiled once (db.LeanStatement).
_FORGET_ALL = (LeanStatement(request_nonces.delete()), LeanStatement(rate_counters.delete()))
_FORGET_MERCHANT = LeanStatement(
    request_nonces.delete().where(request_nonces.c.mchid == sa.bindparam("mchid"))
)


def forget_requests(conn: Connection, mchid: str | None) -> None:
    """A reset's: the nonces seen (all, or one merchant's) and, for all, the rate counters."""
    if mchid is None:
        for stmt in _FORGET_ALL:
            stmt.rows(conn, {})
    else:
        _FORGET_MERCHANT.rows(conn, {"mchid": mchid})


def record_nonce(conn: Connection, mchid: str, nonce: str, seen_at: float) -> bool:
    """Insert (mchid, nonce); False when it was already there (a replay). Atomic on both databases.
    RETURNING tells inserted from skipped reliably (rowcount is not, on every driver).
    Every request runs it: compiled once per dialect, executed on the driver cursor (db.LeanStatement)."""
    return _RECORD_NONCE.first(conn, {"mchid": mchid, "nonce": nonce, "seen_at": seen_at}) is not None


def _record_nonce_reading_generation(dialect: str) -> sa.Select[tuple[bool, str | None]]:
    inserted = (
        insert_for(dialect, request_nonces)
        .values({k: sa.bindparam(k) for k in ("mchid", "nonce", "seen_at")})
        .on_conflict_do_nothing()
        .returning(request_nonces.c.seen_at)
        .cte("inserted")
    )
    generation = sa.select(sandbox_kv.c.value).where(sandbox_kv.c.key == GENERATION_KEY)
    return sa.select(sa.exists(sa.select(inserted.c.seen_at)), generation.scalar_subquery())


# PostgreSQL only (SQLite has no INSERT inside WITH).
_RECORD_NONCE_READING_GENERATION = LeanStatement(_record_nonce_reading_generation)


def record_nonce_reading_generation(
    conn: Connection, mchid: str, nonce: str, seen_at: float
) -> tuple[bool, str | None]:
    """``record_nonce`` and, in the same statement (PostgreSQL), the change generation
    (store/change_signal.py): a cached credential lookup is checked at no extra round trip."""
    row = _RECORD_NONCE_READING_GENERATION.first(conn, {"mchid": mchid, "nonce": nonce, "seen_at": seen_at})
    assert row is not None  # a SELECT of two scalars always has its row
    return bool(row[0]), row[1]


def forget_nonce(conn: Connection, mchid: str, nonce: str) -> None:
    """Take back a nonce recorded for a request that was then refused (a refusal writes nothing)."""
    conn.execute(
        sa.delete(request_nonces).where(request_nonces.c.mchid == mchid, request_nonces.c.nonce == nonce)
    )


# A request whose signature does not match asks whether its nonce was seen (a replay is refused as one).
_NONCE_SEEN = LeanStatement(
    sa.select(sa.literal(1)).where(
        request_nonces.c.mchid == sa.bindparam("mchid"), request_nonces.c.nonce == sa.bindparam("nonce")
    )
)


def nonce_seen(conn: Connection, mchid: str, nonce: str) -> bool:
    return _NONCE_SEEN.first(conn, {"mchid": mchid, "nonce": nonce}) is not None


# The longest retention any server of the database asked for, and from when the table's history is
# complete for it (verify.py; SQLite files keep the same in their replay window, replay_window.widen).
REPLAY_KEEP_KEY, REPLAY_COMPLETE_KEY = "replay:keep_s", "replay:complete_from"


def widen_replay_history(conn: Connection, keep: int, now: float) -> int:
    """Ask every server to keep nonces at least ``keep`` seconds; the instant from which the table's
    history is complete for a server keeping that long (see ReplayWindow.widen, the same rule). In the
    caller's write transaction; the rows are locked first, so two servers widening at once are ordered."""
    insert = insert_for(conn, sandbox_kv).on_conflict_do_nothing(index_elements=[sandbox_kv.c.key])
    conn.execute(insert, [{"key": REPLAY_KEEP_KEY, "value": "0"}, {"key": REPLAY_COMPLETE_KEY, "value": "0"}])
    rows = conn.execute(
        sa.select(sandbox_kv.c.key, sandbox_kv.c.value)
        .where(sandbox_kv.c.key.in_([REPLAY_KEEP_KEY, REPLAY_COMPLETE_KEY]))
        .with_for_update()
    )
    stored = {key: int(value) for key, value in rows}
    longest, complete_from = stored[REPLAY_KEEP_KEY], stored[REPLAY_COMPLETE_KEY]
    if keep > longest:
        if longest:
            complete_from = max(complete_from, int(now) - longest // 2)
        kv_set(conn, REPLAY_KEEP_KEY, str(keep))
        kv_set(conn, REPLAY_COMPLETE_KEY, str(complete_from))
    return complete_from


def prune_nonces(conn: Connection, before: float, keep: int) -> int:
    """Drop the nonces seen more than the longest retention any server asked for (at least ``keep``)
    before ``before``: a server verifying with a narrower window than another's never prunes a nonce
    the other still accepts a replay of."""
    longest = max(keep, int(kv_get(conn, REPLAY_KEEP_KEY) or 0))
    stmt = sa.delete(request_nonces).where(request_nonces.c.seen_at < before - longest)
    return conn.execute(stmt).rowcount


# PostgreSQL: the second of the database's clock, which every host shares. Hosts' own clocks differ a
# little (NTP); with a window from each host's clock, a burst spread over two hosts whose seconds begin
# 0.5 s apart was counted in two windows (20 calls admitted for a limit of 10).
_DATABASE_SECOND = sa.cast(sa.func.floor(sa.extract("epoch", sa.func.statement_timestamp())), sa.BigInteger)


def _current_second(conn: Connection) -> int | sa.ColumnElement[int]:
    """The clock that numbers rate windows: the database's on PostgreSQL (every host shares it), this
    host's on SQLite (one host)."""
    return int(time.time()) if conn.dialect.name == "sqlite" else _DATABASE_SECOND


def _hit(window: Any) -> Callable[[str], sa.Executable]:
    """Count one call in (scope, ``window``) unless ``limit`` calls are counted there: one upsert."""

    def build(dialect: str) -> sa.Executable:
        stmt: sa.Executable = (
            insert_for(dialect, rate_counters)
            .values(scope=sa.bindparam("scope"), window=window, count=1)
            .on_conflict_do_update(
                index_elements=["scope", "window"],
                set_={"count": rate_counters.c.count + 1},
                where=rate_counters.c.count < sa.bindparam("limit", type_=sa.Integer),
            )
            .returning(rate_counters.c.count)
        )
        return stmt

    return build


# Every limited call runs one (R1/R2/R3, A1/A2): compiled once. In a window given (or this host's
# second, SQLite), and in the database's own second (PostgreSQL, every host's).
_HIT_IN_WINDOW = LeanStatement(_hit(sa.bindparam("window", type_=sa.BigInteger)))
_HIT_NOW = LeanStatement(_hit(_DATABASE_SECOND))


def hit_rate_limit(conn: Connection, scope: str, window: int | None, limit: int) -> bool:
    """Count one call in ``(scope, window)``; True if it is within ``limit``. A refused call is not counted,
    and the check-and-increment is one atomic statement on both databases. ``window`` None: the current
    second, the database's on PostgreSQL (shared by every host), this host's on SQLite (one host)."""
    if limit <= 0:
        return False
    if window is None and conn.dialect.name != "sqlite":
        return _HIT_NOW.first(conn, {"scope": scope, "limit": limit}) is not None
    second = window if window is not None else int(time.time())
    return _HIT_IN_WINDOW.first(conn, {"scope": scope, "window": second, "limit": limit}) is not None


def prune_rate_counters(conn: Connection, keep_seconds: int = 60) -> None:
    """Drop windows older than ``keep_seconds``, by the clock that numbers them (hit_rate_limit): a
    host whose own clock ran a minute ahead of the database's deleted windows still counting."""
    conn.execute(
        sa.delete(rate_counters).where(rate_counters.c.window < _current_second(conn) - keep_seconds)
    )


# Read on hot paths (e.g. A2's auto-audit policy): compiled once, run on the driver cursor.
_KV_GET = LeanStatement(sa.select(sandbox_kv.c.value).where(sandbox_kv.c.key == sa.bindparam("key")))


def kv_get(conn: Connection, key: str) -> str | None:
    row = _KV_GET.first(conn, {"key": key})
    return None if row is None else str(row[0])


# A control call's or a reset's write, compiled once per dialect (db.LeanStatement).
_KV_SET = LeanStatement(
    lambda dialect: (
        insert_for(dialect, sandbox_kv)
        .values(key=sa.bindparam("k"), value=sa.bindparam("v"))
        .on_conflict_do_update(index_elements=[sandbox_kv.c.key], set_={"value": sa.bindparam("v")})
    )
)


def kv_set(conn: Connection, key: str, value: str) -> None:
    """One upsert: two first writes of a key at once (two hosts) both succeed, the later one winning (an
    UPDATE that found no row, then an INSERT, failed the second on the primary key)."""
    _KV_SET.rows(conn, {"k": key, "v": value})


def next_sequence(conn: Connection, name: str, start: int) -> int:
    """A monotonic counter shared by every process: ONE atomic upsert, so even two first uses racing
    on PostgreSQL get distinct values (an UPDATE-then-INSERT would hit the primary key)."""
    stmt = insert_for(conn, sandbox_kv).values(key=f"seq:{name}", value=str(start))
    stmt = stmt.on_conflict_do_update(
        index_elements=[sandbox_kv.c.key],
        set_={"value": sa.cast(sa.cast(sandbox_kv.c.value, sa.BigInteger) + 1, sa.Text)},
    ).returning(sandbox_kv.c.value)
    return int(conn.execute(stmt).scalar_one())
