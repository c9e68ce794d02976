"""webizpay: a funding proof's download link names the proof instead of holding a copy of its
document. A quarter's proof is 16 MB of CSV; each W11, and each repeat of one, stored it a second (and
third…) time in its link's row. Links made before keep their copy (proof_id NULL).

Revision ID: 0021
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("webizpay_bill_files", sa.Column("proof_id", sa.String(32), nullable=True))


def downgrade() -> None:
    op.drop_column("webizpay_bill_files", "proof_id")
