"""Callback outbox: make due the notifications an older version left waiting for a business clock that
was moved back.

Until 685e523 a poll took a pending notification never sent, or a retry waiting longer than the delay
that scheduled it, whatever its next_attempt_at said. Since then a poll reads next_attempt_at alone,
and moving the clock makes such notifications due in the same transaction (store/outbox.py:
clock_set). Notifications queued by an older version while the clock was ahead, and the clock moved
back there, were never made due: after an upgrade they waited for the clock to catch up (a
QUOTACARDEXPIRED queued 40 days ahead, 40 days). This applies clock_set's rule once, at the business
time of the upgrade; on a database the newer code wrote it finds nothing.

Revision ID: 0017
Revises: 0013
"""

import math
import time

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0013"
branch_labels = None
depends_on = None

# As of this migration (store/outbox.py: RETRY_SCHEDULE, CLOCK_SLACK_SECONDS; domain/clock.py's range):
# a migration keeps the values it was written with.
RETRY_SCHEDULE = (0.0, 15.0, 15.0, 30.0, 180.0, 1800.0, 1800.0, 1800.0, 1800.0, 3600.0)
CLOCK_SLACK_SECONDS = 60.0
MAX_CLOCK_TS = 253402300799.0 - 86400

notifications = sa.table(
    "callback_notifications",
    sa.column("state", sa.String),
    sa.column("sends", sa.Integer),
    sa.column("next_attempt_at", sa.Float),
)
clock = sa.table(
    "sandbox_clock",
    sa.column("id", sa.Integer),
    sa.column("offset_seconds", sa.Float),
    sa.column("frozen_at", sa.Float),
)


def _business_now(conn: sa.Connection) -> float:
    """The business clock as domain/clock.py reads it (an out-of-range or NaN one as its nearest end)."""
    row = conn.execute(sa.select(clock.c.offset_seconds, clock.c.frozen_at).where(clock.c.id == 1)).first()
    offset, frozen = (float(row[0] or 0.0), row[1]) if row is not None else (0.0, None)
    now = float(frozen) if frozen is not None and not math.isnan(frozen) else time.time() + offset
    if math.isnan(now):
        now = time.time()
    return min(max(now, 0.0), MAX_CLOCK_TS)


def upgrade() -> None:
    conn = op.get_bind()
    now = _business_now(conn)
    n = notifications.c
    delay = sa.case(
        *((n.sends == i, sa.literal(d)) for i, d in enumerate(RETRY_SCHEDULE) if i),
        else_=sa.literal(RETRY_SCHEDULE[-1]),
    )
    moved_back = sa.or_(n.sends == 0, n.next_attempt_at > now + CLOCK_SLACK_SECONDS + delay)
    conn.execute(
        notifications.update()
        .where(n.state == "pending", n.next_attempt_at > now, moved_back)
        .values(next_attempt_at=now)
    )


def downgrade() -> None:
    pass  # the notifications made due stay due: the older code took them anyway
