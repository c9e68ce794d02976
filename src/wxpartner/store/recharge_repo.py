"""SQL of the scan-to-recharge employee family. Every state change is a conditional statement, so
two processes racing on the same employee or merchant cannot both win."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..domain.merchants import RelationKind
from ..domain.recharge import DELETED, EFFECTIVE, Employee, SlotRefusal
from . import registry
from .db import ONE_ROW, LeanStatement, insert_for
from .keyset import Order
from .recharge_tables import recharge_employees as emp
from .recharge_tables import recharge_quotas as quota
from .schema import merchants


def _employee(row: sa.Row[Any, Any, Any, Any, Any, Any]) -> Employee:
    m = row._mapping
    return Employee(
        m["mchid"],
        m["sub_mchid"],
        m["sp_openid"],
        m["state"],
        float(m["create_time"]),
        float(m["update_time"]),
    )


# The listing's order (sandbox views, scenario export), oldest first within a merchant; with one
# sub_mchid the rest of it, as ix_recharge_employees_sub_listing holds it after its sub_mchid.
_LISTING = Order(
    tuple((c, False) for c in (emp.c.mchid, emp.c.sub_mchid, emp.c.create_time, emp.c.sp_openid))
)
_SUB_LISTING = Order(tuple((c, False) for c in (emp.c.mchid, emp.c.create_time, emp.c.sp_openid)))

_COLUMNS = (emp.c.mchid, emp.c.sub_mchid, emp.c.sp_openid, emp.c.state, emp.c.create_time, emp.c.update_time)


def _employee_of(row: tuple[Any, ...]) -> Employee:
    """An Employee from a driver row of _COLUMNS (str, str, str, str, float, float)."""
    return Employee(row[0], row[1], row[2], row[3], float(row[4]), float(row[5]))


# The R1 add / R3 delete / R2 list statements run on every request: compiled once per dialect and run
# on the driver cursor (db.LeanStatement), the same SQL the conn.execute versions sent. Bind names are
# not column names: SQLAlchemy reserves those for the SET/VALUES clause of an UPDATE/INSERT.
_KEY = sa.and_(
    emp.c.mchid == sa.bindparam("k_mchid"),
    emp.c.sub_mchid == sa.bindparam("k_sub"),
    emp.c.sp_openid == sa.bindparam("k_openid"),
)
_MERCHANT_EXISTS = LeanStatement(sa.select(sa.literal(1)).where(merchants.c.mchid == sa.bindparam("k_mchid")))
_GET = LeanStatement(sa.select(*_COLUMNS).where(_KEY))
# Whether sub_mchid is a merchant, and whether it is the caller's second-level merchant: the access
# check every R1/R2/R3 makes first, answered by one statement.
_ACCESS_COLUMNS = (
    sa.exists().where(merchants.c.mchid == sa.bindparam("k_sub")).label("wx_merchant"),
    sa.exists()
    .where(
        registry.relation_clause(
            sa.bindparam("k_mchid"), sa.bindparam("k_sub"), RelationKind.SECOND_LEVEL.value
        )
    )
    .label("wx_second_level"),
)
_ACCESS_READ = LeanStatement(sa.select(*_ACCESS_COLUMNS))
# R1's first reads: the access check and the employee's row (outer-joined to one row: NULLs when
# there is none).
_ADD_READ = LeanStatement(sa.select(*_ACCESS_COLUMNS, *_COLUMNS).select_from(ONE_ROW.outerjoin(emp, _KEY)))
_REACTIVATE = LeanStatement(
    emp.update()
    .where(_KEY, emp.c.state == DELETED)
    .values(state=EFFECTIVE, create_time=sa.bindparam("at"), update_time=sa.bindparam("at"))
    .returning(*_COLUMNS)
)
_MARK_DELETED = LeanStatement(
    emp.update()
    .where(_KEY, emp.c.state == EFFECTIVE)
    .values(state=DELETED, update_time=sa.bindparam("at"))
    .returning(*_COLUMNS)
)
# Every SET expression reads the row's old values, on both databases.
_TAKE_SLOT = LeanStatement(
    quota.update()
    .where(
        quota.c.sub_mchid == sa.bindparam("k_sub"),
        quota.c.effective < sa.bindparam("max_effective"),
        sa.or_(quota.c.day != sa.bindparam("k_day"), quota.c.day_count < sa.bindparam("max_per_day")),
    )
    .values(
        effective=quota.c.effective + 1,
        day=sa.bindparam("k_day"),
        day_count=sa.case((quota.c.day == sa.bindparam("k_day"), quota.c.day_count + 1), else_=1),
    )
    .returning(quota.c.effective)
)
_RELEASE_SLOT = LeanStatement(
    quota.update()
    .where(quota.c.sub_mchid == sa.bindparam("k_sub"), quota.c.effective > 0)
    .values(effective=quota.c.effective - 1)
)
# R1 refused for want of a slot: which limit refused it.
_QUOTA_EFFECTIVE = LeanStatement(
    sa.select(quota.c.effective).where(quota.c.sub_mchid == sa.bindparam("k_sub"))
)
_LIST_EFFECTIVE = LeanStatement(
    sa.select(*_COLUMNS)
    .where(
        emp.c.mchid == sa.bindparam("k_mchid"),
        emp.c.sub_mchid == sa.bindparam("k_sub"),
        emp.c.state == EFFECTIVE,
    )
    .order_by(emp.c.create_time, emp.c.sp_openid)
)
# The inserts are dialect-specific (ON CONFLICT): LeanStatement builds them once per dialect.
_INSERT_EFFECTIVE = LeanStatement(
    lambda dialect: (
        insert_for(dialect, emp)
        .values(
            mchid=sa.bindparam("k_mchid"),
            sub_mchid=sa.bindparam("k_sub"),
            sp_openid=sa.bindparam("k_openid"),
            state=EFFECTIVE,
            create_time=sa.bindparam("at"),
            update_time=sa.bindparam("at"),
        )
        .on_conflict_do_nothing()
        .returning(*_COLUMNS)
    )
)
_ENSURE_QUOTA = LeanStatement(
    lambda dialect: (
        insert_for(dialect, quota)
        .values(sub_mchid=sa.bindparam("k_sub"), effective=0, day="", day_count=0)
        .on_conflict_do_nothing()
    )
)


# PostgreSQL's division_by_zero: how _add_at_once undoes itself when the slot was lost to a race.
_SLOT_LOST = "22012"


def _add_at_once() -> sa.Executable:
    """R1's usual case in one statement (PostgreSQL), in the order ``recharge.add`` writes (the
    employee's row, then the merchant's quota row, so it waits where a concurrent add in a transaction
    waits and never deadlocks with one): the employee inserted EFFECTIVE iff sub_mchid is a merchant and
    the caller's second-level merchant, the employee is new (ON CONFLICT: also one committed meanwhile),
    and the merchant's slots were free when the statement began; then a slot taken as ``_TAKE_SLOT``
    takes it (the quota row made if missing, as ``_ensure_quota`` then ``_TAKE_SLOT`` would), read on
    the row as it is once locked. Were the slots all taken meanwhile, the employee would stay without
    one: dividing by the number of slots taken (0) then fails the statement, which writes nothing."""
    from sqlalchemy.dialects import postgresql

    slot_free = sa.and_(
        quota.c.effective < sa.bindparam("max_effective"),
        sa.or_(quota.c.day != sa.bindparam("k_day"), quota.c.day_count < sa.bindparam("max_per_day")),
    )
    keys = {"k_mchid": "mchid", "k_sub": "sub_mchid", "k_openid": "sp_openid"}
    inserted = (
        postgresql.insert(emp)
        .from_select(
            ["mchid", "sub_mchid", "sp_openid", "state", "create_time", "update_time"],
            sa.select(
                *(sa.bindparam(bind, type_=emp.c[column].type) for bind, column in keys.items()),
                sa.literal(EFFECTIVE, emp.c.state.type),
                sa.bindparam("at", type_=emp.c.create_time.type),
                sa.bindparam("at", type_=emp.c.update_time.type),
            ).where(
                *_ACCESS_COLUMNS,
                ~sa.exists().where(quota.c.sub_mchid == sa.bindparam("k_sub"), ~slot_free),
            ),
        )
        .on_conflict_do_nothing()
        .returning(*_COLUMNS)
        .cte("inserted")
    )
    day = sa.bindparam("k_day", type_=quota.c.day.type)
    taken = (
        postgresql.insert(quota)
        .from_select(
            ["sub_mchid", "effective", "day", "day_count"],
            sa.select(
                sa.bindparam("k_sub", type_=quota.c.sub_mchid.type), sa.literal(1), day, sa.literal(1)
            ).where(sa.exists(sa.select(sa.literal(1)).select_from(inserted))),
        )
        .on_conflict_do_update(
            index_elements=["sub_mchid"],
            set_={
                "effective": quota.c.effective + 1,
                "day": day,
                "day_count": sa.case((quota.c.day == day, quota.c.day_count + 1), else_=1),
            },
            where=slot_free,
        )
        .returning(quota.c.effective)
        .cte("taken")
    )
    slots = sa.select(sa.func.count()).select_from(taken).scalar_subquery()
    return sa.select(*inserted.c, (sa.literal(1) // slots).label("wx_slot")).add_cte(taken)


@functools.cache
def _add_at_once_lean() -> LeanStatement:
    """Built at its first use (PostgreSQL only): building it imports SQLAlchemy's PostgreSQL dialect,
    ≈ 35 ms of a SQLite serve's start."""
    return LeanStatement(_add_at_once())


# A reset (every test's, of every merchant) and a preload's recount, compiled once (db.LeanStatement).
_DELETE_ALL = (LeanStatement(emp.delete()), LeanStatement(quota.delete()))
_TOUCHED = sa.or_(emp.c.mchid == sa.bindparam("k_mchid"), emp.c.sub_mchid == sa.bindparam("k_mchid"))
_TOUCHED_SUBS = LeanStatement(sa.select(emp.c.sub_mchid).where(_TOUCHED).distinct())
_DELETE_TOUCHED = LeanStatement(emp.delete().where(_TOUCHED))
_DELETE_QUOTA = LeanStatement(quota.delete().where(quota.c.sub_mchid == sa.bindparam("k_sub")))
_LOCK_QUOTA = LeanStatement(
    sa.select(quota.c.effective).where(quota.c.sub_mchid == sa.bindparam("k_sub")).with_for_update()
)
_COUNT_EFFECTIVE = LeanStatement(
    sa.select(sa.func.count())
    .select_from(emp)
    .where(emp.c.sub_mchid == sa.bindparam("k_sub"), emp.c.state == EFFECTIVE)
)
_UPSERT_VALUES: dict[str, Any] = {
    "state": sa.bindparam("u_state"),
    "create_time": sa.bindparam("u_created"),
    "update_time": sa.bindparam("u_updated"),
}
_UPSERT = LeanStatement(
    lambda dialect: (
        insert_for(dialect, emp)
        .values(
            mchid=sa.bindparam("u_mchid"),
            sub_mchid=sa.bindparam("u_sub"),
            sp_openid=sa.bindparam("u_openid"),
            **_UPSERT_VALUES,
        )
        .on_conflict_do_update(index_elements=["mchid", "sub_mchid", "sp_openid"], set_=_UPSERT_VALUES)
    )
)
_SET_EFFECTIVE = LeanStatement(
    quota.update()
    .where(quota.c.sub_mchid == sa.bindparam("k_sub"))
    .values(effective=sa.bindparam("effective"))
)


class RechargeStore:
    """The domain's RechargeRepo over one open transaction."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        # Answers read ahead by prefetch_add/prefetch_access, each given once (a second call reads again).
        self._merchants: dict[str, bool] = {}
        self._second_levels: dict[tuple[str, str], bool] = {}
        self._employees: dict[tuple[str, str, str], Employee | None] = {}

    def _params(self, mchid: str, sub_mchid: str, sp_openid: str) -> dict[str, Any]:
        return {"k_mchid": mchid, "k_sub": sub_mchid, "k_openid": sp_openid}

    def prefetch_access(self, mchid: str, sub_mchid: str) -> None:
        """The answers of the next ``merchant_exists`` and ``is_second_level`` calls for these keys,
        read in one statement (each given once)."""
        row = _ACCESS_READ.first(self.conn, {"k_mchid": mchid, "k_sub": sub_mchid})
        assert row is not None  # a SELECT of two scalars always has its row
        self._keep_access(mchid, sub_mchid, row)

    def _keep_access(self, mchid: str, sub_mchid: str, row: tuple[Any, ...]) -> None:
        self._merchants[sub_mchid] = bool(row[0])
        self._second_levels[(mchid, sub_mchid)] = bool(row[1])

    def prefetch_add(self, mchid: str, sub_mchid: str, sp_openid: str) -> None:
        """The add's first reads in one statement: the answers of the next ``merchant_exists``,
        ``is_second_level`` and ``get`` calls for these keys (each given once)."""
        row = _ADD_READ.first(self.conn, self._params(mchid, sub_mchid, sp_openid))
        assert row is not None  # the one-row subquery: always a row
        self._keep_access(mchid, sub_mchid, row)
        employee = row[2:]
        self._employees[(mchid, sub_mchid, sp_openid)] = (
            _employee_of(employee) if employee[0] is not None else None
        )

    def merchant_exists(self, mchid: str) -> bool:
        if mchid in self._merchants:
            return self._merchants.pop(mchid)
        return _MERCHANT_EXISTS.first(self.conn, {"k_mchid": mchid}) is not None

    def is_second_level(self, platform: str, sub_mchid: str) -> bool:
        if (platform, sub_mchid) in self._second_levels:
            return self._second_levels.pop((platform, sub_mchid))
        return registry.is_related(self.conn, platform, sub_mchid, RelationKind.SECOND_LEVEL)

    def get(self, mchid: str, sub_mchid: str, sp_openid: str) -> Employee | None:
        if (mchid, sub_mchid, sp_openid) in self._employees:
            return self._employees.pop((mchid, sub_mchid, sp_openid))
        row = _GET.first(self.conn, self._params(mchid, sub_mchid, sp_openid))
        return _employee_of(row) if row else None

    def insert_effective(self, mchid: str, sub_mchid: str, sp_openid: str, now: float) -> Employee | None:
        """None when the row already exists (a concurrent add committed first)."""
        params = {**self._params(mchid, sub_mchid, sp_openid), "at": now}
        row = _INSERT_EFFECTIVE.first(self.conn, params)
        return _employee_of(row) if row else None

    def add_new(
        self,
        mchid: str,
        sub_mchid: str,
        sp_openid: str,
        now: float,
        day: str,
        max_effective: int,
        max_per_day: int,
    ) -> Employee | None:
        """PostgreSQL: a new employee EFFECTIVE with a slot of ``day`` taken, in one statement
        (``_add_at_once``), iff sub_mchid is a merchant and ``mchid``'s second-level merchant, the
        employee is new and a slot is free (``reserve_slot``'s limits). None: nothing written (and
        always on SQLite, no statement run), for the caller to go statement by statement."""
        if self.conn.dialect.name != "postgresql":
            return None
        params = {
            **self._params(mchid, sub_mchid, sp_openid),
            "at": now,
            "k_day": day,
            "max_effective": max_effective,
            "max_per_day": max_per_day,
        }
        try:
            row = _add_at_once_lean().first(self.conn, params)
        except sa.exc.DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) == _SLOT_LOST:
                return None
            raise
        return _employee_of(row) if row else None

    def reactivate(self, mchid: str, sub_mchid: str, sp_openid: str, now: float) -> Employee | None:
        """DELETED -> EFFECTIVE with fresh times; None when the row is not DELETED any more."""
        row = _REACTIVATE.first(self.conn, {**self._params(mchid, sub_mchid, sp_openid), "at": now})
        return _employee_of(row) if row else None

    def mark_deleted(self, mchid: str, sub_mchid: str, sp_openid: str, now: float) -> Employee | None:
        """EFFECTIVE -> DELETED; None when there is no EFFECTIVE row."""
        row = _MARK_DELETED.first(self.conn, {**self._params(mchid, sub_mchid, sp_openid), "at": now})
        return _employee_of(row) if row else None

    def _ensure_quota(self, sub_mchid: str) -> None:
        _ENSURE_QUOTA.rows(self.conn, {"k_sub": sub_mchid})

    def reserve_slot(
        self, sub_mchid: str, day: str, max_effective: int, max_per_day: int
    ) -> SlotRefusal | None:
        """One more employee in effect and one more configuration today, or a refusal; one atomic UPDATE
        (_TAKE_SLOT)."""
        self._ensure_quota(sub_mchid)
        params = {
            "k_sub": sub_mchid,
            "k_day": day,
            "max_effective": max_effective,
            "max_per_day": max_per_day,
        }
        if _TAKE_SLOT.first(self.conn, params) is not None:
            return None
        row = _QUOTA_EFFECTIVE.first(self.conn, {"k_sub": sub_mchid})
        assert row is not None  # _ensure_quota made it, in this transaction
        effective = row[0]
        return SlotRefusal.TOO_MANY if effective >= max_effective else SlotRefusal.DAILY

    def release_slot(self, sub_mchid: str) -> None:
        _RELEASE_SLOT.rows(self.conn, {"k_sub": sub_mchid})

    def list_effective(self, mchid: str, sub_mchid: str) -> list[Employee]:
        rows = _LIST_EFFECTIVE.rows(self.conn, {"k_mchid": mchid, "k_sub": sub_mchid})
        return [_employee_of(r) for r in rows]

    def list_all(
        self,
        sub_mchid: str | None = None,
        *,
        limit: int | None = None,
        offset: int = 0,
        after: tuple[str, str, float, str] | None = None,
    ) -> list[Employee]:
        """Every row, DELETED ones included (sandbox views and scenario export), or one page of them:
        by merchant, oldest first within one, an index walk in that order (migration 0020: overall,
        and by second-level merchant). ``after`` (mchid, sub_mchid, create_time, sp_openid): the rows
        after that one, a range of the same index however deep (a page used to sort all of the
        merchant's rows)."""
        stmt = sa.select(*_COLUMNS).order_by(*_LISTING.clauses())
        if sub_mchid is not None:
            stmt = stmt.where(emp.c.sub_mchid == sub_mchid)
        if after is not None:
            mchid, sub, created, openid = after
            if sub_mchid is not None and sub == sub_mchid:  # one sub_mchid: its index walks the rest
                stmt = stmt.where(_SUB_LISTING.beyond([mchid, created, openid], forward=True))
            else:
                stmt = stmt.where(_LISTING.beyond([mchid, sub, created, openid], forward=True))
        if limit is not None:
            stmt = stmt.limit(limit)
        if offset:
            stmt = stmt.offset(offset)
        return [_employee(r) for r in self.conn.execute(stmt)]

    def export_all(self, batch: int = 1000) -> Iterator[Employee]:
        """Every row in ``list_all``'s order, fetched ``batch`` rows at a time as the caller goes (a
        server-side cursor on PostgreSQL): the scenario export streams them."""
        stmt = sa.select(*_COLUMNS).order_by(*_LISTING.clauses())
        for r in self.conn.execution_options(yield_per=batch).execute(stmt):
            yield _employee(r)

    def any_employee(self) -> bool:
        return self.conn.execute(sa.select(emp.c.mchid).limit(1)).first() is not None

    def upsert(self, employee: Employee) -> None:
        params = {
            "u_mchid": employee.mchid,
            "u_sub": employee.sub_mchid,
            "u_openid": employee.sp_openid,
            "u_state": employee.state,
            "u_created": employee.create_time,
            "u_updated": employee.update_time,
        }
        _UPSERT.rows(self.conn, params)

    def recount(self, sub_mchid: str) -> int:
        """Set the in-effect count from the rows (after a preload or a reset); returns it. The quota row
        is locked before the rows are counted (PostgreSQL; SQLite writers are serialised anyway): a
        preload or add committing meanwhile is waited for and then counted, where two preloads through
        two hosts used to count without each other and both pass the cap."""
        self._ensure_quota(sub_mchid)
        params = {"k_sub": sub_mchid}
        _LOCK_QUOTA.rows(self.conn, params)
        row = _COUNT_EFFECTIVE.first(self.conn, params)
        count = int(row[0]) if row else 0
        _SET_EFFECTIVE.rows(self.conn, {**params, "effective": count})
        return count

    def reset(self, mchid: str | None) -> None:
        """Delete employees (all, or those of one platform or one second-level merchant) and quotas."""
        if mchid is None:
            for stmt in _DELETE_ALL:
                stmt.rows(self.conn, {})
            return
        subs = {r[0] for r in _TOUCHED_SUBS.rows(self.conn, {"k_mchid": mchid})}
        _DELETE_TOUCHED.rows(self.conn, {"k_mchid": mchid})
        subs.add(mchid)
        for sub in sorted(subs):
            _DELETE_QUOTA.rows(self.conn, {"k_sub": sub})
            self.recount(sub)
