"""The dashboard's applyment pages show the world the API answers: what the auto policy's after_seconds
owes is made before they read (as the other family pages do), and a clock move on the Clock page settles
the whole backlog as POST /sandbox/clock does (server/settle.py), not one batch."""

from __future__ import annotations

import re

from starlette.testclient import TestClient

from conftest import SANDBOX_TOKEN, quiet_control
from support import SP_A
from wxpartner.domain.apply4subject import AUDIT, CONFIRM_CONTACT
from wxpartner.server.app import create_app
from wxpartner.server.settings import Settings


def _load_waiting(control: TestClient, n: int) -> list[int]:
    """``n`` applyments in audit, under an approve-after-600-s policy, on a frozen clock."""
    assert control.post("/sandbox/clock", json={"freeze": True}).status_code == 200
    policy = {"outcome": "approve", "after_seconds": 600}
    assert control.put("/sandbox/apply4subject/auto-policy", json=policy).status_code == 200
    section = {"applyments": [{"mchid": SP_A, "business_code": f"waiting_{i}"} for i in range(n)]}
    loaded = control.post("/sandbox/scenario", json={"apply4subject": section})
    assert loaded.status_code == 200, loaded.text
    ids: list[int] = loaded.json()["apply4subject"]["applyment_ids"]
    return ids


def _shown_state(page: str) -> str:
    found = re.search(r'<span id="applyment-state">.*?(APPLYMENT_STATE_\w+)', page)
    assert found, page
    return found.group(1)


def test_the_applyment_pages_make_what_the_clock_owes_before_they_read(settings: Settings) -> None:
    """A clock moved without settling (clock_settle_max 0: another host's move, or an older version's)
    left the applyment due; A2 would have moved it at its next query, the dashboard said it was still
    in audit, on its list and its own page."""
    with quiet_control(settings) as (_, control):
        (applyment_id,) = _load_waiting(control, 1)
        moved = control.post("/sandbox/clock", json={"advance": 600}).json()
        assert moved["settled"]["applyments_advanced"] == 0  # the move settled nothing
        # not followed: the overview it leads to settles (one batch) before it reads
        control.post("/dashboard/login", data={"token": SANDBOX_TOKEN}, follow_redirects=False)
        listed = control.get("/dashboard/applyments")
        assert listed.status_code == 200
        table = listed.text.split("<table", 1)[1]
        assert CONFIRM_CONTACT in table and AUDIT not in table
        page = control.get(f"/dashboard/applyments/{applyment_id}")
        assert _shown_state(page.text) == CONFIRM_CONTACT


def test_a_clock_move_on_the_dashboard_settles_every_applyment_it_made_due(settings: Settings) -> None:
    """More than one batch (200) due: the Clock page's move takes them all before it answers, as the
    control API's does (a guard: the page already runs server/settle.py)."""
    settings.extra.update(webizpay_sweep_seconds=0)  # the default bound: what settles, the move did
    application = create_app(settings)
    try:
        with TestClient(application, headers={"Authorization": f"Bearer {SANDBOX_TOKEN}"}) as control:
            _load_waiting(control, 230)
            control.post("/dashboard/login", data={"token": SANDBOX_TOKEN})
            page = control.post(
                "/dashboard/clock", data={"action": "advance", "advance": "10m"}, follow_redirects=True
            )
            assert "settled: 230 applyments advanced" in page.text, page.text
            states = {
                a["applyment_state"]
                for a in control.get("/sandbox/apply4subject/applyments", params={"limit": 500}).json()[
                    "data"
                ]
            }
            assert states == {CONFIRM_CONTACT}
    finally:
        application.state.db.dispose()


def test_the_control_api_reads_make_what_the_clock_owes(settings: Settings) -> None:
    """GET /sandbox/apply4subject/applyments (and one applyment) after a clock move that settled nothing
    said WAITTING_FOR_AUDIT; the applyment's next A2 query then moved it."""
    with quiet_control(settings) as (_, control):
        (applyment_id,) = _load_waiting(control, 1)
        assert control.post("/sandbox/clock", json={"advance": 600}).json()["settled_all"] is False
        one = control.get(f"/sandbox/apply4subject/applyments/{applyment_id}").json()
        assert one["applyment_state"] == CONFIRM_CONTACT
        (listed,) = control.get("/sandbox/apply4subject/applyments").json()["data"]
        assert listed["applyment_state"] == CONFIRM_CONTACT
        misspelt = control.get("/sandbox/apply4subject/authorizations", params={"mchd": SP_A})
        assert misspelt.status_code == 400 and misspelt.json()["detail"]["field"] == "mchd"


def test_an_applyment_page_says_what_the_auto_policy_will_do(settings: Settings) -> None:
    """The page did not mention the auto policy: an applyment moved at an A2 query (or stayed) with
    nothing on the dashboard to say why or when."""
    with quiet_control(settings) as (_, control):
        (applyment_id,) = _load_waiting(control, 1)
        control.post("/dashboard/login", data={"token": SANDBOX_TOKEN}, follow_redirects=False)
        page = control.get(f"/dashboard/applyments/{applyment_id}").text
        shown = re.search(r'<span id="auto-policy">([^<]*)</span>', page)
        assert shown, page
        assert shown.group(1).startswith("approve → WAITTING_FOR_CONFIRM_CONTACT once in audit 600 s (at ")
        policy = {"outcome": "reject", "after_queries": 3}
        assert control.put("/sandbox/apply4subject/auto-policy", json=policy).status_code == 200
        page = control.get(f"/dashboard/applyments/{applyment_id}").text
        assert "reject → REJECTED at A2 query 3 (0 made)" in page
        assert control.delete("/sandbox/apply4subject/auto-policy").status_code == 200
        assert (
            "none (PUT /sandbox/apply4subject/auto-policy sets one)"
            in control.get(f"/dashboard/applyments/{applyment_id}").text
        )
