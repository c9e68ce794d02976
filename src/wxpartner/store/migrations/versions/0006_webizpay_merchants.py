"""webizpay W9–W17: store entity matching, available-merchant ranges, funding proofs, bill files.

Revision ID: 0006
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0001"
branch_labels = ("webizpay_merchants",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webizpay_match_batches",
        sa.Column("batch_id", sa.String(32), primary_key=True),
        sa.Column("sp_mchid", sa.String(32), nullable=False),
        sa.Column("out_batch_id", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("results", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.UniqueConstraint("sp_mchid", "out_batch_id", name="uq_webizpay_match_out_batch"),
    )
    op.create_table(
        "webizpay_store_entities",
        sa.Column("organization_code", sa.String(32), primary_key=True),
        sa.Column("has_valid_mchid", sa.Boolean, nullable=False),
        sa.Column("products", sa.String(128), nullable=False, server_default=""),
    )
    op.create_table(
        "webizpay_mch_ranges",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("range_id", sa.String(64), nullable=False, unique=True),
        sa.Column("sp_mchid", sa.String(32), nullable=False, index=True),
        sa.Column("identifier_type", sa.String(32), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "webizpay_mch_identifiers",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("range_id", sa.String(64), nullable=False),
        sa.Column("merchant_identifier", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("range_id", "merchant_identifier", name="uq_webizpay_range_identifier"),
    )
    op.create_table(
        "webizpay_funding_proofs",
        sa.Column("proof_id", sa.String(32), primary_key=True),
        sa.Column("operation_id", sa.String(32), nullable=False, unique=True),
        sa.Column("sp_mchid", sa.String(32), nullable=False),
        sa.Column("sub_mchid", sa.String(32), nullable=False),
        sa.Column("out_operation_id", sa.String(32), nullable=False),
        sa.Column("start_date", sa.String(10), nullable=False),
        sa.Column("end_date", sa.String(10), nullable=False),
        sa.Column("entity_name", sa.String(256), nullable=False, server_default=""),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.UniqueConstraint("sp_mchid", "out_operation_id", name="uq_webizpay_proof_out_operation"),
    )
    op.create_table(
        "webizpay_bill_files",
        sa.Column("token", sa.String(64), primary_key=True),
        sa.Column("sp_mchid", sa.String(32), nullable=False, index=True),
        sa.Column("sub_mchid", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("filename", sa.String(128), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for name in (
        "webizpay_bill_files",
        "webizpay_funding_proofs",
        "webizpay_mch_identifiers",
        "webizpay_mch_ranges",
        "webizpay_store_entities",
        "webizpay_match_batches",
    ):
        op.drop_table(name)
