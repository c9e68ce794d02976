"""Quota-card payments and refunds as bill rows (W11/W12 read them through TRADE_SOURCES): one
SUCCESS row per payment and one REFUND row per refund, in [start, end) business time."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..domain.webizpay_bills import TradeRow
from .webizpay_bills_repo import TRADE_SOURCES
from .webizpay_tables import webizpay_payments, webizpay_refunds

_p = webizpay_payments
_r = webizpay_refunds


def _row(m: sa.RowMapping, *, time: float, state: str, refund_amount: int = 0) -> TradeRow:
    return TradeRow(
        time=time,
        sp_mchid=m["sp_mchid"],
        sub_mchid=m["sub_mchid"],
        card_no=m["card_no"],
        employee_id=m["employee_id"],
        transaction_id=m["transaction_id"],
        out_trade_no=m["out_trade_no"],
        receive_mch_name=m["receive_mch_name"],
        receive_mch_full_name=m["receive_mch_full_name"],
        receive_mch_organization_code=m["receive_mch_organization_code"],
        state=state,
        amount=int(m["amount"]),
        refund_amount=refund_amount,
    )


def trade_rows(conn: Connection, sp_mchid: str, sub_mchid: str, start: float, end: float) -> list[TradeRow]:
    own = (_p.c.sp_mchid == sp_mchid, _p.c.sub_mchid == sub_mchid)
    rows = [
        _row(r._mapping, time=r._mapping["paid_at"], state="SUCCESS")
        for r in conn.execute(sa.select(_p).where(*own, _p.c.paid_at >= start, _p.c.paid_at < end))
    ]
    refunds = sa.select(_p, _r.c.succeeded_at, _r.c.amount.label("refund_amount")).join(
        _r, _r.c.transaction_id == _p.c.transaction_id
    )
    # The span's refunds first (their index on succeeded_at), then each one's payment by its key: the
    # merchant's columns are written so that no index answers them (`col || ''`), else SQLite walks
    # every payment the sub-merchant ever had and probes each for refunds.
    mine = (_p.c.sp_mchid + "" == sp_mchid, _p.c.sub_mchid + "" == sub_mchid)
    for r in conn.execute(refunds.where(*mine, _r.c.succeeded_at >= start, _r.c.succeeded_at < end)):
        m = r._mapping
        rows.append(_row(m, time=m["succeeded_at"], state="REFUND", refund_amount=int(m["refund_amount"])))
    return rows


TRADE_SOURCES.append(trade_rows)
