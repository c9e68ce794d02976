"""Callback outbox: notifications and delivery attempts.

Revision ID: 0005
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0001"
branch_labels = ("outbox",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "callback_notifications",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("mchid", sa.String(32), nullable=False, index=True),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("summary", sa.String(256), nullable=False, server_default=""),
        sa.Column("resource_json", sa.Text, nullable=False),
        sa.Column("original_type", sa.String(32), nullable=False, server_default="webizpay"),
        sa.Column("create_time", sa.Float, nullable=False),
        sa.Column("state", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("sends", sa.Integer, nullable=False, server_default="0"),
        sa.Column("send_limit", sa.Integer, nullable=False, server_default="10"),
        sa.Column("next_attempt_at", sa.Float, nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.Float, nullable=True),
        sa.Column("delivered_at", sa.Float, nullable=True),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Index("ix_callback_notifications_due", "state", "next_attempt_at"),
    )
    op.create_table(
        "callback_attempts",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("notification_id", sa.String(64), nullable=False, index=True),
        sa.Column("attempt_no", sa.Integer, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("sent_at", sa.Float, nullable=False),
        sa.Column("url", sa.String(512), nullable=False, server_default=""),
        sa.Column("status", sa.Integer, nullable=True),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("signer_key_id", sa.String(64), nullable=False, server_default=""),
        sa.Column("request_id", sa.String(64), nullable=False, server_default=""),
    )


def downgrade() -> None:
    op.drop_table("callback_attempts")
    op.drop_table("callback_notifications")
