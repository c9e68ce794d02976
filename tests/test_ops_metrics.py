"""Prometheus /metrics after a scripted run, and structured JSON access logs without secrets."""

from __future__ import annotations

import json
import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from support import ApiClient, World
from wxpartner.server import logs, metrics


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
