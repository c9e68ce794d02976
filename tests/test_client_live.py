"""The SDK against a real ``wxpartner serve`` process on a loopback port, on SQLite and PostgreSQL:
certificate download and refresh on rotation, callbacks the server delivers parsed by the SDK,
failover from a closed primary port, and the async client over the socket."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest

from live import LiveServer, free_port, start_live_server
from support import APIV3_KEY, SECOND_A, SP_A, SP_B, SUB_A, SUB_B, World
from wxpartner.client import AsyncClient, Client, RetryPolicy
from wxpartner.models import webizpay as w
from wxpartner.models.recharge import RechargeEmployee

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path, world: World, database_url: str) -> Iterator[LiveServer]:
    live = start_live_server(tmp_path / "live", world, database_url=database_url)
    yield live
    live.stop()


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    """A merchant's callback endpoint: keeps the exact headers and raw body of every POST."""
    got: list[tuple[dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            got.append((dict(self.headers.items()), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{http.server_address[1]}/notify", got
    http.shutdown()
    http.server_close()


def client_for(world: World, mchid: str, base_url: str, **kw: Any) -> Client:
    m = world.merchants[mchid]
    if mchid == SP_A:
        kw.update(
            wechatpay_public_key=world.platform_pub.public_key_pem,
            wechatpay_public_key_id=world.platform_pub.key_id,
        )
    return Client(
        mchid, m.serial_no, m.private_key_pem, apiv3_key=APIV3_KEY, base_url=base_url, timeout=10, **kw
    )


def test_sdk_over_loopback(
    server: LiveServer, world: World, receiver: tuple[str, list[tuple[dict[str, str], bytes]]]
) -> None:
    control = server.control()

    # Certificate mode: download on first use, refresh when the server signs with a rotated key.
    with client_for(world, SP_B, server.url, refresh_backoff=0) as cert_client:
        cert_client.webizpay.users.authorization_state("user_0001", sp_mchid=SP_B, sub_mchid=SUB_B)
        assert cert_client.keys.certificate_serials == [world.platform_cert.key_id]
        rotated = control.post("/sandbox/platform-keys/rotate", json={"kind": "certificate"}).json()["key_id"]
        cert_client.webizpay.users.authorization_state("user_0001", sp_mchid=SP_B, sub_mchid=SUB_B)
        assert set(cert_client.keys.certificate_serials) == {world.platform_cert.key_id, rotated}

    # Callbacks produced by the server, verified and decrypted by the SDK from the exact raw bytes.
    url, got = receiver
    assert control.put(f"/sandbox/merchants/{SP_A}/notify-url", json={"notify_url": url}).status_code == 200
    with client_for(world, SP_A, server.url) as client:
        link = client.webizpay.users.authorization_url(
            "user_0002", {"sp_mchid": SP_A, "sub_mchid": SUB_A, "application_type": "H5"}
        )
        assert link.authorization_url
        token = link.authorization_url.split("token=", 1)[1]
        consent = control.post("/sandbox/webizpay/authorizations", json={"token": token})
        assert consent.status_code == 200, consent.text
        assert control.post("/sandbox/callbacks/deliver").status_code == 200
        assert got, "the server delivered no callback"
        headers, raw = got[0]
        event = client.parse_notification(headers, raw)
        assert event.event_type == "WEBIZPAY.AUTHORIZED"
        assert isinstance(event.resource, w.AuthorizedEvent)
        assert event.resource.employee_id == consent.json()["employee_id"]

    # Failover: the primary port is closed, the backup is the live server.
    closed = f"http://127.0.0.1:{free_port()}"
    with client_for(
        world, SP_A, closed, backup_url=server.url, retry=RetryPolicy(max_attempts=1)
    ) as failing_over:
        created = failing_over.webizpay.ranges.create({"sp_mchid": SP_A, "identifier_type": "TRANSACTION_ID"})
        assert [r.range_id for r in failing_over.webizpay.ranges.list(sp_mchid=SP_A).range_list] == [
            created.range_id
        ]

    # The async client over the socket.
    async def main() -> None:
        m = world.merchants[SP_B]
        async with AsyncClient(
            SP_B, m.serial_no, m.private_key_pem, apiv3_key=APIV3_KEY, base_url=server.url
        ) as aclient:
            state = await aclient.webizpay.users.authorization_state(
                "user_0003", sp_mchid=SP_B, sub_mchid=SUB_B
            )
            assert state.user_id == "user_0003"
            assert len(aclient.keys.certificate_serials) == 2

    anyio.run(main)
    control.close()


def test_a_burst_beyond_r1s_10_per_second_is_absorbed_by_the_default_retries(
    server: LiveServer, world: World
) -> None:
    """R1 allows 10 adds per second per platform merchant (the server counts whole seconds of real time).
    20 adds at once with the default RetryPolicy: the 10 refused are repeated a second later, in the
    next window, and all succeed. Before, a 429 without Retry-After was repeated after 0.2 s and 0.4 s,
    inside the same second, and the burst ended with 10 RateLimitedErrors."""
    m = world.merchants[SP_A]

    async def burst() -> list[object]:
        async with AsyncClient(
            SP_A, m.serial_no, m.private_key_pem, apiv3_key=APIV3_KEY, base_url=server.url,
            wechatpay_public_key=world.platform_pub.public_key_pem,
            wechatpay_public_key_id=world.platform_pub.key_id,
        ) as client:  # fmt: skip
            await client.recharge_employees.list(SECOND_A)  # keys and a connection ready
            time.sleep(1.05 - time.time() % 1)  # start early in a second, as a burst may
            adds = [{"sub_mchid": SECOND_A, "sp_openid": "oBurstOfTwenty_0001"}] * 20
            return await asyncio.gather(*map(client.recharge_employees.add, adds), return_exceptions=True)

    started = time.monotonic()
    results = anyio.run(burst)
    assert [type(r).__name__ for r in results] == ["RechargeEmployee"] * 20, results
    assert {r.sp_openid for r in results if isinstance(r, RechargeEmployee)} == {"oBurstOfTwenty_0001"}
    assert time.monotonic() - started >= 1.0  # the refused ones waited for the next second
