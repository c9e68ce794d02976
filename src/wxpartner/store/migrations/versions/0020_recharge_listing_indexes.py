"""Recharge employees: indexes in the listing's order (by platform and second-level merchant, oldest
first within one), overall and by second-level merchant (GET /sandbox/recharge-employees, ?sub_mchid=,
?after=). Without them every page sorted one merchant's rows, all of them: a merchant's DELETED
employees pile up (three configurations a day, or a preloaded history), and at 26,000 of them a page
by ``after`` read 9 times what it read at 6,000 on SQLite.

Revision ID: 0020
Revises: 0003
"""

from alembic import op

revision = "0020"
down_revision = "0003"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_recharge_employees_listing": ["mchid", "sub_mchid", "create_time", "sp_openid"],
    "ix_recharge_employees_sub_listing": ["sub_mchid", "mchid", "create_time", "sp_openid"],
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(name, "recharge_employees", columns)


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="recharge_employees")
