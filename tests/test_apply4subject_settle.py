"""A clock move's share of apply4subject's auto policy (``settle_waited``, a SETTLE_HOOK): every applyment
the policy's after_seconds is due for has taken its step when POST /sandbox/clock answers, also when
another host or worker settles at the same time (PostgreSQL), and no settling can spin on an applyment
the policy will not move."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

import pg
from conftest import SANDBOX_TOKEN, quiet_control
from support import SP_A
from wxpartner.domain import apply4subject as d
from wxpartner.server.app import WxPartnerApp, create_app
from wxpartner.server.routes.apply4subject import settle_waited
from wxpartner.server.settings import Settings
from wxpartner.server.settle import settle
from wxpartner.store.apply4subject_repo import Apply4SubjectRepo
from wxpartner.store.apply4subject_tables import apply4subject_applyments as T


def _waiting(control: TestClient, n: int, after_seconds: float = 600) -> None:
    """``n`` applyments in WAITTING_FOR_AUDIT, then the clock moved past the policy's wait."""
    policy = {"outcome": "approve", "after_seconds": after_seconds}
    applyments = [{"mchid": SP_A, "business_code": f"waiting_{i:03d}"} for i in range(n)]
    section = {"auto_policy": policy, "applyments": applyments}
    loaded = control.post("/sandbox/scenario", json={"apply4subject": section})
    assert loaded.status_code == 200, loaded.text
    assert control.post("/sandbox/clock", json={"advance": after_seconds}).status_code == 200


def _states(app: WxPartnerApp) -> list[str]:
    with app.state.db.read() as conn:
        return sorted(conn.execute(sa.select(T.c.state)).scalars())


def test_a_settling_that_finds_its_batch_taken_by_another_settles_on(
    settings: Settings, database_url: str, backend: str
) -> None:
    """Two settlers (hosts, workers) read the same batch of due applyments on PostgreSQL, each in its own
    snapshot; the one that waits on the other's row locks then moves none of its batch. It counted them
    as its own (an applyment no longer in audit counted as moved): the clock move here answered 230
    advanced while it made 30, and two hosts' answers added up to more than there were. Counting only
    its own steps, that batch makes 0, which must not end the settling while the applyments after it
    are still due. Here the other settler holds the first batch moved, not yet committed, until this
    one waits on it."""
    if backend == "sqlite":
        pytest.skip("SQLite: one writer at a time, and a settling reads its batch inside its write lock")
    with quiet_control(settings) as (app, control):
        _waiting(control, 230)
        with app.state.db.read() as conn:
            now = control.get("/sandbox/clock").json()["now_ts"]
            batch = [a.applyment_id for a in Apply4SubjectRepo(conn).waiting_since(d.AUDIT, now - 600, 200)]
        with app.state.db.engine.connect() as other:
            taken = other.execute(
                T.update()
                .where(T.c.applyment_id.in_(batch), T.c.state == d.AUDIT)
                .values(state=d.CONFIRM_CONTACT, state_since=now)
            )
            assert taken.rowcount == 200
            with ThreadPoolExecutor(1) as pool:
                settled = pool.submit(settle, app.state, 10_000)
                pg.wait_for_lock_waiters(database_url, 1)
                other.commit()
                result = settled.result(60)
        assert result.counts["applyments_advanced"] == 30 and result.complete
        assert _states(app) == [d.CONFIRM_CONTACT] * 230


def test_a_clock_moved_by_exactly_the_wait_moves_the_applyment(settings: Settings) -> None:
    """The batch's read (``state_since <= now - after_seconds``) and the policy (``now - state_since >=
    after_seconds``) computed the wait apart, and in floating point they disagree: a clock moved by
    exactly a wait of 0.1 s left the applyment in audit (the read took it as due, the policy did not;
    one fractional wait in four), and a settling that read again until its batch moved would have spun
    on it for ever. The read and the policy now decide by the same cutoff."""
    after = 0.1
    start = _disagreeing_start(after)
    settings.extra["webizpay_sweep_seconds"] = 0
    app = create_app(settings)
    try:
        with TestClient(app, headers={"Authorization": f"Bearer {SANDBOX_TOKEN}"}) as control:
            assert control.post("/sandbox/clock", json={"set": start, "freeze": True}).status_code == 200
            policy = {"outcome": "approve", "after_seconds": after}
            assert control.put("/sandbox/apply4subject/auto-policy", json=policy).status_code == 200
            moved = _waiting_moved(control, after)
            assert moved["settled"]["applyments_advanced"] == 1 and moved["settled_all"] is True
            assert _states(app) == [d.CONFIRM_CONTACT]
            assert settle_waited(app.state) == 0
    finally:
        app.state.db.dispose()


def _waiting_moved(control: TestClient, after: float) -> dict[str, object]:
    """One applyment in audit since the frozen clock's now, then the clock moved by ``after``."""
    applyments = [{"mchid": SP_A, "business_code": "waiting_exact"}]
    loaded = control.post("/sandbox/scenario", json={"apply4subject": {"applyments": applyments}})
    assert loaded.status_code == 200, loaded.text
    moved = control.post("/sandbox/clock", json={"advance": after})
    assert moved.status_code == 200, moved.text
    body: dict[str, object] = moved.json()
    return body


def _disagreeing_start(after: float) -> float:
    """A clock (now, a whole second) for which the old policy's wait, ``(start + after) - start``, is
    short of ``after`` while the read's ``start <= (start + after) - after`` holds."""
    for start in range(1_800_000_000, 1_800_000_100):
        now = start + after
        if now - start < after and start <= now - after:
            return float(start)
    raise AssertionError("no such clock")


def test_the_policy_and_the_batch_read_agree_on_when_a_wait_is_over() -> None:
    policy = d.AutoPolicy.parse({"after_seconds": 0.1})
    start = _disagreeing_start(0.1)
    assert policy.due(d.AUDIT, start, start + 0.1, 0)
    cutoff = policy.wait_cutoff(start + 0.1)
    assert cutoff is not None and start <= cutoff
    assert not policy.due(d.AUDIT, start, start + 0.05, 0)
    assert not policy.due(d.CONFIRM_CONTACT, start, start + 1, 0)
