"""POST /sandbox/clock (and so `wxpartner clock`, the dashboard's Clock page) makes what the move owes
before it answers, as the pytest plugin's advance_clock does: quota cards past their end DISABLED with
their WEBIZPAY.QUOTACARDEXPIRED queued, applyments the auto policy's after_seconds is due for moved.
Before, they waited for the background round (up to 2 s; never with the sweep off). Bounded by
settings.extra["clock_settle_max"]; the answer says what it made."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from conftest import SANDBOX_TOKEN
from support import SP_A, SUB_A
from webizpay_support import events
from wxpartner.protocol.times import format_rfc3339
from wxpartner.server.app import WxPartnerApp, create_app
from wxpartner.server.settings import Settings
from wxpartner.store.webizpay_tables import webizpay_cards

AUTH = {"Authorization": f"Bearer {SANDBOX_TOKEN}"}


@pytest.fixture
def quiet_app(tmp_path: Path, database_url: str) -> Iterator[WxPartnerApp]:
    """No background sweep: whatever is settled, the clock move settled."""
    settings = Settings(
        data_dir=str(tmp_path),
        database_url=database_url,
        sandbox_token=SANDBOX_TOKEN,
        deliver_callbacks=False,
        extra={"webizpay_sweep_seconds": 0},
    )
    application = create_app(settings)
    yield application
    application.state.db.dispose()


@pytest.fixture
def control(quiet_app: WxPartnerApp) -> Iterator[TestClient]:
    with TestClient(quiet_app, headers=AUTH) as client:
        yield client


def _due_tomorrow(control: TestClient, n: int, prefix: str = "due") -> None:
    """``n`` ACTIVE cards ending a day from now (scenario preloads)."""
    now = control.get("/sandbox/clock").json()["now_ts"]
    end = format_rfc3339(dt.datetime.fromtimestamp(now + 86400, dt.UTC))
    people = [{"sp_mchid": SP_A, "sub_mchid": SUB_A, "user_id": f"user_{i:03d}"} for i in range(n)]
    employees = [{**p, "employee_id": f"WeBizPay_{i:03d}"} for i, p in enumerate(people)]
    cards = [
        {**p, "out_card_no": f"{prefix}_{i:03d}", "amount": 100, "card_name": "卡", "effective_end_time": end}
        for i, p in enumerate(people)
    ]
    loaded = control.post("/sandbox/scenario", json={"webizpay": {"employees": employees, "cards": cards}})
    assert loaded.status_code == 200, loaded.text


def _states(app: WxPartnerApp) -> list[str]:
    with app.state.db.read() as conn:
        return sorted(conn.execute(sa.select(webizpay_cards.c.state)).scalars())


def test_a_clock_move_expires_cards_and_queues_their_callbacks_before_it_answers(
    control: TestClient, quiet_app: WxPartnerApp
) -> None:
    _due_tomorrow(control, 3)
    moved = control.post("/sandbox/clock", json={"advance": 2 * 86400})
    assert moved.status_code == 200, moved.text
    body = moved.json()
    assert body["settled"] == {"quota_cards_expired": 3, "applyments_advanced": 0}
    assert body["settled_all"] is True
    assert {"now", "now_ts", "frozen", "offset_seconds"} <= body.keys()  # the fields it always had
    assert _states(quiet_app) == ["DISABLED"] * 3  # nobody read a card, no sweep ran
    assert len(events(quiet_app, "WEBIZPAY.QUOTACARDEXPIRED")) == 3
    again = control.post("/sandbox/clock", json={"advance": 60}).json()
    assert again["settled"]["quota_cards_expired"] == 0 and again["settled_all"] is True


def test_a_huge_backlog_is_settled_up_to_the_bound_and_the_answer_says_so(
    control: TestClient, quiet_app: WxPartnerApp
) -> None:
    """The bound counts transitions, checked after each batch (200 cards): with a bound of 1, one
    batch is made and the rest is left to the sweep (or the next move)."""
    quiet_app.state.settings.extra["clock_settle_max"] = 1
    _due_tomorrow(control, 230)
    first = control.post("/sandbox/clock", json={"advance": 2 * 86400}).json()
    assert first["settled"]["quota_cards_expired"] == 200 and first["settled_all"] is False
    assert _states(quiet_app).count("ACTIVE") == 30
    rest = control.post("/sandbox/clock", json={"advance": 0}).json()  # at the bound again: may be more
    assert rest["settled"]["quota_cards_expired"] == 30 and rest["settled_all"] is False
    done = control.post("/sandbox/clock", json={"advance": 0}).json()
    assert done["settled"]["quota_cards_expired"] == 0 and done["settled_all"] is True
    assert len(events(quiet_app, "WEBIZPAY.QUOTACARDEXPIRED")) == 230
    quiet_app.state.settings.extra["clock_settle_max"] = 0  # off: the move settles nothing
    _due_tomorrow(control, 1, "late")  # loaded at the moved clock: ends a day later still
    off = control.post("/sandbox/clock", json={"advance": 2 * 86400}).json()
    assert off["settled"]["quota_cards_expired"] == 0 and off["settled_all"] is False


def test_a_clock_move_takes_the_auto_policy_step_an_applyment_is_due_for(control: TestClient) -> None:
    policy = {"outcome": "approve", "after_seconds": 600}
    assert control.put("/sandbox/apply4subject/auto-policy", json=policy).status_code == 200
    loaded = control.post(
        "/sandbox/scenario",
        json={
            "apply4subject": {
                "applyments": [{"mchid": SP_A, "business_code": f"waiting_{i}"} for i in range(3)]
            }
        },
    )
    assert loaded.status_code == 200, loaded.text
    early = control.post("/sandbox/clock", json={"advance": 599}).json()
    assert early["settled"]["applyments_advanced"] == 0
    due = control.post("/sandbox/clock", json={"advance": 1}).json()
    assert due["settled"] == {"quota_cards_expired": 0, "applyments_advanced": 3}
    listed = control.get("/sandbox/apply4subject/applyments").json()["data"]
    assert [a["applyment_state"] for a in listed] == ["APPLYMENT_STATE_WAITTING_FOR_CONFIRM_CONTACT"] * 3


def test_the_dashboard_clock_page_settles_and_says_what_it_made(
    control: TestClient, quiet_app: WxPartnerApp
) -> None:
    _due_tomorrow(control, 2)
    control.post("/dashboard/login", data={"token": SANDBOX_TOKEN})
    page = control.post(
        "/dashboard/clock", data={"action": "advance", "advance": "2d"}, follow_redirects=True
    )
    assert page.status_code == 200
    assert "settled: 2 quota cards expired" in page.text
    assert _states(quiet_app) == ["DISABLED"] * 2


def test_a_bound_that_is_not_a_count_stops_the_start(tmp_path: Path, database_url: str) -> None:
    for bad in (-1, "20", 1.5, True):
        settings = Settings(
            data_dir=str(tmp_path), database_url=database_url, extra={"clock_settle_max": bad}
        )
        with pytest.raises(ValueError, match="clock_settle_max"):
            create_app(settings)


@pytest.mark.parametrize(
    "read",
    ["/sandbox/apply4subject/applyments", "/sandbox/apply4subject/applyments/1", "/sandbox/callbacks"],
)
def test_a_control_read_settles_what_the_clock_owes_as_the_dashboard_does(
    control: TestClient, quiet_app: WxPartnerApp, read: str
) -> None:
    """With a clock move that settles nothing (clock_settle_max: 0) and no sweep, the dashboard's pages
    made every hook's batch before reading; the control API's applyment reads made the applyment
    hook's only (a quota card past its end stayed ACTIVE, its callback unqueued), and its callback
    list none (it listed no WEBIZPAY.QUOTACARDEXPIRED the dashboard's Callbacks page showed)."""
    quiet_app.state.settings.extra["clock_settle_max"] = 0
    _due_tomorrow(control, 2)
    policy = {"outcome": "approve", "after_seconds": 600}
    assert control.put("/sandbox/apply4subject/auto-policy", json=policy).status_code == 200
    waiting = {"applyments": [{"mchid": SP_A, "business_code": "settled_by_a_read"}]}
    loaded = control.post("/sandbox/scenario", json={"apply4subject": waiting})
    assert loaded.status_code == 200, loaded.text
    moved = control.post("/sandbox/clock", json={"advance": 2 * 86400}).json()
    assert moved["settled"] == {"quota_cards_expired": 0, "applyments_advanced": 0}
    assert _states(quiet_app) == ["ACTIVE"] * 2
    control.get(read)  # its answer may be a 404 (no applyment 1): the settling came first
    assert _states(quiet_app) == ["DISABLED"] * 2
    assert len(events(quiet_app, "WEBIZPAY.QUOTACARDEXPIRED")) == 2
    listed = control.get("/sandbox/callbacks", params={"event_type": "WEBIZPAY.QUOTACARDEXPIRED"}).json()
    assert listed["total_count"] == 2
    applyments = control.get("/sandbox/apply4subject/applyments").json()["data"]
    assert [a["applyment_state"] for a in applyments] == ["APPLYMENT_STATE_WAITTING_FOR_CONFIRM_CONTACT"]


def test_a_misspelt_callback_filter_is_refused(control: TestClient) -> None:
    """?mchd= was ignored, and the answer listed every merchant's callbacks as if filtered."""
    resp = control.get("/sandbox/callbacks", params={"mchd": SP_A})
    assert resp.status_code == 400 and resp.json()["code"] == "PARAM_ERROR", resp.text
    assert resp.json()["detail"] == {"field": "mchd", "location": "query", "issue": "unknown field"}
