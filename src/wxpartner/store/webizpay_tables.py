"""Enterprise-payment tables (migration 0002_webizpay). Times are float epoch seconds."""

from __future__ import annotations

import sqlalchemy as sa

from .schema import metadata

# W1 links: one per call, single-use, expiring; deleted a day after they expire (migration 0012 indexes
# the expiry for that sweep, server/webizpay_background.py).
webizpay_auth_links = sa.Table(
    "webizpay_auth_links",
    metadata,
    sa.Column("token", sa.String(64), primary_key=True),
    sa.Column("sp_mchid", sa.String(32), nullable=False),
    sa.Column("sub_mchid", sa.String(32), nullable=False),
    sa.Column("user_id", sa.String(32), nullable=False),
    sa.Column("application_type", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("consumed_at", sa.Float, nullable=True),
    sa.Column("employee_id", sa.String(64), nullable=True),
    # The sweep deletes links a day past expiry; the dashboard lists the open ones (migration 0012).
    sa.Index("ix_webizpay_auth_links_expires", "expires_at"),
)

# Authorization relations; at most one AUTHORIZED per (sp, sub, user) (partial unique index).
webizpay_relations = sa.Table(
    "webizpay_relations",
    metadata,
    sa.Column("employee_id", sa.String(64), primary_key=True),
    sa.Column("sp_mchid", sa.String(32), nullable=False),
    sa.Column("sub_mchid", sa.String(32), nullable=False),
    sa.Column("user_id", sa.String(32), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("authorized_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float, nullable=True),
    sa.Column("reason", sa.String(64), nullable=True),
    sa.Index("ix_webizpay_relations_user", "sp_mchid", "sub_mchid", "user_id"),
    sa.Index(
        "uq_webizpay_relations_authorized",
        "sp_mchid",
        "sub_mchid",
        "user_id",
        unique=True,
        # as partial on PostgreSQL (migration 0002 says postgresql_where): not declared here, where
        # naming it imported SQLAlchemy's PostgreSQL dialect (≈ 35 ms of CPU) into every process,
        # SQLite ones included; Alembic's comparison (tests/test_migrations.py) does not read it
        sqlite_where=sa.text("state = 'AUTHORIZED'"),
    ),
)

# Card templates configured for a service provider (built-in ones live in the domain policy).
webizpay_templates = sa.Table(
    "webizpay_templates",
    metadata,
    sa.Column("sp_mchid", sa.String(32), primary_key=True),
    sa.Column("card_template_id", sa.String(64), primary_key=True),
    sa.Column("card_rule", sa.String(16), nullable=False),
    sa.Column("refund_rule", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

webizpay_cards = sa.Table(
    "webizpay_cards",
    metadata,
    sa.Column("card_no", sa.String(64), primary_key=True),
    sa.Column("sp_mchid", sa.String(32), nullable=False),
    sa.Column("sub_mchid", sa.String(32), nullable=False),
    sa.Column("out_card_no", sa.String(64), nullable=False),
    sa.Column("employee_id", sa.String(64), nullable=False, index=True),
    sa.Column("card_template_id", sa.String(64), nullable=False),
    sa.Column("card_rule", sa.String(16), nullable=False),
    sa.Column("refund_rule", sa.String(16), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("remain_amount", sa.BigInteger, nullable=False),
    sa.Column("card_name", sa.String(64), nullable=False),
    sa.Column("card_remark", sa.String(128), nullable=True),
    sa.Column("begin_at", sa.Float, nullable=False),
    sa.Column("end_at", sa.Float, nullable=False),
    sa.Column("end_text", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("disabled_at", sa.Float, nullable=True),
    sa.Column("reason", sa.String(128), nullable=True),
    sa.Column("used_at", sa.Float, nullable=True),
    sa.Column("transaction_id", sa.String(64), nullable=True),
    sa.Column("avail_mch_range_id", sa.String(64), nullable=True),
    sa.UniqueConstraint("sp_mchid", "sub_mchid", "out_card_no", name="uq_webizpay_cards_out_card_no"),
    sa.Index("ix_webizpay_cards_due", "state", "end_at"),
    # The dashboard's filter by sub-merchant (migration 0014); sp_mchid leads the constraint's index.
    sa.Index("ix_webizpay_cards_sub_mchid", "sub_mchid"),
)

# W7 links: one per call, expiring; deleted a day after they expire, as W1 links.
webizpay_payment_links = sa.Table(
    "webizpay_payment_links",
    metadata,
    sa.Column("token", sa.String(64), primary_key=True),
    sa.Column("card_no", sa.String(64), nullable=False),
    sa.Column("sp_mchid", sa.String(32), nullable=False),
    sa.Column("sub_mchid", sa.String(32), nullable=False),
    sa.Column("employee_id", sa.String(64), nullable=False),
    sa.Column("application_type", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Index("ix_webizpay_payment_links_expires", "expires_at"),  # the sweep's (migration 0012)
)

webizpay_payments = sa.Table(
    "webizpay_payments",
    metadata,
    sa.Column("transaction_id", sa.String(64), primary_key=True),
    sa.Column("out_trade_no", sa.String(64), nullable=False),
    sa.Column("card_no", sa.String(64), nullable=False, index=True),
    sa.Column("sp_mchid", sa.String(32), nullable=False),
    sa.Column("sub_mchid", sa.String(32), nullable=False),
    sa.Column("employee_id", sa.String(64), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("refunded_amount", sa.BigInteger, nullable=False),
    sa.Column("receive_mch_name", sa.String(256), nullable=False),
    sa.Column("receive_mch_full_name", sa.String(256), nullable=False),
    sa.Column("receive_mch_organization_code", sa.String(64), nullable=False),
    sa.Column("acquirer", sa.String(256), nullable=False),
    sa.Column("goods_name", sa.String(256), nullable=False),
    sa.Column("paid_at", sa.Float, nullable=False),
    # A sub-merchant's payments of a span of days: the bills (webizpay_trades; migration 0016).
    sa.Index("ix_webizpay_payments_sub_paid", "sub_mchid", "paid_at"),
)

webizpay_refunds = sa.Table(
    "webizpay_refunds",
    metadata,
    sa.Column("refund_id", sa.String(64), primary_key=True),
    sa.Column("out_refund_no", sa.String(64), nullable=False),
    sa.Column("transaction_id", sa.String(64), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("succeeded_at", sa.Float, nullable=False),
    sa.UniqueConstraint("transaction_id", "out_refund_no", name="uq_webizpay_refunds_out_refund_no"),
    sa.Index("ix_webizpay_refunds_succeeded", "succeeded_at"),  # the bills' refunds of a span (0015)
)

WEBIZPAY_TABLES = (
    webizpay_refunds,
    webizpay_payments,
    webizpay_payment_links,
    webizpay_cards,
    webizpay_templates,
    webizpay_relations,
    webizpay_auth_links,
)


def merchant_rows(table: sa.Table, mchid: str | sa.BindParameter[str]) -> sa.ColumnElement[bool]:
    """The rows of ``table`` that belong to ``mchid`` as service provider or, where the table names
    one, as the funding sub-merchant (出资子商户): a reset of a sub-merchant takes its cards too."""
    if "sub_mchid" in table.c:
        return sa.or_(table.c.sp_mchid == mchid, table.c.sub_mchid == mchid)
    return table.c.sp_mchid == mchid
