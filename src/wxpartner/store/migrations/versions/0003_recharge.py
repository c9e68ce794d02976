"""Scan-to-recharge employees: employees and per-merchant quotas.

Revision ID: 0003
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = ("recharge",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "recharge_employees",
        sa.Column("mchid", sa.String(32), primary_key=True),
        sa.Column("sub_mchid", sa.String(32), primary_key=True),
        sa.Column("sp_openid", sa.String(32), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("create_time", sa.Float, nullable=False),
        sa.Column("update_time", sa.Float, nullable=False),
    )
    op.create_index("ix_recharge_employees_sub", "recharge_employees", ["sub_mchid", "state"])
    op.create_table(
        "recharge_quotas",
        sa.Column("sub_mchid", sa.String(32), primary_key=True),
        sa.Column("effective", sa.Integer, nullable=False, server_default="0"),
        sa.Column("day", sa.String(10), nullable=False, server_default=""),
        sa.Column("day_count", sa.Integer, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("recharge_quotas")
    op.drop_index("ix_recharge_employees_sub", table_name="recharge_employees")
    op.drop_table("recharge_employees")
