"""Quota-card payments and refunds: indexes for the bills (W11 proof, W12 trade bill), which read one
sub-merchant's payments and the refunds of a span of days. Without them a one-day bill read every
payment, and for its refunds probed each one (≈ 0.15 s at 100,000 payments on SQLite, growing with
every day the sandbox runs).

Revision ID: 0016
Revises: 0014
"""

from alembic import op

revision = "0016"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_webizpay_payments_sub_paid", "webizpay_payments", ["sub_mchid", "paid_at"])
    op.create_index("ix_webizpay_refunds_succeeded", "webizpay_refunds", ["succeeded_at"])


def downgrade() -> None:
    op.drop_index("ix_webizpay_refunds_succeeded", table_name="webizpay_refunds")
    op.drop_index("ix_webizpay_payments_sub_paid", table_name="webizpay_payments")
