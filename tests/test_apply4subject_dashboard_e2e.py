"""apply4subject's sandbox pages in real headless Chromium against a `wxpartner serve` process, as an
operator uses them: an applyment that passed without a confirm_mchid_list gets its merchant numbers
authorized from the dashboard, and its confirmation page says what it can and cannot do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import browser
from apply4subject_support import BASE, SUB_Y
from live import LiveServer, start_live_server
from support import SP_A, ApiClient, World

pytestmark = pytest.mark.slow
chromium = browser.chromium  # the module-scoped fixture, used by name below


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, world: World) -> Iterator[LiveServer]:
    extra = {
        "merchants": [{"mchid": SP_A, "role": "channel", "key_mode": "public_key"}],
        "apply4subject": {
            "applyments": [
                {"mchid": SP_A, "business_code": "passed_unlisted", "state": "APPLYMENT_STATE_PASSED"}
            ]
        },
    }
    live = start_live_server(tmp_path_factory.mktemp("a4s-e2e") / "live", world, scenario=extra)
    yield live
    live.stop()


def test_an_applyment_without_numbers_is_authorized_from_the_dashboard(
    server: LiveServer, world: World, chromium: Any, tmp_path: Path
) -> None:
    """The dashboard's authorize button had no field for merchant numbers, and for an applyment listing
    none it could only answer "no merchant number to authorize … give sub_mchids". The confirmation
    page offered its authorize button too, to the same end."""
    with server.control() as control:
        (found,) = control.get("/sandbox/apply4subject/applyments").json()["data"]
    applyment_id, confirm_url = found["applyment_id"], found["confirm_url"]
    with browser.fresh_page(chromium) as page:
        # the confirmation page: nothing to authorize, said, and no button that would only say so
        page.goto(confirm_url)
        assert page.locator("button[type=submit]").count() == 0
        assert page.locator("button:has-text('完成授权')").is_disabled()
        assert "no merchant number to authorize" in page.locator("#authorize-none").inner_text()
        browser.screenshot(page, tmp_path, "a4s-confirm-nothing")

        target = f"/dashboard/applyments/{applyment_id}"
        page.goto(f"{server.url}/dashboard/login?next={target}")
        page.fill("#token", server.token)
        page.click("button[type=submit]")
        page.wait_for_url(f"{server.url}{target}")
        field = page.locator("#sub_mchids")
        assert "required" in (page.locator("label[for=sub_mchids]").inner_text())
        # an empty field does not send the form (required): the browser says so
        assert field.evaluate("f => f.form.checkValidity()") is False
        field.fill(SUB_Y)
        page.click("button[data-action=authorize]")
        page.wait_for_url(f"{server.url}{target}**")
        assert (
            "authorize: the applyment is now APPLYMENT_STATE_PASSED"
            in page.get_by_role("status").inner_text()
        )
        assert "AUTHORIZE_STATE_AUTHORIZED" in page.locator("tr", has_text=SUB_Y).inner_text()
        browser.screenshot(page, tmp_path, "a4s-dashboard-authorized")

        page.goto(confirm_url)
        assert "authorization complete" in page.locator("#authorize-done").inner_text()
        assert page.locator("button").count() == 0

    with httpx.Client(base_url=server.url, timeout=10) as http:
        client = ApiClient(http, world, SP_A)
        state = client.get(f"{BASE}/merchants/{SUB_Y}/state")
        assert state.json() == {"authorize_state": "AUTHORIZE_STATE_AUTHORIZED"}
