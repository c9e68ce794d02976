"""Dashboard pages over real HTTP (in-process): login, merchants, journal explanations, faults, clock."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from conftest import SANDBOX_TOKEN
from support import SP_A, SP_B, ApiClient, World
from wxpartner.server.dashboard import esc, render_page


def login(http: TestClient) -> None:
    resp = http.post("/dashboard/login", data={"token": SANDBOX_TOKEN}, follow_redirects=False)
    assert resp.status_code == 303, resp.text
    assert "wxpartner_dashboard" in resp.headers["set-cookie"]
    assert SANDBOX_TOKEN not in resp.headers["set-cookie"]
    assert "httponly" in resp.headers["set-cookie"].lower()


def test_pages_need_login(http: TestClient) -> None:
    resp = http.get("/dashboard/journal?failed=1", follow_redirects=False)
    assert resp.status_code == 303
    assert resp.headers["location"].startswith("/dashboard/login?next=")
    bad = http.post("/dashboard/login", data={"token": "wrong"})
    assert bad.status_code == 401 and "not the sandbox token" in bad.text
    assert http.get("/dashboard", follow_redirects=False).status_code == 303


def test_overview_and_merchants(http: TestClient) -> None:
    login(http)
    home = http.get("/dashboard")
    assert home.status_code == 200 and "Business clock" in home.text
    page = http.get("/dashboard/merchants").text
    assert SP_A in page and SP_B in page
    assert "PRIVATE KEY" not in page and "0123456789abcdef0123456789abcdef" not in page


def test_journal_explains_a_failed_signature(http: TestClient, world: World) -> None:
    client = ApiClient(http, world, SP_A)
    bad = client.get("/v3/certificates?x=1", private_key=world.other_key, check=False)
    assert bad.status_code == 401
    login(http)
    listing = http.get("/dashboard/journal", params={"failed": "1"}).text
    rid = bad.headers["Request-ID"]
    assert rid in listing and "refused" in listing
    detail = http.get(f"/dashboard/journal/{rid}").text
    assert "Signature explanation" in detail
    assert "GET⏎\n/v3/certificates?x=1⏎" in detail
    assert http.get("/dashboard/journal/NOPE").status_code == 404


def test_fault_form_applies_to_requests(http: TestClient, world: World) -> None:
    login(http)
    resp = http.post(
        "/dashboard/faults", data={"kind": "SYSTEM_ERROR", "count": "1", "operation": "", "probability": "1"}
    )
    assert resp.status_code == 200 and "Added SYSTEM_ERROR rule" in resp.text
    client = ApiClient(http, world, SP_B)
    assert client.get("/v3/certificates").status_code == 500
    assert client.get("/v3/certificates").status_code == 200
    bad = http.post("/dashboard/faults", data={"kind": "SYSTEM_ERROR", "count": "zero"})
    assert "count must be a whole number" in bad.text
    page = http.get("/dashboard/faults").text
    rule_id = page.split('action="/dashboard/faults/')[1].split("/delete")[0]
    assert "Deleted" in http.post(f"/dashboard/faults/{rule_id}/delete").text
    assert "No fault rules" in http.post("/dashboard/faults/clear").text


def test_clock_controls(http: TestClient, control: TestClient) -> None:
    login(http)
    assert "Business time is now" in http.post("/dashboard/clock", data={"action": "freeze"}).text
    frozen = control.get("/sandbox/clock").json()
    assert frozen["frozen"] is True
    http.post("/dashboard/clock", data={"action": "advance", "advance": "2d"})
    assert control.get("/sandbox/clock").json()["now_ts"] == frozen["now_ts"] + 2 * 86400
    http.post("/dashboard/clock", data={"action": "set", "set": "2030-01-02T03:04:05+08:00"})
    assert control.get("/sandbox/clock").json()["now"].startswith("2030-01-02T03:04:05")
    assert "unknown action" in http.post("/dashboard/clock", data={"action": "x"}).text
    http.post("/dashboard/clock", data={"action": "reset"})
    assert control.get("/sandbox/clock").json()["frozen"] is False


def test_family_data_pages_are_tolerant(http: TestClient) -> None:
    login(http)
    index = http.get("/dashboard/data")
    assert index.status_code == 200
    assert http.get("/dashboard/data/merchants").status_code == 404  # foundation tables have own pages
    assert http.get("/dashboard/data/no_such_table").status_code == 404
    for href in index.text.split('href="/dashboard/data/')[1:]:
        name = href.split('"')[0]
        assert http.get(f"/dashboard/data/{name}").status_code == 200


def test_render_page_escapes_and_shares_the_look() -> None:
    html = render_page("Confirm <it>", f"<p>{esc('<script>')}</p>", nav=False)
    assert "<title>Confirm &lt;it&gt; · wxpartner</title>" in html
    assert "&lt;script&gt;" in html and "<style>" in html and "/dashboard/logout" not in html


def test_family_data_grouping_and_masking() -> None:
    from wxpartner.server.dashboard import data

    assert data.group_of("callback_attempts") == "Callbacks & delivery attempts"
    assert data.group_of("apply4subject_authorizations") == "Applyments (apply4subject)"
    assert data.group_of("recharge_employees") == "Recharge employees"
    assert data.group_of("webizpay_relations") == "Employees & authorizations"
    assert data.group_of("webizpay_cards") == "Quota cards & spends"
    assert data.group_of("something_else") == "Other"
    assert data.mask("confirm_token", "abcdefghijkl") == "••••kl (hidden)"
    assert data.mask("apiv3_key", "short") == "•••• (hidden)"
    assert data.mask("state", "ACTIVE") == "ACTIVE"
    assert data.mask("content", "x" * 500).endswith("… (500 chars)")


def test_callbacks_page_lists_notifications(http: TestClient, app) -> None:  # type: ignore[no-untyped-def]
    outbox = pytest.importorskip("wxpartner.store.outbox")
    import time

    with app.state.db.write() as conn:
        nid = outbox.enqueue(
            conn,
            mchid=SP_A,
            event_type="WEBIZPAY.AUTHORIZED",
            summary="员工授权成功",
            resource={"secret_looking": "do-not-show"},
            now=time.time(),
        )
    login(http)
    text = http.get("/dashboard/callbacks").text
    assert nid in text and "WEBIZPAY.AUTHORIZED" in text and "no attempt yet" in text
    assert "do-not-show" not in text
    assert nid not in http.get("/dashboard/callbacks", params={"mchid": SP_B}).text
