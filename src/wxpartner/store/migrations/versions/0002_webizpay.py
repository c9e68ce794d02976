"""Enterprise payment (webizpay): authorization links and relations, templates, quota cards, the
simulated payments and refunds.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = ("webizpay",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webizpay_auth_links",
        sa.Column("token", sa.String(64), primary_key=True),
        sa.Column("sp_mchid", sa.String(32), nullable=False),
        sa.Column("sub_mchid", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("application_type", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("consumed_at", sa.Float, nullable=True),
        sa.Column("employee_id", sa.String(64), nullable=True),
    )
    op.create_table(
        "webizpay_relations",
        sa.Column("employee_id", sa.String(64), primary_key=True),
        sa.Column("sp_mchid", sa.String(32), nullable=False),
        sa.Column("sub_mchid", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("authorized_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float, nullable=True),
        sa.Column("reason", sa.String(64), nullable=True),
    )
    op.create_index("ix_webizpay_relations_user", "webizpay_relations", ["sp_mchid", "sub_mchid", "user_id"])
    op.create_index(
        "uq_webizpay_relations_authorized",
        "webizpay_relations",
        ["sp_mchid", "sub_mchid", "user_id"],
        unique=True,
        sqlite_where=sa.text("state = 'AUTHORIZED'"),
        postgresql_where=sa.text("state = 'AUTHORIZED'"),
    )
    op.create_table(
        "webizpay_templates",
        sa.Column("sp_mchid", sa.String(32), primary_key=True),
        sa.Column("card_template_id", sa.String(64), primary_key=True),
        sa.Column("card_rule", sa.String(16), nullable=False),
        sa.Column("refund_rule", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "webizpay_cards",
        sa.Column("card_no", sa.String(64), primary_key=True),
        sa.Column("sp_mchid", sa.String(32), nullable=False),
        sa.Column("sub_mchid", sa.String(32), nullable=False),
        sa.Column("out_card_no", sa.String(64), nullable=False),
        sa.Column("employee_id", sa.String(64), nullable=False),
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
    )
    op.create_index("ix_webizpay_cards_due", "webizpay_cards", ["state", "end_at"])
    op.create_index("ix_webizpay_cards_employee_id", "webizpay_cards", ["employee_id"])
    op.create_table(
        "webizpay_payment_links",
        sa.Column("token", sa.String(64), primary_key=True),
        sa.Column("card_no", sa.String(64), nullable=False),
        sa.Column("sp_mchid", sa.String(32), nullable=False),
        sa.Column("sub_mchid", sa.String(32), nullable=False),
        sa.Column("employee_id", sa.String(64), nullable=False),
        sa.Column("application_type", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_table(
        "webizpay_payments",
        sa.Column("transaction_id", sa.String(64), primary_key=True),
        sa.Column("out_trade_no", sa.String(64), nullable=False),
        sa.Column("card_no", sa.String(64), nullable=False),
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
    )
    op.create_index("ix_webizpay_payments_card_no", "webizpay_payments", ["card_no"])
    op.create_table(
        "webizpay_refunds",
        sa.Column("refund_id", sa.String(64), primary_key=True),
        sa.Column("out_refund_no", sa.String(64), nullable=False),
        sa.Column("transaction_id", sa.String(64), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("succeeded_at", sa.Float, nullable=False),
        sa.UniqueConstraint("transaction_id", "out_refund_no", name="uq_webizpay_refunds_out_refund_no"),
    )


def downgrade() -> None:
    for name in (
        "webizpay_refunds",
        "webizpay_payments",
        "webizpay_payment_links",
        "webizpay_cards",
        "webizpay_templates",
        "webizpay_relations",
        "webizpay_auth_links",
    ):
        op.drop_table(name)
