"""What grows with traffic, and what bounds it: links handed out per call (W1, W7) are deleted a day
after they expire; unauthenticated input adds no metrics label values."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from support import SP_A, SUB_A, ApiClient
from webizpay_support import authorize, issue, start_url
from wxpartner.server.app import WxPartnerApp
from wxpartner.server.settings import Settings
from wxpartner.store.webizpay_tables import webizpay_auth_links, webizpay_payment_links


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.extra["webizpay_sweep_seconds"] = 0.1  # the background round, as serve runs it, but often
    return settings


def _tokens(app: WxPartnerApp) -> tuple[set[str], set[str]]:
    with app.state.db.read() as conn:
        return (
            set(conn.execute(sa.select(webizpay_auth_links.c.token)).scalars()),
            set(conn.execute(sa.select(webizpay_payment_links.c.token)).scalars()),
        )


def _payment_link(client: ApiClient, emp: str, card_no: str) -> str:
    resp = client.get(
        f"/v3/webizpay/employees/{emp}/quota-cards/{card_no}/payment-url"
        f"?sp_mchid={SP_A}&sub_mchid={SUB_A}&application_type=H5"
    )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["payment_url"].split("token=", 1)[1])


def test_links_are_deleted_a_day_after_they_expire(
    client_a: ApiClient, control: TestClient, app: WxPartnerApp
) -> None:
    """Every W1 and W7 call stores a link; none was ever deleted, so a merchant asking for links in a
    loop (or a long load test) grew both tables without bound."""
    emp = authorize(client_a, control, "employee_links")
    card = issue(client_a, emp, "links_card_0001", effective_end_time="2099-01-01T00:00:00+08:00")
    for _ in range(3):
        _payment_link(client_a, emp, card["card_no"])
        assert start_url(client_a, "employee_other").status_code == 200
    auth, pay = _tokens(app)
    assert len(auth) == 4 and len(pay) == 3
    # 30 minutes on (W1 links have expired, W7 links too): still kept, and still answered as expired
    assert control.post("/sandbox/clock", json={"advance": 1800}).status_code == 200
    time.sleep(0.5)
    assert _tokens(app) == (auth, pay)
    # a day later they go; links handed out now stay
    assert control.post("/sandbox/clock", json={"advance": 86400}).status_code == 200
    fresh_pay = _payment_link(client_a, emp, card["card_no"])
    assert start_url(client_a, "employee_third").status_code == 200
    deadline = time.monotonic() + 10
    while (left := _tokens(app)) and (left[0] & auth or left[1] & pay):
        assert time.monotonic() < deadline, f"expired links still there: {left}"
        time.sleep(0.1)
    auth_left, pay_left = _tokens(app)
    assert pay_left == {fresh_pay} and len(auth_left) == 1
