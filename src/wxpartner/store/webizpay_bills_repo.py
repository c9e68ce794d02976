"""SQL for webizpay W11/W12: funding proofs and the bill files behind download links.

Transactions come from whoever records quota-card payments: that family registers a function in
``TRADE_SOURCES`` (connection, sp_mchid, sub_mchid, start, end) -> rows, so bills list real payments
without this module reading another family's tables.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..domain.merchants import RelationKind
from ..domain.webizpay_bills import BillFile, Proof, TradeRow
from . import registry
from .db import insert_for
from .webizpay_merchants_tables import webizpay_bill_files, webizpay_funding_proofs

TradeSource = Callable[[Connection, str, str, float, float], list[TradeRow]]
TRADE_SOURCES: list[TradeSource] = []
_BY_TIME = operator.attrgetter("time", "transaction_id")


_p = webizpay_funding_proofs
# A proof as W11 reads it back: everything but its document (16 MB for a quarter; its download reads it).
_PROOF_COLUMNS = [c for c in _p.c if c.name != "content"]


def _proof(row: sa.Row[Any]) -> Proof:
    m = row._mapping
    return Proof(
        proof_id=m["proof_id"],
        operation_id=m["operation_id"],
        sp_mchid=m["sp_mchid"],
        sub_mchid=m["sub_mchid"],
        out_operation_id=m["out_operation_id"],
        start_date=m["start_date"],
        end_date=m["end_date"],
        entity_name=m["entity_name"],
        digest=m["digest"],
        content="",
        created_at=float(m["created_at"]),
        updated_at=float(m["updated_at"]),
    )


class BillRepo:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def is_sub_merchant(self, sp_mchid: str, sub_mchid: str) -> bool:
        return registry.is_related(self.conn, sp_mchid, sub_mchid, RelationKind.SUB_MERCHANT)

    def proof_by_out_id(self, sp_mchid: str, out_operation_id: str) -> Proof | None:
        """The proof, its content "" (see _PROOF_COLUMNS)."""
        stmt = sa.select(*_PROOF_COLUMNS).where(
            _p.c.sp_mchid == sp_mchid, _p.c.out_operation_id == out_operation_id
        )
        row = self.conn.execute(stmt).first()
        return _proof(row) if row else None

    def insert_proof(self, proof: Proof) -> bool:
        """False when (sp_mchid, out_operation_id) exists already (decided by the unique constraint)."""
        t = webizpay_funding_proofs
        values = {name: getattr(proof, name) for name in Proof.__slots__}
        stmt = (
            insert_for(self.conn, t)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["sp_mchid", "out_operation_id"])
            .returning(t.c.proof_id)
        )
        return self.conn.execute(stmt).first() is not None

    def touch_proof(self, proof_id: str, now: float) -> None:
        t = webizpay_funding_proofs
        self.conn.execute(t.update().where(t.c.proof_id == proof_id).values(updated_at=now))

    def trades(self, sp_mchid: str, sub_mchid: str, start: float, end: float) -> list[TradeRow]:
        rows: list[TradeRow] = []
        for source in TRADE_SOURCES:
            rows.extend(source(self.conn, sp_mchid, sub_mchid, start, end))
        return sorted(rows, key=_BY_TIME)

    def add_file(self, file: BillFile) -> None:
        # Links expired for a day are dead weight; younger ones still answer "expired" rather than 404.
        t = webizpay_bill_files
        self.conn.execute(sa.delete(t).where(t.c.expires_at < file.created_at - 86400))
        values = {name: getattr(file, name) for name in BillFile.__slots__}
        self.conn.execute(webizpay_bill_files.insert().values(**values))

    def file(self, token: str) -> BillFile | None:
        t, p = webizpay_bill_files, webizpay_funding_proofs
        stmt = (
            sa.select(t, p.c.content.label("proof_content"))
            .outerjoin(p, p.c.proof_id == t.c.proof_id)
            .where(t.c.token == token)
        )
        row = self.conn.execute(stmt).first()
        if row is None:
            return None
        m = row._mapping
        file = BillFile(**{name: m[name] for name in BillFile.__slots__})
        if file.proof_id is None:
            return file
        if m["proof_content"] is None:  # the proof is gone (a reset): so is its link
            return None
        return replace(file, content=m["proof_content"])
