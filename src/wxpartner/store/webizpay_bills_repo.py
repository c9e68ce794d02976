"""SQL for webizpay W11/W12: funding proofs and the bill files behind download links.

Transactions come from whoever records quota-card payments: that family registers a function in
``TRADE_SOURCES`` (connection, sp_mchid, sub_mchid, start, end) -> rows, so bills list real payments
without this module reading another family's tables.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..domain.merchants import RelationKind
from ..domain.webizpay_bills import BillFile, Proof, TradeRow
from . import registry
from .db import LeanStatement, insert_for
from .webizpay_merchants_tables import webizpay_bill_files, webizpay_funding_proofs

TradeSource = Callable[[Connection, str, str, float, float], list[TradeRow]]
TRADE_SOURCES: list[TradeSource] = []
_BY_TIME = operator.attrgetter("time", "transaction_id")


_p = webizpay_funding_proofs
# A proof as W11 reads it back: everything but its document (16 MB for a quarter; its download reads it).
_PROOF_COLUMNS = [c for c in _p.c if c.name != "content"]


def _proof(m: Mapping[str, Any]) -> Proof:
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


# W11, W12 and the download run these: compiled once per dialect and run on the driver cursor
# (db.LeanStatement), the same SQL the conn.execute versions sent.
_PROOF_BY_OUT_ID = LeanStatement(
    sa.select(*_PROOF_COLUMNS).where(
        _p.c.sp_mchid == sa.bindparam("sp"), _p.c.out_operation_id == sa.bindparam("out_id")
    ),
    tuple(c.name for c in _PROOF_COLUMNS),
)
_INSERT_PROOF = LeanStatement(
    lambda dialect: (
        insert_for(dialect, _p)
        .values({name: sa.bindparam(name) for name in Proof.__slots__})
        .on_conflict_do_nothing(index_elements=["sp_mchid", "out_operation_id"])
        .returning(_p.c.proof_id)
    )
)
_TOUCH_PROOF = LeanStatement(
    _p.update().where(_p.c.proof_id == sa.bindparam("id")).values(updated_at=sa.bindparam("now"))
)
_f = webizpay_bill_files
_PRUNE_FILES = LeanStatement(sa.delete(_f).where(_f.c.expires_at < sa.bindparam("cutoff")))
_INSERT_FILE = LeanStatement(_f.insert().values({name: sa.bindparam(name) for name in BillFile.__slots__}))
_FILE_SELECT = (
    sa.select(_f, _p.c.content.label("proof_content"))
    .outerjoin(_p, _p.c.proof_id == _f.c.proof_id)
    .where(_f.c.token == sa.bindparam("token"))
)
_FILE = LeanStatement(_FILE_SELECT, tuple(_FILE_SELECT.selected_columns.keys()))


class BillRepo:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def is_sub_merchant(self, sp_mchid: str, sub_mchid: str) -> bool:
        return registry.is_related(self.conn, sp_mchid, sub_mchid, RelationKind.SUB_MERCHANT)

    def proof_by_out_id(self, sp_mchid: str, out_operation_id: str) -> Proof | None:
        """The proof, its content "" (see _PROOF_COLUMNS)."""
        m = _PROOF_BY_OUT_ID.first_mapping(self.conn, {"sp": sp_mchid, "out_id": out_operation_id})
        return _proof(m) if m else None

    def insert_proof(self, proof: Proof) -> bool:
        """False when (sp_mchid, out_operation_id) exists already (decided by the unique constraint)."""
        values = {name: getattr(proof, name) for name in Proof.__slots__}
        return _INSERT_PROOF.first(self.conn, values) is not None

    def touch_proof(self, proof_id: str, now: float) -> None:
        _TOUCH_PROOF.rows(self.conn, {"id": proof_id, "now": now})

    def trades(self, sp_mchid: str, sub_mchid: str, start: float, end: float) -> list[TradeRow]:
        rows: list[TradeRow] = []
        for source in TRADE_SOURCES:
            rows.extend(source(self.conn, sp_mchid, sub_mchid, start, end))
        return sorted(rows, key=_BY_TIME)

    def add_file(self, file: BillFile) -> None:
        # Links expired for a day are dead weight; younger ones still answer "expired" rather than 404.
        _PRUNE_FILES.rows(self.conn, {"cutoff": file.created_at - 86400})
        _INSERT_FILE.rows(self.conn, {name: getattr(file, name) for name in BillFile.__slots__})

    def file(self, token: str) -> BillFile | None:
        m = _FILE.first_mapping(self.conn, {"token": token})
        if m is None:
            return None
        file = BillFile(**{name: m[name] for name in BillFile.__slots__})
        if file.proof_id is None:
            return file
        if m["proof_content"] is None:  # the proof is gone (a reset): so is its link
            return None
        return replace(file, content=m["proof_content"])
