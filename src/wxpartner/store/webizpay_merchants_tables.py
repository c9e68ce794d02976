"""Tables of webizpay W9–W17: store entity-match batches, sandbox store entities, available-merchant
ranges and their identifiers, funding proofs and bill download files (migration 0006)."""

from __future__ import annotations

import sqlalchemy as sa

from .schema import metadata

# W9/W10. details/results are JSON text: they are only ever read whole, with their batch.
webizpay_match_batches = sa.Table(
    "webizpay_match_batches",
    metadata,
    sa.Column("batch_id", sa.String(32), primary_key=True),
    sa.Column("sp_mchid", sa.String(32), nullable=False),
    sa.Column("out_batch_id", sa.String(32), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # ACCEPTED | IN_PROGRESS | COMPLETED | CLOSED
    sa.Column("digest", sa.String(64), nullable=False),  # sha256 of the request, for idempotent repeats
    sa.Column("details", sa.Text, nullable=False),
    sa.Column("results", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.UniqueConstraint("sp_mchid", "out_batch_id", name="uq_webizpay_match_out_batch"),
)

# Sandbox-configured store entities (scenario section webizpay_store_entities): whether a unified
# social credit code has a WeChat Pay merchant number, and with which products.
webizpay_store_entities = sa.Table(
    "webizpay_store_entities",
    metadata,
    sa.Column("organization_code", sa.String(32), primary_key=True),
    sa.Column("has_valid_mchid", sa.Boolean, nullable=False),
    sa.Column("products", sa.String(128), nullable=False, server_default=""),  # comma separated
)

# W13–W17. seq gives a stable listing order even while the sandbox clock is frozen.
webizpay_mch_ranges = sa.Table(
    "webizpay_mch_ranges",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("range_id", sa.String(64), nullable=False, unique=True),
    sa.Column("sp_mchid", sa.String(32), nullable=False, index=True),
    sa.Column("identifier_type", sa.String(32), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

webizpay_mch_identifiers = sa.Table(
    "webizpay_mch_identifiers",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("range_id", sa.String(64), nullable=False),
    sa.Column("merchant_identifier", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("range_id", "merchant_identifier", name="uq_webizpay_range_identifier"),
)

# W11. One proof per (sp_mchid, out_operation_id).
webizpay_funding_proofs = sa.Table(
    "webizpay_funding_proofs",
    metadata,
    sa.Column("proof_id", sa.String(32), primary_key=True),
    sa.Column("operation_id", sa.String(32), nullable=False, unique=True),
    sa.Column("sp_mchid", sa.String(32), nullable=False),
    sa.Column("sub_mchid", sa.String(32), nullable=False),
    sa.Column("out_operation_id", sa.String(32), nullable=False),
    sa.Column("start_date", sa.String(10), nullable=False),
    sa.Column("end_date", sa.String(10), nullable=False),
    sa.Column("entity_name", sa.String(256), nullable=False, server_default=""),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("content", sa.Text, nullable=False),  # the proof document, fixed when first applied for
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.UniqueConstraint("sp_mchid", "out_operation_id", name="uq_webizpay_proof_out_operation"),
)

# Download links handed out by W11/W12: the token in download_url -> the file, its owner and expiry.
webizpay_bill_files = sa.Table(
    "webizpay_bill_files",
    metadata,
    sa.Column("token", sa.String(64), primary_key=True),
    sa.Column("sp_mchid", sa.String(32), nullable=False, index=True),
    sa.Column("sub_mchid", sa.String(32), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # PROOF | TRADE_BILL
    sa.Column("filename", sa.String(128), nullable=False),
    sa.Column("content", sa.Text, nullable=False),  # "" for a proof's link: the proof holds it
    sa.Column("created_at", sa.Float, nullable=False),
    # indexed (migration 0028): each link added deletes those dead for a day, by this column
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
    # A W11 link: its document is the proof's (migration 0021; NULL for bills and older links).
    sa.Column("proof_id", sa.String(32), nullable=True),
)

ALL_TABLES = (
    webizpay_match_batches,
    webizpay_store_entities,
    webizpay_mch_ranges,
    webizpay_mch_identifiers,
    webizpay_funding_proofs,
    webizpay_bill_files,
)
