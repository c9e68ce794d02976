"""Tables of the foundation: merchants, keys, relations, the replay window, the clock, counters.

Times are stored as float Unix seconds: portable between SQLite and PostgreSQL and cheap to compare.
Each product family adds its tables in its own module on the same ``metadata``.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# What integer columns hold: sa.BigInteger (and every SQLite INTEGER) a signed 64-bit value, sa.Integer
# on PostgreSQL a signed 32-bit one. A bigger Python int is a driver error, not a mismatch.
BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1
INTEGER_MAX = 2**31 - 1

merchants = sa.Table(
    "merchants",
    metadata,
    sa.Column("mchid", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, server_default=""),
    # service_provider | platform | channel | institution | sub_merchant | second_level | special
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("apiv3_key", sa.String(32), nullable=True),
    # public_key | certificate | migrating
    sa.Column("key_mode", sa.String(16), nullable=False, server_default="public_key"),
    sa.Column("notify_url", sa.String(512), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

# parent -> child: a service provider's sub-merchants, a platform's second-level merchants,
# an institution's channel merchants.
merchant_relations = sa.Table(
    "merchant_relations",
    metadata,
    sa.Column("parent_mchid", sa.String(32), primary_key=True),
    sa.Column("child_mchid", sa.String(32), primary_key=True),
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

# Merchant API certificates: the keys that sign requests, found by (mchid, serial_no).
merchant_certificates = sa.Table(
    "merchant_certificates",
    metadata,
    sa.Column("serial_no", sa.String(64), primary_key=True),
    sa.Column("mchid", sa.String(32), nullable=False, index=True),
    sa.Column("public_key_pem", sa.Text, nullable=False),
    sa.Column("certificate_pem", sa.Text, nullable=True),
    sa.Column("revoked", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", sa.Float, nullable=False),
)

# WeChat Pay's own keys: a platform certificate (key_id = certificate serial) or a public key
# (key_id = PUB_KEY_ID_...). mchid NULL = shared by every merchant.
platform_keys = sa.Table(
    "platform_keys",
    metadata,
    sa.Column("key_id", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # certificate | public_key
    sa.Column("mchid", sa.String(32), nullable=True),
    sa.Column("private_key_pem", sa.Text, nullable=False),
    sa.Column("public_key_pem", sa.Text, nullable=False),
    sa.Column("certificate_pem", sa.Text, nullable=True),
    sa.Column("not_before", sa.Float, nullable=False),
    sa.Column("not_after", sa.Float, nullable=False),
    sa.Column("retired", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", sa.Float, nullable=False),
)

# Replay window: one row per (mchid, nonce) seen with a valid signature; pruned past the window.
request_nonces = sa.Table(
    "request_nonces",
    metadata,
    sa.Column("mchid", sa.String(32), primary_key=True),
    sa.Column("nonce", sa.String(64), primary_key=True),
    sa.Column("seen_at", sa.Float, nullable=False, index=True),
)

# The business clock every process reads: real time + offset, or frozen at a point.
sandbox_clock = sa.Table(
    "sandbox_clock",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("offset_seconds", sa.Float, nullable=False, server_default="0"),
    sa.Column("frozen_at", sa.Float, nullable=True),
)

# Fixed-window counters for rate limits shared by every process and host.
rate_counters = sa.Table(
    "rate_counters",
    metadata,
    sa.Column("scope", sa.String(128), primary_key=True),
    sa.Column("window", sa.BigInteger, primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
)

# Small shared settings (sandbox token hash, id sequences...).
sandbox_kv = sa.Table(
    "sandbox_kv",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
