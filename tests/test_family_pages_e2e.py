"""The simulated end-user pages in real headless Chromium (Debian's package, driven by Playwright)
against a real `wxpartner serve` process: an employee consents to an authorization and pays with a
quota card; a merchant's contact confirms an applyment through the page its QR code leads to; each
result is then seen on the dashboard. Screenshots are taken at every step (the test's tmp dir, or
$WXPARTNER_E2E_ARTIFACTS) and checked to be PNGs."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import browser
from apply4subject_support import BASE, SUB_X, make_body, serial_for
from live import LiveServer, start_live_server
from support import SP_A, SUB_A, ApiClient, World
from webizpay_support import issue_body
from wxpartner.server.apply4subject_flow import qrcode_png

pytestmark = pytest.mark.slow
chromium = browser.chromium  # the module-scoped fixture, used by name below
BRAND_GREEN = "rgb(7, 193, 96)"  # the dashboard's button colour: proof the shared stylesheet applies


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, world: World) -> Iterator[LiveServer]:
    # SP_A also acts as a channel merchant (apply4subject callers); webizpay does not look at roles.
    extra = {"merchants": [{"mchid": SP_A, "role": "channel", "key_mode": "public_key"}]}
    live = start_live_server(tmp_path_factory.mktemp("family-e2e") / "live", world, scenario=extra)
    yield live
    live.stop()


def shot(page: Any, tmp_path: Path, name: str) -> Path:
    path = browser.screenshot(page, tmp_path, f"family-{name}")
    assert browser.is_png(path), path
    return path


def log_in(page: Any, server: LiveServer, target: str) -> None:
    page.goto(f"{server.url}/dashboard/login?next={target}")
    page.fill("#token", server.token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.url}{target}")


def assert_end_user_look(page: Any) -> None:
    """The dashboard's stylesheet, without its navigation or logout (no dashboard login here)."""
    assert page.locator("header.top .logo").inner_text() == "wxpartner sandbox"
    assert page.locator("header nav").count() == 0 and page.locator("text=Log out").count() == 0
    button = page.locator("button[type=submit]")
    if button.count():
        assert button.first.evaluate("b => getComputedStyle(b).backgroundColor") == BRAND_GREEN


def test_employee_consents_pays_and_the_dashboard_shows_it(
    server: LiveServer, world: World, chromium: Any, tmp_path: Path
) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        client = ApiClient(http, world, SP_A)
        started = client.post(
            "/v3/webizpay/users/employee_e2e/authorization-url",
            {"sp_mchid": SP_A, "sub_mchid": SUB_A, "application_type": "H5"},
        )
        assert started.status_code == 200, started.text
        auth_url = started.json()["authorization_url"]
        assert auth_url.startswith(server.url + "/webizpay/authorize?token=")

        with browser.fresh_page(chromium, width=420, height=860) as phone:
            # 1. the employee opens the link (no dashboard login) and consents
            phone.goto(auth_url)
            assert phone.locator("h1").inner_text() == "企业支付授权"
            assert "employee_e2e" in phone.locator("dl.facts").inner_text()
            assert_end_user_look(phone)
            shot(phone, tmp_path, "1-consent")
            phone.click("button:has-text('同意开通企业支付')")
            assert phone.locator("h1").inner_text() == "授权成功"
            employee_id = phone.locator("#employee_id").inner_text()
            assert employee_id.startswith("WeBizPay_")
            shot(phone, tmp_path, "2-consented")

            # 2. the enterprise issues a quota card through the API and asks for a payment link
            card = client.post(
                f"/v3/webizpay/employees/{employee_id}/quota-cards", issue_body("e2e_card_1", amount=10000)
            )
            assert card.status_code == 200, card.text
            card_no = card.json()["card_no"]
            link = client.get(
                f"/v3/webizpay/employees/{employee_id}/quota-cards/{card_no}/payment-url"
                f"?sp_mchid={SP_A}&sub_mchid={SUB_A}&application_type=H5"
            )
            assert link.status_code == 200, link.text

            # 3. the employee pays 25.00 with the card on the pay page
            phone.goto(link.json()["payment_url"])
            assert phone.locator("#remain_amount").inner_text() == "10000"
            assert_end_user_look(phone)
            phone.fill("input[name=amount]", "2500")
            phone.fill("input[name=goods_name]", "工作餐")
            shot(phone, tmp_path, "3-pay")
            phone.click("button:has-text('付款')")
            assert phone.locator("h1").inner_text() == "支付成功"
            assert phone.locator("#remain_amount").inner_text() == "7500"
            transaction_id = phone.locator("#transaction_id").inner_text()
            shot(phone, tmp_path, "4-paid")

        shown = client.get(
            f"/v3/webizpay/employees/{employee_id}/quota-cards/{card_no}?sp_mchid={SP_A}&sub_mchid={SUB_A}"
        ).json()
        assert shown["remain_amount"] == 7500 and shown["transaction_id"] == transaction_id

    # 4. the operator sees the employee, the card, the spend and the callbacks on the dashboard
    with browser.fresh_page(chromium) as page:
        log_in(page, server, "/dashboard/employees")
        row = page.locator("tr", has_text=employee_id)
        assert "employee_e2e" in row.inner_text() and "AUTHORIZED" in row.inner_text()
        shot(page, tmp_path, "5-dashboard-employees")
        row.locator("text=1 card(s)").click()
        card_row = page.locator("tbody.card-group", has_text=card_no)
        text = card_row.inner_text()
        assert transaction_id in text and "工作餐" in text
        assert "¥25.00" in text and "¥75.00" in text  # the spend and what remains on the card
        shot(page, tmp_path, "6-dashboard-card-spends")
        page.click("header >> text=Callbacks")
        events = page.locator("main").inner_text()
        assert "WEBIZPAY.AUTHORIZED" in events and "WEBIZPAY.PAYMENTSUCCESS" in events
        shot(page, tmp_path, "7-dashboard-callbacks")
        page.click("header >> text=Overview")
        counts = page.locator("#family-counts").inner_text()
        assert "authorized employees" in counts and "spends" in counts
        shot(page, tmp_path, "8-dashboard-overview")


def test_contact_confirms_an_applyment_from_its_qr_code(
    server: LiveServer, world: World, chromium: Any, tmp_path: Path
) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as http, server.control() as control:
        client = ApiClient(http, world, SP_A)
        submitted = client.post(BASE, make_body(client, "e2e_apply_1"), wechatpay_serial=serial_for(client))
        assert submitted.status_code == 200, submitted.text
        applyment_id = submitted.json()["applyment_id"]
        # WeChat Pay's audit passes (sandbox control API): the applyment waits for the contact
        approved = control.post(f"/sandbox/apply4subject/applyments/{applyment_id}/approve", json={})
        assert approved.status_code == 200, approved.text
        confirm_url = approved.json()["confirm_url"]
        result = client.get(f"{BASE}?applyment_id={applyment_id}").json()
        assert result["applyment_state"] == "APPLYMENT_STATE_WAITTING_FOR_CONFIRM_CONTACT"
        # qrcode_data is exactly the QR code of the confirmation page's URL
        assert base64.b64decode(result["qrcode_data"]) == qrcode_png(confirm_url)

        with browser.fresh_page(chromium) as page:
            # 1. the operator finds the applyment and its QR code on the dashboard
            log_in(page, server, "/dashboard/applyments")
            page.click(f"a.applyment-id:has-text('{applyment_id}')")
            assert "WAITTING_FOR_CONFIRM_CONTACT" in page.locator("#applyment-state").inner_text()
            qr = page.locator("img.qr")
            assert qr.evaluate("img => img.complete && img.naturalWidth") > 100
            src = qr.get_attribute("src") or ""
            assert base64.b64decode(src.split(",", 1)[1]) == qrcode_png(confirm_url)
            shot(page, tmp_path, "a1-dashboard-applyment")

            # 2. the contact follows the code to the confirmation page (a new tab, no login there)
            with page.context.expect_page() as opened:
                page.click("#confirm-link")
            contact = opened.value
            contact.wait_for_load_state()
            assert contact.url == confirm_url
            assert_end_user_look(contact)
            assert contact.locator("#state").inner_text() == "APPLYMENT_STATE_WAITTING_FOR_CONFIRM_CONTACT"
            assert "13800138000" not in contact.content()  # sensitive fields stay masked
            shot(contact, tmp_path, "a2-confirm-contact")
            for label, after in (
                ("确认联系信息", "APPLYMENT_STATE_WAITTING_FOR_CONFIRM_LEGALPERSON"),
                ("确认开户意愿", "APPLYMENT_STATE_PASSED"),
            ):
                contact.click(f"button:has-text('{label}')")
                assert contact.locator("#state").inner_text() == after
                assert contact.get_by_role("status").inner_text() == "confirmed"
            shot(contact, tmp_path, "a3-passed")
            contact.click("button:has-text('完成授权')")
            assert "AUTHORIZE_STATE_AUTHORIZED" in contact.locator("#authorize-states").inner_text()
            assert contact.locator("button[type=submit]").count() == 0  # nothing left to confirm
            shot(contact, tmp_path, "a4-authorized")

            # 3. A4 reports the merchant number AUTHORIZED, and so does the dashboard
            state = client.get(f"{BASE}/merchants/{SUB_X}/state")
            assert state.json() == {"authorize_state": "AUTHORIZE_STATE_AUTHORIZED"}
            page.reload()
            assert "PASSED" in page.locator("#applyment-state").inner_text()
            sub_row = page.locator("tr", has_text=SUB_X)
            assert "AUTHORIZE_STATE_AUTHORIZED" in sub_row.inner_text()
            shot(page, tmp_path, "a5-dashboard-authorized")
