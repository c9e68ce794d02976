"""The dashboard in real headless Chromium (Debian's package, driven by Playwright) against a real
server process: log in, see merchants, add a fault in the UI and watch it hit a signed request, and read
a failed signature's expected string-to-sign in the journal. Screenshots go to the test's tmp dir
(or $WXPARTNER_E2E_ARTIFACTS)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

import browser
from live import LiveServer
from support import SP_A, SP_B, ApiClient, World

pytestmark = pytest.mark.slow
browser_page = browser.browser_page  # the fixture, used by name below


def shot(page: Any, tmp_path: Path, name: str) -> Path:
    return browser.screenshot(page, tmp_path, f"dashboard-{name}")


def test_dashboard_in_chromium(
    live_server: LiveServer, world: World, browser_page: Any, tmp_path: Path
) -> None:
    page = browser_page
    base = live_server.url

    # 1. the dashboard asks for the token, refuses a wrong one, accepts the sandbox token
    page.goto(f"{base}/dashboard/merchants")
    assert "/dashboard/login" in page.url
    page.fill("#token", "wrong")
    page.click("button[type=submit]")
    assert page.get_by_role("alert").inner_text().startswith("That is not the sandbox token")
    page.fill("#token", live_server.token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/dashboard/merchants")
    ids = page.locator(".merchant-id").all_inner_texts()
    assert SP_A in ids and SP_B in ids
    shot(page, tmp_path, "merchants")

    # 2. a fault added through the form hits the next signed request, once
    page.click("text=Faults")
    page.select_option("#kind", "FREQUENCY_LIMITED")
    page.fill("#operation", "certificates.*")
    page.fill("#count", "1")
    page.click("#fault-form button[type=submit]")
    assert "Added FREQUENCY_LIMITED rule" in page.get_by_role("status").inner_text()
    shot(page, tmp_path, "faults")
    with httpx.Client(base_url=base, timeout=10) as http:
        client = ApiClient(http, world, SP_B)
        limited = client.get("/v3/certificates")
        assert limited.status_code == 429 and limited.json()["code"] == "FREQUENCY_LIMITED"
        assert client.get("/v3/certificates").status_code == 200
        # 3. a request signed with the wrong key
        bad = ApiClient(http, world, SP_A).get(
            "/v3/certificates?offset=0", private_key=world.other_key, check=False
        )
        assert bad.status_code == 401
    page.reload()
    assert page.locator("td:has-text('FREQUENCY_LIMITED')").count() == 1
    assert "0" in page.locator("tbody tr").first.inner_text()  # remaining went to 0

    page.click("text=Request journal")
    page.check("input[name=failed]")
    page.click("form.row button[type=submit]")
    rid = bad.headers["Request-ID"]
    row = page.locator("tr", has_text=rid)
    assert "refused" in row.inner_text()
    assert (
        page.locator("tr", has_text=limited.headers["Request-ID"]).locator("text=FREQUENCY_LIMITED").count()
        >= 1
    )
    shot(page, tmp_path, "journal")
    row.locator(f"a:has-text('{rid}')").click()
    expected = page.locator("#expected-message").inner_text()
    assert expected.startswith("GET⏎\n/v3/certificates?offset=0⏎\n")
    assert page.get_by_text("Signature explanation").count() == 1
    shot(page, tmp_path, "signature-explanation")

    # 4. the clock controls move business time
    page.click("text=Clock")
    page.click("button:has-text('Freeze')")
    assert "Business time is now" in page.get_by_role("status").inner_text()
    assert "frozen" in page.locator("main").inner_text()
    shot(page, tmp_path, "clock")

    # 5. the family pages render whatever families this build has
    page.click("text=Family data")
    assert page.locator("h1").inner_text() == "Family data"
    shot(page, tmp_path, "family-data")
    page.click("header >> text=Callbacks")
    assert page.locator("h1").inner_text() == "Callbacks"


def test_paging_a_long_list_in_chromium(live_server: LiveServer, browser_page: Any, tmp_path: Path) -> None:
    """The recharge employees page of a merchant with 205 of them (history: DELETED rows), filtered:
    "Older →" twice to the end, "← Newer" and "« Newest" back, a page's URL opened again shows the
    same rows (a link to share), and the filter holds on every page."""
    from support import SECOND_A

    employees = [
        {"sp_openid": f"oWalk{i:03d}", "state": "DELETED", "create_time": 1_747_000_000 + i}
        for i in range(205)
    ]
    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        loaded = http.post(
            "/sandbox/recharge-employees",
            json={"sub_mchid": SECOND_A, "employees": employees},
            headers={"Authorization": f"Bearer {live_server.token}"},
        )
        assert loaded.status_code == 200, loaded.text
    page = browser_page
    base = live_server.url
    page.goto(f"{base}/dashboard/login")
    page.fill("#token", live_server.token)
    page.click("button[type=submit]")
    page.goto(f"{base}/dashboard/recharge")
    page.fill("#f-mchid", SECOND_A)
    page.click("form.row button[type=submit]")

    def shown() -> list[str]:
        return [t for t in page.locator("td code").all_inner_texts() if t.startswith("oWalk")]

    first = shown()
    assert first[:2] == ["oWalk204", "oWalk203"] and len(first) == 100  # the latest change first
    assert page.locator("a.page-newer").count() == 0
    page.click("a.page-older")
    second = shown()
    assert second[0] == "oWalk104" and len(second) == 100
    assert f"mchid={SECOND_A}" in page.url and "after=" in page.url
    shared = page.url
    page.click("a.page-older")
    assert shown() == [f"oWalk{i:03d}" for i in range(4, -1, -1)]
    assert page.locator("a.page-older").count() == 0
    shot(page, tmp_path, "paging-last")
    page.click("a.page-newer")
    assert shown() == second
    page.goto(f"{base}/dashboard/recharge")  # elsewhere, then the page's URL as shared
    page.goto(shared)
    assert shown() == second and page.input_value("#f-mchid") == SECOND_A
    page.click("a.page-older")
    page.click("a.page-newest")
    assert shown() == first
