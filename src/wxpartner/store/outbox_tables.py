"""Tables of the callback outbox: notifications WeChat Pay owes merchants, and every delivery attempt.

Business times (``create_time``, ``next_attempt_at``, attempt ``at``) are on the sandbox clock so moving
the clock makes retries fall due; the lease is real time because it guards against a dead process (the
database server's clock on PostgreSQL, which every host shares: outbox._lease_now).
"""

from __future__ import annotations

import sqlalchemy as sa

from .schema import metadata

callback_notifications = sa.Table(
    "callback_notifications",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("mchid", sa.String(32), nullable=False),  # looked up through ix_..._poll (0010)
    sa.Column("event_type", sa.String(64), nullable=False),
    sa.Column("summary", sa.String(256), nullable=False, server_default=""),
    sa.Column("resource_json", sa.Text, nullable=False),  # plaintext; encrypted per send
    sa.Column("original_type", sa.String(32), nullable=False, server_default="webizpay"),
    sa.Column("create_time", sa.Float, nullable=False),
    # pending | delivered | failed (sends exhausted)
    sa.Column("state", sa.String(16), nullable=False, server_default="pending"),
    sa.Column("sends", sa.Integer, nullable=False, server_default="0"),
    sa.Column("send_limit", sa.Integer, nullable=False, server_default="10"),
    sa.Column("next_attempt_at", sa.Float, nullable=True),
    sa.Column("lease_owner", sa.String(64), nullable=True),
    sa.Column("lease_until", sa.Float, nullable=True),
    sa.Column("delivered_at", sa.Float, nullable=True),
    sa.Column("updated_at", sa.Float, nullable=False),
    # sandbox redeliveries asked for so far: a send claimed before the latest one does not overwrite
    # it (outbox.complete; migration 0009)
    sa.Column("redeliveries", sa.Integer, nullable=False, server_default="0"),
    sa.Index("ix_callback_notifications_due", "state", "next_attempt_at"),
    # The poll (outbox.any_due, claim_due) reads only the merchants that can receive (migration 0008).
    sa.Index("ix_callback_notifications_poll", "mchid", "state", "next_attempt_at"),
    # The listings, newest first: overall, by state, by merchant (outbox.list_notifications; migration 0013).
    sa.Index("ix_callback_notifications_created", "create_time"),
    sa.Index("ix_callback_notifications_state_created", "state", "create_time"),
    sa.Index("ix_callback_notifications_mchid_created", "mchid", "create_time"),
    # Retention: the notifications finished longest ago (outbox.prune_finished; migration 0018).
    sa.Index("ix_callback_notifications_finished", "state", "updated_at"),
)

callback_attempts = sa.Table(
    "callback_attempts",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("notification_id", sa.String(64), nullable=False, index=True),
    sa.Column("attempt_no", sa.Integer, nullable=False),
    sa.Column("at", sa.Float, nullable=False),  # business time of the send
    sa.Column("sent_at", sa.Float, nullable=False),  # real time of the send
    sa.Column("url", sa.String(512), nullable=False, server_default=""),
    sa.Column("status", sa.Integer, nullable=True),  # HTTP status; NULL = no answer
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("signer_key_id", sa.String(64), nullable=False, server_default=""),
    sa.Column("request_id", sa.String(64), nullable=False, server_default=""),
)
