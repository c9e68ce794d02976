"""Request journal: a second generation of the same shape. The journal is pruned by emptying a whole
generation (one statement) instead of deleting its oldest rows one by one, which cost a worker more
than writing them (store/ops_repo.py: insert_journal).

Revision ID: 0011
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "request_journal_1",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("request_id", sa.String(64), nullable=False, index=True),
        sa.Column("at", sa.Float, nullable=False, index=True),
        sa.Column("mchid", sa.String(32), nullable=True, index=True),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("operation", sa.String(96), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("code", sa.String(64), nullable=True),
        sa.Column("message", sa.String(512), nullable=True),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("verification", sa.String(16), nullable=False),
        sa.Column("verify_field", sa.String(32), nullable=True),
        sa.Column("verify_issue", sa.String(512), nullable=True),
        sa.Column("expected_message", sa.Text, nullable=True),
        sa.Column("fault", sa.String(64), nullable=True),
        sa.Column("body_length", sa.Integer, nullable=False, server_default="0"),
        sa.Column("body_sha256", sa.String(64), nullable=True),
        sa.Column("client", sa.String(64), nullable=True),
        sa.Column("user_agent", sa.String(256), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("request_journal_1")
