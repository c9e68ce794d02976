"""A database outage gives clean, retryable 500 SYSTEM_ERROR answers, and the server recovers by
itself when the database returns (a private PostgreSQL server, stopped and started under the server)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from live import LiveServer, free_port, start_live_server
from pg import PgServer, create_database, start_pg
from support import SP_B, ApiClient, World
from wxpartner.store.db import PING_AFTER_IDLE_S, Database

pytestmark = pytest.mark.slow


@pytest.fixture
def private_pg() -> Iterator[PgServer]:
    server = start_pg(free_port(), own=True)
    if server is None:
        pytest.skip("PostgreSQL is not installed here; .ci/run installs it")
    yield server
    server.stop()


@pytest.fixture
def server_on_pg(tmp_path: Path, world: World, private_pg: PgServer) -> Iterator[LiveServer]:
    url = create_database(private_pg, "wx_outage")
    server = start_live_server(tmp_path / "live", world, database_url=url)
    yield server
    server.stop()


def test_outage_answers_system_error_then_recovers(
    server_on_pg: LiveServer, private_pg: PgServer, world: World
) -> None:
    with httpx.Client(base_url=server_on_pg.url, timeout=30) as http:
        client = ApiClient(http, world, SP_B)
        assert client.get("/v3/certificates").status_code == 200

        private_pg.pg_ctl("stop", "-m", "fast")
        started = time.monotonic()
        down = client.get("/v3/certificates")
        assert time.monotonic() - started < 10, "an outage must not hang requests"
        assert down.status_code == 500
        assert down.json()["code"] == "SYSTEM_ERROR"
        assert down.headers.get("Request-ID")

        private_pg.pg_ctl("start")
        deadline = time.monotonic() + 15
        while True:
            resp = client.get("/v3/certificates")
            if resp.status_code == 200:
                break
            assert resp.status_code == 500 and resp.json()["code"] == "SYSTEM_ERROR"
            assert time.monotonic() < deadline, "server did not recover after the database returned"
            time.sleep(0.2)


def test_a_connection_idle_across_a_restart_is_pinged_and_replaced(private_pg: PgServer) -> None:
    """Pooled connections idle longer than PING_AFTER_IDLE_S are pinged before use: after a restart
    nothing else noticed, the next transaction gets a live connection instead of a dead one."""
    db = Database(create_database(private_pg, "wx_idle_ping"))
    try:
        with db.read() as conn, db.read() as other:  # two pooled connections, both dead soon
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1
            assert other.execute(sa.text("SELECT 1")).scalar() == 1
        private_pg.pg_ctl("stop", "-m", "fast")
        private_pg.pg_ctl("start")
        time.sleep(PING_AFTER_IDLE_S + 0.2)
        for _ in range(3):
            with db.read() as conn:
                assert conn.execute(sa.text("SELECT 1")).scalar() == 1
    finally:
        db.dispose()


def test_control_api_answers_system_error_during_an_outage(
    server_on_pg: LiveServer, private_pg: PgServer
) -> None:
    """The sandbox control API during an outage: a JSON 500 SYSTEM_ERROR like /v3 (not Starlette's plain
    "Internal Server Error"), and the same call works again when the database is back."""
    with server_on_pg.control() as control:
        assert control.get("/sandbox/clock").status_code == 200
        private_pg.pg_ctl("stop", "-m", "fast")
        try:
            for call in (
                lambda: control.get("/sandbox/clock"),
                lambda: control.post("/sandbox/clock", json={"advance": 1}),
                lambda: control.get("/sandbox/callbacks"),
            ):
                down = call()
                assert down.status_code == 500, down.text
                assert down.json()["code"] == "SYSTEM_ERROR", down.text
        finally:
            private_pg.pg_ctl("start")
        deadline = time.monotonic() + 15
        while (up := control.get("/sandbox/clock")).status_code != 200:
            assert up.json()["code"] == "SYSTEM_ERROR", up.text
            assert time.monotonic() < deadline, "the control API did not recover"
            time.sleep(0.2)
