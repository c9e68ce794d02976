"""Bounded, read-only queries behind the dashboard's family pages (employees, quota cards and their
spends, recharge employees, applyments, callbacks). Every query has a LIMIT and uses an index or a
primary key, so a page stays cheap however much data the sandbox holds. Read-only views for humans; the
families' repositories own every write.

Pages are keyset pages: ``after`` is the sort key of the row the previous page ended with, and the page
starts there through the index whatever its depth (``offset`` walked every row before the page, so the
dashboard stopped at 100,000). The way back is found the same way: the keys of the ``PAGE + 1`` rows
before the page's first row, read in the reverse order, name where the newer page starts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..domain.merchants import Merchant
from . import outbox, registry
from .apply4subject_tables import apply4subject_applyments as APPLY
from .apply4subject_tables import apply4subject_authorizations as A_AUTH
from .keyset import Key, Order
from .outbox_tables import callback_notifications as NOTES
from .recharge_tables import recharge_employees as RECHARGE
from .recharge_tables import recharge_quotas as QUOTAS
from .schema import merchant_certificates as CERTS
from .schema import merchant_relations as KIDS
from .schema import merchants as MERCHANTS
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
    """One page of rows, whether an older page exists, and whether it is sorted newest first.
    ``next_after``: the cursor of the older page (the last row's key, with the order's tag in front);
    ``newer``: whether a newer page exists, and ``newer_after`` its cursor (None: the first page)."""

    rows: list[dict[str, Any]]
    more: bool
    by_time: bool = True
    next_after: Key | None = None
    newer: bool = False
    newer_after: Key | None = None
    restarted: bool = False  # the cursor given was of the other order (the list grew past SORT_CAP)


def _keyset(
    conn: Connection, stmt: sa.Select[Any], order: Order, offset: int, after: Key | None, limit: int = PAGE
) -> Slice:
    """One page of ``stmt`` (filtered, not ordered) in ``order``: after the row ``after`` names, else
    from ``offset`` (old links; the page's own links are cursors), and where the newer page starts."""
    page = stmt.order_by(*order.clauses())
    if after is not None:
        page = page.where(order.beyond(after, forward=True))
    elif offset > 0:
        page = page.offset(offset)
    found = [dict(r._mapping) for r in conn.execute(page.limit(limit + 1))]
    rows, more = found[:limit], len(found) > limit
    if rows:  # the rows before this page's first
        bound: sa.ColumnElement[bool] | None = order.beyond(order.key_of(rows[0]), forward=False)
    elif after is not None:  # past the end (its rows were deleted): the rows up to the cursor
        bound = order.beyond(after, forward=False, inclusive=True)
    elif offset > 0:  # an offset past the end: the last page
        bound = sa.true()
    else:
        bound = None
    newer, newer_after = False, None
    if bound is not None:
        keys = [c for c, _ in order.columns]
        back = stmt.with_only_columns(*keys).where(bound).order_by(*order.clauses(reverse=True))
        behind = [dict(r._mapping) for r in conn.execute(back.limit(limit + 1))]
        newer = bool(behind)
        newer_after = order.cursor_of(behind[limit]) if len(behind) > limit else None
    return Slice(
        rows,
        more,
        next_after=order.cursor_of(rows[-1]) if more else None,
        newer=newer,
        newer_after=newer_after,
    )


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
    newest_first: Sequence[tuple[sa.ColumnElement[Any], bool]],
    key: Sequence[sa.ColumnElement[Any]],
    offset: int,
    walk: Sequence[sa.ColumnElement[bool]] | None = None,
    after: Key | None = None,
) -> Slice:
    """Newest first while few rows match; primary-key order (index-backed) when many do. ``walk``,
    if given, is ``where`` written so that no index answers it: the filter for the primary-key walk,
    which finds a page at once when many rows match (an index on the filter would have them all read
    and sorted by key first). ``after`` is a cursor of either order (tag "t" or "k" first); one of the
    order not in use now starts the list again (``restarted``)."""
    by_time = bounded_count(conn, table, where, SORT_CAP) <= SORT_CAP
    order = Order(tuple(newest_first), "t") if by_time else Order(tuple((c, False) for c in key), "k")
    ordered = stmt.where(*(where if by_time or walk is None else walk))
    cursor = after[1:] if after is not None and after[0] == order.tag else None
    found = _keyset(conn, ordered, order, offset, cursor)
    return Slice(
        found.rows,
        found.more,
        by_time,
        found.next_after,
        found.newer,
        found.newer_after,
        restarted=after is not None and cursor is None,
    )


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


def employees(conn: Connection, mchid: str | None, offset: int, after: Key | None = None) -> Slice:
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
        [(RELATIONS.c.authorized_at, True), (RELATIONS.c.employee_id, False)],
        [RELATIONS.c.employee_id],
        offset,
        after=after,
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
    conn: Connection, mchid: str | None, employee_id: str | None, offset: int, after: Key | None = None
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
        [(CARDS.c.begin_at, True), (CARDS.c.card_no, False)],
        [CARDS.c.card_no],
        offset,
        walk if mchid else None,
        after,
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


def recharge(
    conn: Connection, mchid: str | None, offset: int, after: Key | None = None
) -> tuple[Slice, list[dict[str, Any]]]:
    """Scan-to-recharge employees (newest change first) and the per-merchant counters."""
    where = [sa.or_(RECHARGE.c.mchid == mchid, RECHARGE.c.sub_mchid == mchid)] if mchid else []
    key = [RECHARGE.c.mchid, RECHARGE.c.sub_mchid, RECHARGE.c.sp_openid]
    newest_first = [(RECHARGE.c.update_time, True), *((c, False) for c in key)]
    found = _newest(conn, sa.select(RECHARGE), RECHARGE, where, newest_first, key, offset, after=after)
    quotas = sa.select(QUOTAS).order_by(QUOTAS.c.sub_mchid).limit(PAGE)
    if mchid:
        quotas = quotas.where(QUOTAS.c.sub_mchid == mchid)
    return found, [dict(r._mapping) for r in conn.execute(quotas)]


APPLYMENT_ORDER = Order(((APPLY.c.applyment_id, True),))


def applyments(
    conn: Connection, mchid: str | None, state: str | None, offset: int, after: Key | None = None
) -> Slice:
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
    )
    if mchid:
        stmt = stmt.where(APPLY.c.mchid == mchid)
    if state:
        stmt = stmt.where(APPLY.c.state == state)
    return _keyset(conn, stmt, APPLYMENT_ORDER, offset, after)


NOTIFICATION_ORDER = outbox.LISTING  # the callbacks page lists the outbox's own listing


def newer_notifications(
    conn: Connection,
    mchid: str | None,
    state: str | None,
    first: Key | None,
    after: Key | None,
    offset: int,
    limit: int,
) -> tuple[bool, Key | None]:
    """The callbacks page's way back (its rows come from the outbox's own listing, newest first by
    (create_time, id)): whether a newer page exists, and its cursor (None: the first page). ``first``
    is the key of the page's first row, None when the page is empty."""
    stmt = sa.select(NOTES.c.create_time, NOTES.c.id)
    if mchid:
        stmt = stmt.where(NOTES.c.mchid == mchid)
    if state:
        stmt = stmt.where(NOTES.c.state == state)
    order = NOTIFICATION_ORDER
    if first is not None:
        stmt = stmt.where(order.beyond(first, forward=False))
    elif after is not None:
        stmt = stmt.where(order.beyond(after, forward=False, inclusive=True))
    elif offset <= 0:
        return False, None
    behind = [
        dict(r._mapping) for r in conn.execute(stmt.order_by(*order.clauses(reverse=True)).limit(limit + 1))
    ]
    return bool(behind), order.key_of(behind[limit]) if len(behind) > limit else None


def applyment_authorizations(conn: Connection, mchid: str) -> list[dict[str, Any]]:
    stmt = (
        sa.select(A_AUTH).where(A_AUTH.c.mchid == mchid).order_by(A_AUTH.c.authorized_at.desc()).limit(PAGE)
    )
    return [dict(r._mapping) for r in conn.execute(stmt)]


def merchant_count(conn: Connection) -> int:
    """How many merchants are registered (the overview's tile; it read every merchant to count them)."""
    return int(conn.execute(sa.select(sa.func.count()).select_from(MERCHANTS)).scalar_one())


@dataclass(frozen=True)
class MerchantListing:
    """One page of merchants (by mchid) with their API certificates and children, each read for the
    whole page in one query (a query per merchant was 40 s for 20,000 merchants on SQLite)."""

    merchants: list[Merchant]
    certificates: dict[str, list[dict[str, Any]]]
    children: dict[str, list[tuple[str, str]]]
    more: bool


def merchants_page(
    conn: Connection, *, after: str | None = None, limit: int | None = None, prefix: str | None = None
) -> MerchantListing:
    """Merchants by mchid after ``after`` (keyset: the primary key), at most ``limit`` (None: all),
    whose mchid starts with ``prefix``: a range of the primary key."""
    stmt = sa.select(MERCHANTS).order_by(MERCHANTS.c.mchid)
    if prefix:
        stmt = stmt.where(MERCHANTS.c.mchid >= prefix, MERCHANTS.c.mchid < prefix + "\U0010ffff")
    if after is not None:
        stmt = stmt.where(MERCHANTS.c.mchid > after)
    if limit is not None:
        stmt = stmt.limit(limit + 1)
    found = [registry.merchant_of(r) for r in conn.execute(stmt)]
    page = found if limit is None else found[:limit]
    certificates: dict[str, list[dict[str, Any]]] = {m.mchid: [] for m in page}
    children: dict[str, list[tuple[str, str]]] = {m.mchid: [] for m in page}
    for chunk in _chunks([m.mchid for m in page], 500):  # bound the IN list (PostgreSQL, SQLite alike)
        certs = (
            sa.select(CERTS.c.mchid, CERTS.c.serial_no, CERTS.c.revoked)
            .where(CERTS.c.mchid.in_(chunk))
            .order_by(CERTS.c.mchid, CERTS.c.serial_no)
        )
        for r in conn.execute(certs):
            certificates[r.mchid].append({"serial_no": r.serial_no, "revoked": bool(r.revoked)})
        kids = (
            sa.select(KIDS.c.parent_mchid, KIDS.c.child_mchid, KIDS.c.kind)
            .where(KIDS.c.parent_mchid.in_(chunk))
            .order_by(KIDS.c.parent_mchid, KIDS.c.child_mchid)
        )
        for r in conn.execute(kids):
            children[r.parent_mchid].append((r.child_mchid, r.kind))
    return MerchantListing(page, certificates, children, limit is not None and len(found) > limit)


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
