"""The public pages (the simulated employee pages /webizpay/authorize and /webizpay/pay, the applyment
confirmation page /apply4subject/confirm/<token>) answer bad input with a 4xx page, never a 500, and
change nothing. The audit found 500s: a payment form without its token (both backends); on PostgreSQL,
a NUL in a token and a goods_name longer than its column or with a NUL."""

from __future__ import annotations

import html
import re

import pytest
from starlette.testclient import TestClient

from support import SP_A, SUB_A, ApiClient
from webizpay_support import authorize, get_card, issue, payment_token

BAD_TOKENS = ["a\x00", "a\x00b"]  # PostgreSQL refused the lookup itself (a 500)


def _payment_token(client: ApiClient, control: TestClient) -> tuple[str, str, str]:
    emp = authorize(client, control, "employee123")
    card = issue(client, emp, "mch_card_123456")
    return emp, card["card_no"], payment_token(client, emp, card["card_no"])


def _page_error(resp: object, status: int) -> None:
    assert getattr(resp, "status_code", None) == status, getattr(resp, "text", "")[:300]
    assert "text/html" in resp.headers["content-type"]  # type: ignore[attr-defined]


def test_payment_form_without_its_token_is_a_404_page(http: TestClient) -> None:
    for form in ({"token": "", "amount": "1"}, {"amount": "1"}):
        resp = http.post("/webizpay/pay", data=form)
        _page_error(resp, 404)
        assert 'data-code="RESOURCE_NOT_EXISTS"' in resp.text


@pytest.mark.parametrize("token", BAD_TOKENS)
def test_tokens_with_a_nul_are_refused_pages(http: TestClient, control: TestClient, token: str) -> None:
    """A NUL anywhere is a 400, as on /v3 and the control API (params.py); the applyment confirmation
    page, whose path is the code, answers as for any unknown code: 404."""
    _page_error(http.get("/webizpay/authorize", params={"token": token}), 400)
    _page_error(http.post("/webizpay/authorize", data={"token": token}), 400)
    _page_error(http.get("/webizpay/pay", params={"token": token}), 400)
    _page_error(http.post("/webizpay/pay", data={"token": token, "amount": "1"}), 400)
    quoted = token.replace("\x00", "%00")
    _page_error(http.get(f"/apply4subject/confirm/{quoted}"), 404)
    _page_error(http.post(f"/apply4subject/confirm/{quoted}", data={"step": "confirm_contact"}), 404)
    # the control API's token paths: a clean 400 naming the parameter
    for path, body in (
        ("/sandbox/webizpay/authorizations", {"token": token}),
        ("/sandbox/webizpay/payments", {"token": token, "amount": 1}),
    ):
        resp = control.post(path, json=body)
        assert resp.status_code == 400 and resp.json()["code"] == "PARAM_ERROR", resp.text
        assert "token" in resp.json()["message"], resp.text


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("goods_name", "g" * 257),
        ("goods_name", "午餐\x00"),
        ("store_name", "s" * 257),
        ("store_name", "食堂\x00"),
    ],
)
def test_payment_form_values_the_store_cannot_hold_are_400_pages(
    client_a: ApiClient, control: TestClient, http: TestClient, field: str, value: str
) -> None:
    emp, card_no, token = _payment_token(client_a, control)
    resp = http.post("/webizpay/pay", data={"token": token, "amount": "100", field: value})
    _page_error(resp, 400)
    assert 'data-code="PARAM_ERROR"' in resp.text
    assert get_card(client_a, emp, card_no).json()["remain_amount"] == 10000  # nothing paid
    # at the limit it pays
    ok = http.post("/webizpay/pay", data={"token": token, "amount": "100", field: "v" * 256})
    assert ok.status_code == 200, ok.text[:300]
    assert get_card(client_a, emp, card_no).json()["remain_amount"] == 9900


def test_control_api_payment_values_the_store_cannot_hold_are_400(
    client_a: ApiClient, control: TestClient
) -> None:
    emp, card_no, _token = _payment_token(client_a, control)
    for extra in (
        {"goods_name": "g" * 257},
        {"out_trade_no": "o" * 65},
        {"store": {"organization_code": "c" * 65}},
        {"store": {"name": "n\x00"}},
    ):
        resp = control.post("/sandbox/webizpay/payments", json={"card_no": card_no, "amount": 1, **extra})
        assert resp.status_code == 400 and resp.json()["code"] == "PARAM_ERROR", (extra, resp.text)
    # a scenario's spends go the same way: a SCENARIO_ERROR (on PostgreSQL this was a 500)
    spend = {"sp_mchid": SP_A, "sub_mchid": SUB_A, "out_card_no": "mch_card_123456", "amount": 1}
    resp = control.post(
        "/sandbox/scenario", json={"webizpay": {"spends": [{**spend, "goods_name": "g" * 257}]}}
    )
    assert resp.status_code == 400 and "goods_name must be at most 256" in resp.json()["message"], resp.text
    assert get_card(client_a, emp, card_no).json()["remain_amount"] == 10000


def _shown(text: str, key: str) -> str | None:
    """What the refusal page shows of its detail's ``key`` (escaped HTML), None when it shows none."""
    found = re.search(rf'<dd id="error-{key}">([^<]*)</dd>', text)
    return found.group(1) if found else None


@pytest.mark.parametrize(
    ("form", "field", "issue", "value"),
    [
        ({"amount": "abc"}, "amount", "not an integer", "abc"),
        ({"amount": "100", "goods_name": "g" * 257}, "goods_name", "too long", "g" * 64 + "…"),
        ({"amount": "100", "store_name": "s" * 257}, "store_name", "too long", "s" * 64 + "…"),
        ({"amount": "100", "goods_name": "午餐\x00"}, "goods_name", "contains NUL", None),
    ],
)
def test_the_payment_page_shows_the_refused_field_and_issue(
    client_a: ApiClient,
    control: TestClient,
    http: TestClient,
    form: dict[str, str],
    field: str,
    issue: str,
    value: str | None,
) -> None:
    """The page named the message only; it shows the detail's field (the form's name for it: the
    store's name is store_name there), issue and value (cut as the APIs cut it)."""
    _emp, _card_no, token = _payment_token(client_a, control)
    resp = http.post("/webizpay/pay", data={"token": token, **form})
    _page_error(resp, 400)
    assert (_shown(resp.text, "field"), _shown(resp.text, "issue")) == (field, issue)
    if value is not None:
        assert _shown(resp.text, "value") == value


def test_the_payment_page_escapes_what_it_shows(
    client_a: ApiClient, control: TestClient, http: TestClient
) -> None:
    _emp, _card_no, token = _payment_token(client_a, control)
    script = "<script>alert(1)</script>"
    resp = http.post(
        "/webizpay/pay", data={"token": token, "amount": "100", "goods_name": script + "g" * 300}
    )
    _page_error(resp, 400)
    assert _shown(resp.text, "value") == html.escape(script + "g" * 39) + "…"
    assert "<script>alert" not in resp.text
    resp = http.post("/webizpay/pay", data={"token": token, "amount": script})
    assert _shown(resp.text, "value") == html.escape(script) and "<script>alert" not in resp.text


def _unframed(resp: object) -> None:
    headers = resp.headers  # type: ignore[attr-defined]
    assert headers.get("X-Frame-Options") == "DENY", (getattr(resp, "url", ""), dict(headers))
    assert headers.get("Content-Security-Policy") == "frame-ancestors 'none'"


def test_public_pages_may_not_be_framed(http: TestClient, client_a: ApiClient, control: TestClient) -> None:
    """A consent, payment or confirmation button inside another site's invisible frame could be clicked
    by a visitor who meant something else (clickjacking): every answer of these pages forbids framing,
    the page itself and its refusals alike, as the dashboard's do."""
    _, _, token = _payment_token(client_a, control)
    page = http.get("/webizpay/pay", params={"token": token})
    assert page.status_code == 200 and "text/html" in page.headers["content-type"], page.text[:300]
    for resp in (
        page,
        http.post("/webizpay/pay", data={"token": token, "amount": "x"}),  # a refused form
        http.get("/webizpay/authorize", params={"token": "unknown"}),
        http.get("/webizpay/authorize", params={"token": "a\x00"}),
        http.get("/apply4subject/confirm/unknown"),
        http.post("/apply4subject/confirm/unknown", data={"step": "confirm_contact"}),
    ):
        _unframed(resp)
