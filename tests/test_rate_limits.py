"""Rate limits of the applyment family at WeChat's published defaults: submit 5 and query 20 requests
per second per merchant number (the recharge family's limits are in test_recharge*.py). The rest of the
suite lifts these limits (conftest) so business-rule tests can run at full speed."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from apply4subject_support import make_body, query, set_roles, submit
from support import SP_A, SP_B, ApiClient, World, in_one_window, statements_in_writes, statements_run
from wxpartner.server import rate_limits
from wxpartner.server.app import create_app
from wxpartner.server.settings import Settings
from wxpartner.store import sandbox
from wxpartner.store.schema import rate_counters


@pytest.fixture
def limited(settings: Settings, world: World) -> Iterator[tuple[ApiClient, ApiClient]]:
    app = create_app(dataclasses.replace(settings, extra={}))  # the published defaults
    set_roles(app, world)
    with TestClient(app, base_url="http://testserver") as http:
        yield ApiClient(http, world, SP_A), ApiClient(http, world, SP_B)
    app.state.db.dispose()


def test_submit_allows_five_per_second_per_merchant(limited: tuple[ApiClient, ApiClient]) -> None:
    chan, inst = limited
    attempt = iter(range(100))
    codes: list[str] = []

    def burst() -> list[int]:
        n = next(attempt)
        codes[:] = [f"RL{n}X{i}" for i in range(6)]
        bodies = [make_body(chan, code) for code in codes]  # encrypted first, then sent back to back
        other = make_body(inst, f"RL{n}B")
        statuses = [submit(chan, body).status_code for body in bodies]
        return [*statuses, submit(inst, other).status_code]

    statuses = in_one_window(burst)
    assert statuses == [200] * 5 + [429] + [200]  # the other merchant has its own budget
    assert query(chan, business_code=codes[5]).status_code == 404  # the refused submit wrote nothing


def test_query_allows_twenty_per_second(limited: tuple[ApiClient, ApiClient]) -> None:
    chan, _ = limited
    assert submit(chan, make_body(chan, "RLQUERY1")).status_code == 200
    statuses = in_one_window(lambda: [query(chan, business_code="RLQUERY1").status_code for _ in range(21)])
    assert statuses == [200] * 20 + [429]


def test_limits_are_configurable(settings: Settings, world: World) -> None:
    app = create_app(dataclasses.replace(settings, extra={"apply4subject_rate_limits": {"query": 1}}))
    set_roles(app, world)
    with TestClient(app, base_url="http://testserver") as http:
        chan = ApiClient(http, world, SP_A)
        statuses = in_one_window(lambda: [query(chan, business_code="NONE1").status_code for _ in range(2)])
    app.state.db.dispose()
    assert statuses == [404, 429]


def test_a_call_is_counted_by_one_statement_that_commits_by_itself_on_postgresql(
    settings: Settings, world: World
) -> None:
    """The count is one atomic upsert; on PostgreSQL it runs in autocommit (no BEGIN and COMMIT round
    trips of a write transaction of its own), on SQLite in a write transaction. The limit holds as
    before: the call beyond it is refused and counts nothing."""
    app = create_app(dataclasses.replace(settings, extra={"apply4subject_rate_limits": {"query": 2}}))
    set_roles(app, world)
    db = app.state.db
    with TestClient(app, base_url="http://testserver") as http:
        chan = ApiClient(http, world, SP_A)

        def burst() -> list[int]:
            with statements_run(db) as seen, statements_in_writes(db) as in_writes:
                statuses = [query(chan, business_code="NONE1").status_code for _ in range(3)]
            counted[:] = [sql for sql in seen if "rate_counters" in sql]  # of the burst kept
            counted_in_writes[:] = [sql for sql in in_writes if "rate_counters" in sql]
            return statuses

        counted: list[str] = []
        counted_in_writes: list[str] = []
        statuses = in_one_window(burst)
        with db.read() as conn:
            count = conn.execute(
                sa.select(rate_counters.c.count)
                .where(rate_counters.c.scope.like("apply4subject.query:%"))
                .order_by(rate_counters.c.window.desc())
                .limit(1)
            ).scalar_one()
    app.state.db.dispose()
    assert statuses == [404, 404, 429] and count == 2
    assert len(counted) == 3 and all(sql.startswith("INSERT INTO rate_counters") for sql in counted), counted
    if db.engine.dialect.name == "postgresql":
        assert counted_in_writes == [], counted_in_writes
    else:
        assert counted_in_writes == counted


def test_a_rate_limited_answer_says_when_to_retry(settings: Settings, world: World) -> None:
    """The window is the current second, so the wait is known: ``Retry-After: 1`` (HTTP's whole
    seconds), which the SDK and the CLI wait for; the answer had none. An injected 429 (a fault rule)
    has no known wait and carries none."""
    app = create_app(dataclasses.replace(settings, extra={"apply4subject_rate_limits": {"query": 1}}))
    set_roles(app, world)
    with TestClient(app, base_url="http://testserver") as http:
        chan = ApiClient(http, world, SP_A)
        answers = in_one_window(lambda: [query(chan, business_code="NONE1") for _ in range(2)])
        injected = chan.get("/v3/certificates", headers={"Wechatpay-Sandbox-Fault": "FREQUENCY_LIMITED"})
    app.state.db.dispose()
    assert [a.status_code for a in answers] == [404, 429]
    assert "retry-after" not in answers[0].headers and answers[1].headers["Retry-After"] == "1"
    assert injected.status_code == 429 and "retry-after" not in injected.headers
    for bad, refusal in (
        ({"cancel": 1}, "unknown operation 'cancel'"),
        ({"query": "1"}, "must be an integer, got '1'"),
        ({"query": True}, "must be an integer, got True"),
        (20, "must be a mapping"),
    ):
        with pytest.raises(ValueError, match=refusal):
            create_app(dataclasses.replace(settings, extra={"apply4subject_rate_limits": bad}))


def test_every_thousandth_counted_call_sweeps_the_old_windows(settings: Settings, world: World) -> None:
    """Windows older than a minute count nothing any more; the PRUNE_EVERY-th counted call of a process
    deletes them (else the table grew by a row per caller and second, for ever), then counts again."""
    app = create_app(dataclasses.replace(settings, extra={}))
    set_roles(app, world)
    an_hour_ago = int(time.time()) - 3600

    def plant_old_window() -> None:
        with app.state.db.write() as conn:
            assert sandbox.hit_rate_limit(conn, "test:old", an_hour_ago, 1)

    def old_window_kept() -> bool:
        with app.state.db.read() as conn:
            return (
                conn.execute(sa.select(rate_counters).where(rate_counters.c.scope == "test:old")).first()
                is not None
            )

    with TestClient(app, base_url="http://testserver") as http:
        chan = ApiClient(http, world, SP_A)
        plant_old_window()
        rate_limits._pruner.calls = rate_limits.PRUNE_EVERY - 2
        assert query(chan, business_code="NONE1").status_code == 404
        assert old_window_kept()  # one call short
        assert query(chan, business_code="NONE1").status_code == 404
        assert not old_window_kept()  # the PRUNE_EVERY-th call swept it
        plant_old_window()
        assert query(chan, business_code="NONE1").status_code == 404
        assert old_window_kept()  # the count began again
    app.state.db.dispose()
