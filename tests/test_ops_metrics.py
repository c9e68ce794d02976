"""Prometheus /metrics after a scripted run, and structured JSON access logs without secrets."""

from __future__ import annotations

import json
import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from support import SP_A, SP_B, SP_C, ApiClient, World
from wxpartner.server import logs, metrics
from wxpartner.server.app import WxPartnerApp


def scrape(http: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = http.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_after_a_scripted_run(http: TestClient, client_b: ApiClient, world: World) -> None:
    before = scrape(http)
    client_b.get("/v3/certificates")
    client_b.get("/v3/certificates")
    client_b.get("/v3/certificates", headers={"Wechatpay-Sandbox-Fault": "FREQUENCY_LIMITED"})
    client_b.get("/v3/certificates", private_key=world.other_key, check=False)
    client_b.get("/v3/certificates", timestamp=1, check=False)
    metrics.callback_delivered("success")
    metrics.callback_delivered("timeout")
    after = scrape(http)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    ok = {"operation": "certificates.list", "status": "200", "code": ""}
    assert delta("wxpartner_requests_total", **ok) == 2
    assert (
        delta(
            "wxpartner_requests_total", operation="certificates.list", status="429", code="FREQUENCY_LIMITED"
        )
        == 1
    )
    assert (
        delta("wxpartner_requests_total", operation="certificates.list", status="401", code="SIGN_ERROR") == 2
    )
    assert delta("wxpartner_signature_failures_total", reason="signature_mismatch") == 1
    assert delta("wxpartner_signature_failures_total", reason="timestamp_out_of_window") == 1
    assert delta("wxpartner_request_duration_seconds_count", operation="certificates.list") == 5
    assert delta("wxpartner_callback_deliveries_total", outcome="success") == 1
    assert delta("wxpartner_callback_deliveries_total", outcome="timeout") == 1
    assert delta("wxpartner_faults_injected_total", kind="FREQUENCY_LIMITED") == 1


def test_metrics_is_public_but_control_is_not(http: TestClient) -> None:
    assert http.get("/metrics").status_code == 200
    assert http.get("/sandbox/faults").status_code == 401


def test_json_access_log_has_request_id_and_no_secrets(
    client_b: ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="wxpartner.access"):
        resp = client_b.get("/v3/certificates")
    records = [r for r in caplog.records if r.name == "wxpartner.access"]
    assert records
    line = logs.JsonFormatter().format(records[-1])
    data = json.loads(line)
    assert data["request_id"] == resp.headers["Request-ID"]
    assert data["operation"] == "certificates.list" and data["status"] == 200
    assert data["mchid"] == client_b.mchid
    for secret in ("Authorization", "signature=", "PRIVATE KEY", client_b.keys.apiv3_key):
        assert secret not in line


def test_callback_delivery_outcomes_after_a_scripted_run(
    http: TestClient, control: TestClient, app: WxPartnerApp
) -> None:
    """Real deliveries: one to a receiver answering 200, one answering 500, one to a closed port."""
    from receiver import start_receiver
    from wxpartner.store import outbox

    ok_rec, bad_rec = start_receiver(), start_receiver()
    bad_rec.status = 500
    try:
        targets = {SP_A: ok_rec.url, SP_B: bad_rec.url, SP_C: "http://127.0.0.1:9/closed"}
        for mchid, url in targets.items():
            resp = control.put(f"/sandbox/merchants/{mchid}/notify-url", json={"notify_url": url})
            assert resp.status_code == 200, resp.text
        now = control.get("/sandbox/clock").json()["now_ts"]
        with app.state.db.write() as conn:
            for mchid in targets:
                outbox.enqueue(
                    conn, mchid=mchid, event_type="WEBIZPAY.REVOKED", summary="s", resource={"a": 1}, now=now
                )
        before = scrape(http)
        attempts = control.post("/sandbox/callbacks/deliver").json()["attempts"]
        assert len(attempts) == 3
        after = scrape(http)
    finally:
        ok_rec.stop()
        bad_rec.stop()

    def delta(outcome: str) -> float:
        name = "wxpartner_callback_deliveries_total"
        return value(after, name, outcome=outcome) - value(before, name, outcome=outcome)

    assert len(ok_rec.deliveries) == 1 and len(bad_rec.deliveries) == 1
    assert (delta("success"), delta("http_error"), delta("connection_error")) == (1, 1, 1)
    assert delta("timeout") == 0


def test_delivery_outcome_labels() -> None:
    assert metrics.delivery_outcome(200, True, None) == "success"
    assert metrics.delivery_outcome(503, False, "HTTP 503: busy") == "http_error"
    assert metrics.delivery_outcome(None, False, "timeout: no answer within 5 s") == "timeout"
    assert metrics.delivery_outcome(None, False, "ConnectError: refused") == "connection_error"
