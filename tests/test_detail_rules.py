"""One rule for what a refusal's ``detail`` echoes and names, in the business API (server/validation.py)
and the control API (server/params.py) alike (protocol/detail.py): a value is cut at 64 characters; a
secret-looking or encrypted (sensitive) field's value is never echoed; when several fields are wrong,
``detail.field`` names the first and the message the others (a few by name, the rest counted)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, Field
from starlette.testclient import TestClient

from apply4subject_support import enc, make_body, mutate, set_roles, submit
from conftest import SANDBOX_TOKEN
from support import SP_A, ApiClient, World
from wxpartner.protocol.detail import dotted, others_note
from wxpartner.protocol.errors import ApiError
from wxpartner.server.app import WxPartnerApp
from wxpartner.server.validation import parse_body, parse_mapping

AUTH = {"Authorization": f"Bearer {SANDBOX_TOKEN}"}
CIPHER = "Q" * 1100  # longer than an encrypted field may be (1024)


@pytest.fixture
def chan(app: WxPartnerApp, world: World, client_a: ApiClient) -> ApiClient:
    set_roles(app, world)
    return client_a


def _refused(resp: Any) -> dict[str, Any]:
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["code"] == "PARAM_ERROR", body
    return dict(body)


# --- secrets and ciphertexts are never echoed -------------------------------------------------------


@pytest.mark.parametrize(
    ("pointer", "value", "issue"),
    [
        ("/contact_info/mobile", CIPHER, "String should have at most 1024 characters"),
        ("/contact_info/name", "QQQQ\x00", "the NUL character"),
        ("/identification_info/identification_number", 12345, "Input should be a valid string"),
    ],
)
def test_the_business_api_never_echoes_an_encrypted_field(
    chan: ApiClient, pointer: str, value: Any, issue: str
) -> None:
    """The fields the models mark sensitive carry ciphertexts: named, never echoed (they were, cut at
    256 characters)."""
    body = _refused(submit(chan, mutate(make_body(chan, "enc_1"), pointer, value)))
    detail = body["detail"]
    assert detail["field"] == pointer and detail["issue"].startswith(issue), detail
    assert "value" not in detail
    assert "QQQQ" not in str(body) and "12345" not in str(body)


def test_an_encrypted_field_in_a_list_item_is_not_echoed_either(chan: ApiClient) -> None:
    ubo = {
        "ubo_id_doc_type": "IDENTIFICATION_TYPE_IDCARD",
        "ubo_id_doc_copy": "media-ubo-front",
        "ubo_id_doc_copy_back": "media-ubo-back",
        "ubo_id_doc_name": CIPHER,
        "ubo_id_doc_number": enc(chan, "110101199003070011"),
        "ubo_id_doc_address": enc(chan, "深圳"),
        "ubo_period_begin": "2019-01-01",
        "ubo_period_end": "2039-01-01",
    }
    body = _refused(submit(chan, mutate(make_body(chan, "enc_2"), "/ubo_info_list", [ubo])))
    assert body["detail"]["field"] == "/ubo_info_list/0/ubo_id_doc_name"
    assert "value" not in body["detail"] and "QQQQ" not in str(body)


class _Login(BaseModel):
    user: str = Field(max_length=8)
    api_token: str = Field(max_length=8)
    private_key: str | None = Field(default=None, max_length=8)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user": "u", "api_token": "s3cret" * 20}, "/api_token"),
        ({"user": "u", "api_token": "t", "private_key": "s3cret\x00"}, "/private_key"),
    ],
)
def test_the_business_api_never_echoes_a_secret_looking_field(body: dict[str, str], field: str) -> None:
    """Named as the control API names them (``params.bad``): token, secret, password, private, key..."""
    with pytest.raises(ApiError) as refused:
        parse_body(_Login, _json(body))
    assert refused.value.detail is not None and refused.value.detail["field"] == field
    assert "value" not in refused.value.detail
    assert "s3cret" not in str(refused.value.body())


def test_a_secret_looking_query_parameter_is_not_echoed() -> None:
    with pytest.raises(ApiError) as refused:
        parse_mapping(_Login, {"user": "u", "api_token": "s3cret\x00"}, "query")
    assert refused.value.detail == {
        "field": "api_token",
        "location": "query",
        "issue": "the NUL character (U+0000) is not supported",
    }


def test_an_ordinary_field_is_still_echoed_cut_at_64() -> None:
    with pytest.raises(ApiError) as refused:
        parse_body(_Login, _json({"user": "u" * 100, "api_token": "t"}))
    assert refused.value.detail is not None
    assert refused.value.detail["value"] == "u" * 64 + "…"


# --- several wrong fields ----------------------------------------------------------------------------


def test_the_business_api_message_names_the_other_wrong_fields(chan: ApiClient) -> None:
    body = make_body(chan, "b" * 200)  # too long
    body["contact_info"]["contact_type"] = "NOBODY"
    body["subject_info"]["subject_type"] = "NOTHING"
    refused = _refused(submit(chan, body))
    assert refused["detail"]["field"] == "/business_code"  # one field, as WeChat's shape has
    assert refused["message"].endswith(" (2 more: /contact_info/contact_type, /subject_info/subject_type)")


def test_a_missing_field_message_names_the_others_too() -> None:
    with pytest.raises(ApiError) as refused:
        parse_body(_Login, b'{"api_token": 5}')
    assert refused.value.detail is not None and refused.value.detail["field"] == "/user"
    assert refused.value.message == "参数“/user”是必填项 (/user is required) (1 more: /api_token)"


def test_one_wrong_field_has_no_note() -> None:
    with pytest.raises(ApiError) as refused:
        parse_body(_Login, b'{"user": "u", "api_token": 5}')
    assert refused.value.message == "参数“/api_token”格式错误：Input should be a valid string"


def test_the_note_names_five_others_and_counts_the_rest() -> None:
    assert others_note([]) == ""
    assert others_note(["b", "c"]) == " (2 more: b, c)"
    assert others_note(list("bcdefgh")) == " (7 more: b, c, d, e, f, …)"
    assert dotted(("store", 0, "name")) == "store[0].name"


def test_the_control_api_message_names_the_other_wrong_fields(http: TestClient) -> None:
    resp = http.post(
        "/sandbox/webizpay/templates",
        json={"sp_mchid": SP_A, "card_template_id": "", "card_rule": "ANY", "colour": "red"},
        headers=AUTH,
    )
    refused = _refused(resp)
    assert refused["detail"] == {
        "field": "card_template_id",
        "location": "body",
        "issue": "too short",
        "value": "",
    }
    assert refused["message"].endswith(" (2 more: card_rule, colour)"), refused["message"]


def test_many_unknown_control_fields_are_named_a_few_at_a_time(http: TestClient) -> None:
    resp = http.post("/sandbox/clock", json={f"x{i}": 1 for i in range(40)}, headers=AUTH)
    refused = _refused(resp)
    assert refused["detail"] == {"field": "x0", "location": "body", "issue": "unknown field"}
    assert refused["message"].startswith("unknown field(s): x0, x1, x10, x11, x12 and 35 more; known: ")


def test_a_scenario_error_names_the_other_wrong_entries(http: TestClient) -> None:
    resp = http.post(
        "/sandbox/scenario",
        json={"merchants": [{"mchid": "abc", "role": "nobody"}], "platform_keys": 5},
        headers=AUTH,
    )
    assert resp.status_code == 400, resp.text
    answer = resp.json()
    assert answer["code"] == "SCENARIO_ERROR"
    assert " (2 more: merchants[0].mchid, merchants[0].role)" in answer["message"], answer


@pytest.mark.parametrize(
    ("section", "first", "others"),
    [
        (
            {"webizpay": {"cards": [{"sp_mchid": "1900000001"}]}},
            "webizpay.cards[0].sub_mchid: Field required",
            "webizpay.cards[0].user_id",  # was "cards.0.user_id": named from the section down
        ),
        (
            {"apply4subject": {"applyments": [{"mchid": "x"}]}},
            "apply4subject.applyments[0].mchid:",
            "apply4subject.applyments[0].business_code",
        ),
    ],
)
def test_a_section_error_names_every_wrong_entry_by_its_whole_path(
    http: TestClient, section: dict[str, Any], first: str, others: str
) -> None:
    resp = http.post("/sandbox/scenario", json=section, headers=AUTH)
    assert resp.status_code == 400, resp.text
    message = resp.json()["message"]
    assert message.startswith(first) and f"more: {others}" in message, message


def test_a_recharge_scenario_error_names_its_entry_once(http: TestClient) -> None:
    """The entry's path, once, and in detail.field (it was "recharge_employees: recharge_employees[0]…",
    with detail.field "recharge_employees")."""
    entry = {"sub_mchid": "1900000101", "employees": [{"sp_openid": "x", "state": "BAD"}]}
    resp = http.post("/sandbox/scenario", json={"recharge_employees": [entry]}, headers=AUTH)
    assert resp.status_code == 400, resp.text
    answer = resp.json()
    assert answer["message"].startswith("recharge_employees[0].employees[0].state: Input should be"), answer
    assert answer["detail"]["field"] == "recharge_employees[0].employees[0].state", answer


# --- helpers -----------------------------------------------------------------------------------------


def _json(doc: Any) -> bytes:
    return json.dumps(doc).encode()
