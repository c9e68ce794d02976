"""A sandbox reset racing the recording of a send's attempt leaves no attempt without its notification.

The interleaving is forced: the send's recording (outbox.complete) is run in a write transaction held
open, the reset starts in a thread, and the recording commits only once the reset is stuck behind it
(PostgreSQL: waiting on a row lock, seen in pg_stat_activity) or has finished without waiting. SQLite
serialises writers, so there the reset always runs wholly before or after; the test holds there too."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from support import SP_A
from wxpartner.sandbox import scenario
from wxpartner.server.app import WxPartnerApp
from wxpartner.store import outbox, registry
from wxpartner.store.db import Database
from wxpartner.store.outbox_tables import callback_attempts, callback_notifications

T0 = 1_747_280_000.0


def _enqueue(app: WxPartnerApp) -> outbox.Claim:
    with app.state.db.write() as conn:
        registry.set_notify_url(conn, SP_A, "http://127.0.0.1:9/x")
        outbox.enqueue(conn, mchid=SP_A, event_type="WEBIZPAY.REVOKED", summary="s", resource={}, now=T0)
        [claim] = outbox.claim_due(conn, business_now=T0, owner="sender", lease_seconds=60, limit=1)
    return claim


def _outcome() -> outbox.Outcome:
    return outbox.Outcome(
        at=T0,
        sent_at=time.time(),
        url="http://127.0.0.1:9/x",
        status=500,
        latency_ms=1.0,
        ok=False,
        error="x",
    )


def _stuck_or_done(db: Database, worker: threading.Thread) -> None:
    """Until ``worker`` has finished or waits on a PostgreSQL lock (SQLite: its turn to write comes
    after the transaction held open whatever the order, so nothing to wait for)."""
    if db.sqlite:
        return
    deadline = time.monotonic() + 30  # a bound on a wait that should end at once, not a measure
    waiting = sa.text(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )
    while worker.is_alive() and time.monotonic() < deadline:
        with db.read() as conn:
            if conn.execute(waiting).scalar_one():
                return
        time.sleep(0.01)
    assert not worker.is_alive(), "the reset neither finished nor waited on a lock"


def _orphans(db: Database) -> int:
    a, n = callback_attempts, callback_notifications
    known = sa.select(n.c.id).where(n.c.id == a.c.notification_id)
    with db.read() as conn:
        orphans = sa.select(sa.func.count()).select_from(a).where(~sa.exists(known))
        return int(conn.execute(orphans).scalar_one())


def _lease_lost(app: WxPartnerApp, claim: outbox.Claim) -> None:
    """Another process took the notification over (the sender's lease ran out)."""
    n = callback_notifications
    with app.state.db.write() as conn:
        conn.execute(n.update().where(n.c.id == claim.id).values(lease_owner="another"))


@pytest.mark.parametrize("mchid", [None, SP_A], ids=["reset-all", "reset-merchant"])
@pytest.mark.parametrize("lease", ["held", "lost"])
def test_a_reset_racing_a_send_leaves_no_attempt_behind(
    app: WxPartnerApp, mchid: str | None, lease: str
) -> None:
    claim = _enqueue(app)
    if lease == "lost":
        _lease_lost(app, claim)
    resets: list[bool] = []
    reset = threading.Thread(target=lambda: resets.append(scenario.reset(app.state.db, mchid)), daemon=True)
    with app.state.db.write() as conn:
        outbox.complete(conn, claim, _outcome())  # the attempt is written, not yet committed
        reset.start()
        _stuck_or_done(app.state.db, reset)
    reset.join(30)
    assert resets == [True]
    assert _orphans(app.state.db) == 0
    with app.state.db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(callback_notifications)).scalar_one() == 0


def test_a_send_recorded_after_a_reset_began_records_nothing(app: WxPartnerApp) -> None:
    """The other order: the reset's part of the outbox is done, not committed, when the send's result
    comes in; the recording waits for it and then finds the notification gone."""
    claim = _enqueue(app)
    done: list[tuple[str, bool]] = []

    def record() -> None:
        with app.state.db.write() as conn:
            done.append(outbox.complete(conn, claim, _outcome()))

    recording = threading.Thread(target=record, daemon=True)
    with app.state.db.write() as conn:
        outbox.reset(conn, None)
        recording.start()
        _stuck_or_done(app.state.db, recording)
    recording.join(30)
    assert done and done[0][1] is False
    assert _orphans(app.state.db) == 0
