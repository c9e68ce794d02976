"""SQL for enterprise payment: the domain's Repo (domain/webizpay/ports.py) over one connection.

Every state change is one atomic statement: inserts use ON CONFLICT DO NOTHING against the unique
constraints, transitions are ``UPDATE ... WHERE state = ...`` and report whether they took effect.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict, fields
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..domain.merchants import RelationKind
from ..domain.webizpay.entities import (
    ACTIVE,
    AUTHORIZED,
    DISABLED,
    REVOKED,
    AuthLink,
    Card,
    Event,
    Overdue,
    Payment,
    PaymentLink,
    Refund,
    Relation,
    Template,
)
from . import outbox, registry
from .db import ONE_ROW, LeanStatement, insert_for, storable
from .schema import metadata
from .webizpay_tables import (
    WEBIZPAY_TABLES,
    merchant_rows,
    webizpay_auth_links,
    webizpay_cards,
    webizpay_payment_links,
    webizpay_payments,
    webizpay_refunds,
    webizpay_relations,
    webizpay_templates,
)

log = logging.getLogger("wxpartner.webizpay")
TOKEN_LENGTH = 64  # the link tables' token columns


def _row(row: sa.Row[Any] | None) -> dict[str, Any] | None:
    return dict(row._mapping) if row is not None else None


# Card reads, compiled once per dialect and run on the driver cursor (db.LeanStatement). The columns
# are str/int/float, which every driver returns as they are.
_CARD_SELECT = sa.select(webizpay_cards).where(webizpay_cards.c.card_no == sa.bindparam("card_no"))
_CARD = LeanStatement(_CARD_SELECT, tuple(_CARD_SELECT.selected_columns.keys()))
# A card by the merchant's own number (unique per service provider and sub-merchant).
_BY_OUT_NO = (
    webizpay_cards.c.sp_mchid == sa.bindparam("sp_mchid"),
    webizpay_cards.c.sub_mchid == sa.bindparam("sub_mchid"),
    webizpay_cards.c.out_card_no == sa.bindparam("out_card_no"),
)
# The issue (W3) also reads the card template in the same statement (outer-joined by its unique key).
_TEMPLATE_COLUMNS = {
    "wx_template_id": webizpay_templates.c.card_template_id,
    "wx_template_card_rule": webizpay_templates.c.card_rule,
    "wx_template_refund_rule": webizpay_templates.c.refund_rule,
}


def _card_and_bound(*card_is: sa.ColumnElement[bool], with_template: bool = False) -> LeanStatement:
    """The card queries (W4 by card_no, W5 by out_card_no), cancel (W6), payment link (W7) and issue
    (W3, ``with_template``): the card and whether sub_mchid is sp_mchid's sub-merchant in ONE statement
    (one round trip on PostgreSQL): exactly one row, from the one-row subquery outer-joined to the card
    (its columns NULL when there is no such card), with the relation as an EXISTS column."""
    columns: list[Any] = [
        webizpay_cards,
        sa.exists()
        .where(
            registry.relation_clause(
                sa.bindparam("sp_mchid"), sa.bindparam("sub_mchid"), RelationKind.SUB_MERCHANT.value
            )
        )
        .label("wx_bound"),
    ]
    joined = ONE_ROW.outerjoin(webizpay_cards, sa.and_(*card_is))
    if with_template:
        columns += [column.label(name) for name, column in _TEMPLATE_COLUMNS.items()]
        joined = joined.outerjoin(
            webizpay_templates,
            sa.and_(
                webizpay_templates.c.sp_mchid == sa.bindparam("sp_mchid"),
                webizpay_templates.c.card_template_id == sa.bindparam("card_template_id"),
            ),
        )
    select = sa.select(*columns).select_from(joined)
    return LeanStatement(select, tuple(select.selected_columns.keys()))


_CARD_AND_BOUND = _card_and_bound(webizpay_cards.c.card_no == sa.bindparam("card_no"))
_OUT_CARD_AND_BOUND = _card_and_bound(*_BY_OUT_NO)
# What a row of either holds, in order: Card's fields, then wx_bound (WebizpayRepo._checking_bound
# builds the Card by position; tests/test_webizpay_card_read.py holds the two orders together).
CARD_ROW_FIELDS = (*(f.name for f in fields(Card)), "wx_bound")
# The issue (W3): whether sub_mchid is sp_mchid's sub-merchant, the card already issued under
# out_card_no (the idempotent replay) and the card template, in ONE statement.
_ISSUE_READ = _card_and_bound(*_BY_OUT_NO, with_template=True)
# A card by out_card_no alone (the issue's second look after it lost a race on out_card_no).
_CARD_BY_OUT_NO = LeanStatement(
    sa.select(webizpay_cards).where(*_BY_OUT_NO),
    tuple(webizpay_cards.c.keys()),
)
_TEMPLATE = LeanStatement(
    sa.select(
        webizpay_templates.c.card_template_id,
        webizpay_templates.c.card_rule,
        webizpay_templates.c.refund_rule,
    ).where(
        webizpay_templates.c.sp_mchid == sa.bindparam("sp_mchid"),
        webizpay_templates.c.card_template_id == sa.bindparam("card_template_id"),
    )
)
_RELATION_FOR_UPDATE = LeanStatement(
    sa.select(webizpay_relations)
    .where(webizpay_relations.c.employee_id == sa.bindparam("employee_id"))
    .with_for_update(),
    tuple(webizpay_relations.c.keys()),
)
# W1 (start authorization), W2, the payment URL and revoke read a relation on every call; W1 writes its
# link. The same SQL the conn.execute versions sent, compiled once, run on the driver cursor.
_RELATION = LeanStatement(
    sa.select(webizpay_relations).where(webizpay_relations.c.employee_id == sa.bindparam("employee_id")),
    tuple(webizpay_relations.c.keys()),
)
_AUTHORIZED_RELATION = LeanStatement(
    sa.select(webizpay_relations).where(
        webizpay_relations.c.sp_mchid == sa.bindparam("sp_mchid"),
        webizpay_relations.c.sub_mchid == sa.bindparam("sub_mchid"),
        webizpay_relations.c.user_id == sa.bindparam("user_id"),
        webizpay_relations.c.state == AUTHORIZED,
    ),
    tuple(webizpay_relations.c.keys()),
)
_INSERT_AUTH_LINK = LeanStatement(
    webizpay_auth_links.insert().values({c: sa.bindparam(c.name) for c in webizpay_auth_links.c})
)
# W2 (authorization state) reads the user's relations; W7 (payment link) writes its link.
_RELATIONS_OF = LeanStatement(
    sa.select(webizpay_relations)
    .where(
        webizpay_relations.c.sp_mchid == sa.bindparam("sp_mchid"),
        webizpay_relations.c.sub_mchid == sa.bindparam("sub_mchid"),
        webizpay_relations.c.user_id == sa.bindparam("user_id"),
    )
    .order_by(webizpay_relations.c.authorized_at, webizpay_relations.c.employee_id),
    tuple(webizpay_relations.c.keys()),
)
_INSERT_PAYMENT_LINK = LeanStatement(
    webizpay_payment_links.insert().values({c: sa.bindparam(c.name) for c in webizpay_payment_links.c})
)
# The issue (W3) and cancel (W6) writes, the same way. The insert is dialect-specific (ON CONFLICT), so
# it is built once per dialect; RETURNING tells applied from skipped (rowcount is not reliable on every
# driver), exactly as the conn.execute versions did.
_CARD_COLUMNS = tuple(webizpay_cards.c.keys())
_INSERT_CARD = LeanStatement(
    lambda dialect: (
        insert_for(dialect, webizpay_cards)
        .values({name: sa.bindparam(name) for name in _CARD_COLUMNS})
        .on_conflict_do_nothing()
        .returning(webizpay_cards.c.card_no)
    )
)
_DISABLE_CARD = LeanStatement(
    webizpay_cards.update()
    .where(webizpay_cards.c.card_no == sa.bindparam("card_no"), webizpay_cards.c.state == ACTIVE)
    .values(state=DISABLED, disabled_at=sa.bindparam("at"), reason=sa.bindparam("why"))
    .returning(webizpay_cards.c.card_no)
)


def _by(table: sa.Table, *names: str, for_update: bool = False) -> LeanStatement:
    """The rows of ``table`` whose columns ``names`` equal the bound values of the same names."""
    stmt = sa.select(table).where(*(table.c[name] == sa.bindparam(name) for name in names))
    return LeanStatement(stmt.with_for_update() if for_update else stmt, tuple(table.c.keys()))


def _insert_of(table: sa.Table, entity: type) -> sa.Insert:
    """An insert of every field of the dataclass ``entity`` (``asdict`` of it binds them)."""
    return table.insert().values({f.name: sa.bindparam(f.name) for f in fields(entity)})


# What the employee's pages (W1/W7 links), the sandbox's consents, payments and refunds and the expiry
# sweep run: compiled once per dialect (db.LeanStatement), the SQL the conn.execute versions sent.
# Writes whose caller counted rows say RETURNING and are applied iff a row comes back.
_AUTH_LINK = _by(webizpay_auth_links, "token")
_CONSUME_AUTH_LINK = LeanStatement(
    webizpay_auth_links.update()
    .where(webizpay_auth_links.c.token == sa.bindparam("token"), webizpay_auth_links.c.consumed_at.is_(None))
    .values(consumed_at=sa.bindparam("at"), employee_id=sa.bindparam("employee_id"))
    .returning(webizpay_auth_links.c.token)
)
_INSERT_RELATION = LeanStatement(
    lambda dialect: (
        insert_for(dialect, webizpay_relations)
        .values({f.name: sa.bindparam(f.name) for f in fields(Relation)})
        .on_conflict_do_nothing()
        .returning(webizpay_relations.c.employee_id)
    )
)
_PAYMENT_LINK = _by(webizpay_payment_links, "token")
_TEMPLATE_RULES: dict[str, Any] = {
    "card_rule": sa.bindparam("t_card_rule"),
    "refund_rule": sa.bindparam("t_refund_rule"),
}
_PUT_TEMPLATE = LeanStatement(
    lambda dialect: (
        insert_for(dialect, webizpay_templates)
        .values(
            sp_mchid=sa.bindparam("t_sp"),
            card_template_id=sa.bindparam("t_id"),
            created_at=sa.bindparam("t_at"),
            **_TEMPLATE_RULES,
        )
        .on_conflict_do_update(index_elements=["sp_mchid", "card_template_id"], set_=_TEMPLATE_RULES)
    )
)


def _spend(single: bool) -> LeanStatement:
    t = webizpay_cards
    amount = sa.bindparam("amount", type_=sa.BigInteger)
    cond = [t.c.card_no == sa.bindparam("card_no"), t.c.state == ACTIVE, t.c.remain_amount >= amount]
    if single:
        cond.append(t.c.transaction_id.is_(None))
    return LeanStatement(
        t.update()
        .where(*cond)
        .values(
            remain_amount=t.c.remain_amount - amount,
            used_at=sa.bindparam("at"),
            transaction_id=sa.bindparam("txid"),
        )
        .returning(t.c.card_no)
    )


_SPEND = _spend(False)
_SPEND_SINGLE = _spend(True)
_INSERT_PAYMENT = LeanStatement(_insert_of(webizpay_payments, Payment))
_PAYMENT = _by(webizpay_payments, "transaction_id")
_PAYMENT_FOR_UPDATE = _by(webizpay_payments, "transaction_id", for_update=True)
_REFUND_BY_OUT_NO = _by(webizpay_refunds, "transaction_id", "out_refund_no")
_INSERT_REFUND = LeanStatement(
    lambda dialect: (
        insert_for(dialect, webizpay_refunds)
        .values({f.name: sa.bindparam(f.name) for f in fields(Refund)})
        .on_conflict_do_nothing(index_elements=["transaction_id", "out_refund_no"])
        .returning(webizpay_refunds.c.refund_id)
    )
)
_BUMP_REFUNDED = LeanStatement(
    webizpay_payments.update()
    .where(
        webizpay_payments.c.transaction_id == sa.bindparam("transaction_id"),
        webizpay_payments.c.amount - webizpay_payments.c.refunded_amount
        >= sa.bindparam("amount", type_=sa.BigInteger),
    )
    .values(refunded_amount=webizpay_payments.c.refunded_amount + sa.bindparam("amount", type_=sa.BigInteger))
    .returning(webizpay_payments.c.transaction_id)
)
_GIVE_BACK = LeanStatement(
    webizpay_cards.update()
    .where(webizpay_cards.c.card_no == sa.bindparam("card_no"))
    .values(remain_amount=webizpay_cards.c.remain_amount + sa.bindparam("amount", type_=sa.BigInteger))
)
# The expiry sweep's batch: the ``take`` most overdue ACTIVE cards, sorted by card_no.
_OVERDUE = (
    sa.select(webizpay_cards.c.card_no)
    .where(webizpay_cards.c.state == ACTIVE, webizpay_cards.c.end_at < sa.bindparam("now"))
    .order_by(webizpay_cards.c.end_at)
    .limit(sa.bindparam("take", type_=sa.BigInteger))
    .scalar_subquery()
)
_DUE_CARDS = LeanStatement(
    sa.select(webizpay_cards)
    .where(webizpay_cards.c.card_no.in_(_OVERDUE))
    .order_by(webizpay_cards.c.card_no),
    tuple(webizpay_cards.c.keys()),
)
# The sweep's write: that batch disabled at each card's own end time, in one statement. Its row locks
# (PostgreSQL) are taken by the sorted locking subquery, in card_no order: the order in which every
# writer of several cards takes them (due_cards), so a sweep cannot deadlock with a revoke. A card
# another writer changed meanwhile is read again once its lock is free, and left out if not ACTIVE.
_LOCKED_OVERDUE = (
    sa.select(webizpay_cards.c.card_no)
    .where(webizpay_cards.c.card_no.in_(_OVERDUE), webizpay_cards.c.state == ACTIVE)
    .order_by(webizpay_cards.c.card_no)
    .with_for_update()
    .scalar_subquery()
)


def _disable_overdue(dialect: str) -> sa.Update:
    # SQLite's writer is alone in its transaction: the batch itself, looked up by card_no. Its state
    # checked again there made SQLite scan every ACTIVE card by the state index (0.8-1.5 s for 2,000
    # cards among 300,000). On PostgreSQL the locking subquery, and the state checked again as each
    # row is updated (a row changed since the statement's snapshot is re-read).
    t = webizpay_cards
    if dialect == "postgresql":
        cond = [t.c.card_no.in_(_LOCKED_OVERDUE), t.c.state == ACTIVE]
    else:
        cond = [t.c.card_no.in_(_OVERDUE)]
    return (
        t.update()
        .where(*cond)
        .values(state=DISABLED, disabled_at=t.c.end_at, reason=sa.bindparam("why"))
        .returning(t.c.card_no, t.c.sp_mchid, t.c.sub_mchid, t.c.employee_id, t.c.end_at)
    )


_DISABLE_OVERDUE = LeanStatement(_disable_overdue)

# W8 (revoke): the relation's transition (RETURNING tells applied from not: rowcount is not reliable
# on every driver) and the employee's ACTIVE cards. W3 with an available-merchant range: whether the
# range is the provider's (built when first needed: the ranges family owns the table).
_REVOKE_RELATION = LeanStatement(
    webizpay_relations.update()
    .where(
        webizpay_relations.c.employee_id == sa.bindparam("employee_id"),
        webizpay_relations.c.state == AUTHORIZED,
    )
    .values(state=REVOKED, revoked_at=sa.bindparam("at"), reason=sa.bindparam("why"))
    .returning(webizpay_relations.c.employee_id)
)
_ACTIVE_CARDS_OF = LeanStatement(
    sa.select(webizpay_cards)
    .where(webizpay_cards.c.employee_id == sa.bindparam("employee_id"), webizpay_cards.c.state == ACTIVE)
    .order_by(webizpay_cards.c.card_no),
    tuple(webizpay_cards.c.keys()),
)
_RANGE_KNOWN: list[LeanStatement] = []


def _range_known(ranges: sa.Table) -> LeanStatement:
    if not _RANGE_KNOWN:
        _RANGE_KNOWN.append(
            LeanStatement(
                sa.select(sa.literal(1)).where(
                    ranges.c.range_id == sa.bindparam("range_id"),
                    ranges.c.sp_mchid == sa.bindparam("sp_mchid"),
                )
            )
        )
    return _RANGE_KNOWN[0]


_SUB_BOUND = sa.exists().where(
    registry.relation_clause(
        sa.bindparam("sp_mchid"), sa.bindparam("sub_mchid"), RelationKind.SUB_MERCHANT.value
    )
)


def _bound(name: str) -> sa.BindParameter[Any]:
    """The card column ``name``'s value, bound typed (a statement's SELECT list has no column to type it)."""
    return sa.bindparam(name, type_=webizpay_cards.c[name].type)


def _issue_at_once(ranges: sa.Table | None) -> sa.Executable:
    """W3's usual case in one statement (PostgreSQL): the card inserted, with the rules of the service
    provider's stored template, else the built-in one's (``builtin_*``), iff sub_mchid is sp_mchid's
    sub-merchant, the employee's relation is sp/sub's and in ``relation_state`` (share-locked until the
    statement commits: a revoke committing meanwhile is seen, one coming later waits and then finds
    the card), there is a template, the ``avail_mch_range_id`` (when given, with ``ranges``) is the
    provider's, and out_card_no is new (ON CONFLICT); read back whole.

    FOR SHARE, not FOR UPDATE: a revoke's UPDATE of the row waits for every issue holding it either
    way, but issues to one employee no longer wait for one another (they write nothing to the row, and
    out_card_no is kept unique by its index). With FOR UPDATE every issue to one employee queued on
    the row (PostgreSQL's ``Lock/tuple`` and ``Lock/transactionid`` waits): the benchmark issues all
    its cards to one employee, and its workers idled 42–45 % of the time at peak (session 26)."""
    from sqlalchemy.dialects import postgresql

    c, r, t = webizpay_cards, webizpay_relations, webizpay_templates
    rules = {
        name: sa.func.coalesce(t.c[name], sa.bindparam(f"builtin_{name}", type_=c.c[name].type))
        for name in ("card_rule", "refund_rule")
    }
    values = {name: rules.get(name, _bound(name)) for name in _CARD_COLUMNS}
    template = sa.and_(
        t.c.sp_mchid == sa.bindparam("sp_mchid"), t.c.card_template_id == _bound("card_template_id")
    )
    where = [
        r.c.employee_id == sa.bindparam("employee_id"),
        r.c.sp_mchid == sa.bindparam("sp_mchid"),
        r.c.sub_mchid == sa.bindparam("sub_mchid"),
        r.c.state == sa.bindparam("relation_state"),
        # a replay goes on to the read without locking the relation (ON CONFLICT is for a race)
        ~sa.exists().where(*_BY_OUT_NO),
        _SUB_BOUND,
        rules["card_rule"].is_not(None),
    ]
    if ranges is not None:
        where.append(
            sa.exists().where(
                ranges.c.range_id == sa.bindparam("avail_mch_range_id"),
                ranges.c.sp_mchid == sa.bindparam("sp_mchid"),
            )
        )
    source = (
        sa.select(*values.values())
        .select_from(r.outerjoin(t, template))
        .where(*where)
        .with_for_update(of=r, read=True)  # FOR SHARE OF webizpay_relations
    )
    return postgresql.insert(c).from_select(list(values), source).on_conflict_do_nothing().returning(*c.c)


# Without a range, and (the ranges family owns the table) with one; built when first needed, on
# PostgreSQL only: building it imports SQLAlchemy's PostgreSQL dialect, ≈ 35 ms of a SQLite serve's start.
_ISSUE_AT_ONCE: dict[bool, LeanStatement] = {}


def _cancel_at_once(notify: bool) -> LeanStatement:
    """W6's usual case in one statement (PostgreSQL): the card named by card_no, of this employee, sp
    and sub, ACTIVE and not yet due (its end at or after ``at``), DISABLED at ``at`` for ``why``, iff
    sub_mchid is sp_mchid's sub-merchant; ``notify``: with its callback (bound ``n_*``, see
    ``outbox.insert_per_row``) inserted by the same statement, for the card it disabled only."""
    c = webizpay_cards
    disabled = (
        c.update()
        .where(
            c.c.card_no == sa.bindparam("card_no"),
            c.c.employee_id == sa.bindparam("employee_id"),
            c.c.sp_mchid == sa.bindparam("sp_mchid"),
            c.c.sub_mchid == sa.bindparam("sub_mchid"),
            c.c.state == ACTIVE,
            c.c.end_at >= sa.bindparam("at"),
            _SUB_BOUND,
        )
        .values(state=DISABLED, disabled_at=sa.bindparam("at"), reason=sa.bindparam("why"))
        .returning(c.c.card_no)
    )
    if not notify:
        return LeanStatement(disabled)
    done = disabled.cte("disabled")
    notified = outbox.insert_per_row(done, "n_").cte("notified")
    return LeanStatement(sa.select(done.c.card_no).add_cte(notified))


_CANCEL_AT_ONCE = {notify: _cancel_at_once(notify) for notify in (False, True)}


class WebizpayRepo:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        # sub_bound answers already read in this block's statements (card_checking_bound).
        self._bound: dict[tuple[str, str], bool] = {}
        # Answers read ahead by prefetch_issue, each given once (a second call reads again).
        self._out_cards: dict[tuple[str, str, str], Card | None] = {}
        self._templates: dict[tuple[str, str], Template | None] = {}

    # ---- merchants --------------------------------------------------------------------------------

    def sub_bound(self, sp_mchid: str, sub_mchid: str) -> bool:
        known = self._bound.get((sp_mchid, sub_mchid))
        if known is not None:
            return known
        return registry.is_related(self.conn, sp_mchid, sub_mchid, RelationKind.SUB_MERCHANT)

    # ---- authorization links and relations --------------------------------------------------------

    def add_auth_link(self, link: AuthLink) -> None:
        _INSERT_AUTH_LINK.rows(self.conn, asdict(link))

    def auth_link(self, token: str) -> AuthLink | None:
        if not storable(token, TOKEN_LENGTH):  # typed into a page: not a token we handed out
            return None
        m = _AUTH_LINK.first_mapping(self.conn, {"token": token})
        return AuthLink(**m) if m else None

    def consume_auth_link(self, token: str, employee_id: str, now: float) -> bool:
        params = {"token": token, "employee_id": employee_id, "at": now}
        return _CONSUME_AUTH_LINK.first(self.conn, params) is not None

    def relation(self, employee_id: str) -> Relation | None:
        m = _RELATION.first_mapping(self.conn, {"employee_id": employee_id})
        return Relation(**m) if m else None

    def relation_for_update(self, employee_id: str) -> Relation | None:
        """The relation, row-locked until commit (PostgreSQL; SQLite writers are serialized anyway):
        a revoke committing meanwhile is seen, and a revoke that comes later waits for this issue and
        then finds (and disables) its card."""
        m = _RELATION_FOR_UPDATE.first_mapping(self.conn, {"employee_id": employee_id})
        return Relation(**m) if m else None

    def relations_of(self, sp_mchid: str, sub_mchid: str, user_id: str) -> list[Relation]:
        params = {"sp_mchid": sp_mchid, "sub_mchid": sub_mchid, "user_id": user_id}
        keys = _RELATIONS_OF.keys
        return [Relation(**dict(zip(keys, r, strict=True))) for r in _RELATIONS_OF.rows(self.conn, params)]

    def authorized_relation(self, sp_mchid: str, sub_mchid: str, user_id: str) -> Relation | None:
        params = {"sp_mchid": sp_mchid, "sub_mchid": sub_mchid, "user_id": user_id}
        m = _AUTHORIZED_RELATION.first_mapping(self.conn, params)
        return Relation(**m) if m else None

    def insert_relation(self, relation: Relation) -> bool:
        return _INSERT_RELATION.first(self.conn, asdict(relation)) is not None

    def revoke_relation(self, employee_id: str, now: float, reason: str) -> bool:
        params = {"employee_id": employee_id, "at": now, "why": reason}
        return _REVOKE_RELATION.first(self.conn, params) is not None

    # ---- templates and cards ----------------------------------------------------------------------

    def template(self, sp_mchid: str, card_template_id: str) -> Template | None:
        if (sp_mchid, card_template_id) in self._templates:
            return self._templates.pop((sp_mchid, card_template_id))
        row = _TEMPLATE.first(self.conn, {"sp_mchid": sp_mchid, "card_template_id": card_template_id})
        return Template(row[0], row[1], row[2]) if row else None

    def put_template(self, sp_mchid: str, template: Template, now: float) -> None:
        params = {
            "t_sp": sp_mchid,
            "t_id": template.card_template_id,
            "t_at": now,
            "t_card_rule": template.card_rule,
            "t_refund_rule": template.refund_rule,
        }
        _PUT_TEMPLATE.rows(self.conn, params)

    def templates_of(self, sp_mchid: str | None = None) -> list[dict[str, Any]]:
        t = webizpay_templates
        stmt = sa.select(t.c.sp_mchid, t.c.card_template_id, t.c.card_rule, t.c.refund_rule)
        if sp_mchid is not None:
            stmt = stmt.where(t.c.sp_mchid == sp_mchid)
        return [
            dict(r._mapping) for r in self.conn.execute(stmt.order_by(t.c.sp_mchid, t.c.card_template_id))
        ]

    def range_known(self, sp_mchid: str, range_id: str) -> bool | None:
        """None while no range table is installed (the ranges family, W13–W17, owns it)."""
        ranges = metadata.tables.get("webizpay_mch_ranges")
        if ranges is None:
            return None
        params = {"range_id": range_id, "sp_mchid": sp_mchid}
        return _range_known(ranges).first(self.conn, params) is not None

    def card(self, card_no: str) -> Card | None:
        m = _CARD.first_mapping(self.conn, {"card_no": card_no})
        return Card(**m) if m else None

    def card_checking_bound(self, sp_mchid: str, sub_mchid: str, card_no: str) -> Card | None:
        """``card(card_no)``, reading ``sub_bound(sp_mchid, sub_mchid)`` in the same statement (the
        answer is kept for this block, so the merchant check that follows costs no statement)."""
        return self._checking_bound(_CARD_AND_BOUND, sp_mchid, sub_mchid, {"card_no": card_no})

    def card_by_out_no_checking_bound(self, sp_mchid: str, sub_mchid: str, out_card_no: str) -> Card | None:
        """``card_by_out_no``, reading ``sub_bound`` in the same statement, as ``card_checking_bound``."""
        return self._checking_bound(_OUT_CARD_AND_BOUND, sp_mchid, sub_mchid, {"out_card_no": out_card_no})

    def _checking_bound(
        self, statement: LeanStatement, sp_mchid: str, sub_mchid: str, card_is: dict[str, str]
    ) -> Card | None:
        row = statement.first(self.conn, {"sp_mchid": sp_mchid, "sub_mchid": sub_mchid, **card_is})
        assert row is not None  # the one-row subquery: always a row
        self._bound[(sp_mchid, sub_mchid)] = bool(row[-1])  # wx_bound, the last column
        # The card's columns come first, in the order of Card's fields (CARD_ROW_FIELDS): the Card is
        # built by position, ≈ 7 µs a read less than from a mapping by keyword (21 frozen fields).
        return Card(*row[:-1]) if row[0] is not None else None

    def prefetch_issue(self, sp_mchid: str, sub_mchid: str, out_card_no: str, card_template_id: str) -> None:
        """The issue's first reads in one statement: ``sub_bound(sp_mchid, sub_mchid)`` (kept for the
        block, as ``card_checking_bound`` keeps it), and the answers of the next ``card_by_out_no`` and
        ``template`` calls for these keys (each given once: a later call reads again)."""
        params = {
            "sp_mchid": sp_mchid,
            "sub_mchid": sub_mchid,
            "out_card_no": out_card_no,
            "card_template_id": card_template_id,
        }
        m = _ISSUE_READ.first_mapping(self.conn, params)
        assert m is not None  # the one-row subquery: always a row
        self._bound[(sp_mchid, sub_mchid)] = bool(m.pop("wx_bound"))
        template_id, card_rule, refund_rule = (m.pop(name) for name in _TEMPLATE_COLUMNS)
        self._templates[(sp_mchid, card_template_id)] = (
            Template(template_id, card_rule, refund_rule) if template_id is not None else None
        )
        self._out_cards[(sp_mchid, sub_mchid, out_card_no)] = Card(**m) if m["card_no"] is not None else None

    def card_by_out_no(self, sp_mchid: str, sub_mchid: str, out_card_no: str) -> Card | None:
        if (sp_mchid, sub_mchid, out_card_no) in self._out_cards:
            return self._out_cards.pop((sp_mchid, sub_mchid, out_card_no))
        params = {"sp_mchid": sp_mchid, "sub_mchid": sub_mchid, "out_card_no": out_card_no}
        m = _CARD_BY_OUT_NO.first_mapping(self.conn, params)
        return Card(**m) if m else None

    def insert_card(self, card: Card) -> bool:
        params = {name: getattr(card, name) for name in _CARD_COLUMNS}
        return _INSERT_CARD.first(self.conn, params) is not None

    def issue_card(self, card: Card, builtin: Template | None, relation_state: str) -> Card | None:
        """PostgreSQL: ``card`` inserted in one statement (``_issue_at_once``), with the rules of the
        service provider's stored template ``card.card_template_id``, else ``builtin``'s (``card``'s
        own rules are not read), iff sub_mchid is sp_mchid's sub-merchant, the employee's relation is
        theirs and in ``relation_state``, there is a template, ``card.avail_mch_range_id`` (if any) is
        the provider's and out_card_no is new. The card as stored, or None: nothing written (and always
        on SQLite, no statement run), for the caller to go statement by statement."""
        if self.conn.dialect.name != "postgresql":
            return None
        with_range = card.avail_mch_range_id is not None
        statement = _ISSUE_AT_ONCE.get(with_range)
        if statement is None:
            # None: no range given, or the ranges family not installed (any range passes)
            ranges = metadata.tables.get("webizpay_mch_ranges") if with_range else None
            statement = _ISSUE_AT_ONCE[with_range] = LeanStatement(_issue_at_once(ranges), _CARD_COLUMNS)
        params: dict[str, Any] = {name: getattr(card, name) for name in _CARD_COLUMNS}
        params.update(
            relation_state=relation_state,
            builtin_card_rule=builtin.card_rule if builtin else None,
            builtin_refund_rule=builtin.refund_rule if builtin else None,
        )
        m = statement.first_mapping(self.conn, params)
        return Card(**m) if m else None

    def cancel_card(
        self,
        card_no: str,
        employee_id: str,
        sp_mchid: str,
        sub_mchid: str,
        at: float,
        reason: str,
        event: Event | None,
    ) -> bool:
        """PostgreSQL: the card disabled in one statement (``_cancel_at_once``), with ``event``
        enqueued by it, iff it is this employee's under sp/sub, ACTIVE, not due at ``at``, and
        sub_mchid is sp_mchid's sub-merchant. False: nothing written (and always on SQLite, no
        statement run), for the caller to go statement by statement."""
        if self.conn.dialect.name != "postgresql":
            return False
        params: dict[str, Any] = {
            "card_no": card_no,
            "employee_id": employee_id,
            "sp_mchid": sp_mchid,
            "sub_mchid": sub_mchid,
            "at": at,
            "why": reason,
        }
        if event is not None:
            values = outbox.notification(
                mchid=event.mchid,
                event_type=event.event_type,
                summary=event.summary,
                resource=event.resource,
                now=at,
            )
            params.update({f"n_{name}": value for name, value in values.items()})
        return _CANCEL_AT_ONCE[event is not None].first(self.conn, params) is not None

    def active_cards_of(self, employee_id: str) -> list[Card]:
        """In card_no order, the one order in which every writer of several cards locks them (due_cards)."""
        keys = _ACTIVE_CARDS_OF.keys
        rows = _ACTIVE_CARDS_OF.rows(self.conn, {"employee_id": employee_id})
        return [Card(**dict(zip(keys, r, strict=True))) for r in rows]

    def cards_of(self, employee_id: str) -> list[Card]:
        t = webizpay_cards
        rows = self.conn.execute(sa.select(t).where(t.c.employee_id == employee_id).order_by(t.c.begin_at))
        return [Card(**dict(r._mapping)) for r in rows]

    def disable_card(self, card_no: str, at: float, reason: str) -> bool:
        """ACTIVE -> DISABLED, atomically (WHERE state = ACTIVE); False when it was not ACTIVE."""
        params = {"card_no": card_no, "at": at, "why": reason}
        return _DISABLE_CARD.first(self.conn, params) is not None

    def due_cards(self, now: float, limit: int) -> list[Card]:
        """The ``limit`` most overdue ACTIVE cards, in card_no order: the order a revoke disables an
        employee's cards in (active_cards_of). Two transactions that lock several cards in different
        orders can deadlock (PostgreSQL then aborts one: a sweep racing a revoke on another host made
        the revoke a 500), so every writer of several cards takes them in this one order."""
        keys = _DUE_CARDS.keys
        rows = _DUE_CARDS.rows(self.conn, {"now": now, "take": limit})
        return [Card(**dict(zip(keys, r, strict=True))) for r in rows]

    def disable_overdue(self, now: float, limit: int, reason: str) -> list[Overdue]:
        """The ``due_cards`` batch disabled at each card's end time with ``reason``; the cards it
        changed, in card_no order."""
        rows = _DISABLE_OVERDUE.rows(self.conn, {"now": now, "take": limit, "why": reason})
        return sorted(Overdue(*row) for row in rows)  # RETURNING's order is the statement's own

    # ---- the employee's side -----------------------------------------------------------------------

    def add_payment_link(self, link: PaymentLink) -> None:
        _INSERT_PAYMENT_LINK.rows(self.conn, asdict(link))

    def payment_link(self, token: str) -> PaymentLink | None:
        if not storable(token, TOKEN_LENGTH):
            return None
        m = _PAYMENT_LINK.first_mapping(self.conn, {"token": token})
        return PaymentLink(**m) if m else None

    def spend(self, card_no: str, amount: int, at: float, transaction_id: str, single: bool) -> bool:
        params = {"card_no": card_no, "amount": amount, "at": at, "txid": transaction_id}
        return (_SPEND_SINGLE if single else _SPEND).first(self.conn, params) is not None

    def insert_payment(self, payment: Payment) -> None:
        _INSERT_PAYMENT.rows(self.conn, asdict(payment))

    def payment(self, transaction_id: str) -> Payment | None:
        m = _PAYMENT.first_mapping(self.conn, {"transaction_id": transaction_id})
        return Payment(**m) if m else None

    def payment_for_update(self, transaction_id: str) -> Payment | None:
        """The payment, row-locked until commit (PostgreSQL; SQLite writers are serialized anyway):
        refunds of one payment run one after the other, each seeing the ones committed before it."""
        m = _PAYMENT_FOR_UPDATE.first_mapping(self.conn, {"transaction_id": transaction_id})
        return Payment(**m) if m else None

    def payment_by_out_trade_no(self, card_no: str, out_trade_no: str) -> Payment | None:
        """The card's payment with ``out_trade_no`` (a scenario's spend loaded again finds it)."""
        t = webizpay_payments
        stmt = sa.select(t).where(t.c.card_no == card_no, t.c.out_trade_no == out_trade_no)
        row = _row(self.conn.execute(stmt).first())
        return Payment(**row) if row else None

    def payments_of(self, card_no: str) -> list[Payment]:
        t = webizpay_payments
        rows = self.conn.execute(sa.select(t).where(t.c.card_no == card_no).order_by(t.c.paid_at))
        return [Payment(**dict(r._mapping)) for r in rows]

    def refund_by_out_no(self, transaction_id: str, out_refund_no: str) -> Refund | None:
        params = {"transaction_id": transaction_id, "out_refund_no": out_refund_no}
        m = _REFUND_BY_OUT_NO.first_mapping(self.conn, params)
        return Refund(**m) if m else None

    def add_refund(self, refund: Refund, give_back: bool, card_no: str) -> bool | None:
        """Record ``refund`` and take its amount off the payment's refundable rest: True when done,
        False when the rest is too small now, None when (transaction_id, out_refund_no) is taken (a
        concurrent refund with the same number committed first; on PostgreSQL the insert waits for it).
        The refund row goes in first, ON CONFLICT DO NOTHING, so two processes racing the same
        out_refund_no never both take the amount (and the loser gets no unique-key error)."""
        if _INSERT_REFUND.first(self.conn, asdict(refund)) is None:
            return None
        bump = {"transaction_id": refund.transaction_id, "amount": refund.amount}
        if _BUMP_REFUNDED.first(self.conn, bump) is None:
            return False  # the caller refuses, and its transaction takes the refund row back
        if give_back:
            _GIVE_BACK.rows(self.conn, {"card_no": card_no, "amount": refund.amount})
        return True

    # ---- the scenario export, and a scenario's recorded payments ------------------------------------

    def _any(self, key: sa.Column[Any]) -> bool:
        return self.conn.execute(sa.select(key).limit(1)).first() is not None

    def _streamed(self, stmt: sa.Select[Any], batch: int) -> Iterator[dict[str, Any]]:
        """The rows of ``stmt`` as mappings, ``batch`` at a time as the caller goes (a server-side cursor
        on PostgreSQL): the scenario export streams them."""
        for row in self.conn.execution_options(yield_per=batch).execute(stmt):
            yield dict(row._mapping)

    def any_relation(self) -> bool:
        return self._any(webizpay_relations.c.employee_id)

    def export_relations(self, batch: int = 1000) -> Iterator[Relation]:
        """Every relation, oldest first, ``batch`` rows at a time."""
        t = webizpay_relations
        for m in self._streamed(sa.select(t).order_by(t.c.authorized_at, t.c.employee_id), batch):
            yield Relation(**m)

    def any_card(self) -> bool:
        return self._any(webizpay_cards.c.card_no)

    def export_cards(self, batch: int = 1000) -> Iterator[tuple[Card, str | None]]:
        """Every card, oldest first, with the user_id of its relation (None without one)."""
        c, r = webizpay_cards, webizpay_relations
        stmt = (
            sa.select(c, r.c.user_id.label("wx_user_id"))
            .select_from(c.outerjoin(r, r.c.employee_id == c.c.employee_id))
            .order_by(c.c.begin_at, c.c.card_no)
        )
        for m in self._streamed(stmt, batch):
            user_id = m.pop("wx_user_id")
            yield Card(**m), user_id

    def any_payment(self) -> bool:
        return self._any(webizpay_payments.c.transaction_id)

    def export_payments(self, batch: int = 1000) -> Iterator[tuple[Payment, str | None]]:
        """Every payment, oldest first, with its card's out_card_no (None without the card)."""
        p, c = webizpay_payments, webizpay_cards
        stmt = (
            sa.select(p, c.c.out_card_no.label("wx_out_card_no"))
            .select_from(p.outerjoin(c, c.c.card_no == p.c.card_no))
            .order_by(p.c.paid_at, p.c.transaction_id)
        )
        for m in self._streamed(stmt, batch):
            out_card_no = m.pop("wx_out_card_no")
            yield Payment(**m), out_card_no

    def any_refund(self) -> bool:
        return self._any(webizpay_refunds.c.refund_id)

    def export_refunds(self, batch: int = 1000) -> Iterator[Refund]:
        """Every refund, oldest first."""
        t = webizpay_refunds
        for m in self._streamed(sa.select(t).order_by(t.c.succeeded_at, t.c.refund_id), batch):
            yield Refund(**m)

    def refund_by_id(self, refund_id: str) -> Refund | None:
        t = webizpay_refunds
        row = _row(self.conn.execute(sa.select(t).where(t.c.refund_id == refund_id)).first())
        return Refund(**row) if row else None

    def insert_refund(self, refund: Refund) -> None:
        """A scenario's refund written as it was: its payment's refunded_amount and card are the
        scenario's (as the payment's, see insert_payment), nothing is taken off or given back."""
        self.conn.execute(webizpay_refunds.insert().values(**asdict(refund)))

    # ---- events ----------------------------------------------------------------------------------

    def emit(self, event: Event, now: float) -> str | None:
        """Enqueue a callback in this transaction: it exists iff the change commits."""
        return outbox.enqueue(
            self.conn,
            mchid=event.mchid,
            event_type=event.event_type,
            summary=event.summary,
            resource=event.resource,
            now=now,
        )

    def emit_all(self, events: list[tuple[Event, float]]) -> None:
        """``emit`` of each (event, time), in one driver ``executemany``."""
        outbox.enqueue_all(
            self.conn,
            [
                outbox.notification(
                    mchid=e.mchid, event_type=e.event_type, summary=e.summary, resource=e.resource, now=at
                )
                for e, at in events
            ],
        )


LINK_TABLES = (webizpay_auth_links, webizpay_payment_links)

# The link sweep's statements (every round of every process), compiled once (db.LeanStatement).
_ANY_EXPIRED = tuple(
    LeanStatement(sa.select(sa.literal(1)).where(t.c.expires_at < sa.bindparam("cutoff")).limit(1))
    for t in LINK_TABLES
)


def _delete_expired(t: sa.Table) -> LeanStatement:
    oldest = (
        sa.select(t.c.token)
        .where(t.c.expires_at < sa.bindparam("cutoff"))
        .order_by(t.c.expires_at)
        .limit(sa.bindparam("take", type_=sa.BigInteger))
    )
    return LeanStatement(t.delete().where(t.c.token.in_(oldest.scalar_subquery())))


_DELETE_EXPIRED = tuple(_delete_expired(t) for t in LINK_TABLES)


def links_expired_before(conn: Connection, cutoff: float) -> bool:
    """Whether any W1 or W7 link expired before ``cutoff`` (indexed: migration 0012)."""
    return any(stmt.first(conn, {"cutoff": cutoff}) is not None for stmt in _ANY_EXPIRED)


def delete_links_expired_before(conn: Connection, cutoff: float, limit: int) -> int:
    """Delete at most ``limit`` links of each kind that expired before ``cutoff`` (a short write, however
    many have gathered: the next sweep takes the next ones). Returns how many went."""
    return sum(stmt.count(conn, {"cutoff": cutoff, "take": limit}) for stmt in _DELETE_EXPIRED)


def _merchant_delete(table: sa.Table) -> sa.Delete:
    """One merchant's rows of ``table`` (service provider or sub-merchant; a refund by its payment)."""
    mchid = sa.bindparam("mchid", type_=sa.String)
    if table is webizpay_refunds:
        paid = webizpay_payments
        own = sa.select(paid.c.transaction_id).where(merchant_rows(paid, mchid))
        return table.delete().where(table.c.transaction_id.in_(own))
    return table.delete().where(merchant_rows(table, mchid))


# The resetter's deletes (every test's reset runs them), compiled once per dialect (db.LeanStatement).
_DELETE_ALL = tuple(LeanStatement(table.delete()) for table in WEBIZPAY_TABLES)
_DELETE_MERCHANT = tuple(LeanStatement(_merchant_delete(table)) for table in WEBIZPAY_TABLES)


def reset(conn: Connection, mchid: str | None) -> None:
    """Scenario resetter: every webizpay row, or one merchant's (service provider or sub-merchant)."""
    if mchid is None:
        for stmt in _DELETE_ALL:
            stmt.rows(conn, {})
    else:
        for stmt in _DELETE_MERCHANT:
            stmt.rows(conn, {"mchid": mchid})
