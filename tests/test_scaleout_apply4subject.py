"""apply4subject over two hosts on one PostgreSQL database: a query that lets the sandbox auto policy
pass an applyment (and authorize its merchant numbers) racing a cancel of the same applyment through
the other host. Whichever comes first wins; a cancelled applyment never leaves its merchants authorized."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from apply4subject_support import BASE, make_body, serial_for
from live import LiveServer, hosts_on_postgres
from pg import PgServer
from support import SP_A, ApiClient, World

pytestmark = pytest.mark.slow
_names = itertools.count()
ROUNDS = 40
CANCELED = "APPLYMENT_STATE_CANCELED"
AUTHORIZED = "AUTHORIZE_STATE_AUTHORIZED"


@pytest.fixture
def hosts(
    tmp_path: Path, world: World, pg_server: PgServer | None
) -> Iterator[tuple[LiveServer, LiveServer]]:
    channel = {"merchants": [{"mchid": SP_A, "role": "channel", "key_mode": "public_key"}]}
    with hosts_on_postgres(pg_server, tmp_path, world, scenario=channel, extra_args=["--no-rate-limits"]) as (
        a,
        b,
    ):
        yield a, b


def test_a_cancel_racing_the_auto_pass_never_leaves_a_cancelled_applyments_merchants_authorized(
    hosts: tuple[LiveServer, LiveServer], world: World
) -> None:
    a, b = hosts
    with a.control() as control:
        policy = {"outcome": "pass", "after_queries": 1, "authorize": True}
        assert control.put("/sandbox/apply4subject/auto-policy", json=policy).status_code == 200
    wrong: list[tuple[int, list[int]]] = []
    outcomes: set[str] = set()
    with httpx.Client(base_url=a.url, timeout=30) as ha, httpx.Client(base_url=b.url, timeout=30) as hb:
        on_a, on_b = ApiClient(ha, world, SP_A), ApiClient(hb, world, SP_A)
        for i in range(ROUNDS):
            sub, code = f"12399{i:05d}", f"race_pass_{time.time_ns()}"
            body = make_body(on_a, code, confirm=[sub])
            submitted = on_a.post(BASE, body, wechatpay_serial=serial_for(on_a))
            assert submitted.status_code == 200, submitted.text

            def act(j: int, code: str = code) -> httpx.Response:
                # the query (its first: the policy passes it) on A, the cancel on B, at once
                return (
                    on_a.get(f"{BASE}?business_code={code}") if j == 0 else on_b.post(f"{BASE}/{code}/cancel")
                )

            with ThreadPoolExecutor(2) as pool:
                answers = list(pool.map(act, range(2)))
            assert answers[0].status_code == 200, answers[0].text
            assert answers[1].status_code in (204, 400), answers[1].text  # 400: it had passed already
            state = on_b.get(f"{BASE}?business_code={code}").json()["applyment_state"]
            authorized = on_b.get(f"{BASE}/merchants/{sub}/state").json()["authorize_state"]
            outcomes.add(state)
            if state == CANCELED and authorized == AUTHORIZED:
                wrong.append((i, [r.status_code for r in answers]))
    assert not wrong, f"cancelled, yet its merchant authorized: {wrong} (outcomes {outcomes})"


def test_auto_passes_authorizing_shared_merchants_in_opposite_orders_never_deadlock(
    hosts: tuple[LiveServer, LiveServer], world: World
) -> None:
    """Two applyments confirming the same merchant numbers, listed in opposite orders, passed (and their
    merchants authorized) by queries through the two hosts at once. Each pass inserts its merchants'
    authorizations; taken in list order, the two transactions waited for each other and PostgreSQL
    aborted one: that query answered 500. They are now taken in one order (sorted)."""
    a, b = hosts
    with a.control() as control:
        policy = {"outcome": "pass", "after_queries": 1, "authorize": True}
        assert control.put("/sandbox/apply4subject/auto-policy", json=policy).status_code == 200
    failed: list[str] = []
    with httpx.Client(base_url=a.url, timeout=30) as ha, httpx.Client(base_url=b.url, timeout=30) as hb:
        clients = [ApiClient(ha, world, SP_A), ApiClient(hb, world, SP_A)]
        for i in range(ROUNDS):
            subs = [f"12398{i:03d}{k:02d}" for k in range(6)]
            codes = []
            for order in (subs, subs[::-1]):
                code = f"order_{time.time_ns()}"
                body = make_body(clients[0], code, confirm=order)
                submitted = clients[0].post(BASE, body, wechatpay_serial=serial_for(clients[0]))
                assert submitted.status_code == 200, submitted.text
                codes.append(code)

            def query(j: int, codes: list[str] = codes) -> httpx.Response:
                return clients[j].get(f"{BASE}?business_code={codes[j]}")

            with ThreadPoolExecutor(2) as pool:
                answers = list(pool.map(query, range(2)))
            failed += [f"{r.status_code} {r.text[:120]}" for r in answers if r.status_code != 200]
            for sub in subs:
                state = clients[1].get(f"{BASE}/merchants/{sub}/state").json()["authorize_state"]
                assert state == AUTHORIZED or failed, (sub, state)
    assert not failed, failed


def test_clock_moves_settling_on_both_hosts_at_once_make_each_step_once_and_leave_none_due(
    hosts: tuple[LiveServer, LiveServer],
) -> None:
    """Two hosts' clock moves settle the same due applyments at once, batch by batch (200). Each
    answers what it made: together exactly the applyments there were (a host counted those the other
    had moved first as its own), and when both have answered none is left in audit."""
    a, b = hosts
    n = 1000
    with a.control() as on_a, b.control() as on_b:
        section = {
            "auto_policy": {"outcome": "approve", "after_seconds": 600},
            "applyments": [{"mchid": SP_A, "business_code": f"both_{i:04d}"} for i in range(n)],
        }
        assert on_a.post("/sandbox/scenario", json={"apply4subject": section}).status_code == 200
        # Every one due at once, none moved yet: the wait shortened to nothing.
        shortened = {"outcome": "approve", "after_seconds": 0}
        assert on_a.put("/sandbox/apply4subject/auto-policy", json=shortened).status_code == 200

        def move(control: httpx.Client) -> dict[str, Any]:
            moved = control.post("/sandbox/clock", json={"advance": 0}, timeout=60)
            assert moved.status_code == 200, moved.text
            body: dict[str, Any] = moved.json()
            return body

        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(move, (on_a, on_b)))
        made = [answer["settled"]["applyments_advanced"] for answer in answers]
        assert sum(made) == n and all(answer["settled_all"] for answer in answers), answers
        assert _states(on_b) == {"APPLYMENT_STATE_WAITTING_FOR_CONFIRM_CONTACT": n}


def _states(control: httpx.Client) -> dict[str, int]:
    counts: dict[str, int] = {}
    offset: int | None = 0
    while offset is not None:
        page = control.get(
            "/sandbox/apply4subject/applyments", params={"limit": 500, "offset": offset}
        ).json()
        for applyment in page["data"]:
            counts[applyment["applyment_state"]] = counts.get(applyment["applyment_state"], 0) + 1
        offset = page["next_offset"]
    return counts
