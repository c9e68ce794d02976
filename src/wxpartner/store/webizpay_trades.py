"""Quota-card payments and refunds as bill rows (W11/W12 read them through TRADE_SOURCES): one
SUCCESS row per payment and one REFUND row per refund, in [start, end) business time."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..domain.webizpay_bills import TradeRow
from .db import LeanStatement
from .webizpay_bills_repo import TRADE_SOURCES
from .webizpay_tables import webizpay_payments, webizpay_refunds

_p = webizpay_payments
_r = webizpay_refunds


# TradeRow's fields from sp_mchid to receive_mch_organization_code, then the order's amount.
_FIELDS = (
    _p.c.sp_mchid,
    _p.c.sub_mchid,
    _p.c.card_no,
    _p.c.employee_id,
    _p.c.transaction_id,
    _p.c.out_trade_no,
    _p.c.receive_mch_name,
    _p.c.receive_mch_full_name,
    _p.c.receive_mch_organization_code,
    _p.c.amount,
)


_SP: sa.BindParameter[str] = sa.bindparam("sp")
_SUB: sa.BindParameter[str] = sa.bindparam("sub")
_START: sa.BindParameter[float] = sa.bindparam("start")
_END: sa.BindParameter[float] = sa.bindparam("end")
# Compiled once per dialect, run on the driver cursor (db.LeanStatement); rows as tuples, fetched at
# once: a quarter's bill can be 100,000 of them.
_PAYMENTS = LeanStatement(
    sa.select(_p.c.paid_at, *_FIELDS).where(
        _p.c.sp_mchid == _SP, _p.c.sub_mchid == _SUB, _p.c.paid_at >= _START, _p.c.paid_at < _END
    )
)
# The span's refunds first (their index on succeeded_at), then each one's payment by its key: the
# merchant's columns are written so that no index answers them (`col || ''`), else SQLite walks
# every payment the sub-merchant ever had and probes each for refunds.
_REFUNDS = LeanStatement(
    sa.select(_r.c.succeeded_at, *_FIELDS, _r.c.amount)
    .join_from(_p, _r, _r.c.transaction_id == _p.c.transaction_id)
    .where(
        _p.c.sp_mchid + "" == _SP,
        _p.c.sub_mchid + "" == _SUB,
        _r.c.succeeded_at >= _START,
        _r.c.succeeded_at < _END,
    )
)


def trade_rows(conn: Connection, sp_mchid: str, sub_mchid: str, start: float, end: float) -> list[TradeRow]:
    params = {"sp": sp_mchid, "sub": sub_mchid, "start": start, "end": end}
    paid = _PAYMENTS.rows(conn, params)  # (time, TradeRow's fields to the organization code, amount)
    rows = [TradeRow._make((*r[:10], "SUCCESS", int(r[10]), 0)) for r in paid]
    refunded = _REFUNDS.rows(conn, params)  # the same, and the refund's amount
    rows.extend(TradeRow._make((*r[:10], "REFUND", int(r[10]), int(r[11]))) for r in refunded)
    return rows


TRADE_SOURCES.append(trade_rows)
