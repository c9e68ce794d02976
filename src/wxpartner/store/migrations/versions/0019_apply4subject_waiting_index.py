"""Applyments: an index on (state, state_since), so a clock move finds the applyments the auto policy's
``after_seconds`` has become due for (server/settle.py) without reading every one still in audit.

Revision ID: 0019
Revises: 0015
"""

from alembic import op

revision = "0019"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_apply4subject_applyments_waiting", "apply4subject_applyments", ["state", "state_since"]
    )


def downgrade() -> None:
    op.drop_index("ix_apply4subject_applyments_waiting", table_name="apply4subject_applyments")
