"""The control API's plain parameter refusals (params.bad) carry a ``detail`` in the business API's shape
(protocol.md §6): which field, where it came from, why, and the value when it is safe to echo. They
carried a message only, which a client had to parse."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from conftest import SANDBOX_TOKEN
from support import SECOND_A, SP_A
from wxpartner.protocol.detail import VALUE_MAX
from wxpartner.server.control_ops import parse_fault_body
from wxpartner.server.params import ControlError

AUTH = {"Authorization": f"Bearer {SANDBOX_TOKEN}"}

# (method, path, JSON body or None, the refusal's detail)
CASES: list[tuple[str, str, Any, dict[str, Any]]] = [
    (
        "POST",
        "/sandbox/clock",
        {"set": "tomorrow"},
        {"field": "set", "location": "body", "issue": "not an RFC 3339 date-time", "value": "tomorrow"},
    ),
    (
        "POST",
        "/sandbox/clock",
        {"set": True},
        {"field": "set", "location": "body", "issue": "not a time", "value": True},
    ),
    (
        "POST",
        "/sandbox/clock",
        {"advance": "soon"},
        {"field": "advance", "location": "body", "issue": "not a number", "value": "soon"},
    ),
    (
        "POST",
        "/sandbox/clock",
        {"freeze": "yes"},
        {"field": "freeze", "location": "body", "issue": "not a boolean", "value": "yes"},
    ),
    (
        "POST",
        "/sandbox/clock",
        {"freeze": True, "thaw": True},
        {"field": "freeze, thaw", "location": "body", "issue": "contradictory"},
    ),
    (
        "POST",
        "/sandbox/clock",
        {"frezee": True},
        {"field": "frezee", "location": "body", "issue": "unknown field"},
    ),
    ("POST", "/sandbox/clock", [1], {"field": "/", "location": "body", "issue": "not an object"}),
    (
        "POST",
        "/sandbox/faults",
        {"kind": "SYSTEM_ERROR", "count": 0},
        {"field": "count", "location": "body", "issue": "out of range", "value": 0},
    ),
    (
        "POST",
        "/sandbox/faults",
        {"kind": "NOPE"},
        {"field": "kind", "location": "body", "issue": "unknown fault kind", "value": "NOPE"},
    ),
    (
        "POST",
        "/sandbox/faults",
        {"kind": "LATENCY", "latency_ms": 10**9},
        {"field": "latency_ms", "location": "body", "issue": "out of range", "value": 10**9},
    ),
    (
        "POST",
        "/sandbox/faults",
        {"kind": 5},
        {"field": "kind", "location": "body", "issue": "not a non-empty string", "value": 5},
    ),
    (
        "POST",
        "/sandbox/platform-keys/rotate",
        {"kind": "rsa"},
        {"field": "kind", "location": "body", "issue": "not an allowed value", "value": "rsa"},
    ),
    (
        "POST",
        "/sandbox/platform-keys/rotate",
        {"mchid": SP_A},
        {"field": "mchid", "location": "body", "issue": "not allowed with kind certificate", "value": SP_A},
    ),
    (
        "POST",
        "/sandbox/reset",
        {"mchid": 5},
        {"field": "mchid", "location": "body", "issue": "not a string", "value": 5},
    ),
    (
        "PUT",
        f"/sandbox/merchants/{SP_A}/notify-url",
        {},
        {"field": "notify_url", "location": "body", "issue": "required"},
    ),
    (
        "GET",
        "/sandbox/journal?limit=abc",
        None,
        {"field": "limit", "location": "query", "issue": "not an integer", "value": "abc"},
    ),
    (
        "GET",
        "/sandbox/journal?status=1000",
        None,
        {"field": "status", "location": "query", "issue": "out of range", "value": "1000"},
    ),
    (  # was an empty page, as if no request had been refused
        "GET",
        "/sandbox/journal?verification=failed",
        None,
        {"field": "verification", "location": "query", "issue": "not an allowed value", "value": "failed"},
    ),
    (
        "GET",
        "/sandbox/journal?mchid=a%00b",
        None,
        {"field": "mchid", "location": "query", "issue": "contains NUL", "value": "a\x00b"},
    ),
    (
        "GET",
        "/sandbox/callbacks?state=lost",
        None,
        {"field": "state", "location": "query", "issue": "not an allowed value", "value": "lost"},
    ),
    (
        "GET",
        "/sandbox/faults/a%00b",
        None,
        {"field": "rule_id", "location": "path", "issue": "contains NUL", "value": "a\x00b"},
    ),
    (
        "GET",
        "/sandbox/apply4subject/applyments/abc",
        None,
        {"field": "applyment_id", "location": "path", "issue": "not an integer", "value": "abc"},
    ),
    (  # a nested field, named by the dotted path the message uses
        "POST",
        "/sandbox/webizpay/payments",
        {"amount": 1, "store": {"name": 7}},
        {"field": "store.name", "location": "body", "issue": "not a string", "value": 7},
    ),
    (
        "POST",
        "/sandbox/webizpay/templates",
        {"sp_mchid": SP_A, "card_template_id": ""},
        {"field": "card_template_id", "location": "body", "issue": "too short", "value": ""},
    ),
    (  # an unknown field's value is not echoed (it may be anything)
        "POST",
        "/sandbox/webizpay/templates",
        {"sp_mchid": SP_A, "card_template_id": "t", "colour": "red"},
        {"field": "colour", "location": "body", "issue": "unknown field"},
    ),
    # a recharge preload's refusals had a message only, and a wrong state of an employee read
    # "employees[0].constrained-str: Input should be a valid string"
    (
        "POST",
        "/sandbox/recharge-employees",
        {"sub_mchid": SECOND_A, "employees": ["oFine", {"sp_openid": "oGone", "state": "GONE"}]},
        {
            "field": "body[0].employees[1].state",
            "location": "body",
            "issue": "Input should be 'EFFECTIVE' or 'DELETED'",
        },
    ),
    (
        "POST",
        "/sandbox/recharge-employees",
        {"sub_mchid": SECOND_A, "employees": [{"sp_openid": "oLate", "create_time": "nope"}]},
        {"field": "employees[0].create_time", "location": "body", "issue": "not an RFC 3339 date-time"},
    ),
    (
        "POST",
        "/sandbox/recharge-employees",
        {"sub_mchid": SECOND_A, "employees": [{"sp_openid": "oLate", "create_time": 1e15}]},
        {"field": "employees[0].create_time", "location": "body", "issue": "out of range"},
    ),
]


@pytest.mark.parametrize(("method", "path", "body", "detail"), CASES)
def test_a_parameter_refusal_names_field_location_issue_and_value(
    http: TestClient, method: str, path: str, body: Any, detail: dict[str, Any]
) -> None:
    resp = http.request(method, path, json=body, headers=AUTH)
    assert resp.status_code == 400, resp.text
    answer = resp.json()
    assert answer["code"] == "PARAM_ERROR" and answer["message"]
    assert answer["detail"] == detail


def test_the_message_stays_as_it_was(http: TestClient) -> None:
    resp = http.post("/sandbox/clock", json={"freeze": True, "thaw": True}, headers=AUTH)
    assert resp.json()["message"] == "freeze and thaw contradict each other: give one"
    resp = http.get("/sandbox/journal", params={"limit": "abc"}, headers=AUTH)
    assert resp.json()["message"] == "limit must be a whole number"


def test_a_body_that_is_not_json_is_named_as_the_whole_body(http: TestClient) -> None:
    resp = http.post("/sandbox/clock", content=b"{", headers=AUTH)
    assert resp.status_code == 400
    assert resp.json()["message"].startswith("body is not JSON: ")
    assert resp.json()["detail"] == {"field": "/", "location": "body", "issue": "not JSON"}


def test_a_nul_deep_in_a_scenario_is_named_by_its_entry(http: TestClient) -> None:
    """As every scenario error names its entry (test_scenario.py): it was a JSON pointer."""
    text = '{"merchants": [{"mchid": "1\\u0000", "name": "x"}]}'
    resp = http.post("/sandbox/scenario", content=text.encode(), headers=AUTH)
    assert resp.status_code == 400
    assert resp.json() == {
        "code": "PARAM_ERROR",  # as a NUL anywhere in the control API's input
        "message": "merchants[0].mchid: must not contain NUL characters",
        "detail": {"field": "merchants[0].mchid", "location": "body", "issue": "contains NUL"},
    }


def test_a_long_value_is_cut_like_the_business_api_cuts_it(http: TestClient) -> None:
    long_name = "店" * 1000
    resp = http.post(
        "/sandbox/webizpay/payments", json={"amount": 1, "store": {"name": long_name}}, headers=AUTH
    )
    assert resp.status_code == 400
    assert resp.json()["detail"] == {
        "field": "store.name",
        "location": "body",
        "issue": "too long",
        "value": "店" * VALUE_MAX + "…",
    }


@pytest.mark.parametrize(
    ("method", "path", "body", "field", "location", "issue"),
    [
        (
            "POST",
            "/sandbox/webizpay/payments",
            {"amount": 1, "token": "s3cret" * 100},
            "token",
            "body",
            "too long",
        ),
        ("POST", "/sandbox/webizpay/authorizations", {"token": ["s3cret"]}, "token", "body", "not a string"),
        ("GET", "/sandbox/journal?token=s3cret%00", None, "token", "query", "contains NUL"),
        ("GET", "/sandbox/journal?apiv3_key=s3cret%00", None, "apiv3_key", "query", "contains NUL"),
    ],
)
def test_a_secret_looking_field_is_never_echoed(
    http: TestClient, method: str, path: str, body: Any, field: str, location: str, issue: str
) -> None:
    resp = http.request(method, path, json=body, headers=AUTH)
    assert resp.status_code == 400, resp.text
    assert resp.json()["detail"] == {"field": field, "location": location, "issue": issue}
    assert "s3cret" not in resp.text


def test_the_dashboards_fault_form_is_refused_as_a_form() -> None:
    """The dashboard's fault form is checked by the control API's parse_fault_body, told its fields are
    form fields (test_ops_dashboard.py checks the page still answers with the message)."""
    with pytest.raises(ControlError) as refused:
        parse_fault_body({"kind": "SYSTEM_ERROR", "count": "often"}, "form")
    assert refused.value.message == "count must be a whole number"
    assert refused.value.detail == {
        "field": "count",
        "location": "form",
        "issue": "not an integer",
        "value": "often",
    }


@pytest.mark.parametrize(
    ("path", "misspelt"),
    [
        ("/sandbox/recharge-employees", "sub_mchd"),
        ("/sandbox/webizpay/templates", "sp_mchd"),
        ("/sandbox/merchants", "mchid"),
    ],
)
def test_a_list_refuses_a_filter_it_does_not_read(http: TestClient, path: str, misspelt: str) -> None:
    """Found using the control API: these lists ignored a parameter they do not read, and a misspelt
    filter answered every merchant's rows as if filtered."""
    resp = http.get(path, params={misspelt: SECOND_A}, headers=AUTH)
    assert resp.status_code == 400 and resp.json()["code"] == "PARAM_ERROR", resp.text
    assert resp.json()["detail"] == {"field": misspelt, "location": "query", "issue": "unknown field"}
