"""SQL for webizpay W9–W10 (entity-match batches, sandbox store entities) and W13–W17 (ranges)."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..domain.webizpay_merchants import MatchBatch, MchRange, StoreEntity
from .db import insert_for
from .webizpay_merchants_tables import (
    webizpay_bill_files,
    webizpay_funding_proofs,
    webizpay_match_batches,
    webizpay_mch_identifiers,
    webizpay_mch_ranges,
    webizpay_store_entities,
)
from .webizpay_tables import merchant_rows


def _batch(row: sa.Row[Any]) -> MatchBatch:
    m = row._mapping
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


class MatchRepo:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def batch_by_out_id(self, sp_mchid: str, out_batch_id: str) -> MatchBatch | None:
        t = webizpay_match_batches
        row = self.conn.execute(
            sa.select(t).where(t.c.sp_mchid == sp_mchid, t.c.out_batch_id == out_batch_id)
        ).first()
        return _batch(row) if row else None

    def batch(self, batch_id: str) -> MatchBatch | None:
        t = webizpay_match_batches
        row = self.conn.execute(sa.select(t).where(t.c.batch_id == batch_id)).first()
        return _batch(row) if row else None

    def insert_batch(self, batch: MatchBatch, now: float) -> bool:
        """False when (sp_mchid, out_batch_id) already exists: the unique constraint decides, atomically."""
        t = webizpay_match_batches
        stmt = (
            insert_for(self.conn, t)
            .values(
                batch_id=batch.batch_id,
                sp_mchid=batch.sp_mchid,
                out_batch_id=batch.out_batch_id,
                state=batch.state,
                digest=batch.digest,
                details=json.dumps(batch.details, ensure_ascii=False),
                results=None,
                created_at=batch.created_at,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["sp_mchid", "out_batch_id"])
            .returning(t.c.batch_id)
        )
        return self.conn.execute(stmt).first() is not None

    def move_batch(
        self,
        batch_id: str,
        from_state: str,
        to_state: str,
        results: list[dict[str, object]] | None,
        now: float,
    ) -> bool:
        """Conditional transition: only one of several concurrent movers wins."""
        t = webizpay_match_batches
        values: dict[str, Any] = {"state": to_state, "updated_at": now}
        if results is not None:
            values["results"] = json.dumps(results, ensure_ascii=False)
        stmt = t.update().where(t.c.batch_id == batch_id, t.c.state == from_state).values(**values)
        return self.conn.execute(stmt).rowcount == 1

    def store_entities(self, codes: list[str]) -> dict[str, StoreEntity]:
        if not codes:
            return {}
        t = webizpay_store_entities
        rows = self.conn.execute(sa.select(t).where(t.c.organization_code.in_(codes)))
        return {r.organization_code: _entity(r) for r in rows}


def _entity(row: sa.Row[Any]) -> StoreEntity:
    products = tuple(p for p in str(row.products).split(",") if p)
    return StoreEntity(row.organization_code, bool(row.has_valid_mchid), products)


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


class RangeRepo:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def insert_range(self, rng: MchRange, now: float) -> None:
        self.conn.execute(
            webizpay_mch_ranges.insert().values(
                range_id=rng.range_id,
                sp_mchid=rng.sp_mchid,
                identifier_type=rng.identifier_type,
                created_at=now,
            )
        )

    def range(self, range_id: str) -> MchRange | None:
        t = webizpay_mch_ranges
        row = self.conn.execute(
            sa.select(t.c.range_id, t.c.sp_mchid, t.c.identifier_type).where(t.c.range_id == range_id)
        ).first()
        return MchRange(row[0], row[1], row[2]) if row else None

    def ranges(self, sp_mchid: str) -> list[MchRange]:
        t = webizpay_mch_ranges
        rows = self.conn.execute(
            sa.select(t.c.range_id, t.c.sp_mchid, t.c.identifier_type)
            .where(t.c.sp_mchid == sp_mchid)
            .order_by(t.c.seq)
        )
        return [MchRange(r[0], r[1], r[2]) for r in rows]

    def add_identifier(self, range_id: str, identifier: str, now: float) -> bool:
        """True if added, False if it was already in the range (unique constraint, no error)."""
        t = webizpay_mch_identifiers
        stmt = (
            insert_for(self.conn, t)
            .values(range_id=range_id, merchant_identifier=identifier, created_at=now)
            .on_conflict_do_nothing(index_elements=["range_id", "merchant_identifier"])
            .returning(t.c.seq)
        )
        return self.conn.execute(stmt).first() is not None

    def identifiers(self, range_id: str, offset: int, limit: int) -> tuple[list[str], int]:
        t = webizpay_mch_identifiers
        total = self.conn.execute(
            sa.select(sa.func.count()).select_from(t).where(t.c.range_id == range_id)
        ).scalar()
        rows = self.conn.execute(
            sa.select(t.c.merchant_identifier)
            .where(t.c.range_id == range_id)
            .order_by(t.c.seq)
            .offset(offset)
            .limit(limit)
        )
        return [r[0] for r in rows], int(total or 0)

    def delete_identifier(self, range_id: str, identifier: str) -> bool:
        t = webizpay_mch_identifiers
        stmt = sa.delete(t).where(t.c.range_id == range_id, t.c.merchant_identifier == identifier)
        return self.conn.execute(stmt).rowcount == 1


def reset(conn: Connection, mchid: str | None) -> None:
    """Scenario RESETTER: delete W9–W17 business data (all, or one merchant's: a sub-merchant's proofs
    and bills too). Sandbox store entities are configuration, not business data, and stay."""
    ranges = webizpay_mch_ranges
    owned = sa.select(ranges.c.range_id)
    if mchid is not None:
        owned = owned.where(ranges.c.sp_mchid == mchid)
    conn.execute(sa.delete(webizpay_mch_identifiers).where(webizpay_mch_identifiers.c.range_id.in_(owned)))
    for table in (ranges, webizpay_match_batches, webizpay_funding_proofs, webizpay_bill_files):
        stmt = sa.delete(table)
        if mchid is not None:
            stmt = stmt.where(merchant_rows(table, mchid))
        conn.execute(stmt)
