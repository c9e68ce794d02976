"""Tables of the scan-to-recharge employee family (migrations 0003 and 0020, branch "recharge")."""

from __future__ import annotations

import sqlalchemy as sa

from .schema import metadata

# One row per employee ever added; a delete keeps the row (state DELETED) for history and idempotency.
recharge_employees = sa.Table(
    "recharge_employees",
    metadata,
    sa.Column("mchid", sa.String(32), primary_key=True),  # platform merchant (the caller)
    sa.Column("sub_mchid", sa.String(32), primary_key=True),  # second-level merchant
    sa.Column("sp_openid", sa.String(32), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),  # EFFECTIVE | DELETED
    sa.Column("create_time", sa.Float, nullable=False),
    sa.Column("update_time", sa.Float, nullable=False),
    sa.Index("ix_recharge_employees_sub", "sub_mchid", "state"),
    # the listing's order, overall and by second-level merchant (migration 0020)
    sa.Index("ix_recharge_employees_listing", "mchid", "sub_mchid", "create_time", "sp_openid"),
    sa.Index("ix_recharge_employees_sub_listing", "sub_mchid", "mchid", "create_time", "sp_openid"),
)

# Per second-level merchant: employees in effect and configurations used on `day` (China date).
# One conditional UPDATE of this row enforces both limits atomically across processes.
recharge_quotas = sa.Table(
    "recharge_quotas",
    metadata,
    sa.Column("sub_mchid", sa.String(32), primary_key=True),
    sa.Column("effective", sa.Integer, nullable=False, server_default="0"),
    sa.Column("day", sa.String(10), nullable=False, server_default=""),
    sa.Column("day_count", sa.Integer, nullable=False, server_default="0"),
)
