"""Callback outbox: count redeliveries, so a send in flight when one was asked for does not overwrite it.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "callback_notifications",
        sa.Column("redeliveries", sa.Integer, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    with op.batch_alter_table("callback_notifications") as batch:
        batch.drop_column("redeliveries")
