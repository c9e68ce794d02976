"""Callback outbox: the poll's index, (mchid, state, next_attempt_at), so a poll reads only the waiting
notifications of merchants that can receive them.

Revision ID: 0008
Revises: 0005
"""

from alembic import op

revision = "0008"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_callback_notifications_poll",
        "callback_notifications",
        ["mchid", "state", "next_attempt_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_callback_notifications_poll", table_name="callback_notifications")
