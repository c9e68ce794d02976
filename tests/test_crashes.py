"""Crashes: the server is SIGKILLed again and again in the middle of a write load (cards issued and
cancelled from several threads) on the embedded SQLite store. After every restart each acknowledged
write is there; a request that got no answer, repeated with the same parameters, yields exactly one
card; and at the end the callback outbox delivers one event for every cancelled card.

`make test` runs a few cycles; `make soak` runs 20 (WXPARTNER_CRASH_CYCLES)."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from live import LiveServer, start_live_server
from receiver import start_receiver
from support import APIV3_KEY, SP_A, SUB_A, ApiClient, World
from webizpay_support import issue_body, link_token
from wxpartner.protocol.notification import decrypt_resource

pytestmark = pytest.mark.slow
CYCLES = int(os.environ.get("WXPARTNER_CRASH_CYCLES", "4"))


def _start(data_dir: Path, world: World) -> LiveServer:
    return start_live_server(data_dir, world, token="crash-token")


def _load(client: ApiClient, employee: str, cycle: int, seconds: float) -> list[tuple[str, Any]]:
    """Issue a card, then cancel every second one, from 4 threads; returns (kind, outcome) records."""
    out: list[tuple[str, Any]] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    path = f"/v3/webizpay/employees/{employee}/quota-cards"

    def run(t: int) -> None:
        n = 0
        while time.monotonic() < stop:
            body = issue_body(f"crash{cycle:02d}t{t}n{n:05d}")
            n += 1
            try:
                resp = client.post(path, body)
            except httpx.HTTPError:
                with lock:
                    out.append(("unanswered", body))
                return  # the server is gone
            if resp.status_code != 200:
                with lock:
                    out.append(("refused", (body, resp.status_code, resp.text)))
                continue
            card = resp.json()
            with lock:
                out.append(("issued", (body, card["card_no"])))
            if n % 2:
                cancel = {"sp_mchid": SP_A, "sub_mchid": SUB_A, "reason": "crash test"}
                try:
                    c = client.post(f"{path}/{card['card_no']}/cancel", cancel)
                except httpx.HTTPError:
                    return
                if c.status_code == 200:
                    with lock:
                        out.append(("cancelled", card["card_no"]))

    threads = [threading.Thread(target=run, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return out


def test_sigkill_during_writes_loses_nothing(tmp_path: Path, world: World) -> None:
    data_dir = tmp_path / "crash"
    server = _start(data_dir, world)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        client = ApiClient(http, world, SP_A)
        start = client.post(
            "/v3/webizpay/users/crash_user_01/authorization-url",
            {"sp_mchid": SP_A, "sub_mchid": SUB_A, "application_type": "H5"},
        )
        with server.control() as control:
            done = control.post(
                "/sandbox/webizpay/authorizations",
                json={"token": link_token(start.json()["authorization_url"])},
            )
        employee = done.json()["employee_id"]

    issued: dict[str, tuple[dict[str, Any], str]] = {}
    cancelled: set[str] = set()
    unanswered: list[dict[str, Any]] = []
    for cycle in range(CYCLES):
        with httpx.Client(base_url=server.url, timeout=10) as http:
            client = ApiClient(http, world, SP_A)
            killer = threading.Timer(0.6 + 0.1 * (cycle % 4), server.proc.kill)  # SIGKILL mid-load
            killer.start()
            records = _load(client, employee, cycle, seconds=5)
            killer.join()
        server.proc.wait(10)
        fresh: dict[str, tuple[dict[str, Any], str]] = {}
        for kind, value in records:
            if kind == "issued":
                fresh[value[0]["out_card_no"]] = value
            elif kind == "cancelled":
                cancelled.add(value)
            elif kind == "unanswered":
                unanswered.append(value)
            else:
                body, status, text = value
                pytest.fail(f"refused {status} during load: {text}")

        server = _start(data_dir, world)  # same data directory: a restart, not a fresh store
        with httpx.Client(base_url=server.url, timeout=10) as http:
            client = ApiClient(http, world, SP_A)
            # This cycle's acknowledged cards now; every earlier cycle's again at the end.
            for out_card_no, (_, card_no) in (fresh if cycle < CYCLES - 1 else {**issued, **fresh}).items():
                got = client.get(
                    f"/v3/webizpay/employees/{employee}/out-quota-cards/{out_card_no}?sp_mchid={SP_A}&sub_mchid={SUB_A}"
                )
                assert got.status_code == 200, (
                    f"acknowledged card {out_card_no} lost after a crash: {got.text}"
                )
                assert got.json()["card_no"] == card_no
                expected = "DISABLED" if card_no in cancelled else None
                if expected:
                    assert got.json()["card_state"] == expected
        issued.update(fresh)
        print(f"cycle {cycle}: {len(fresh)} acknowledged, {len(unanswered)} unanswered so far")

    with httpx.Client(base_url=server.url, timeout=10) as http:
        client = ApiClient(http, world, SP_A)
        for body in unanswered:  # repeated as WeChat tells callers to: one card, whatever happened
            path = f"/v3/webizpay/employees/{employee}/quota-cards"
            first = client.post(path, body)
            assert first.status_code == 200, first.text
            assert client.post(path, body).json()["card_no"] == first.json()["card_no"]

    receiver = start_receiver()
    try:
        with server.control() as control:
            control.put(f"/sandbox/merchants/{SP_A}/notify-url", json={"notify_url": receiver.url})
            deadline = time.monotonic() + 30
            while True:
                control.post("/sandbox/callbacks/deliver")
                got = {
                    decrypt_resource(APIV3_KEY, json.loads(d.body)["resource"]).get("card_no")
                    for d in list(receiver.deliveries)
                }
                if cancelled <= got or time.monotonic() > deadline:
                    break
                time.sleep(0.3)
        missing = cancelled - got
        assert not missing, f"{len(missing)} cancelled cards never had their callback delivered"
    finally:
        receiver.stop()
        server.stop()
    assert len(issued) > CYCLES * 5, "the load never got going"
