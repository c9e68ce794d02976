"""SQL for webizpay W9–W10 (entity-match batches, sandbox store entities) and W13–W17 (ranges)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..domain.webizpay_merchants import MatchBatch, MchRange, StoreEntity
from .db import LeanStatement, insert_for
from .webizpay_merchants_tables import (
    webizpay_bill_files,
    webizpay_funding_proofs,
    webizpay_match_batches,
    webizpay_mch_identifiers,
    webizpay_mch_ranges,
    webizpay_store_entities,
)
from .webizpay_tables import merchant_rows


def _batch(m: Mapping[str, Any]) -> MatchBatch:
    return MatchBatch(
        batch_id=m["batch_id"],
        sp_mchid=m["sp_mchid"],
        out_batch_id=m["out_batch_id"],
        state=m["state"],
        digest=m["digest"],
        details=json.loads(m["details"]),
        results=json.loads(m["results"]) if m["results"] is not None else None,
        created_at=float(m["created_at"]),
    )


# W9–W10 and W13–W17 run these on their calls: compiled once per dialect and run on the driver cursor
# (db.LeanStatement), the same SQL the conn.execute versions sent (the writes that counted rows now
# return a key: rowcount is not reliable on every driver). Bind names that are not column names: an
# UPDATE's SET clause reserves those.
_mb = webizpay_match_batches
_BATCH_BY_OUT_ID = LeanStatement(
    sa.select(_mb).where(_mb.c.sp_mchid == sa.bindparam("sp"), _mb.c.out_batch_id == sa.bindparam("out_id")),
    tuple(_mb.c.keys()),
)
_BATCH = LeanStatement(sa.select(_mb).where(_mb.c.batch_id == sa.bindparam("id")), tuple(_mb.c.keys()))
_INSERT_BATCH = LeanStatement(
    lambda dialect: (
        insert_for(dialect, _mb)
        .values({c.name: sa.bindparam(c.name) for c in _mb.c})
        .on_conflict_do_nothing(index_elements=["sp_mchid", "out_batch_id"])
        .returning(_mb.c.batch_id)
    )
)


def _move_batch(with_results: bool) -> LeanStatement:
    values: dict[str, Any] = {"state": sa.bindparam("to_state"), "updated_at": sa.bindparam("now")}
    if with_results:
        values["results"] = sa.bindparam("found")
    stmt = (
        _mb.update()
        .where(_mb.c.batch_id == sa.bindparam("id"), _mb.c.state == sa.bindparam("from_state"))
        .values(**values)
        .returning(_mb.c.batch_id)
    )
    return LeanStatement(stmt)


_MOVE_BATCH = {with_results: _move_batch(with_results) for with_results in (False, True)}
# The store entities of up to 1,000 organization codes: an IN list of bound values, one statement per
# power of two of them (the list padded with its last code), so at most 11 are ever compiled.
_se = webizpay_store_entities
_ENTITIES: dict[int, LeanStatement] = {}


def _entities_of(count: int) -> tuple[LeanStatement, int]:
    size = 1 << max(count - 1, 0).bit_length()
    lean = _ENTITIES.get(size)
    if lean is None:
        codes: list[sa.BindParameter[str]] = [sa.bindparam(f"c{n}") for n in range(size)]
        stmt = sa.select(_se.c.organization_code, _se.c.has_valid_mchid, _se.c.products).where(
            _se.c.organization_code.in_(codes)
        )
        lean = _ENTITIES[size] = LeanStatement(stmt)
    return lean, size


class MatchRepo:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def batch_by_out_id(self, sp_mchid: str, out_batch_id: str) -> MatchBatch | None:
        m = _BATCH_BY_OUT_ID.first_mapping(self.conn, {"sp": sp_mchid, "out_id": out_batch_id})
        return _batch(m) if m else None

    def batch(self, batch_id: str) -> MatchBatch | None:
        m = _BATCH.first_mapping(self.conn, {"id": batch_id})
        return _batch(m) if m else None

    def insert_batch(self, batch: MatchBatch, now: float) -> bool:
        """False when (sp_mchid, out_batch_id) already exists: the unique constraint decides, atomically."""
        params = {
            "batch_id": batch.batch_id,
            "sp_mchid": batch.sp_mchid,
            "out_batch_id": batch.out_batch_id,
            "state": batch.state,
            "digest": batch.digest,
            "details": json.dumps(batch.details, ensure_ascii=False),
            "results": None,
            "created_at": batch.created_at,
            "updated_at": now,
        }
        return _INSERT_BATCH.first(self.conn, params) is not None

    def move_batch(
        self,
        batch_id: str,
        from_state: str,
        to_state: str,
        results: list[dict[str, object]] | None,
        now: float,
    ) -> bool:
        """Conditional transition: only one of several concurrent movers wins."""
        params: dict[str, Any] = {"id": batch_id, "from_state": from_state, "to_state": to_state, "now": now}
        if results is not None:
            params["found"] = json.dumps(results, ensure_ascii=False)
        return _MOVE_BATCH[results is not None].first(self.conn, params) is not None

    def store_entities(self, codes: list[str]) -> dict[str, StoreEntity]:
        if not codes:
            return {}
        lean, size = _entities_of(len(codes))
        params = {f"c{n}": codes[min(n, len(codes) - 1)] for n in range(size)}
        return {r[0]: _entity(r) for r in lean.rows(self.conn, params)}


def _entity(row: Sequence[Any]) -> StoreEntity:
    """A StoreEntity from (organization_code, has_valid_mchid, products), the table's columns in order."""
    code, valid, products = row
    return StoreEntity(code, bool(valid), tuple(p for p in str(products).split(",") if p))


def upsert_store_entity(conn: Connection, entity: StoreEntity) -> None:
    t = webizpay_store_entities
    values = {"has_valid_mchid": entity.has_valid_mchid, "products": ",".join(entity.products)}
    if conn.execute(
        t.update().where(t.c.organization_code == entity.organization_code).values(**values)
    ).rowcount:
        return
    conn.execute(t.insert().values(organization_code=entity.organization_code, **values))


def list_store_entities(conn: Connection) -> list[StoreEntity]:
    t = webizpay_store_entities
    return [_entity(r) for r in conn.execute(sa.select(t).order_by(t.c.organization_code))]


_mr, _mi = webizpay_mch_ranges, webizpay_mch_identifiers
_INSERT_RANGE = LeanStatement(
    _mr.insert().values(
        {name: sa.bindparam(name) for name in ("range_id", "sp_mchid", "identifier_type", "created_at")}
    )
)
_RANGE_COLUMNS = (_mr.c.range_id, _mr.c.sp_mchid, _mr.c.identifier_type)
_RANGE = LeanStatement(sa.select(*_RANGE_COLUMNS).where(_mr.c.range_id == sa.bindparam("id")))
_RANGES = LeanStatement(
    sa.select(*_RANGE_COLUMNS).where(_mr.c.sp_mchid == sa.bindparam("sp")).order_by(_mr.c.seq)
)
_ADD_IDENTIFIER = LeanStatement(
    lambda dialect: (
        insert_for(dialect, _mi)
        .values({name: sa.bindparam(name) for name in ("range_id", "merchant_identifier", "created_at")})
        .on_conflict_do_nothing(index_elements=["range_id", "merchant_identifier"])
        .returning(_mi.c.seq)
    )
)
_IDENTIFIERS_COUNT = LeanStatement(
    sa.select(sa.func.count()).select_from(_mi).where(_mi.c.range_id == sa.bindparam("id"))
)
_IDENTIFIERS_PAGE = LeanStatement(
    sa.select(_mi.c.merchant_identifier)
    .where(_mi.c.range_id == sa.bindparam("id"))
    .order_by(_mi.c.seq)
    .offset(sa.bindparam("skip", type_=sa.BigInteger))
    .limit(sa.bindparam("take", type_=sa.BigInteger))
)
_DELETE_IDENTIFIER = LeanStatement(
    sa.delete(_mi)
    .where(_mi.c.range_id == sa.bindparam("id"), _mi.c.merchant_identifier == sa.bindparam("ident"))
    .returning(_mi.c.seq)
)


class RangeRepo:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def insert_range(self, rng: MchRange, now: float) -> None:
        params = {
            "range_id": rng.range_id,
            "sp_mchid": rng.sp_mchid,
            "identifier_type": rng.identifier_type,
            "created_at": now,
        }
        _INSERT_RANGE.rows(self.conn, params)

    def range(self, range_id: str) -> MchRange | None:
        row = _RANGE.first(self.conn, {"id": range_id})
        return MchRange(row[0], row[1], row[2]) if row else None

    def ranges(self, sp_mchid: str) -> list[MchRange]:
        rows = _RANGES.rows(self.conn, {"sp": sp_mchid})
        return [MchRange(r[0], r[1], r[2]) for r in rows]

    def add_identifier(self, range_id: str, identifier: str, now: float) -> bool:
        """True if added, False if it was already in the range (unique constraint, no error)."""
        params = {"range_id": range_id, "merchant_identifier": identifier, "created_at": now}
        return _ADD_IDENTIFIER.first(self.conn, params) is not None

    def identifiers(self, range_id: str, offset: int, limit: int) -> tuple[list[str], int]:
        counted = _IDENTIFIERS_COUNT.first(self.conn, {"id": range_id})
        rows = _IDENTIFIERS_PAGE.rows(self.conn, {"id": range_id, "skip": offset, "take": limit})
        return [r[0] for r in rows], int(counted[0] or 0) if counted else 0

    def delete_identifier(self, range_id: str, identifier: str) -> bool:
        params = {"id": range_id, "ident": identifier}
        return _DELETE_IDENTIFIER.first(self.conn, params) is not None


# --- the scenario's save and restore (server/webizpay_scenario.py): every row as it is ---------


def _streamed(conn: Connection, stmt: sa.Select[Any], batch: int) -> Iterator[Mapping[str, Any]]:
    """The rows of ``stmt``, ``batch`` at a time as the caller goes (a server-side cursor on PostgreSQL)."""
    for row in conn.execution_options(yield_per=batch).execute(stmt):
        yield dict(row._mapping)


def any_range(conn: Connection) -> bool:
    return conn.execute(sa.select(_mr.c.seq).limit(1)).first() is not None


def export_ranges(conn: Connection, batch: int = 1000) -> Iterator[tuple[MchRange, float]]:
    """Every range in creation order (W14's), with its created_at."""
    stmt = sa.select(*_RANGE_COLUMNS, _mr.c.created_at).order_by(_mr.c.seq)
    for m in _streamed(conn, stmt, batch):
        yield MchRange(m["range_id"], m["sp_mchid"], m["identifier_type"]), float(m["created_at"])


def any_identifier(conn: Connection) -> bool:
    return conn.execute(sa.select(_mi.c.seq).limit(1)).first() is not None


def export_identifiers(conn: Connection, batch: int = 1000) -> Iterator[tuple[str, str, float]]:
    """Every range's identifiers, (range_id, merchant_identifier, created_at), range by range in the
    ranges' order and each range's in W16's order."""
    stmt = (
        sa.select(_mi.c.range_id, _mi.c.merchant_identifier, _mi.c.created_at)
        .select_from(_mi.join(_mr, _mr.c.range_id == _mi.c.range_id))
        .order_by(_mr.c.seq, _mi.c.seq)
    )
    for m in _streamed(conn, stmt, batch):
        yield m["range_id"], m["merchant_identifier"], float(m["created_at"])


def any_batch(conn: Connection) -> bool:
    return conn.execute(sa.select(_mb.c.batch_id).limit(1)).first() is not None


def export_batches(conn: Connection, batch: int = 1000) -> Iterator[tuple[MatchBatch, float]]:
    """Every entity-match batch, oldest first, with its updated_at."""
    for m in _streamed(conn, sa.select(_mb).order_by(_mb.c.created_at, _mb.c.batch_id), batch):
        yield _batch(m), float(m["updated_at"])


def restore_batch(conn: Connection, batch: MatchBatch, updated_at: float) -> None:
    """A batch written as it was (its state and results; the caller checked its ids are free)."""
    conn.execute(
        _mb.insert().values(
            batch_id=batch.batch_id,
            sp_mchid=batch.sp_mchid,
            out_batch_id=batch.out_batch_id,
            state=batch.state,
            digest=batch.digest,
            details=json.dumps(batch.details, ensure_ascii=False),
            results=None if batch.results is None else json.dumps(batch.results, ensure_ascii=False),
            created_at=batch.created_at,
            updated_at=updated_at,
        )
    )


def range_created_at(conn: Connection, range_id: str) -> float | None:
    row = conn.execute(sa.select(_mr.c.created_at).where(_mr.c.range_id == range_id)).first()
    return float(row[0]) if row else None


def _reset_deletes(one_merchant: bool) -> tuple[LeanStatement, ...]:
    """The resetter's deletes, in order: every row, or one merchant's (bound ``mchid``)."""
    ranges = webizpay_mch_ranges
    mchid = sa.bindparam("mchid", type_=sa.String)
    owned = sa.select(ranges.c.range_id)
    if one_merchant:
        owned = owned.where(ranges.c.sp_mchid == mchid)
    stmts: list[sa.Delete] = [
        sa.delete(webizpay_mch_identifiers).where(webizpay_mch_identifiers.c.range_id.in_(owned))
    ]
    for table in (ranges, webizpay_match_batches, webizpay_funding_proofs, webizpay_bill_files):
        stmt = sa.delete(table)
        stmts.append(stmt.where(merchant_rows(table, mchid)) if one_merchant else stmt)
    return tuple(LeanStatement(stmt) for stmt in stmts)


# Every test's reset runs them: compiled once per dialect (db.LeanStatement).
_RESET_ALL = _reset_deletes(False)
_RESET_MERCHANT = _reset_deletes(True)


def reset(conn: Connection, mchid: str | None) -> None:
    """Scenario RESETTER: delete W9–W17 business data (all, or one merchant's: a sub-merchant's proofs
    and bills too). Sandbox store entities are configuration, not business data, and stay."""
    params = {} if mchid is None else {"mchid": mchid}
    for stmt in _RESET_ALL if mchid is None else _RESET_MERCHANT:
        stmt.rows(conn, params)
