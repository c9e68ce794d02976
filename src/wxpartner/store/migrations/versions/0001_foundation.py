"""Foundation: merchants, keys, relations, replay window, clock, counters, kv.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = ("foundation",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "merchants",
        sa.Column("mchid", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, server_default=""),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("apiv3_key", sa.String(32), nullable=True),
        sa.Column("key_mode", sa.String(16), nullable=False, server_default="public_key"),
        sa.Column("notify_url", sa.String(512), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "merchant_relations",
        sa.Column("parent_mchid", sa.String(32), primary_key=True),
        sa.Column("child_mchid", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "merchant_certificates",
        sa.Column("serial_no", sa.String(64), primary_key=True),
        sa.Column("mchid", sa.String(32), nullable=False, index=True),
        sa.Column("public_key_pem", sa.Text, nullable=False),
        sa.Column("certificate_pem", sa.Text, nullable=True),
        sa.Column("revoked", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "platform_keys",
        sa.Column("key_id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("mchid", sa.String(32), nullable=True),
        sa.Column("private_key_pem", sa.Text, nullable=False),
        sa.Column("public_key_pem", sa.Text, nullable=False),
        sa.Column("certificate_pem", sa.Text, nullable=True),
        sa.Column("not_before", sa.Float, nullable=False),
        sa.Column("not_after", sa.Float, nullable=False),
        sa.Column("retired", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "request_nonces",
        sa.Column("mchid", sa.String(32), primary_key=True),
        sa.Column("nonce", sa.String(64), primary_key=True),
        sa.Column("seen_at", sa.Float, nullable=False, index=True),
    )
    op.create_table(
        "sandbox_clock",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("offset_seconds", sa.Float, nullable=False, server_default="0"),
        sa.Column("frozen_at", sa.Float, nullable=True),
    )
    op.create_table(
        "rate_counters",
        sa.Column("scope", sa.String(128), primary_key=True),
        sa.Column("window", sa.BigInteger, primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
    )
    op.create_table(
        "sandbox_kv",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for name in (
        "sandbox_kv",
        "rate_counters",
        "sandbox_clock",
        "request_nonces",
        "platform_keys",
        "merchant_certificates",
        "merchant_relations",
        "merchants",
    ):
        op.drop_table(name)
