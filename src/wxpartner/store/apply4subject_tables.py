"""Tables of 商户开户意愿确认 (apply4subject): applyments and merchant authorizations.

Sensitive fields are never stored in plaintext: ``fingerprint`` is a SHA-256 of the decrypted
submission (for idempotent resubmits) and ``materials`` keeps the submission with those fields masked.
Times are float seconds on the sandbox clock.
"""

from __future__ import annotations

import sqlalchemy as sa

from .schema import metadata

apply4subject_applyments = sa.Table(
    "apply4subject_applyments",
    metadata,
    sa.Column("applyment_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("mchid", sa.String(32), nullable=False),  # the caller (channel merchant / institution)
    sa.Column("business_code", sa.String(128), nullable=False),
    sa.Column("channel_id", sa.String(32), nullable=True),
    sa.Column("state", sa.String(64), nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("materials", sa.Text, nullable=False),
    sa.Column("confirm_mchids", sa.Text, nullable=False, server_default="[]"),
    sa.Column("reject_param", sa.String(256), nullable=True),
    sa.Column("reject_reason", sa.String(1024), nullable=True),
    # Secret part of the confirmation-page URL encoded in qrcode_data.
    sa.Column("confirm_token", sa.String(64), nullable=False, unique=True),
    sa.Column("query_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("state_since", sa.Float, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.UniqueConstraint("mchid", "business_code", name="uq_apply4subject_business_code"),
    # The listings, newest first by merchant and by state (migration 0015).
    sa.Index("ix_apply4subject_applyments_mchid", "mchid", "applyment_id"),
    sa.Index("ix_apply4subject_applyments_state", "state", "applyment_id"),
    # What the auto policy owes after a clock move: in audit since before a time (migration 0019).
    sa.Index("ix_apply4subject_applyments_waiting", "state", "state_since"),
)

# A merchant number that completed the confirmation, as seen by the caller whose applyment covered it.
apply4subject_authorizations = sa.Table(
    "apply4subject_authorizations",
    metadata,
    sa.Column("mchid", sa.String(32), primary_key=True),
    sa.Column("sub_mchid", sa.String(32), primary_key=True),
    sa.Column("applyment_id", sa.BigInteger, nullable=True),
    sa.Column("authorized_at", sa.Float, nullable=False),
)
