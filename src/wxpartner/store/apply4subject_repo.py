"""SQL of apply4subject. Every state change is a conditional UPDATE ... WHERE state IN (...), so two
processes racing on one applyment cannot both move it; ids come from the shared atomic sequence."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..domain.apply4subject import AUDIT, CANCELED, CANCELLABLE, FIRST_APPLYMENT_ID, AutoPolicy
from .apply4subject_tables import apply4subject_applyments as T
from .apply4subject_tables import apply4subject_authorizations as AUTH
from .db import LeanStatement, insert_for, storable
from .sandbox import kv_get, kv_set
from .schema import sandbox_kv

POLICY_KEY = "apply4subject:auto_policy"
SEQUENCE_KEY = "seq:apply4subject.applyment_id"  # same row format as store.sandbox.next_sequence


def _next_applyment_id(dialect: str) -> sa.Executable:
    value = sa.cast(sa.cast(sandbox_kv.c.value, sa.BigInteger) + 1, sa.Text)
    stmt: sa.Executable = (
        insert_for(dialect, sandbox_kv)
        .values(key=SEQUENCE_KEY, value=str(FIRST_APPLYMENT_ID))
        .on_conflict_do_update(index_elements=["key"], set_={"value": value})
        .returning(sandbox_kv.c.value)
    )
    return stmt


# A1's new applyment on SQLite (PostgreSQL runs _insert_if_new_once) draws an id: compiled once per dialect.
_NEXT_APPLYMENT_ID = LeanStatement(_next_applyment_id)


def next_applyment_id(conn: Connection) -> int:
    """One atomic upsert, also on the very first use: sandbox.next_sequence does UPDATE-then-INSERT, and
    two first submits racing on PostgreSQL both miss the UPDATE and one INSERT fails."""
    row = _NEXT_APPLYMENT_ID.first(conn, {})
    assert row is not None  # an upsert with RETURNING returns its row
    return int(row[0])


@dataclass(frozen=True)
class Applyment:
    applyment_id: int
    mchid: str
    business_code: str
    channel_id: str | None
    state: str
    fingerprint: str
    materials: dict[str, Any]
    confirm_mchids: list[str]
    reject_param: str | None
    reject_reason: str | None
    confirm_token: str
    query_count: int
    state_since: float
    created_at: float
    updated_at: float

    def view(self) -> dict[str, Any]:
        """The sandbox (control API / scenario export) view: no fingerprint, masked materials."""
        return {
            "applyment_id": self.applyment_id,
            "mchid": self.mchid,
            "business_code": self.business_code,
            "channel_id": self.channel_id,
            "applyment_state": self.state,
            "reject_param": self.reject_param,
            "reject_reason": self.reject_reason,
            "confirm_mchid_list": self.confirm_mchids,
            "query_count": self.query_count,
            "state_since": self.state_since,
            "created_at": self.created_at,
            "materials": self.materials,
        }


def _row(r: Any) -> Applyment:
    return _applyment(r._mapping)


def _applyment(m: Mapping[str, Any]) -> Applyment:
    return Applyment(
        applyment_id=int(m["applyment_id"]),
        mchid=m["mchid"],
        business_code=m["business_code"],
        channel_id=m["channel_id"],
        state=m["state"],
        fingerprint=m["fingerprint"],
        materials=json.loads(m["materials"]),
        confirm_mchids=json.loads(m["confirm_mchids"]),
        reject_param=m["reject_param"],
        reject_reason=m["reject_reason"],
        confirm_token=m["confirm_token"],
        query_count=int(m["query_count"]),
        state_since=float(m["state_since"]),
        created_at=float(m["created_at"]),
        updated_at=float(m["updated_at"]),
    )


# A2 (query applyment) runs these on every call: compiled once, run on the driver cursor.
_BY_ID = LeanStatement(
    sa.select(T).where(T.c.applyment_id == sa.bindparam("applyment_id")), tuple(T.c.keys())
)
_BY_ID_OF = LeanStatement(
    sa.select(T).where(T.c.applyment_id == sa.bindparam("applyment_id"), T.c.mchid == sa.bindparam("mchid")),
    tuple(T.c.keys()),
)
_BY_CODE = LeanStatement(
    sa.select(T).where(
        T.c.mchid == sa.bindparam("mchid"), T.c.business_code == sa.bindparam("business_code")
    ),
    tuple(T.c.keys()),
)
_COUNT_QUERY = LeanStatement(
    T.update()
    .where(T.c.applyment_id == sa.bindparam("applyment_id"))
    .values(query_count=T.c.query_count + 1)
    .returning(T.c.query_count)
)
_POLICY = sa.select(sandbox_kv.c.value).where(sandbox_kv.c.key == POLICY_KEY).scalar_subquery()


def _counted(*keys: str) -> LeanStatement:
    """A2 in one statement: count the query of the caller's applyment named by ``keys`` and return it
    (after the count) with the auto-audit policy. On PostgreSQL one round trip that commits by itself,
    where a find, the count and the policy's read in a transaction took five."""
    where = [T.c.mchid == sa.bindparam("mchid"), *(T.c[key] == sa.bindparam(key) for key in keys)]
    stmt = (
        T.update()
        .where(*where)
        .values(query_count=T.c.query_count + 1)
        .returning(*T.c, _POLICY.label("policy"))
    )
    return LeanStatement(stmt, (*T.c.keys(), "policy"))


_COUNTED = {
    (True, False): _counted("applyment_id"),
    (False, True): _counted("business_code"),
    (True, True): _counted("applyment_id", "business_code"),
}


def _cancel(with_query_id: bool) -> LeanStatement:
    """A3 in one statement: cancel the caller's applyment named by the path key (its business_code,
    else, when ``path_id`` is not -1, its applyment_id: the code wins, as in ``resolve_cancel``) iff it
    is cancellable and, ``with_query_id``, it is the one ``?applyment_id=`` names. No row back: not
    moved, for a reason the statement-by-statement path (``flow.resolve_cancel``, ``flow.cancel``)
    finds and words."""
    by_code = (
        sa.select(T.c.applyment_id)
        .where(T.c.mchid == sa.bindparam("mchid"), T.c.business_code == sa.bindparam("key"))
        .scalar_subquery()
    )
    where = [
        T.c.applyment_id == sa.func.coalesce(by_code, sa.bindparam("path_id", type_=sa.BigInteger)),
        T.c.mchid == sa.bindparam("mchid"),
        # the states as literals (domain constants): an IN of bound values is expanded per call
        T.c.state.in_([sa.literal_column(f"'{state}'") for state in sorted(CANCELLABLE)]),
    ]
    if with_query_id:
        where.append(T.c.applyment_id == sa.bindparam("query_id", type_=sa.BigInteger))
    stmt = (
        T.update()
        .where(*where)
        .values(
            state=CANCELED,
            reject_param=None,
            reject_reason=None,
            state_since=sa.bindparam("now"),
            updated_at=sa.bindparam("now"),
        )
        .returning(T.c.applyment_id)
    )
    return LeanStatement(stmt)


_CANCEL = {False: _cancel(False), True: _cancel(True)}


_NEW_FIELDS = (
    "mchid",
    "business_code",
    "channel_id",
    "state",
    "fingerprint",
    "materials",
    "confirm_mchids",
    "confirm_token",
)


def _insert_if_new() -> sa.Executable:
    """A1's new applyment on PostgreSQL in one statement: the next id drawn (the sequence's upsert, as
    ``next_applyment_id``) only when the caller has no applyment with this business_code, and the row
    inserted with it, read back whole. No row back: the code exists (or a concurrent submit won), and
    the flow reads statement by statement as before. SQLite runs no DML in a CTE."""
    from sqlalchemy.dialects import postgresql

    exists = sa.exists().where(
        T.c.mchid == sa.bindparam("mchid"), T.c.business_code == sa.bindparam("business_code")
    )
    drawn = (
        postgresql.insert(sandbox_kv)
        .from_select(
            ["key", "value"],
            sa.select(sa.literal(SEQUENCE_KEY), sa.literal(str(FIRST_APPLYMENT_ID))).where(~exists),
        )
        .on_conflict_do_update(
            index_elements=["key"],
            set_={"value": sa.cast(sa.cast(sandbox_kv.c.value, sa.BigInteger) + 1, sa.Text)},
        )
        .returning(sandbox_kv.c.value)
        .cte("drawn")
    )
    values = [sa.cast(sa.bindparam(name), T.c[name].type) for name in _NEW_FIELDS]
    now = sa.cast(sa.bindparam("now"), sa.Float)
    return (
        postgresql.insert(T)
        .from_select(
            ["applyment_id", *_NEW_FIELDS, "query_count", "state_since", "created_at", "updated_at"],
            sa.select(sa.cast(drawn.c.value, sa.BigInteger), *values, sa.literal(0), now, now, now),
        )
        .on_conflict_do_nothing(index_elements=["mchid", "business_code"])
        .returning(*T.c)
    )


@functools.cache
def _insert_if_new_once() -> LeanStatement:
    """Built at its first use (PostgreSQL only): building it imports SQLAlchemy's PostgreSQL dialect,
    ≈ 35 ms of a SQLite serve's start."""
    return LeanStatement(_insert_if_new(), tuple(T.c.keys()))


_INSERTED = ("applyment_id", *_NEW_FIELDS, "query_count", "state_since", "created_at", "updated_at")


def _insert(dialect: str) -> sa.Executable:
    """A1's new applyment on SQLite (``insert``): the row read back whole; none when (mchid,
    business_code) exists."""
    stmt: sa.Executable = (
        insert_for(dialect, T)
        .values({name: sa.bindparam(name) for name in _INSERTED})
        .on_conflict_do_nothing(index_elements=["mchid", "business_code"])
        .returning(*T.c.values())
    )
    return stmt


_INSERT = LeanStatement(_insert, tuple(T.c.keys()))


# A1 resubmitting an EDITTING applyment: its new materials, back to audit (RETURNING tells applied from
# not: rowcount is not reliable on every driver). Bind names are not column names (see recharge_repo).
_REPLACE = LeanStatement(
    T.update()
    .where(T.c.applyment_id == sa.bindparam("id"), T.c.state == sa.bindparam("from_state"))
    .values(
        state=sa.bindparam("to_state"),
        channel_id=sa.bindparam("channel"),
        fingerprint=sa.bindparam("fp"),
        materials=sa.bindparam("mat"),
        confirm_mchids=sa.bindparam("confirm"),
        reject_param=None,
        reject_reason=None,
        query_count=0,
        state_since=sa.bindparam("now"),
        updated_at=sa.bindparam("now"),
    )
    .returning(T.c.applyment_id)
)

# A4 (merchant state) runs on the driver cursor too, like the A2 statements above.
_IS_AUTHORIZED = LeanStatement(
    sa.select(sa.literal(1)).where(
        AUTH.c.mchid == sa.bindparam("mchid"), AUTH.c.sub_mchid == sa.bindparam("sub_mchid")
    )
)


def _lean_first(lean: LeanStatement, conn: Connection, params: dict[str, Any]) -> Applyment | None:
    m = lean.first_mapping(conn, params)
    return _applyment(m) if m else None


def _policy(raw: str | None) -> AutoPolicy | None:
    return AutoPolicy.parse(json.loads(raw)) if raw else None


class Apply4SubjectRepo:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # --- reads ---
    def by_code(self, mchid: str, business_code: str) -> Applyment | None:
        return _lean_first(_BY_CODE, self.conn, {"mchid": mchid, "business_code": business_code})

    def by_id(self, applyment_id: int, mchid: str | None = None) -> Applyment | None:
        if mchid is None:
            return _lean_first(_BY_ID, self.conn, {"applyment_id": applyment_id})
        return _lean_first(_BY_ID_OF, self.conn, {"applyment_id": applyment_id, "mchid": mchid})

    def waiting_since(self, state: str, cutoff: float, limit: int) -> list[Applyment]:
        """Up to ``limit`` applyments in ``state`` since ``cutoff`` or earlier, longest waiting first
        (the index on state and state_since: a clock move over 100,000 applyments still in audit but
        not yet due reads none of them)."""
        stmt = (
            sa.select(T)
            .where(T.c.state == state, T.c.state_since <= cutoff)
            .order_by(T.c.state_since, T.c.applyment_id)
            .limit(limit)
        )
        return [_row(r) for r in self.conn.execute(stmt)]

    def count_query_of(
        self, mchid: str, applyment_id: int | None, business_code: str | None
    ) -> tuple[Applyment, AutoPolicy | None] | None:
        """Count one query of ``mchid``'s applyment that has this id and/or business code (both when
        both are given) and return it as counted, with the auto-audit policy; None (nothing counted)
        when no applyment of ``mchid`` matches every key given."""
        params: dict[str, Any] = {"mchid": mchid}
        if applyment_id is not None:
            params["applyment_id"] = applyment_id
        if business_code is not None:
            params["business_code"] = business_code
        m = _COUNTED[applyment_id is not None, business_code is not None].first_mapping(self.conn, params)
        if m is None:
            return None
        return _applyment(m), _policy(m["policy"])

    def by_token(self, token: str) -> Applyment | None:
        if not storable(token, 64):  # the confirm_token column; a URL can carry anything
            return None
        r = self.conn.execute(sa.select(T).where(T.c.confirm_token == token)).first()
        return _row(r) if r else None

    def list_all(
        self,
        mchid: str | None = None,
        limit: int = 200,
        offset: int = 0,
        *,
        before_id: int | None = None,
        state: str | None = None,
    ) -> list[Applyment]:
        """Newest first; ``before_id``: those older than that applyment (keyset: an index range);
        ``state``: in that state only (the (state, applyment_id) index)."""
        stmt = sa.select(T).order_by(T.c.applyment_id.desc()).limit(limit).offset(offset)
        if mchid:
            stmt = stmt.where(T.c.mchid == mchid)
        if state:
            stmt = stmt.where(T.c.state == state)
        if before_id is not None:
            stmt = stmt.where(T.c.applyment_id < before_id)
        return [_row(r) for r in self.conn.execute(stmt)]

    def export_all(self, batch: int = 1000) -> Iterator[dict[str, Any]]:
        """Every applyment, oldest first, with the columns the scenario export writes (not the
        materials: a big sandbox's would be hundreds of MB read for nothing), fetched ``batch`` rows at
        a time as the caller goes (a server-side cursor on PostgreSQL): the export streams them."""
        cols = (
            T.c.mchid,
            T.c.business_code,
            T.c.channel_id,
            T.c.state,
            T.c.reject_param,
            T.c.reject_reason,
            T.c.query_count,
            T.c.state_since,
        )
        stmt = sa.select(*cols, T.c.confirm_mchids).order_by(T.c.applyment_id)
        names = [c.name for c in cols]
        for r in self.conn.execution_options(yield_per=batch).execute(stmt):
            yield {**dict(zip(names, r[:-1], strict=True)), "confirm_mchids": json.loads(r[-1])}

    def any_applyment(self) -> bool:
        return self.conn.execute(sa.select(T.c.applyment_id).limit(1)).first() is not None

    def export_authorizations(self, batch: int = 1000) -> Iterator[dict[str, Any]]:
        """Every authorization, in key order, ``batch`` rows at a time (see export_all)."""
        stmt = sa.select(AUTH.c.mchid, AUTH.c.sub_mchid).order_by(AUTH.c.mchid, AUTH.c.sub_mchid)
        for r in self.conn.execution_options(yield_per=batch).execute(stmt):
            yield {"mchid": r.mchid, "sub_mchid": r.sub_mchid}

    def any_authorization(self) -> bool:
        return self.conn.execute(sa.select(AUTH.c.mchid).limit(1)).first() is not None

    # --- writes ---
    def insert(
        self,
        *,
        mchid: str,
        business_code: str,
        channel_id: str | None,
        state: str,
        fingerprint: str,
        materials: dict[str, Any],
        confirm_mchids: list[str],
        confirm_token: str,
        now: float,
    ) -> Applyment | None:
        """Insert a new applyment; None when (mchid, business_code) already exists (a concurrent
        submit won): the caller then re-reads and applies the resubmission rules."""
        applyment_id = next_applyment_id(self.conn)
        params = {
            "applyment_id": applyment_id,
            "mchid": mchid,
            "business_code": business_code,
            "channel_id": channel_id,
            "state": state,
            "fingerprint": fingerprint,
            "materials": json.dumps(materials, ensure_ascii=False),
            "confirm_mchids": json.dumps(confirm_mchids),
            "confirm_token": confirm_token,
            "query_count": 0,
            "state_since": now,
            "created_at": now,
            "updated_at": now,
        }
        return _lean_first(_INSERT, self.conn, params)  # the whole row: no re-read

    def insert_if_new(self, *, now: float, **fields: Any) -> Applyment | None:
        """PostgreSQL: ``insert`` in one statement when the caller has no applyment with this
        business_code (see ``_insert_if_new``); None otherwise, and always on SQLite (no statement run):
        the caller then reads and inserts statement by statement."""
        if self.conn.dialect.name != "postgresql":
            return None
        params = {**fields, "now": now}
        params["materials"] = json.dumps(fields["materials"], ensure_ascii=False)
        params["confirm_mchids"] = json.dumps(fields["confirm_mchids"])
        return _lean_first(_insert_if_new_once(), self.conn, params)

    def replace(
        self,
        applyment_id: int,
        *,
        from_state: str,
        to_state: str,
        channel_id: str | None,
        fingerprint: str,
        materials: dict[str, Any],
        confirm_mchids: list[str],
        now: float,
    ) -> bool:
        params = {
            "id": applyment_id,
            "from_state": from_state,
            "to_state": to_state,
            "channel": channel_id,
            "fp": fingerprint,
            "mat": json.dumps(materials, ensure_ascii=False),
            "confirm": json.dumps(confirm_mchids),
            "now": now,
        }
        return _REPLACE.first(self.conn, params) is not None

    def transition(
        self,
        applyment_id: int,
        sources: Iterable[str],
        target: str,
        now: float,
        *,
        reject_param: str | None = None,
        reject_reason: str | None = None,
    ) -> bool:
        """Move the applyment iff it is still in one of ``sources``; False when another writer won."""
        stmt = (
            T.update()
            .where(T.c.applyment_id == applyment_id, T.c.state.in_(list(sources)))
            .values(
                state=target,
                reject_param=reject_param,
                reject_reason=reject_reason,
                state_since=now,
                updated_at=now,
            )
        )
        return self.conn.execute(stmt).rowcount == 1

    def set_progress(self, applyment_id: int, *, query_count: int, state_since: float) -> None:
        """What the auto policy reads of an applyment (its A2 queries counted, in its state since), as
        a scenario gives them: a scenario round trip keeps where an applyment in audit stood."""
        stmt = (
            T.update()
            .where(T.c.applyment_id == applyment_id)
            .values(query_count=query_count, state_since=state_since)
        )
        self.conn.execute(stmt)

    def cancel_named(
        self, mchid: str, key: str, path_id: int | None, query_id: int | None, now: float
    ) -> bool:
        """A3's usual case in one statement (see ``_cancel``): True iff it cancelled the applyment."""
        params = {"mchid": mchid, "key": key, "path_id": -1 if path_id is None else path_id, "now": now}
        if query_id is not None:
            params["query_id"] = query_id
        return _CANCEL[query_id is not None].first(self.conn, params) is not None

    def count_query(self, applyment_id: int) -> int:
        row = _COUNT_QUERY.first(self.conn, {"applyment_id": applyment_id})
        return int(row[0]) if row else 0

    # --- merchant authorization (A4) ---
    def authorize(self, mchid: str, sub_mchids: Iterable[str], applyment_id: int | None, now: float) -> None:
        """In one order (sorted): two transactions authorizing shared merchant numbers listed in opposite
        orders each waited for the other's uncommitted row, and PostgreSQL aborted one (a 500)."""
        for sub in sorted(set(sub_mchids)):
            self.conn.execute(
                insert_for(self.conn, AUTH)
                .values(mchid=mchid, sub_mchid=sub, applyment_id=applyment_id, authorized_at=now)
                .on_conflict_do_nothing(index_elements=["mchid", "sub_mchid"])
            )

    def is_authorized(self, mchid: str, sub_mchid: str) -> bool:
        return _IS_AUTHORIZED.first(self.conn, {"mchid": mchid, "sub_mchid": sub_mchid}) is not None

    def authorized_of(self, app: Applyment) -> list[tuple[str, bool]]:
        """The applyment's merchant numbers with whether each is authorized for its caller: its
        confirm_mchid_list, then the numbers the authorize step added through it (``sub_mchids``)."""
        found = self.conn.execute(
            sa.select(AUTH.c.sub_mchid, AUTH.c.applyment_id).where(
                AUTH.c.mchid == app.mchid,
                sa.or_(AUTH.c.sub_mchid.in_(app.confirm_mchids), AUTH.c.applyment_id == app.applyment_id),
            )
        ).all()
        authorized = {row.sub_mchid for row in found}
        added = sorted(row.sub_mchid for row in found if row.sub_mchid not in app.confirm_mchids)
        return [(s, s in authorized) for s in app.confirm_mchids] + [(s, True) for s in added]

    def authorizations(self, mchid: str | None = None) -> list[dict[str, Any]]:
        stmt = sa.select(AUTH).order_by(AUTH.c.mchid, AUTH.c.sub_mchid)
        if mchid:
            stmt = stmt.where(AUTH.c.mchid == mchid)
        return [dict(r._mapping) for r in self.conn.execute(stmt)]

    def revoke(self, mchid: str, sub_mchid: str) -> bool:
        stmt = sa.delete(AUTH).where(AUTH.c.mchid == mchid, AUTH.c.sub_mchid == sub_mchid)
        return self.conn.execute(stmt).rowcount > 0

    # --- sandbox ---
    def policy(self) -> AutoPolicy | None:
        return _policy(kv_get(self.conn, POLICY_KEY))

    def set_policy(self, policy: AutoPolicy | None) -> None:
        """Set (or, None, drop) the auto policy; an applyment in audit counts its A2 queries anew from
        here (``query_count`` 0), so ``after_queries: 3`` means three queries made under this policy:
        an applyment queried five times before it moved at its next query."""
        kv_set(self.conn, POLICY_KEY, json.dumps(policy.as_dict()) if policy else "")
        _QUERIES_ANEW.rows(self.conn, {})

    def delete(self, mchid: str | None) -> None:
        params = {} if mchid is None else {"mchid": mchid}
        for stmt in _DELETE_ALL if mchid is None else _DELETE_MERCHANT:
            stmt.rows(self.conn, params)


# The sandbox's writes (every test's reset runs them): compiled once (db.LeanStatement).
_QUERIES_ANEW = LeanStatement(
    T.update().where(T.c.state == AUDIT, T.c.query_count != 0).values(query_count=0)
)
_DELETE_ALL = (LeanStatement(sa.delete(T)), LeanStatement(sa.delete(AUTH)))
_DELETE_MERCHANT = (
    LeanStatement(sa.delete(T).where(T.c.mchid == sa.bindparam("mchid"))),
    LeanStatement(sa.delete(AUTH).where(AUTH.c.mchid == sa.bindparam("mchid"))),
)
