"""Servers of one database verifying with different time windows (a restart with a wider
``--time-window``, hosts configured apart). Each keeps nonces for the longest retention any of them
asked for, so a narrow one never forgets a nonce that a wide one still accepts a replay of; the wide one
refuses requests signed before its window's history is complete. Both backends, through the API, the
servers' clock driven by the test."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from starlette.testclient import TestClient

from support import SP_A, ApiClient, World
from wxpartner.server import verify
from wxpartner.server.app import create_app
from wxpartner.server.settings import Settings
from wxpartner.store import replay_window

URL = f"/v3/webizpay/avail-mch-ranges?sp_mchid={SP_A}"  # 200 once verified


class _Clock:
    """``time`` as verify.py sees it, with ``time()`` set by the test."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def time(self) -> float:
        return self.now

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr(verify, "time", fake)
    # small generations on SQLite (full at 8 nonces), so a few requests drop the expired ones
    monkeypatch.setattr(replay_window, "MIN_LOG2", 4)
    monkeypatch.setattr(replay_window, "MAX_LOG2", 6)
    return fake


@pytest.fixture
def start(settings: Settings, world: World, clock: _Clock) -> Iterator[Callable[[int], ApiClient]]:
    """Start a server of the test's database verifying with ``window``, at the clock's time."""
    with contextlib.ExitStack() as servers:

        def serve(window: int) -> ApiClient:
            app = create_app(replace(settings, time_window=window))
            servers.callback(app.state.db.dispose)
            app.state.verifier._prune_every = 1  # PostgreSQL: prune the table on every recorded nonce
            http = servers.enter_context(TestClient(app, base_url="http://testserver"))
            return ApiClient(http, world, SP_A)

        yield serve


def _get(client: ApiClient, at: float, nonce: str) -> tuple[int, dict[str, Any]]:
    resp = client.get(URL, timestamp=int(at), nonce=nonce)
    return resp.status_code, resp.json()


def test_a_narrow_server_keeps_the_nonces_a_wide_one_still_accepts_a_replay_of(
    start: Callable[[int], ApiClient], clock: _Clock
) -> None:
    t = clock.now
    narrow = start(300)
    assert _get(narrow, t, "first-of-all")[0] == 200
    for i in range(10):  # SQLite: the first generation fills up and a second one starts
        assert _get(narrow, t, f"early-{i}")[0] == 200
    clock.now = t + 10
    wide = start(3600)
    assert _get(wide, t + 10, "the-wide-server-starts")[0] == 200
    # The narrow server's retention (600 s) has passed: it records and prunes on.
    clock.now = t + 700
    for i in range(40):
        assert _get(narrow, t + 700, f"later-{i}")[0] == 200
    # The first request, replayed to the wide server: its timestamp is inside ±3600 s.
    status, body = _get(wide, t, "first-of-all")
    assert status == 401, body
    assert body["code"] == "SIGN_ERROR" and body["detail"]["field"] == "nonce_str", body
    assert "replayed" in body["detail"]["detail"]["issue"], body


def test_a_wider_server_refuses_what_was_signed_before_its_history_is_complete(
    start: Callable[[int], ApiClient], clock: _Clock
) -> None:
    t = clock.now
    narrow = start(300)
    assert _get(narrow, t, "narrow-first")[0] == 200
    clock.now = t + 10
    wide = start(3600)
    # Widening from the narrow server's 600 s retention: the history is complete for the wide server's
    # ±3600 s only from 300 s before it started (a nonce accepted earlier, by a server whose window was
    # ±300 s, may be gone).
    complete_from = int(t + 10) - 300
    assert _get(wide, complete_from, "signed-at-the-edge")[0] == 200
    status, body = _get(wide, complete_from - 1, "signed-just-before")
    assert status == 401, body
    assert body["code"] == "SIGN_ERROR" and body["detail"]["field"] == "timestamp", body
    assert f"before {complete_from}" in body["detail"]["detail"]["issue"], body
    # The narrow server's own window never reaches back that far: it is not affected.
    assert _get(narrow, t + 10 - 300, "narrow-at-its-edge")[0] == 200
