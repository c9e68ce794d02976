"""webizpay: an index on the download links' ``expires_at``. Every W11/W12 link added first deletes the
links dead for a day (``WebizpayBillsRepo.add_file``); without an index that delete read the whole
table, a day of links, on every download link handed out.

Revision ID: 0028
Revises: 0021
"""

from alembic import op

revision = "0028"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_webizpay_bill_files_expires_at", "webizpay_bill_files", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_webizpay_bill_files_expires_at", table_name="webizpay_bill_files")
