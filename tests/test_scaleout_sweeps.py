"""Expiry sweeps running in several processes at once, racing a revoke, over one PostgreSQL database
(two server processes, each with its background sweep, plus sweeps asked for through the control API).
Every overdue card is disabled once, and no request meets a deadlock: every writer that changes
several cards takes their row locks in one order (card_no)."""

from __future__ import annotations

import datetime as dt
import itertools
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from live import LiveServer
from support import SP_A, SUB_A, ApiClient, World
from webizpay_support import authorize, issue_body
from wxpartner.protocol.times import format_rfc3339

pytestmark = pytest.mark.slow
_names = itertools.count()
CARDS = 60
ROUNDS = 4


def _employee(client: ApiClient, host: LiveServer, user_id: str) -> str:
    with host.control() as control:
        return authorize(client, control, user_id)


def _overdue_cards(clients: list[ApiClient], a: LiveServer, employee: str) -> list[str]:
    """CARDS cards of ``employee``, ending within two hours: the race's clock move makes them overdue.
    End times follow issue order and card numbers are random: the sweep (oldest end first) and the
    revoke meet them in different orders."""
    with a.control() as control:
        now = int(control.get("/sandbox/clock").json()["now_ts"])
    stamp = time.time_ns()

    def issue(i: int) -> str:
        end = format_rfc3339(dt.datetime.fromtimestamp(now + 3600 + i, dt.UTC))
        resp = clients[i % 2].post(
            f"/v3/webizpay/employees/{employee}/quota-cards",
            issue_body(f"sw{stamp}{i:03d}", effective_end_time=end),
        )
        assert resp.status_code == 200, resp.text
        return str(resp.json()["card_no"])

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(issue, range(CARDS)))


def _revoke_and_sweeps(
    clients: list[ApiClient], hosts: tuple[LiveServer, LiveServer], employee: str
) -> list[httpx.Response]:
    """A revoke (W8) on host B, and on both hosts the clock move that makes the cards overdue (it
    expires them before it answers: a sweep of its own) and sweeps, at once (the background sweeps
    run too). Moved first, the clock left the race nothing to race for."""

    def act(i: int) -> httpx.Response:
        if i == 0:
            return clients[1].post(
                f"/v3/webizpay/employees/{employee}/revoke", {"sp_mchid": SP_A, "sub_mchid": SUB_A}
            )
        with hosts[i % 2].control() as control:
            if i == 1:
                return control.post("/sandbox/clock", json={"advance": 7200})
            return control.post("/sandbox/webizpay/sweep")

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(act, range(4)))


def test_sweeps_racing_a_revoke_on_two_hosts_never_deadlock(
    hosts: tuple[LiveServer, LiveServer], world: World
) -> None:
    a, b = hosts
    failed: list[str] = []
    with httpx.Client(base_url=a.url, timeout=30) as ha, httpx.Client(base_url=b.url, timeout=30) as hb:
        clients = [ApiClient(ha, world, SP_A), ApiClient(hb, world, SP_A)]
        for _ in range(ROUNDS):
            employee = _employee(clients[0], a, f"sweep_{time.time_ns()}")
            cards = _overdue_cards(clients, a, employee)
            answers = _revoke_and_sweeps(clients, hosts, employee)
            failed += [f"{r.status_code} {r.text[:200]}" for r in answers if r.status_code != 200]
            for card_no in cards[:: CARDS // 6]:
                got = clients[0].get(
                    f"/v3/webizpay/employees/{employee}/quota-cards/{card_no}?sp_mchid={SP_A}&sub_mchid={SUB_A}"
                )
                assert got.status_code == 200, got.text
                assert got.json()["card_state"] == "DISABLED", got.json()
    assert not failed, failed
