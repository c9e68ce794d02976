"""Bounded, read-only queries behind the dashboard's family pages (employees, quota cards and their
spends, recharge employees, applyments). Every query has a LIMIT and uses an index or a primary key, so
a page stays cheap however much data the sandbox holds. Read-only views for humans; the families'
repositories own every write."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .apply4subject_tables import apply4subject_applyments as APPLY
from .apply4subject_tables import apply4subject_authorizations as A_AUTH
from .outbox_tables import callback_notifications as NOTES
from .recharge_tables import recharge_employees as RECHARGE
from .recharge_tables import recharge_quotas as QUOTAS
from .webizpay_tables import webizpay_auth_links as LINKS
from .webizpay_tables import webizpay_cards as CARDS
from .webizpay_tables import webizpay_payments as PAYMENTS
from .webizpay_tables import webizpay_refunds as REFUNDS
from .webizpay_tables import webizpay_relations as RELATIONS

PAGE = 100  # rows per page on every family page
SPENDS_PER_PAGE = 500  # payments shown under one page of cards
# Up to this many matching rows a page is sorted newest first; beyond it (no index on the time columns)
# the page follows the primary key instead, so a page stays a few milliseconds at a million rows.
SORT_CAP = 5000
COUNT_CAP = 100_000  # overview tiles say "100000+" beyond this
CARDS_COUNT_CAP = 1000  # the employees page says "1000+ card(s)" beyond this


@dataclass(frozen=True)
class Slice:
    """One page of rows, whether an older page exists, and whether it is sorted newest first."""

    rows: list[dict[str, Any]]
    more: bool
    by_time: bool = True


def _page(conn: Connection, stmt: sa.Select[Any], limit: int = PAGE) -> Slice:
    rows = [dict(r._mapping) for r in conn.execute(stmt.limit(limit + 1))]
    return Slice(rows[:limit], len(rows) > limit)


def _offset(stmt: sa.Select[Any], offset: int) -> sa.Select[Any]:
    return stmt.offset(offset) if offset > 0 else stmt


def bounded_count(
    conn: Connection, table: sa.Table, where: Sequence[sa.ColumnElement[bool]], cap: int
) -> int:
    """COUNT(*) that stops after ``cap`` + 1 rows: cheap whatever the table's size."""
    inner = sa.select(sa.literal(1).label("one")).select_from(table).where(*where).limit(cap + 1).subquery()
    return int(conn.execute(sa.select(sa.func.count()).select_from(inner)).scalar_one())


def _newest(
    conn: Connection,
    stmt: sa.Select[Any],
    table: sa.Table,
    where: Sequence[sa.ColumnElement[bool]],
    newest_first: Sequence[sa.ColumnElement[Any]],
    key: Sequence[sa.ColumnElement[Any]],
    offset: int,
    walk: Sequence[sa.ColumnElement[bool]] | None = None,
) -> Slice:
    """Newest first while few rows match; primary-key order (index-backed) when many do. ``walk``,
    if given, is ``where`` written so that no index answers it: the filter for the primary-key walk,
    which finds a page at once when many rows match (an index on the filter would have them all read
    and sorted by key first)."""
    by_time = bounded_count(conn, table, where, SORT_CAP) <= SORT_CAP
    ordered = stmt.where(*(where if by_time or walk is None else walk))
    ordered = ordered.order_by(*(newest_first if by_time else key))
    found = _page(conn, _offset(ordered, offset))
    return Slice(found.rows, found.more, by_time)


def counts(conn: Connection) -> dict[str, int]:
    """Overview tiles: one bounded COUNT per family table (capped at COUNT_CAP)."""

    def n(table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
        return bounded_count(conn, table, list(where), COUNT_CAP)

    return {
        "authorized employees": n(RELATIONS, RELATIONS.c.state == "AUTHORIZED"),
        "quota cards": n(CARDS),
        "spends": n(PAYMENTS),
        "recharge employees": n(RECHARGE, RECHARGE.c.state == "EFFECTIVE"),
        "applyments": n(APPLY),
        "callbacks pending": n(NOTES, NOTES.c.state == "pending"),
    }


def employees(conn: Connection, mchid: str | None, offset: int) -> Slice:
    """webizpay authorization relations (newest first) with how many cards each employee holds, counted
    up to CARDS_COUNT_CAP + 1 (an employee a load test gave a million cards cost every page a walk of
    them all), in the page's own query (a count per row is a round trip per row: ≈ 50 ms a page on
    PostgreSQL; one branch per employee in a UNION ALL took PostgreSQL as long to plan)."""
    some_cards = (
        sa.select(sa.literal(1).label("one"))
        .where(CARDS.c.employee_id == RELATIONS.c.employee_id)
        .limit(CARDS_COUNT_CAP + 1)
        .correlate(RELATIONS)
        .subquery()
    )
    n_cards = sa.select(sa.func.count()).select_from(some_cards).correlate(RELATIONS).scalar_subquery()
    where = [sa.or_(RELATIONS.c.sp_mchid == mchid, RELATIONS.c.sub_mchid == mchid)] if mchid else []
    return _newest(
        conn,
        sa.select(RELATIONS, n_cards.label("cards")),
        RELATIONS,
        where,
        [RELATIONS.c.authorized_at.desc(), RELATIONS.c.employee_id],
        [RELATIONS.c.employee_id],
        offset,
    )


def open_links(conn: Connection, mchid: str | None, now: float) -> list[dict[str, Any]]:
    """Authorization links not yet consented to and not expired (what employees could still open)."""
    stmt = (
        sa.select(
            LINKS.c.sp_mchid, LINKS.c.sub_mchid, LINKS.c.user_id, LINKS.c.created_at, LINKS.c.expires_at
        )
        .where(LINKS.c.consumed_at.is_(None), LINKS.c.expires_at > now)
        .order_by(LINKS.c.created_at.desc())
        .limit(50)
    )
    if mchid:
        stmt = stmt.where(sa.or_(LINKS.c.sp_mchid == mchid, LINKS.c.sub_mchid == mchid))
    return [dict(r._mapping) for r in conn.execute(stmt)]


def cards(
    conn: Connection, mchid: str | None, employee_id: str | None, offset: int
) -> tuple[Slice, dict[str, list[dict[str, Any]]]]:
    """Quota cards (newest first) and, per card on this page, its spends (payments) newest first."""
    where: list[sa.ColumnElement[bool]] = []
    walk: list[sa.ColumnElement[bool]] = []
    if mchid:
        where.append(sa.or_(CARDS.c.sp_mchid == mchid, CARDS.c.sub_mchid == mchid))
        # `col || ''` is the column no index answers (see _newest's walk)
        walk.append(sa.or_(CARDS.c.sp_mchid + "" == mchid, CARDS.c.sub_mchid + "" == mchid))
    if employee_id:
        where.append(CARDS.c.employee_id == employee_id)
        walk.append(CARDS.c.employee_id == employee_id)
    found = _newest(
        conn,
        sa.select(CARDS),
        CARDS,
        where,
        [CARDS.c.begin_at.desc(), CARDS.c.card_no],
        [CARDS.c.card_no],
        offset,
        walk if mchid else None,
    )
    spends: dict[str, list[dict[str, Any]]] = {}
    card_nos = [c["card_no"] for c in found.rows]
    if card_nos:
        refunds = (
            sa.select(sa.func.count())
            .select_from(REFUNDS)
            .where(REFUNDS.c.transaction_id == PAYMENTS.c.transaction_id)
            .scalar_subquery()
        )
        q = (
            sa.select(
                PAYMENTS.c.transaction_id,
                PAYMENTS.c.card_no,
                PAYMENTS.c.amount,
                PAYMENTS.c.refunded_amount,
                PAYMENTS.c.goods_name,
                PAYMENTS.c.receive_mch_name,
                PAYMENTS.c.paid_at,
                refunds.label("refunds"),
            )
            .where(PAYMENTS.c.card_no.in_(card_nos))
            .order_by(PAYMENTS.c.paid_at.desc())
            .limit(SPENDS_PER_PAGE)
        )
        for r in conn.execute(q):
            spends.setdefault(r.card_no, []).append(dict(r._mapping))
    return found, spends


def recharge(conn: Connection, mchid: str | None, offset: int) -> tuple[Slice, list[dict[str, Any]]]:
    """Scan-to-recharge employees (newest change first) and the per-merchant counters."""
    where = [sa.or_(RECHARGE.c.mchid == mchid, RECHARGE.c.sub_mchid == mchid)] if mchid else []
    key = [RECHARGE.c.mchid, RECHARGE.c.sub_mchid, RECHARGE.c.sp_openid]
    found = _newest(
        conn, sa.select(RECHARGE), RECHARGE, where, [RECHARGE.c.update_time.desc(), *key], key, offset
    )
    quotas = sa.select(QUOTAS).order_by(QUOTAS.c.sub_mchid).limit(PAGE)
    if mchid:
        quotas = quotas.where(QUOTAS.c.sub_mchid == mchid)
    return found, [dict(r._mapping) for r in conn.execute(quotas)]


def applyments(conn: Connection, mchid: str | None, state: str | None, offset: int) -> Slice:
    stmt = sa.select(
        APPLY.c.applyment_id,
        APPLY.c.mchid,
        APPLY.c.business_code,
        APPLY.c.channel_id,
        APPLY.c.state,
        APPLY.c.confirm_mchids,
        APPLY.c.reject_reason,
        APPLY.c.query_count,
        APPLY.c.state_since,
        APPLY.c.created_at,
    ).order_by(APPLY.c.applyment_id.desc())
    if mchid:
        stmt = stmt.where(APPLY.c.mchid == mchid)
    if state:
        stmt = stmt.where(APPLY.c.state == state)
    return _page(conn, _offset(stmt, offset))


def applyment_authorizations(conn: Connection, mchid: str) -> list[dict[str, Any]]:
    stmt = (
        sa.select(A_AUTH).where(A_AUTH.c.mchid == mchid).order_by(A_AUTH.c.authorized_at.desc()).limit(PAGE)
    )
    return [dict(r._mapping) for r in conn.execute(stmt)]
