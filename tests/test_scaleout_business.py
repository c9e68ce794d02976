"""Scale-out with real business state: two server processes on different loopback ports over ONE
PostgreSQL database, requests alternating (and racing) between them. Uniqueness, state transitions,
rate limits and callback delivery hold exactly, because the database holds them."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from live import LiveServer, hosts_on_postgres
from pg import PgServer
from receiver import start_receiver
from support import APIV3_KEY, SECOND_A, SP_A, SUB_A, ApiClient, World, sign_request
from webizpay_support import issue_body, link_token
from wxpartner.protocol.messages import response_message
from wxpartner.protocol.notification import decrypt_resource
from wxpartner.protocol.signing import verify

pytestmark = pytest.mark.slow
_names = itertools.count()


@pytest.fixture(scope="module")
def hosts(
    tmp_path_factory: pytest.TempPathFactory, world: World, pg_server: PgServer | None
) -> Iterator[tuple[LiveServer, LiveServer]]:
    with hosts_on_postgres(pg_server, tmp_path_factory.mktemp("business"), world) as (a, b):
        yield a, b


@pytest.fixture
def clients(hosts: tuple[LiveServer, LiveServer], world: World) -> Iterator[list[ApiClient]]:
    with (
        httpx.Client(base_url=hosts[0].url, timeout=30) as ha,
        httpx.Client(base_url=hosts[1].url, timeout=30) as hb,
    ):
        yield [ApiClient(ha, world, SP_A), ApiClient(hb, world, SP_A)]


def _authorize(clients: list[ApiClient], hosts: tuple[LiveServer, LiveServer], user_id: str) -> str:
    """W1 on host A, the employee consents through host B's control API."""
    resp = clients[0].post(
        f"/v3/webizpay/users/{user_id}/authorization-url",
        {"sp_mchid": SP_A, "sub_mchid": SUB_A, "application_type": "H5"},
    )
    assert resp.status_code == 200, resp.text
    with hosts[1].control() as control:
        done = control.post(
            "/sandbox/webizpay/authorizations", json={"token": link_token(resp.json()["authorization_url"])}
        )
    assert done.status_code == 200, done.text
    return str(done.json()["employee_id"])


def test_racing_issues_on_both_hosts_make_one_card(
    clients: list[ApiClient], hosts: tuple[LiveServer, LiveServer]
) -> None:
    employee = _authorize(clients, hosts, f"race_issue_{time.time_ns()}")
    body = issue_body(f"race{time.time_ns()}")
    path = f"/v3/webizpay/employees/{employee}/quota-cards"
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: clients[i % 2].post(path, body), range(24)))
    assert {r.status_code for r in answers} == {200}, [r.text for r in answers if r.status_code != 200]
    assert len({r.json()["card_no"] for r in answers}) == 1

    changed = clients[1].post(path, {**body, "amount": body["amount"] + 1})
    assert changed.status_code == 400, changed.text
    assert changed.json()["code"] in {"INVALID_REQUEST", "PARAM_ERROR"}


def test_racing_cancels_on_both_hosts_make_one_transition(
    clients: list[ApiClient], hosts: tuple[LiveServer, LiveServer]
) -> None:
    employee = _authorize(clients, hosts, f"race_cancel_{time.time_ns()}")
    card = clients[0].post(
        f"/v3/webizpay/employees/{employee}/quota-cards", issue_body(f"cxl{time.time_ns()}")
    )
    assert card.status_code == 200, card.text
    card_no = card.json()["card_no"]
    path = f"/v3/webizpay/employees/{employee}/quota-cards/{card_no}/cancel"
    cancel = {"sp_mchid": SP_A, "sub_mchid": SUB_A, "reason": "racing"}
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: clients[i % 2].post(path, cancel), range(20)))
    assert {r.status_code for r in answers} == {200}, [r.text for r in answers if r.status_code != 200]
    assert {r.json()["card_state"] for r in answers} == {"DISABLED"}
    # One transition: every answer reports the same disabled time, the one stamped by the winner.
    assert len({r.json()["card_disabled_time"] for r in answers}) == 1


def test_rate_limit_holds_across_hosts(
    hosts: tuple[LiveServer, LiveServer], world: World, clients: list[ApiClient]
) -> None:
    path = "/v3/platsolution/ecommerce/recharge-employees"
    # One employee added 30 times (the family caps a second-level merchant at 3 employees): every
    # repeat is a legitimate idempotent call, so the only thing refusing calls is the rate limit.
    openid = f"oRate{time.time_ns()}"
    signed = [
        sign_request(
            world.merchants[SP_A],
            "POST",
            path,
            {"sub_mchid": SECOND_A, "sp_openid": openid},
        )
        for _ in range(30)
    ]
    # Start just after a second boundary so the burst falls inside one counting window.
    time.sleep(1.02 - time.time() % 1)
    with httpx.Client(timeout=30) as http, ThreadPoolExecutor(10) as pool:
        answers = list(
            pool.map(
                lambda i: http.post(
                    hosts[i % 2].url + path, content=signed[i].body, headers=signed[i].headers
                ),
                range(30),
            )
        )
    codes = [r.status_code for r in answers]
    assert codes.count(200) == 10, codes
    assert codes.count(429) == 20, codes
    assert {r.json()["code"] for r in answers if r.status_code == 429} == {"FREQUENCY_LIMITED"}


def test_a_callback_is_delivered_once_by_two_hosts(
    clients: list[ApiClient], hosts: tuple[LiveServer, LiveServer], world: World
) -> None:
    receiver = start_receiver()
    try:
        with hosts[0].control() as control:
            put = control.put(f"/sandbox/merchants/{SP_A}/notify-url", json={"notify_url": receiver.url})
            assert put.status_code in (200, 204), put.text
        user_id = f"cb_once_{time.time_ns()}"
        _authorize(clients, hosts, user_id)
        deadline = time.monotonic() + 20

        def mine() -> list[dict[str, Any]]:
            out = []
            for d in list(receiver.deliveries):
                body = json.loads(d.body)
                plain = decrypt_resource(APIV3_KEY, body["resource"])
                if plain.get("user_id") == user_id:
                    out.append({"body": body, "plain": plain, "headers": d.headers, "raw": d.body})
            return out

        while not mine() and time.monotonic() < deadline:
            time.sleep(0.2)
        got = mine()
        assert got, "no callback arrived within 20 s"
        time.sleep(3)  # both hosts keep polling: a second delivery would arrive now
        got = mine()
        assert len(got) == 1, [g["body"]["id"] for g in got]
        event = got[0]
        assert event["body"]["event_type"] == "WEBIZPAY.AUTHORIZED"
        h = {k.lower(): v for k, v in event["headers"].items()}
        message = response_message(h["wechatpay-timestamp"], h["wechatpay-nonce"], event["raw"])
        key = world.platform_public_key(h["wechatpay-serial"])
        assert verify(key, message, h["wechatpay-signature"])
    finally:
        receiver.stop()


def test_racing_refunds_with_one_out_refund_no_make_one_refund(
    clients: list[ApiClient], hosts: tuple[LiveServer, LiveServer]
) -> None:
    """The sandbox refund is idempotent on out_refund_no: copies racing through both hosts all answer
    the one refund (the losers used to hit the unique key: 500 Internal Server Error)."""
    employee = _authorize(clients, hosts, f"race_refund_{time.time_ns()}")
    card = clients[0].post(
        f"/v3/webizpay/employees/{employee}/quota-cards", issue_body(f"rf{time.time_ns()}")
    )
    assert card.status_code == 200, card.text
    card_no, amount = card.json()["card_no"], issue_body("x")["amount"]
    with hosts[0].control() as control:
        paid = control.post("/sandbox/webizpay/payments", json={"card_no": card_no, "amount": 100})
    assert paid.status_code == 200, paid.text
    txid = paid.json()["transaction_id"]
    refund = {"transaction_id": txid, "amount": 10, "out_refund_no": f"R{time.time_ns()}"}

    def send(i: int) -> httpx.Response:
        with hosts[i % 2].control() as control:
            return control.post("/sandbox/webizpay/refunds", json=refund)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(24)))
    assert {r.status_code for r in answers} == {200}, [r.text for r in answers if r.status_code != 200]
    assert len({r.json()["refund_id"] for r in answers}) == 1
    got = clients[1].get(
        f"/v3/webizpay/employees/{employee}/quota-cards/{card_no}?sp_mchid={SP_A}&sub_mchid={SUB_A}"
    )
    assert got.status_code == 200, got.text
    assert got.json()["remain_amount"] == amount - 100 + 10  # refunded once (RETURN: back on the card)


def test_sandbox_preloads_racing_on_both_hosts_keep_the_three_employee_cap(
    hosts: tuple[LiveServer, LiveServer], clients: list[ApiClient]
) -> None:
    """A preload counts the second-level merchant's employees in effect and refuses more than 3: two
    preloads of 2 employees each through the two hosts at once used to count without each other and
    both commit (4 in effect, and the in-effect count the adds check left at 2)."""
    stamp = time.time_ns()
    xs, ys = [f"oX{stamp}{i}" for i in range(2)], [f"oY{stamp}{i}" for i in range(2)]
    outcomes: list[list[int]] = []
    for _ in range(8):
        with hosts[0].control() as control:  # none in effect: start again
            cleared = control.post(
                "/sandbox/recharge-employees",
                json={
                    "sub_mchid": SECOND_A,
                    "employees": [{"sp_openid": o, "state": "DELETED"} for o in xs + ys],
                },
            )
            assert cleared.status_code == 200, cleared.text
            listed = clients[0].get(f"/v3/platsolution/ecommerce/recharge-employees/sub-mchid/{SECOND_A}")
            for e in listed.json().get("employees") or []:
                control.post(
                    "/sandbox/recharge-employees",
                    json={
                        "sub_mchid": SECOND_A,
                        "employees": [{"sp_openid": e["sp_openid"], "state": "DELETED"}],
                    },
                )

        def preload(i: int) -> httpx.Response:
            with hosts[i].control() as control:
                return control.post(
                    "/sandbox/recharge-employees", json={"sub_mchid": SECOND_A, "employees": (xs, ys)[i]}
                )

        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(preload, range(2)))
        outcomes.append(sorted(r.status_code for r in answers))
        listed = clients[1].get(f"/v3/platsolution/ecommerce/recharge-employees/sub-mchid/{SECOND_A}")
        assert listed.status_code == 200, listed.text
        assert len(listed.json().get("employees") or []) <= 3, (outcomes, listed.json())
    assert all(o == [200, 400] for o in outcomes), outcomes


def test_sandbox_preloads_of_shared_employees_in_opposite_orders_never_deadlock(
    hosts: tuple[LiveServer, LiveServer],
) -> None:
    """Two preloads naming the same employees in opposite orders, through the two hosts at once: each
    row is written in one order (sp_openid), so they wait for each other instead of deadlocking (one of
    them used to fail with 500 SYSTEM_ERROR)."""
    failed: list[str] = []
    for r in range(12):
        openids = [f"oOrd{time.time_ns()}{r:02d}{k}" for k in range(8)]
        entries = [{"sp_openid": o, "state": "DELETED"} for o in openids]

        def preload(i: int, entries: list[dict[str, str]] = entries) -> httpx.Response:
            order = entries if i == 0 else entries[::-1]
            with hosts[i].control() as control:
                return control.post(
                    "/sandbox/recharge-employees", json={"sub_mchid": SECOND_A, "employees": order}
                )

        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(preload, range(2)))
        failed += [f"{a.status_code} {a.text[:120]}" for a in answers if a.status_code != 200]
        for answer in answers:  # the answer lists the employees in the order given
            if answer.status_code == 200:
                got = [e["sp_openid"] for e in answer.json()["employees"]]
                assert sorted(got) == sorted(openids) and got in (openids, openids[::-1]), got
    assert not failed, failed
