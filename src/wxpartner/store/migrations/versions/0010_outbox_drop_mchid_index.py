"""Callback outbox: drop the index on mchid alone; the poll's (mchid, state, next_attempt_at) index
(0008) starts with it and answers the same lookups, and every enqueue wrote both.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_callback_notifications_mchid", table_name="callback_notifications")


def downgrade() -> None:
    op.create_index("ix_callback_notifications_mchid", "callback_notifications", ["mchid"])
