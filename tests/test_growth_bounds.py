"""What grows with traffic, and what bounds it: links handed out per call (W1, W7) are deleted a day
after they expire; unauthenticated input adds no metrics label values; the journal keeps its two
generations whatever requests come; the journal's note of an injected fault does not outlive its row."""

from __future__ import annotations

import contextlib
import time

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from support import ApiClient
from webizpay_support import authorize, issue, payment_token, start_url
from wxpartner.server.app import WxPartnerApp
from wxpartner.server.journal import writer
from wxpartner.server.settings import Settings
from wxpartner.store import ops_repo
from wxpartner.store.webizpay_tables import webizpay_auth_links, webizpay_payment_links


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.extra["webizpay_sweep_seconds"] = 0.1  # the background round, as serve runs it, but often
    settings.extra["journal_keep"] = 5
    return settings


def _tokens(app: WxPartnerApp) -> tuple[set[str], set[str]]:
    with app.state.db.read() as conn:
        return (
            set(conn.execute(sa.select(webizpay_auth_links.c.token)).scalars()),
            set(conn.execute(sa.select(webizpay_payment_links.c.token)).scalars()),
        )


def test_links_are_deleted_a_day_after_they_expire(
    client_a: ApiClient, control: TestClient, app: WxPartnerApp
) -> None:
    """Every W1 and W7 call stores a link; none was ever deleted, so a merchant asking for links in a
    loop (or a long load test) grew both tables without bound."""
    emp = authorize(client_a, control, "employee_links")
    card = issue(client_a, emp, "links_card_0001", effective_end_time="2099-01-01T00:00:00+08:00")
    for _ in range(3):
        payment_token(client_a, emp, card["card_no"])
        assert start_url(client_a, "employee_other").status_code == 200
    auth, pay = _tokens(app)
    assert len(auth) == 4 and len(pay) == 3
    # 30 minutes on (W1 links have expired, W7 links too): still kept, and still answered as expired
    assert control.post("/sandbox/clock", json={"advance": 1800}).status_code == 200
    time.sleep(0.5)
    assert _tokens(app) == (auth, pay)
    # a day later they go; links handed out now stay
    assert control.post("/sandbox/clock", json={"advance": 86400}).status_code == 200
    fresh_pay = payment_token(client_a, emp, card["card_no"])
    assert start_url(client_a, "employee_third").status_code == 200
    deadline = time.monotonic() + 10
    while (left := _tokens(app)) and (left[0] & auth or left[1] & pay):
        assert time.monotonic() < deadline, f"expired links still there: {left}"
        time.sleep(0.1)
    auth_left, pay_left = _tokens(app)
    assert pay_left == {fresh_pay} and len(auth_left) == 1


def _label_sets(http: TestClient) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, tuple(sorted(s.labels.items())))
        for family in text_string_to_metric_families(http.get("/metrics").text)
        if family.name.startswith("wxpartner_")
        for s in family.samples
    }


def test_unauthenticated_input_adds_no_metrics_label_values(http: TestClient, client_b: ApiClient) -> None:
    """Label values come from the server's own vocabulary (operation ids, its statuses and codes,
    refusal reasons), never from a path, a method, an mchid or a serial a request names: a scanner
    must not grow /metrics (and Prometheus) one series per request."""
    plain = {"Accept": "application/json", "User-Agent": "scanner/1.0"}
    for i in range(3):  # one round sets up every series a kind of request makes
        http.get(f"/v3/unknown/{i}", headers=plain)
        http.request(f"M{i}X", "/v3/certificates", headers=plain)
        http.get(f"/v3/webizpay/users/user_{i:04d}/authorization-state?sp_mchid={i}", headers=plain)
        client_b.get("/v3/certificates", mchid=f"19{i:08d}", check=False)
        client_b.get("/v3/certificates", serial_no=f"{i:040X}", check=False)
        client_b.get(f"/v3/certificates?x={i}", headers={"Wechatpay-Sandbox-Fault": f"BOGUS{i}"})
        if i == 0:
            first = _label_sets(http)
    assert _label_sets(http) == first
    values = {v for _name, labels in first for _k, v in labels}
    assert not any(v.startswith(("M0X", "/v3", "19000000", "BOGUS")) for v in values), values


def test_the_journal_keeps_two_generations_of_whatever_comes(http: TestClient, app: WxPartnerApp) -> None:
    """Unrouted, unsigned requests are journaled too (a scanner's): the journal stays within its
    generations (each write may top the newer one up past ``keep`` by its chunk; here one row each)."""
    plain = {"Accept": "application/json", "User-Agent": "scanner/1.0"}
    journal = writer(app.state)
    for i in range(60):
        http.get(f"/v3/unknown/{i}", headers=plain)
        journal.flush()
        with app.state.db.read() as conn:
            assert ops_repo.count_journal(conn) <= 10  # journal_keep rows, twice at most
    with app.state.db.read() as conn:
        assert ops_repo.count_journal(conn) >= 5
        newest = ops_repo.list_journal(conn, ops_repo.JournalFilter(limit=1))[0]
    assert newest["path"] == "/v3/unknown/59"


def test_a_fault_note_leaves_with_its_journal_row(client_b: ApiClient, app: WxPartnerApp) -> None:
    for fault in ("SYSTEM_ERROR", "DROP_CONNECTION", "LATENCY=1", "BAD_SIGNATURE", "BOGUS"):
        with contextlib.suppress(ConnectionAbortedError):  # the dropped one
            client_b.get("/v3/certificates", headers={"Wechatpay-Sandbox-Fault": fault}, check=False)
    journal = writer(app.state)
    assert journal.faults == {}
    journal.flush()
    with app.state.db.read() as conn:
        rows = ops_repo.list_journal(conn, ops_repo.JournalFilter(limit=10))
    assert {r["fault"] for r in rows} >= {"SYSTEM_ERROR", "DROP_CONNECTION", "LATENCY=1ms", "BAD_SIGNATURE"}
