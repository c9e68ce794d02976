"""Outbox retention: notifications delivered or failed longer ago than settings.callback_retention_days
(real time) are deleted with their attempts by the background deliverer, a batch at a time; pending
ones never, however old. Several processes prune at once without deleting anything they should not."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from starlette.testclient import TestClient

from conftest import SANDBOX_TOKEN
from live import free_port
from support import SP_A, SP_B
from test_callbacks import REVOKED, T0
from wxpartner.cli import main
from wxpartner.server import callbacks
from wxpartner.server.app import WxPartnerApp, create_app
from wxpartner.server.callbacks import Deliverer
from wxpartner.server.settings import Settings
from wxpartner.store import outbox, registry
from wxpartner.store.db import Database
from wxpartner.store.outbox_tables import callback_attempts, callback_notifications

DAY = 86400.0
WEEK = 7 * DAY


def _send(conn: sa.Connection, nid: str, at: float, ok: bool) -> str:
    """One send of ``nid`` as a delivery pass records it (claimed, then its result)."""
    [claim] = outbox.claim_due(conn, business_now=at, owner="test", lease_seconds=60, limit=1, ids=[nid])
    outcome = outbox.Outcome(
        at=at, sent_at=time.time(), url="http://127.0.0.1:9/x", status=200 if ok else 500, latency_ms=1.0,
        ok=ok, error=None if ok else "HTTP 500: ",
    )  # fmt: skip
    return outbox.complete(conn, claim, outcome)[0]


def make(db: Database, state: str, *, days_ago: float, mchid: str = SP_A) -> str:
    """A notification in ``state`` (pending after one failed send, or never sent for a merchant that
    cannot receive), last written ``days_ago`` days ago (real time)."""
    with db.write() as conn:
        nid = outbox.enqueue(
            conn, mchid=mchid, event_type="WEBIZPAY.REVOKED", summary="s", resource=REVOKED, now=T0
        )
        if mchid == SP_A:
            at = T0
            got = _send(conn, nid, at, ok=state == "delivered")
            if state == "failed":
                conn.execute(
                    callback_notifications.update()
                    .where(callback_notifications.c.id == nid)
                    .values(send_limit=2)
                )
                got = _send(conn, nid, at + 15, ok=False)
            assert got == state
        conn.execute(
            callback_notifications.update()
            .where(callback_notifications.c.id == nid)
            .values(updated_at=time.time() - days_ago * DAY)
        )
    return nid


def left(db: Database) -> tuple[set[str], dict[str, int]]:
    """The notifications kept, and how many attempts each id still has."""
    with db.read() as conn:
        ids = set(conn.execute(sa.select(callback_notifications.c.id)).scalars())
        rows = conn.execute(
            sa.select(callback_attempts.c.notification_id, sa.func.count()).group_by(
                callback_attempts.c.notification_id
            )
        ).all()
    return ids, {r[0]: int(r[1]) for r in rows}


@pytest.fixture
def receiving(app: WxPartnerApp) -> WxPartnerApp:
    with app.state.db.write() as conn:
        registry.set_notify_url(conn, SP_A, "http://127.0.0.1:9/x")  # SP_B has none: its wait
    return app


def test_finished_callbacks_past_the_retention_go_with_their_attempts_pending_ones_stay(
    receiving: WxPartnerApp, control: TestClient
) -> None:
    db = receiving.state.db
    gone = {make(db, "delivered", days_ago=8), make(db, "failed", days_ago=30)}
    kept = {
        make(db, "delivered", days_ago=6),
        make(db, "failed", days_ago=1),
        make(db, "pending", days_ago=30),  # a retry waiting, untouched for a month
        make(db, "pending", days_ago=30, mchid=SP_B),  # never sent: its merchant cannot receive
    }
    redelivered = make(db, "delivered", days_ago=8)
    with db.write() as conn:  # a redeliver made it pending again: the user wants it
        assert outbox.reopen(conn, redelivered, T0 + 100)
    kept.add(redelivered)
    before = left(db)[1]

    assert Deliverer(db, receiving.state.keyring).prune(WEEK) == (2, False)
    ids, attempts = left(db)
    assert ids == kept
    assert attempts == {i: n for i, n in before.items() if i in kept}  # the others' all went
    assert Deliverer(db, receiving.state.keyring).prune(WEEK) == (0, False)

    # What reads the outbox goes on with what is left.
    listed = control.get("/sandbox/callbacks", params={"limit": 500}).json()
    assert listed["total_count"] == len(kept) and {n["id"] for n in listed["data"]} == kept
    for nid in gone:
        shown = control.get(f"/sandbox/callbacks/{nid}")
        assert (shown.status_code, shown.json()["code"]) == (404, "RESOURCE_NOT_EXISTS")
        assert control.post(f"/sandbox/callbacks/{nid}/redeliver").status_code == 404
    assert control.post("/dashboard/login", data={"token": SANDBOX_TOKEN}).status_code == 200
    page = control.get("/dashboard/callbacks")
    assert page.status_code == 200 and all(nid in page.text for nid in kept)
    assert not any(nid in page.text for nid in gone)
    assert "deleted 7 days (real time) after they finished" in page.text


def test_a_backlog_is_pruned_a_batch_at_a_time(
    receiving: WxPartnerApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each batch is a write of its own; a look takes at most PRUNE_BATCHES and says more are left."""
    monkeypatch.setattr(callbacks, "PRUNE_BATCH", 2)
    db = receiving.state.db
    for _ in range(5):
        make(db, "delivered", days_ago=10)
    deliverer = Deliverer(db, receiving.state.keyring)
    assert deliverer.prune(WEEK, batches=2) == (4, True)
    assert deliverer.prune(WEEK, batches=2) == (1, False)
    assert left(db)[0] == set()


def _databases(url: str, count: int) -> Iterator[Database]:
    for _ in range(count):
        yield Database(url, pool_size=2)


def test_two_processes_pruning_at_once_lose_nothing_they_should_not(
    receiving: WxPartnerApp, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two pruners (engines of their own, as two workers or hosts) in small batches at once, while
    the outbox holds finished notifications on both sides of the retention and old pending ones."""
    monkeypatch.setattr(callbacks, "PRUNE_BATCH", 3)
    db = receiving.state.db
    old = {make(db, "delivered" if i % 3 else "failed", days_ago=8 + i % 5) for i in range(30)}
    kept = {make(db, "delivered", days_ago=3) for _ in range(8)}
    kept |= {make(db, "pending", days_ago=20) for _ in range(8)}
    before = left(db)[1]
    pruners = list(_databases(database_url, 2))
    start = threading.Barrier(2)
    done: list[int] = []
    failures: list[BaseException] = []

    def run(pruner: Database) -> None:
        try:
            deliverer = Deliverer(pruner, receiving.state.keyring)
            start.wait(30)
            more, total = True, 0
            while more:
                count, more = deliverer.prune(WEEK, batches=1)
                total += count
            done.append(total)
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(p,)) for p in pruners]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        for p in pruners:
            p.dispose()
    assert not failures, failures
    assert sum(done) == len(old)  # each deleted once
    ids, attempts = left(db)
    assert ids == kept
    assert attempts == {i: n for i, n in before.items() if i in kept}


def test_pruners_on_postgresql_skip_a_batch_another_holds(
    receiving: WxPartnerApp, database_url: str, backend: str
) -> None:
    """While one pruner's batch is deleted but not committed, another prunes the rest at once (rows
    locked elsewhere are skipped, not waited for nor deleted twice); SQLite's writes take turns."""
    if backend != "postgres":
        pytest.skip("SQLite: one writer at a time, the second pruner waits its turn")
    db = receiving.state.db
    old = {make(db, "delivered", days_ago=8) for _ in range(6)}
    other = Database(database_url, pool_size=2)
    try:
        with db.write() as conn:
            assert outbox.prune_finished(conn, time.time() - WEEK, 2) == 2
            result: list[tuple[int, bool]] = []
            t = threading.Thread(
                target=lambda: result.append(Deliverer(other, receiving.state.keyring).prune(WEEK))
            )
            t.start()
            t.join(60)
            assert result == [(4, False)]  # ended while the first batch was still held
    finally:
        other.dispose()
    assert left(db)[0] == set() and len(old) == 6


def test_the_background_deliverer_prunes(settings: Settings) -> None:
    """As `serve` runs it: the delivery task prunes at start, then every PRUNE_EVERY seconds."""
    settings.deliver_callbacks = True
    application = create_app(dataclasses.replace(settings, callback_retention_days=7))
    try:
        db = application.state.db
        gone = make(db, "pending", days_ago=0, mchid=SP_B)
        with db.write() as conn:  # delivered a week and a day ago (SP_B cannot receive: no send now)
            conn.execute(
                callback_notifications.update()
                .where(callback_notifications.c.id == gone)
                .values(state="delivered", updated_at=time.time() - 8 * DAY)
            )
        kept = make(db, "pending", days_ago=9, mchid=SP_B)
        with TestClient(application):
            deadline = time.monotonic() + 20
            while gone in left(db)[0] and time.monotonic() < deadline:
                time.sleep(0.05)
            assert left(db)[0] == {kept}
    finally:
        application.state.db.dispose()


@pytest.mark.parametrize("days", [-1, float("nan"), float("inf"), "7", True])
def test_a_retention_that_is_no_number_of_days_stops_the_start(settings: Settings, days: object) -> None:
    with pytest.raises(ValueError, match=r"callback_retention_days must be days, 0 or more"):
        create_app(dataclasses.replace(settings, callback_retention_days=days))  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "a week"])
def test_serve_refuses_a_retention_that_is_no_number_of_days(tmp_path: object, value: str) -> None:
    args = ["serve", "--port", str(free_port()), "--data-dir", f"{tmp_path}/data"]
    result = CliRunner().invoke(main, [*args, "--callback-retention-days", value], catch_exceptions=False)
    assert result.exit_code == 2 and "--callback-retention-days" in result.output, result.output
    assert "Traceback" not in result.output and "is serving" not in result.output
