"""Callback outbox: an index on (state, updated_at) for the retention. The background deliverer
deletes notifications delivered or failed longer ago than the retention (7 days by default), a batch
at a time (store/outbox.py: prune_finished); the index makes each batch and the idle look for one a
range read, however many notifications are kept.

Revision ID: 0018
Revises: 0017
"""

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_callback_notifications_finished", "callback_notifications", ["state", "updated_at"])


def downgrade() -> None:
    op.drop_index("ix_callback_notifications_finished", table_name="callback_notifications")
