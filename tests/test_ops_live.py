"""Sandbox operations against a real server process: a dropped connection is a real drop, and the
journal buffer is written out on a normal shutdown (SIGINT)."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from live import free_port, start_live_server
from support import SP_B, ApiClient, World
from wxpartner.server.app import create_app
from wxpartner.server.http_protocol import BoundedHttpToolsProtocol
from wxpartner.server.settings import Settings
from wxpartner.store import ops_repo
from wxpartner.store.db import Database, sqlite_url_for

pytestmark = pytest.mark.slow


def test_drop_and_journal_survive_a_real_server(tmp_path: Path, world: World) -> None:
    server = start_live_server(tmp_path / "live", world, env={"WXPARTNER_LOG_FORMAT": "json"})
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            client = ApiClient(http, world, SP_B)
            with pytest.raises(httpx.TransportError):
                client.get("/v3/certificates", headers={"Wechatpay-Sandbox-Fault": "DROP_CONNECTION"})
            ids = [client.get("/v3/certificates").headers["Request-ID"] for _ in range(5)]
    finally:
        server.stop()
    assert server.proc.returncode is not None
    db = Database(sqlite_url_for(server.data_dir))
    try:
        with db.read() as conn:
            rows = ops_repo.list_journal(conn, ops_repo.JournalFilter(limit=50))
    finally:
        db.dispose()
    recorded = {r["request_id"] for r in rows}
    assert set(ids) <= recorded
    assert any(r["status"] == 0 and r["fault"] == "DROP_CONNECTION" for r in rows)
    # structured logs: one JSON object per access line, with the Request-ID, and no secrets
    text = (server.data_dir / "server.log").read_text()
    assert "Traceback" not in text, text[-3000:]  # the drop is one line (below), not uvicorn's traceback
    access = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    logged = {a["request_id"] for a in access if a["logger"] == "wxpartner.access"}
    assert set(ids) <= logged
    keys = world.merchants[SP_B]
    for secret in ("PRIVATE KEY", keys.apiv3_key, "Authorization", "signature="):
        assert secret not in text


def test_metrics_add_up_over_workers_in_multiprocess_mode(tmp_path: Path, world: World) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    prom_dir = tmp_path / "prom"
    prom_dir.mkdir()
    server = start_live_server(
        tmp_path / "live", world, workers=2, env={"PROMETHEUS_MULTIPROC_DIR": str(prom_dir)}
    )
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            client = ApiClient(http, world, SP_B)
            for _ in range(12):
                # a fresh connection per request, so both workers get a share
                with httpx.Client(base_url=server.url, timeout=10) as one:
                    assert ApiClient(one, world, SP_B).get("/v3/certificates").status_code == 200
            assert client.get("/v3/certificates").status_code == 200
            text = http.get("/metrics").text
    finally:
        server.stop()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "wxpartner_requests_total" and s.labels.get("operation") == "certificates.list":
                total += s.value
    assert total == 13


HELD_MS = 3000  # the delayed answer's wait: far longer than the other request takes on a loaded machine


def _wait_for_latency_fault(http: httpx.Client) -> None:
    """Until the server has injected a LATENCY fault (its counter in /metrics): that request's handler
    has run, and its answer is held from now on."""
    deadline = time.monotonic() + 30  # a bound for a loaded machine, not a measurement
    while 'wxpartner_faults_injected_total{kind="LATENCY"} 1.0' not in http.get("/metrics").text:
        assert time.monotonic() < deadline, "no LATENCY fault injected"
        time.sleep(0.01)


@pytest.mark.parametrize("pipeline", ["auto", "threads"])
def test_a_latency_fault_holds_only_its_own_answer(tmp_path: Path, world: World, pipeline: str) -> None:
    """One worker, the pipeline on its event loop (SQLite's default) or in threads: a delayed answer
    must not delay the next request, which is answered while the delayed one still waits. (It asked
    after a fixed 0.3 s for an answer within 1 s: a loaded machine took longer for either.)"""
    server = start_live_server(tmp_path / "live", world, extra_args=["--pipeline", pipeline])
    try:
        ready = httpx.get(server.url + "/readyz").json()
        assert ready == {
            "status": "ready",
            "backend": "sqlite",
            "pipeline": "loop" if pipeline == "auto" else "threads",
        }
        with (
            httpx.Client(base_url=server.url, timeout=10) as slow_http,
            httpx.Client(base_url=server.url, timeout=10) as http,
        ):
            slow: list[float] = []

            def delayed() -> None:
                started = time.perf_counter()
                resp = ApiClient(slow_http, world, SP_B).get(
                    "/v3/certificates", headers={"Wechatpay-Sandbox-Fault": f"LATENCY={HELD_MS}"}
                )
                assert resp.status_code == 200
                slow.append(time.perf_counter() - started)

            t = threading.Thread(target=delayed)
            t.start()
            _wait_for_latency_fault(http)  # the delayed request has been handled: its wait begins
            assert ApiClient(http, world, SP_B).get("/v3/certificates").status_code == 200
            answered_first = t.is_alive() and not slow  # while the other one waited
            t.join(HELD_MS / 1000 + 30)
    finally:
        server.stop()
    assert slow and slow[0] >= HELD_MS / 1000
    assert answered_first


def test_an_injected_drop_logs_one_line_and_a_real_error_its_traceback(
    settings: Settings, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Every DROP_CONNECTION fault was logged by uvicorn as "Exception in ASGI application" with a
    full traceback (1,000 drops injected, 1,000 tracebacks). Now a drop is one INFO line of the app's
    (with its Request-ID; the journal records it too), while an exception the app did not expect
    still gets uvicorn's traceback. Served by uvicorn on loopback with the serving protocol; the app
    is wrapped so that one path raises."""
    wx = create_app(settings)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/boom":
            raise RuntimeError("an error nobody expected")
        await wx(scope, receive, send)

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http=BoundedHttpToolsProtocol, log_config=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    try:
        with caplog.at_level(logging.INFO):
            thread.start()
            deadline = time.monotonic() + 20
            while not server.started and time.monotonic() < deadline:
                time.sleep(0.02)
            assert server.started
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
                client = ApiClient(http, world, SP_B)
                for _ in range(3):
                    with pytest.raises(httpx.TransportError):
                        client.get("/v3/certificates", headers={"Wechatpay-Sandbox-Fault": "DROP_CONNECTION"})
                assert client.get("/v3/certificates").status_code == 200
                assert http.get("/boom").status_code == 500
    finally:
        server.should_exit = True
        thread.join(10)
        wx.state.db.dispose()
    drops = [r for r in caplog.records if "DROP_CONNECTION" in r.getMessage()]
    assert len(drops) == 3, [r.getMessage() for r in drops]
    assert all(r.levelno == logging.INFO and not r.exc_info and r.request_id for r in drops)  # type: ignore[attr-defined]
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert [type(r.exc_info[1]) for r in tracebacks if r.exc_info] == [RuntimeError], [
        r.getMessage() for r in tracebacks
    ]
