"""apply4subject: applyments and merchant authorizations.

Revision ID: 0004
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0001"
branch_labels = ("apply4subject",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "apply4subject_applyments",
        sa.Column("applyment_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("mchid", sa.String(32), nullable=False),
        sa.Column("business_code", sa.String(128), nullable=False),
        sa.Column("channel_id", sa.String(32), nullable=True),
        sa.Column("state", sa.String(64), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("materials", sa.Text, nullable=False),
        sa.Column("confirm_mchids", sa.Text, nullable=False, server_default="[]"),
        sa.Column("reject_param", sa.String(256), nullable=True),
        sa.Column("reject_reason", sa.String(1024), nullable=True),
        sa.Column("confirm_token", sa.String(64), nullable=False, unique=True),
        sa.Column("query_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("state_since", sa.Float, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.UniqueConstraint("mchid", "business_code", name="uq_apply4subject_business_code"),
    )
    op.create_table(
        "apply4subject_authorizations",
        sa.Column("mchid", sa.String(32), primary_key=True),
        sa.Column("sub_mchid", sa.String(32), primary_key=True),
        sa.Column("applyment_id", sa.BigInteger, nullable=True),
        sa.Column("authorized_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("apply4subject_authorizations")
    op.drop_table("apply4subject_applyments")
