"""webizpay: an index on the expiry of authorization links (W1) and payment links (W7), so the
background sweep finds and deletes the links expired for a day without reading every link (each call
made one and none was ever deleted).

Revision ID: 0012
Revises: 0002
"""

from alembic import op

revision = "0012"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_webizpay_auth_links_expires", "webizpay_auth_links", ["expires_at"])
    op.create_index("ix_webizpay_payment_links_expires", "webizpay_payment_links", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_webizpay_payment_links_expires", table_name="webizpay_payment_links")
    op.drop_index("ix_webizpay_auth_links_expires", table_name="webizpay_auth_links")
