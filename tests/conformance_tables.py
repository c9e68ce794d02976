"""The conformance tables: for each of the 24 operations, every refusal the spec (protocol.md §6,
webizpay.md, recharge-employees.md, apply4subject.md), the seeds 000–004 and the families' documented
Emulator choices give, as data. tests/test_conformance.py runs them.

URLs (and string values in bodies) may name resources the runner prepares on first use: {emp} an
AUTHORIZED relation, {card}/{out} its ACTIVE card, {revoked}/{revoked_card} a REVOKED relation and its
DISABLED card, {range}, {batch}/{batch_out}, {proof_out}, {fourth}, {aid}/{code}, {aid2}/{code2},
{aid_fullwidth}/{aid_arabic} ({aid} in other digits, percent-encoded), {passed}, {authorized_user},
{user}.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as default
from typing import Any

from apply4subject_support import make_body, mutate
from support import SECOND_A, SECOND_B, SP_A, SP_B, SUB_A, SUB_B, ApiClient
from webizpay_support import issue_body

FAULT = "Wechatpay-Sandbox-Fault"
# webizpay emits China time with whole seconds (seeds 000/001/004); recharge with milliseconds (seed 002).
SECONDS_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+08:00\Z")
MILLIS_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+08:00\Z")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")
TODAY = "2026-03-15"  # the bill rows freeze the business clock here (dates within "three months")
MISSING = object()
JSON_TYPE = "application/json; charset=utf-8"  # protocol.md §5.2

W = "/v3/webizpay"
RANGES = f"{W}/avail-mch-ranges"
MATCHES = f"{W}/stores/entity-matches"
RE = "/v3/platsolution/ecommerce/recharge-employees"
A = "/v3/apply4subject/applyment"
OPENID = "oLTPCuCsfN3ABBz50VUZBNlHDbUU"  # seed 002
ORG = "91110000710926094P"  # spec W15 example


@dataclass(frozen=True)
class Row:
    """One refusal: request, then the exact answer expected."""

    name: str
    method: str
    url: str  # may name prepared resources: {emp}, {card}, {out}, {revoked}, {range}, {batch}, ...
    body: Any = None  # dict (strings formatted like url), raw bytes, or callable(ApiClient, env) -> dict
    status: int = 400
    code: str = "PARAM_ERROR"
    field: str | None = None  # detail.field expected (required for PARAM_ERROR rows)
    value: Any = MISSING  # detail.value expected
    location: str | None = None  # detail.location expected
    state: str | None = None  # detail.state expected (INVALID_REQUEST for a state)
    issue: str | None = None  # text detail.issue must contain
    signed: bool = True  # 401s and header refusals (before authentication) are not signed
    who: str = "a"  # a / b (another service provider) / c (a plain service provider)
    kw: Mapping[str, Any] = default(default_factory=dict)  # extra request options (headers, keys)
    # (method, url, status, text the answer must contain, or "!text" must not) to re-read afterwards:
    # nothing was written
    unchanged: tuple[str, str, int, str] | None = None


# --- the tables -------------------------------------------------------------------------------------

SIGN = {"private_key": "other"}  # resolved to World.other_key: a signature no registered key made
TEXT = {"headers": {"Content-Type": "text/plain"}}
HTML = {"headers": {"Accept": "text/html"}}


def common(op: str, method: str, url: str, body: Any = None) -> list[Row]:
    """The seeds' common codes for every operation: 401 SIGN_ERROR, 400 INVALID_REQUEST (APIv3 rules:
    `Accept: application/json` is required by every seed, a body must be application/json), and 500
    SYSTEM_ERROR with the catalogue body. Header refusals come before authentication: not signed."""
    rows = [
        Row(f"{op} signed by an unknown key", method, url, body, 401, "SIGN_ERROR", kw=SIGN),
        Row(f"{op} 500", method, url, body, 500, "SYSTEM_ERROR", kw={"headers": {FAULT: "SYSTEM_ERROR"}}),
        Row(f"{op} Accept text/html", method, url, body, 400, "INVALID_REQUEST", signed=False, kw=HTML),
    ]
    if body is not None and not callable(body):
        rows.append(
            Row(
                f"{op} Content-Type text/plain",
                method,
                url,
                body,
                400,
                "INVALID_REQUEST",
                signed=False,
                kw=TEXT,
            )
        )
    return rows


def auth_body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"sp_mchid": SP_A, "sub_mchid": SUB_A, "application_type": "H5", **over}
    return {k: v for k, v in body.items() if v is not None}


def card_body(**over: Any) -> dict[str, Any]:
    body = issue_body("out_conf_new", sp=over.pop("sp", SP_A), sub=over.pop("sub", SUB_A))
    return {k: v for k, v in {**body, **over}.items() if v is not None}


def without(body: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != key}


SPSUB = f"sp_mchid={SP_A}&sub_mchid={SUB_A}"
CARD = f"{W}/employees/{{emp}}/quota-cards/{{card}}"
NO_NEW_CARD = (
    "GET",
    f"{W}/employees/{{emp}}/out-quota-cards/out_conf_new?{SPSUB}",
    404,
    "RESOURCE_NOT_EXISTS",
)
CARD_ACTIVE = ("GET", f"{W}/employees/{{emp}}/quota-cards/{{card}}?{SPSUB}", 200, '"card_state":"ACTIVE"')
LONG33 = "1" * 33

W1 = f"{W}/users/{{user}}/authorization-url"
W2 = f"{W}/users/{{user}}/authorization-state"
W3 = f"{W}/employees/{{emp}}/quota-cards"

WEBIZPAY: dict[str, list[Row]] = {
    "W1": [
        Row("user_id 5 chars", "POST", f"{W}/users/ab123/authorization-url", auth_body(), field="user_id"),
        Row(
            "user_id 33 chars",
            "POST",
            f"{W}/users/{'u' * 33}/authorization-url",
            auth_body(),
            field="user_id",
        ),
        Row(
            "user_id bad char", "POST", f"{W}/users/emp.12345/authorization-url", auth_body(), field="user_id"
        ),
        Row("sp_mchid missing", "POST", W1, auth_body(sp_mchid=None), field="/sp_mchid"),
        Row("sp_mchid 33", "POST", W1, auth_body(sp_mchid=LONG33), field="/sp_mchid", value=LONG33),
        Row("sub_mchid missing", "POST", W1, auth_body(sub_mchid=None), field="/sub_mchid"),
        Row(
            "application_type enum",
            "POST",
            W1,
            auth_body(application_type="APP"),
            field="/application_type",
            value="APP",
        ),
        Row(
            "application_type missing",
            "POST",
            W1,
            auth_body(application_type=None),
            field="/application_type",
        ),
        Row("body is an array", "POST", W1, b"[]", field="/"),
        Row("body is not JSON", "POST", W1, b"{nope", field="/"),
        # PostgreSQL text cannot hold NUL (a 500 there): refused on both backends, naming the field
        Row(
            "sub_mchid with an escaped NUL",
            "POST",
            W1,
            json.dumps(auth_body(sub_mchid=SUB_A + "\x00")).encode("ascii"),
            field="/sub_mchid",
            value=SUB_A + "\x00",
            issue="NUL",
        ),
        Row(
            "a NUL escaped in a key",
            "POST",
            W1,
            json.dumps({**auth_body(), "x\x00": 1}).encode("ascii"),
            field="/x\x00",
            issue="NUL",
        ),
        Row("sp_mchid not the signer", "POST", W1, auth_body(sp_mchid=SP_B), 403, "NO_AUTH"),
        Row("sub_mchid not bound", "POST", W1, auth_body(sub_mchid=SUB_B), 403, "NO_AUTH"),
        Row(
            "already AUTHORIZED",
            "POST",
            f"{W}/users/{{authorized_user}}/authorization-url",
            auth_body(),
            400,
            "INVALID_REQUEST",
            state="AUTHORIZED",
        ),
        *common("W1", "POST", W1, auth_body()),
    ],
    "W2": [
        Row("sp_mchid missing", "GET", f"{W2}?sub_mchid={SUB_A}", field="sp_mchid", location="query"),
        Row("sub_mchid missing", "GET", f"{W2}?sp_mchid={SP_A}", field="sub_mchid", location="query"),
        Row("sp_mchid 33", "GET", f"{W2}?sp_mchid={LONG33}&sub_mchid={SUB_A}", field="sp_mchid"),
        Row(
            "user_id 5",
            "GET",
            f"{W}/users/ab123/authorization-state?{SPSUB}",
            field="user_id",
            location="path",
        ),
        Row(
            "user_id with a NUL",
            "GET",
            f"{W}/users/emp%0012345/authorization-state?{SPSUB}",
            field="user_id",
            value="emp\x0012345",
            location="path",
            issue="NUL",
        ),
        Row(
            "sub_mchid with a NUL",
            "GET",
            f"{W2}?sp_mchid={SP_A}&sub_mchid=12%0034",
            field="sub_mchid",
            value="12\x0034",
            location="query",
            issue="NUL",
        ),
        # a parameter given twice with different values: the first was taken silently
        Row(
            "sub_mchid twice, different",
            "GET",
            f"{W2}?sp_mchid={SP_A}&sub_mchid={SUB_A}&sub_mchid={SUB_B}",
            field="sub_mchid",
            location="query",
            issue="different values",
        ),
        # protocol.md §10 for path and query values too (it was 403 NO_AUTH: no such sub-merchant)
        Row(
            "sub_mchid with an emoji",
            "GET",
            f"{W2}?sp_mchid={SP_A}&sub_mchid=12%F0%9F%98%8034",
            field="sub_mchid",
            value="12\U0001f60034",
            location="query",
            issue="1–3 byte UTF-8",
        ),
        Row(
            "sp_mchid not the signer", "GET", f"{W2}?sp_mchid={SP_B}&sub_mchid={SUB_A}", None, 403, "NO_AUTH"
        ),
        Row("sub_mchid not bound", "GET", f"{W2}?sp_mchid={SP_A}&sub_mchid={SUB_B}", None, 403, "NO_AUTH"),
        *common("W2", "GET", f"{W2}?{SPSUB}"),
    ],
    "W3": [
        *[
            Row(
                f"{key} missing", "POST", W3, card_body(**{key: None}), field=f"/{key}", unchanged=NO_NEW_CARD
            )
            for key in (
                "sp_mchid",
                "sub_mchid",
                "card_template_id",
                "amount",
                "card_name",
                "out_card_no",
                "effective_end_time",
            )
        ],
        Row(
            "employee_id 65",
            "POST",
            f"{W}/employees/{'e' * 65}/quota-cards",
            card_body(),
            field="employee_id",
        ),
        Row(
            "employee_id empty",
            "POST",
            f"{W}/employees//quota-cards",
            card_body(),
            field="employee_id",
            location="path",
        ),
        Row(
            "card_template_id 65", "POST", W3, card_body(card_template_id="t" * 65), field="/card_template_id"
        ),
        Row("amount as a string", "POST", W3, card_body(amount="100"), field="/amount", value="100"),
        Row("amount not an integer", "POST", W3, card_body(amount=1.5), field="/amount"),
        Row("amount 0", "POST", W3, card_body(amount=0), field="/amount", value=0),
        Row("amount negative", "POST", W3, card_body(amount=-1), field="/amount"),
        Row("card_name 21 chars", "POST", W3, card_body(card_name="卡" * 21), field="/card_name"),
        Row("card_name empty", "POST", W3, card_body(card_name=""), field="/card_name"),
        # a required text of only whitespace is as good as empty (it issued a card named " ")
        Row(
            "card_name blank",
            "POST",
            W3,
            card_body(card_name="  "),
            field="/card_name",
            issue="blank",
            unchanged=NO_NEW_CARD,
        ),
        # protocol.md §10: 4-byte characters are refused; the refusal names the field like any other.
        Row(
            "card_name with an emoji",
            "POST",
            W3,
            card_body(card_name="卡\U0001f600"),
            field="/card_name",
            value="卡\U0001f600",
            unchanged=NO_NEW_CARD,
        ),
        # ... also sent as JSON escapes (a surrogate pair), as json.dumps and wechatpayv3 send it
        Row(
            "card_name with an escaped emoji",
            "POST",
            W3,
            json.dumps(card_body(card_name="卡\U0001f600")).encode("ascii"),
            field="/card_name",
            value="卡\U0001f600",
            unchanged=NO_NEW_CARD,
        ),
        Row(
            "card_remark with an escaped emoji",
            "POST",
            W3,
            json.dumps(card_body(card_remark="\U0001f680 trip")).encode("ascii"),
            field="/card_remark",
            value="\U0001f680 trip",
            unchanged=NO_NEW_CARD,
        ),
        Row(
            "card_name with an escaped NUL",
            "POST",
            W3,
            json.dumps(card_body(card_name="卡\x00")).encode("ascii"),
            field="/card_name",
            value="卡\x00",
            issue="NUL",
            unchanged=NO_NEW_CARD,
        ),
        # an escaped emoji deep inside 50,000 nested arrays: json.loads gave up (RecursionError, a 500)
        Row(
            "an escaped emoji nested too deep",
            "POST",
            W3,
            b'{"card_name":' + b"[" * 50_000 + b'"\\ud83d\\ude00"' + b"]" * 50_000 + b"}",
            field="/",
            issue="not valid JSON",
            unchanged=NO_NEW_CARD,
        ),
        Row(
            "a byte no UTF-8 text holds",
            "POST",
            W3,
            json.dumps(card_body(card_name="卡"), ensure_ascii=False)
            .encode()
            .replace("卡".encode(), b"\xff"),
            field="/",
            issue="not valid UTF-8",
            unchanged=NO_NEW_CARD,
        ),
        # protocol.md §10: null counts as absent, so a required field sent as null is "required".
        Row(
            "card_name null",
            "POST",
            W3,
            {**card_body(), "card_name": None},
            field="/card_name",
            issue="is required",
        ),
        Row(
            "card_remark null is absent",
            "POST",
            W3,
            {**card_body(), "card_remark": None, "card_name": 1},
            field="/card_name",
        ),
        Row("out_card_no 5", "POST", W3, card_body(out_card_no="abc12"), field="/out_card_no", value="abc12"),
        Row("out_card_no 33", "POST", W3, card_body(out_card_no="o" * 33), field="/out_card_no"),
        Row("out_card_no bad char", "POST", W3, card_body(out_card_no="card#0001"), field="/out_card_no"),
        Row(
            "end time without offset",
            "POST",
            W3,
            card_body(effective_end_time="2099-01-01T00:00:00"),
            field="/effective_end_time",
        ),
        Row(
            "end time a date",
            "POST",
            W3,
            card_body(effective_end_time="2099-01-01"),
            field="/effective_end_time",
        ),
        Row(
            "end time without seconds",
            "POST",
            W3,
            card_body(effective_end_time="2099-01-01T00:00+08:00"),
            field="/effective_end_time",
        ),
        # RFC 3339 digits are ASCII: Python's \d took full-width ones, and the card echoed them back
        Row(
            "end time in full-width digits",
            "POST",
            W3,
            card_body(effective_end_time="２０９９-０１-０１T00:00:00+08:00"),
            field="/effective_end_time",
            value="２０９９-０１-０１T00:00:00+08:00",
            issue="expected RFC 3339",
            unchanged=NO_NEW_CARD,
        ),
        Row(
            "end time in the past",
            "POST",
            W3,
            card_body(effective_end_time="2020-01-01T00:00:00+08:00"),
            field="/effective_end_time",
            value="2020-01-01T00:00:00+08:00",
            unchanged=NO_NEW_CARD,
        ),
        # an offset put it in year 10000 UTC, and dashboard pages showing the card answered 500
        Row(
            "end time beyond 9999-12-31T23:59:59Z",
            "POST",
            W3,
            card_body(effective_end_time="9999-12-31T23:59:59-23:59"),
            field="/effective_end_time",
            value="9999-12-31T23:59:59-23:59",
            issue="must not be later than 9999-12-31T23:59:59Z",
            unchanged=NO_NEW_CARD,
        ),
        Row("card_remark 51", "POST", W3, card_body(card_remark="备" * 51), field="/card_remark"),
        Row(
            "avail_mch_range_id 65",
            "POST",
            W3,
            card_body(avail_mch_range_id="r" * 65),
            field="/avail_mch_range_id",
        ),
        Row(
            "unknown template",
            "POST",
            W3,
            card_body(card_template_id="no_such_template"),
            field="/card_template_id",
            value="no_such_template",
            unchanged=NO_NEW_CARD,
        ),
        Row(
            "unknown range",
            "POST",
            W3,
            card_body(avail_mch_range_id="89f5123e-5ad4-4e0e-89b1-63ced0c798c5"),
            field="/avail_mch_range_id",
        ),
        Row(
            "unknown employee",
            "POST",
            f"{W}/employees/WeBizPay_nobody/quota-cards",
            card_body(),
            404,
            "RESOURCE_NOT_EXISTS",
        ),
        Row(
            "REVOKED relation",
            "POST",
            f"{W}/employees/{{revoked}}/quota-cards",
            card_body(),
            400,
            "INVALID_REQUEST",
            state="REVOKED",
        ),
        Row(
            "out_card_no reused, other amount",
            "POST",
            W3,
            issue_body("{out}", amount=1),
            400,
            "INVALID_REQUEST",
            field="/out_card_no",
        ),
        Row("sp_mchid not the signer", "POST", W3, card_body(sp=SP_B), 403, "NO_AUTH", unchanged=NO_NEW_CARD),
        Row("sub_mchid not bound", "POST", W3, card_body(sub=SUB_B), 403, "NO_AUTH"),
        *common("W3", "POST", W3, card_body()),
    ],
    "W4": [
        Row("sp_mchid missing", "GET", f"{CARD}?sub_mchid={SUB_A}", field="sp_mchid", location="query"),
        Row("sub_mchid missing", "GET", f"{CARD}?sp_mchid={SP_A}", field="sub_mchid", location="query"),
        Row("card_no 65", "GET", f"{W}/employees/{{emp}}/quota-cards/{'9' * 65}?{SPSUB}", field="card_no"),
        Row(
            "employee_id 65",
            "GET",
            f"{W}/employees/{'e' * 65}/quota-cards/{{card}}?{SPSUB}",
            field="employee_id",
        ),
        Row(
            "unknown card",
            "GET",
            f"{W}/employees/{{emp}}/quota-cards/1068019671702503425?{SPSUB}",
            None,
            404,
            "RESOURCE_NOT_EXISTS",
        ),
        Row(
            "card of another employee",
            "GET",
            f"{W}/employees/{{revoked}}/quota-cards/{{card}}?{SPSUB}",
            None,
            404,
            "RESOURCE_NOT_EXISTS",
        ),
        Row(
            "sp_mchid not the signer",
            "GET",
            f"{CARD}?sp_mchid={SP_B}&sub_mchid={SUB_A}",
            None,
            403,
            "NO_AUTH",
        ),
        Row("sub_mchid not bound", "GET", f"{CARD}?sp_mchid={SP_A}&sub_mchid={SUB_B}", None, 403, "NO_AUTH"),
        *common("W4", "GET", f"{CARD}?{SPSUB}"),
    ],
    "W5": [
        Row(
            "out_card_no 65",
            "GET",
            f"{W}/employees/{{emp}}/out-quota-cards/{'o' * 65}?{SPSUB}",
            field="out_card_no",
        ),
        # string(64) on this page, string(32) on issue: a 64-char value is a well-formed miss, not a 400.
        Row(
            "out_card_no 64 is well-formed",
            "GET",
            f"{W}/employees/{{emp}}/out-quota-cards/{'o' * 64}?{SPSUB}",
            None,
            404,
            "RESOURCE_NOT_EXISTS",
        ),
        Row(
            "sp_mchid missing",
            "GET",
            f"{W}/employees/{{emp}}/out-quota-cards/{{out}}?sub_mchid={SUB_A}",
            field="sp_mchid",
        ),
        Row(
            "unknown out_card_no",
            "GET",
            f"{W}/employees/{{emp}}/out-quota-cards/no_such_card?{SPSUB}",
            None,
            404,
            "RESOURCE_NOT_EXISTS",
        ),
        Row(
            "card of another employee",
            "GET",
            f"{W}/employees/{{revoked}}/out-quota-cards/{{out}}?{SPSUB}",
            None,
            404,
            "RESOURCE_NOT_EXISTS",
        ),
        Row(
            "sub_mchid not bound",
            "GET",
            f"{W}/employees/{{emp}}/out-quota-cards/{{out}}?sp_mchid={SP_A}&sub_mchid={SUB_B}",
            None,
            403,
            "NO_AUTH",
        ),
        *common("W5", "GET", f"{W}/employees/{{emp}}/out-quota-cards/{{out}}?{SPSUB}"),
    ],
    "W6": [
        Row(
            "card_no empty",
            "POST",
            f"{W}/employees/{{emp}}/quota-cards//cancel",
            {"sp_mchid": SP_A, "sub_mchid": SUB_A, "reason": "x"},
            field="card_no",
            location="path",
        ),
        Row(
            "reason missing",
            "POST",
            f"{CARD}/cancel",
            {"sp_mchid": SP_A, "sub_mchid": SUB_A},
            field="/reason",
            unchanged=CARD_ACTIVE,
        ),
        Row(
            "reason 51",
            "POST",
            f"{CARD}/cancel",
            {"sp_mchid": SP_A, "sub_mchid": SUB_A, "reason": "废" * 51},
            field="/reason",
        ),
        Row(
            "reason blank (an ideographic space)",
            "POST",
            f"{CARD}/cancel",
            {"sp_mchid": SP_A, "sub_mchid": SUB_A, "reason": "\u3000"},
            field="/reason",
            issue="blank",
            unchanged=CARD_ACTIVE,
        ),
        Row(
            "reason empty",
            "POST",
            f"{CARD}/cancel",
            {"sp_mchid": SP_A, "sub_mchid": SUB_A, "reason": ""},
            field="/reason",
        ),
        Row(
            "reason with an escaped emoji",
            "POST",
            f"{CARD}/cancel",
            b'{"sp_mchid":"%s","sub_mchid":"%s","reason":"\\ud83d\\ude00"}' % (SP_A.encode(), SUB_A.encode()),
            field="/reason",
            value="\U0001f600",
            unchanged=CARD_ACTIVE,
        ),
        Row(
            "sub_mchid missing",
            "POST",
            f"{CARD}/cancel",
            {"sp_mchid": SP_A, "reason": "x"},
            field="/sub_mchid",
        ),
        Row(
            "card_no 65",
            "POST",
            f"{W}/employees/{{emp}}/quota-cards/{'9' * 65}/cancel",
            {"sp_mchid": SP_A, "sub_mchid": SUB_A, "reason": "x"},
            field="card_no",
        ),
        Row(
            "unknown card",
            "POST",
            f"{W}/employees/{{emp}}/quota-cards/1068019671702503425/cancel",
            {"sp_mchid": SP_A, "sub_mchid": SUB_A, "reason": "x"},
            404,
            "RESOURCE_NOT_EXISTS",
        ),
        Row(
            "sp_mchid not the signer",
            "POST",
            f"{CARD}/cancel",
            {"sp_mchid": SP_B, "sub_mchid": SUB_A, "reason": "x"},
            403,
            "NO_AUTH",
        ),
        Row(
            "sub_mchid not bound",
            "POST",
            f"{CARD}/cancel",
            {"sp_mchid": SP_A, "sub_mchid": SUB_B, "reason": "x"},
            403,
            "NO_AUTH",
            unchanged=CARD_ACTIVE,
        ),
        *common(
            "W6", "POST", f"{CARD}/cancel", {"sp_mchid": SP_A, "sub_mchid": SUB_A, "reason": "商户主动作废"}
        ),
    ],
    "W7": [
        Row(
            "application_type missing",
            "GET",
            f"{CARD}/payment-url?{SPSUB}",
            field="application_type",
            location="query",
        ),
        Row(
            "application_type enum",
            "GET",
            f"{CARD}/payment-url?{SPSUB}&application_type=APP",
            field="application_type",
            value="APP",
        ),
        Row(
            "sp_mchid missing",
            "GET",
            f"{CARD}/payment-url?sub_mchid={SUB_A}&application_type=H5",
            field="sp_mchid",
        ),
        Row(
            "unknown card",
            "GET",
            f"{W}/employees/{{emp}}/quota-cards/1068019671702503425/payment-url?{SPSUB}&application_type=H5",
            None,
            404,
            "RESOURCE_NOT_EXISTS",
        ),
        Row(
            "DISABLED card",
            "GET",
            f"{W}/employees/{{revoked}}/quota-cards/{{revoked_card}}/payment-url?{SPSUB}&application_type=H5",
            None,
            400,
            "INVALID_REQUEST",
            state="DISABLED",
        ),
        Row(
            "sub_mchid not bound",
            "GET",
            f"{CARD}/payment-url?sp_mchid={SP_A}&sub_mchid={SUB_B}&application_type=H5",
            None,
            403,
            "NO_AUTH",
        ),
        *common("W7", "GET", f"{CARD}/payment-url?{SPSUB}&application_type=H5"),
    ],
    "W8": [
        Row(
            "employee_id empty (seed's path)",
            "POST",
            f"{W}/employee//revoke",
            {"sp_mchid": SP_A, "sub_mchid": SUB_A},
            field="employee_id",
            location="path",
        ),
        Row(
            "employee_id 65",
            "POST",
            f"{W}/employees/{'e' * 65}/revoke",
            {"sp_mchid": SP_A, "sub_mchid": SUB_A},
            field="employee_id",
        ),
        Row(
            "sub_mchid missing",
            "POST",
            f"{W}/employees/{{emp}}/revoke",
            {"sp_mchid": SP_A},
            field="/sub_mchid",
            unchanged=CARD_ACTIVE,
        ),
        Row(
            "unknown employee (plural path)",
            "POST",
            f"{W}/employees/WeBizPay_nobody/revoke",
            {"sp_mchid": SP_A, "sub_mchid": SUB_A},
            404,
            "RESOURCE_NOT_EXISTS",
        ),
        Row(
            "unknown employee (seed's singular path)",
            "POST",
            f"{W}/employee/wx_emp_123456/revoke",
            {"sp_mchid": SP_A, "sub_mchid": SUB_A},
            404,
            "RESOURCE_NOT_EXISTS",
        ),
        Row(
            "sp_mchid not the signer",
            "POST",
            f"{W}/employee/{{emp}}/revoke",
            {"sp_mchid": SP_B, "sub_mchid": SUB_A},
            403,
            "NO_AUTH",
        ),
        Row(
            "sub_mchid not bound",
            "POST",
            f"{W}/employees/{{emp}}/revoke",
            {"sp_mchid": SP_A, "sub_mchid": SUB_B},
            403,
            "NO_AUTH",
            unchanged=CARD_ACTIVE,
        ),
        *common("W8", "POST", f"{W}/employee/{{emp}}/revoke", {"sp_mchid": SP_A, "sub_mchid": SUB_A}),
    ],
}


def match(**over: Any) -> dict[str, Any]:
    detail = {"organization_code": ORG, "store_name": "测试门店", "product_type": "CODE_PAY"}
    detail.update(over.pop("detail", {}))
    body: dict[str, Any] = {
        "sp_mchid": SP_A,
        "out_batch_id": "batch_conf_new",
        "match_details": [detail],
        **over,
    }
    return {k: v for k, v in body.items() if v is not None}


def proof(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "sp_mchid": SP_A,
        "sub_mchid": SUB_A,
        "start_date": "2026-02-01",
        "end_date": "2026-03-14",
        "out_operation_id": "proof_conf_new",
        **over,
    }
    return {k: v for k, v in body.items() if v is not None}


def bill(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "sp_mchid": SP_A,
        "sub_mchid": SUB_A,
        "date": "2026-03-14",
        "type": "QYZFALL",
        **over,
    }
    return {k: v for k, v in body.items() if v is not None}


IDS = f"{RANGES}/{{range}}/merchant-identifiers"
W10 = f"{MATCHES}/{{batch}}"

MERCHANT_SIDE: dict[str, list[Row]] = {
    "W9": [
        Row("out_batch_id missing", "POST", MATCHES, match(out_batch_id=None), field="/out_batch_id"),
        Row("out_batch_id 5", "POST", MATCHES, match(out_batch_id="b1234"), field="/out_batch_id"),
        Row(
            "out_batch_id bad char", "POST", MATCHES, match(out_batch_id="batch.0001"), field="/out_batch_id"
        ),
        Row(
            "organization_code 33",
            "POST",
            MATCHES,
            match(detail={"organization_code": "9" * 33}),
            field="/match_details/0/organization_code",
        ),
        Row(
            "store_name 257",
            "POST",
            MATCHES,
            match(detail={"store_name": "店" * 257}),
            field="/match_details/0/store_name",
        ),
        Row(
            "product_type enum",
            "POST",
            MATCHES,
            match(detail={"product_type": "APP_PAY"}),
            field="/match_details/0/product_type",
            value="APP_PAY",
        ),
        Row(
            "match_details not an array",
            "POST",
            MATCHES,
            {**match(), "match_details": {}},
            field="/match_details",
        ),
        Row(
            "out_batch_id reused, other details",
            "POST",
            MATCHES,
            match(out_batch_id="{batch_out}"),
            400,
            "INVALID_REQUEST",
            field="/out_batch_id",
            value="batch_conf_0001",
        ),
        # spec §5.1 leaves the code Unknown; one choice for the family (README, webizpay W9–W17).
        Row("sp_mchid not the signer", "POST", MATCHES, match(sp_mchid=SP_B), 403, "NO_AUTH"),
        *common("W9", "POST", MATCHES, match()),
    ],
    "W10": [
        Row("batch_id 33", "GET", f"{MATCHES}/{'1' * 33}?sp_mchid={SP_A}", field="batch_id", location="path"),
        Row("sp_mchid missing", "GET", W10, field="sp_mchid", location="query"),
        Row(
            "unknown batch",
            "GET",
            f"{MATCHES}/1030000071201000000?sp_mchid={SP_A}",
            None,
            404,
            "RESOURCE_NOT_EXISTS",
        ),
        Row(
            "another provider's batch",
            "GET",
            f"{W10}?sp_mchid={SP_B}",
            None,
            404,
            "RESOURCE_NOT_EXISTS",
            who="b",
        ),
        Row("sp_mchid not the signer", "GET", f"{W10}?sp_mchid={SP_B}", None, 403, "NO_AUTH"),
        *common("W10", "GET", f"{W10}?sp_mchid={SP_A}"),
    ],
    "W11": [
        Row(
            "start_date format",
            "POST",
            f"{W}/bill/proof",
            proof(start_date="2026/02/01"),
            field="/start_date",
        ),
        Row(
            "start_date not a day",
            "POST",
            f"{W}/bill/proof",
            proof(start_date="2026-02-30"),
            field="/start_date",
        ),
        Row("end_date missing", "POST", f"{W}/bill/proof", proof(end_date=None), field="/end_date"),
        Row(
            "start_date before three months",
            "POST",
            f"{W}/bill/proof",
            proof(start_date="2025-12-14"),
            field="/start_date",
        ),
        Row(
            "out_operation_id 5",
            "POST",
            f"{W}/bill/proof",
            proof(out_operation_id="op123"),
            field="/out_operation_id",
        ),
        Row(
            "entity_name 257", "POST", f"{W}/bill/proof", proof(entity_name="名" * 257), field="/entity_name"
        ),
        Row(
            "end_date before start_date",
            "POST",
            f"{W}/bill/proof",
            proof(start_date="2026-03-10", end_date="2026-03-01"),
            field="/end_date",
            value="2026-03-01",
        ),
        Row(
            "end_date after today", "POST", f"{W}/bill/proof", proof(end_date="2026-03-16"), field="/end_date"
        ),
        Row(
            "out_operation_id reused, other dates",
            "POST",
            f"{W}/bill/proof",
            proof(out_operation_id="{proof_out}", start_date="2026-03-01"),
            400,
            "INVALID_REQUEST",
            field="/out_operation_id",
        ),
        Row("sub_mchid not bound", "POST", f"{W}/bill/proof", proof(sub_mchid=SUB_B), 403, "NO_AUTH"),
        Row("sp_mchid not the signer", "POST", f"{W}/bill/proof", proof(sp_mchid=SP_B), 403, "NO_AUTH"),
        *common("W11", "POST", f"{W}/bill/proof", proof()),
    ],
    "W12": [
        Row("type enum", "POST", f"{W}/bill/trade-bill", bill(type="ALL"), field="/type", value="ALL"),
        Row("date format", "POST", f"{W}/bill/trade-bill", bill(date="20260314"), field="/date"),
        Row(
            "date in full-width digits",
            "POST",
            f"{W}/bill/trade-bill",
            bill(date="２０２６-０３-１４"),
            field="/date",
            issue="expected a date yyyy-MM-DD",
        ),
        Row(
            "date before three months", "POST", f"{W}/bill/trade-bill", bill(date="2025-11-01"), field="/date"
        ),
        Row(
            "date today (not over yet)",
            "POST",
            f"{W}/bill/trade-bill",
            bill(date=TODAY),
            field="/date",
            value=TODAY,
        ),
        Row("sub_mchid missing", "POST", f"{W}/bill/trade-bill", bill(sub_mchid=None), field="/sub_mchid"),
        Row("sub_mchid not bound", "POST", f"{W}/bill/trade-bill", bill(sub_mchid=SUB_B), 403, "NO_AUTH"),
        Row(
            "sp_mchid not the signer",
            "POST",
            f"{W}/bill/trade-bill",
            bill(sp_mchid=SP_B),
            403,
            "NO_AUTH",
        ),
        *common("W12", "POST", f"{W}/bill/trade-bill", bill()),
    ],
    "W13": [
        Row(
            "identifier_type enum",
            "POST",
            RANGES,
            {"sp_mchid": SP_A, "identifier_type": "MCHID"},
            field="/identifier_type",
            value="MCHID",
        ),
        Row("identifier_type missing", "POST", RANGES, {"sp_mchid": SP_A}, field="/identifier_type"),
        Row(
            "sp_mchid 33",
            "POST",
            RANGES,
            {"sp_mchid": LONG33, "identifier_type": "TRANSACTION_ID"},
            field="/sp_mchid",
        ),
        Row(
            "sp_mchid not the signer",
            "POST",
            RANGES,
            {"sp_mchid": SP_B, "identifier_type": "TRANSACTION_ID"},
            403,
            "NO_AUTH",
        ),
        *common("W13", "POST", RANGES, {"sp_mchid": SP_A, "identifier_type": "ORGANIZATION_CODE"}),
    ],
    "W14": [
        Row("sp_mchid missing", "GET", RANGES, field="sp_mchid", location="query"),
        Row(
            "sp_mchid with a NUL",
            "GET",
            f"{RANGES}?sp_mchid=12%0034",
            field="sp_mchid",
            value="12\x0034",
            location="query",
            issue="NUL",
        ),
        Row("sp_mchid not the signer", "GET", f"{RANGES}?sp_mchid={SP_B}", None, 403, "NO_AUTH"),
        *common("W14", "GET", f"{RANGES}?sp_mchid={SP_A}"),
    ],
    "W15": [
        Row(
            "merchant_identifier 65",
            "POST",
            IDS,
            {"sp_mchid": SP_A, "merchant_identifier": "9" * 65},
            field="/merchant_identifier",
        ),
        Row("merchant_identifier missing", "POST", IDS, {"sp_mchid": SP_A}, field="/merchant_identifier"),
        Row(
            "identifier of the wrong type",
            "POST",
            IDS,
            {"sp_mchid": SP_A, "merchant_identifier": "not a code"},
            field="/merchant_identifier",
            value="not a code",
        ),
        Row(
            "range_id 65",
            "POST",
            f"{RANGES}/{'r' * 65}/merchant-identifiers",
            {"sp_mchid": SP_A, "merchant_identifier": ORG},
            field="range_id",
        ),
        Row(
            "unknown range",
            "POST",
            f"{RANGES}/89f5123e-5ad4-4e0e-89b1-63ced0c798c5/merchant-identifiers",
            {"sp_mchid": SP_A, "merchant_identifier": ORG},
            404,
            "RESOURCE_NOT_EXISTS",
        ),
        Row(
            "sp_mchid not the signer",
            "POST",
            IDS,
            {"sp_mchid": SP_B, "merchant_identifier": ORG},
            403,
            "NO_AUTH",
        ),
        *common("W15", "POST", IDS, {"sp_mchid": SP_A, "merchant_identifier": ORG}),
    ],
    "W16": [
        Row("offset missing", "GET", f"{IDS}?sp_mchid={SP_A}&limit=10", field="offset", location="query"),
        Row("offset negative", "GET", f"{IDS}?sp_mchid={SP_A}&offset=-1&limit=10", field="offset"),
        Row("offset not a number", "GET", f"{IDS}?sp_mchid={SP_A}&offset=x&limit=10", field="offset"),
        Row("offset beyond 64 bits", "GET", f"{IDS}?sp_mchid={SP_A}&offset={2**64}&limit=10", field="offset"),
        # a whole number in ASCII decimal digits: pydantic's lax parse took these as 10
        *[
            Row(
                f"offset {text!r}",
                "GET",
                f"{IDS}?sp_mchid={SP_A}&offset={quoted}&limit=10",
                field="offset",
                location="query",
                issue="decimal digits",
            )
            for text, quoted in (("1_0", "1_0"), ("10.0", "10.0"), ("+10", "%2B10"), (" 10", "%2010"))
        ],
        Row("limit '1e1'", "GET", f"{IDS}?sp_mchid={SP_A}&offset=0&limit=1e1", field="limit"),
        Row("limit 0", "GET", f"{IDS}?sp_mchid={SP_A}&offset=0&limit=0", field="limit"),
        Row("limit above 500", "GET", f"{IDS}?sp_mchid={SP_A}&offset=0&limit=501", field="limit"),
        Row("sp_mchid missing", "GET", f"{IDS}?offset=0&limit=10", field="sp_mchid"),
        Row(
            "unknown range",
            "GET",
            f"{RANGES}/89f5123e-5ad4-4e0e-89b1-63ced0c798c5/merchant-identifiers"
            f"?sp_mchid={SP_A}&offset=0&limit=10",
            None,
            404,
            "RESOURCE_NOT_EXISTS",
        ),
        Row(
            "sp_mchid not the signer",
            "GET",
            f"{IDS}?sp_mchid={SP_B}&offset=0&limit=10",
            None,
            403,
            "NO_AUTH",
        ),
        *common("W16", "GET", f"{IDS}?sp_mchid={SP_A}&offset=0&limit=10"),
    ],
    "W17": [
        Row("body missing", "DELETE", f"{IDS}/{ORG}", None, field="/"),
        Row("sp_mchid missing", "DELETE", f"{IDS}/{ORG}", {}, field="/sp_mchid"),
        Row(
            "merchant_identifier 65",
            "DELETE",
            f"{IDS}/{'9' * 65}",
            {"sp_mchid": SP_A},
            field="merchant_identifier",
        ),
        Row(
            "identifier not in the range",
            "DELETE",
            f"{IDS}/91440300708461136T",
            {"sp_mchid": SP_A},
            404,
            "RESOURCE_NOT_EXISTS",
        ),
        Row(
            "unknown range",
            "DELETE",
            f"{RANGES}/89f5123e-5ad4-4e0e-89b1-63ced0c798c5/merchant-identifiers/{ORG}",
            {"sp_mchid": SP_A},
            404,
            "RESOURCE_NOT_EXISTS",
        ),
        Row(
            "sp_mchid not the signer",
            "DELETE",
            f"{IDS}/{ORG}",
            {"sp_mchid": SP_B},
            403,
            "NO_AUTH",
            unchanged=("GET", f"{IDS}?sp_mchid={SP_A}&offset=0&limit=10", 200, ORG),
        ),
        *common("W17", "DELETE", f"{IDS}/{ORG}", {"sp_mchid": SP_A}),
    ],
}

RE_LIST = f"{RE}/sub-mchid/{SECOND_A}"
RE_DEL = f"{RE}/sub-mchid/{SECOND_A}/sp-openid/{OPENID}/delete"
RECHARGE: dict[str, list[Row]] = {
    "R1": [
        Row("sub_mchid missing", "POST", RE, {"sp_openid": OPENID}, field="/sub_mchid"),
        Row("sp_openid missing", "POST", RE, {"sub_mchid": SECOND_A}, field="/sp_openid"),
        Row(
            "sub_mchid 33",
            "POST",
            RE,
            {"sub_mchid": LONG33, "sp_openid": OPENID},
            field="/sub_mchid",
            value=LONG33,
        ),
        Row("sp_openid 33", "POST", RE, {"sub_mchid": SECOND_A, "sp_openid": "o" * 33}, field="/sp_openid"),
        Row("sp_openid empty", "POST", RE, {"sub_mchid": SECOND_A, "sp_openid": ""}, field="/sp_openid"),
        Row(
            "sp_openid blank",
            "POST",
            RE,
            {"sub_mchid": SECOND_A, "sp_openid": " "},
            field="/sp_openid",
            issue="blank",
            unchanged=("GET", f"{RE}/sub-mchid/{SECOND_A}", 200, '!"sp_openid":" "'),
        ),
        Row(
            "sp_openid with an emoji",
            "POST",
            RE,
            {"sub_mchid": SECOND_A, "sp_openid": "o\U0001f600"},
            field="/sp_openid",
            value="o\U0001f600",
        ),
        Row(
            "sub_mchid null",
            "POST",
            RE,
            {"sub_mchid": None, "sp_openid": OPENID},
            field="/sub_mchid",
            issue="is required",
        ),
        Row("sp_openid a number", "POST", RE, {"sub_mchid": SECOND_A, "sp_openid": 123}, field="/sp_openid"),
        Row(
            "a sub-merchant, not second-level",
            "POST",
            RE,
            {"sub_mchid": SUB_A, "sp_openid": OPENID},
            403,
            "NO_AUTH",
            unchanged=("GET", f"{RE}/sub-mchid/{SUB_A}", 403, "NO_AUTH"),
        ),
        Row(
            "another platform's second-level",
            "POST",
            RE,
            {"sub_mchid": SECOND_B, "sp_openid": OPENID},
            403,
            "NO_AUTH",
        ),
        Row(
            "a 4th employee in effect",
            "POST",
            RE,
            {"sub_mchid": SECOND_A, "sp_openid": "{fourth}"},
            400,
            "INVALID_REQUEST",
            unchanged=("GET", RE_LIST, 200, "!oConfEmployee3"),
        ),
        Row(
            "429",
            "POST",
            RE,
            {"sub_mchid": SECOND_A, "sp_openid": OPENID},
            429,
            "FREQUENCY_LIMITED",
            kw={"headers": {FAULT: "FREQUENCY_LIMITED"}},
        ),
        *common("R1", "POST", RE, {"sub_mchid": SECOND_A, "sp_openid": OPENID}),
    ],
    "R2": [
        Row("sub_mchid 33", "GET", f"{RE}/sub-mchid/{LONG33}", field="sub_mchid", location="path"),
        Row(
            "sub_mchid with a NUL",
            "GET",
            f"{RE}/sub-mchid/12%0034",
            field="sub_mchid",
            value="12\x0034",
            location="path",
            issue="NUL",
        ),
        Row("sub_mchid empty", "GET", f"{RE}/sub-mchid/", field="sub_mchid"),
        Row("another platform's second-level", "GET", f"{RE}/sub-mchid/{SECOND_B}", None, 403, "NO_AUTH"),
        Row("unknown merchant", "GET", f"{RE}/sub-mchid/1999999999", None, 403, "NO_AUTH"),
        Row(
            "429",
            "GET",
            RE_LIST,
            None,
            429,
            "FREQUENCY_LIMITED",
            kw={"headers": {FAULT: "FREQUENCY_LIMITED"}},
        ),
        *common("R2", "GET", RE_LIST),
    ],
    "R3": [
        Row(
            "sp_openid 33",
            "POST",
            f"{RE}/sub-mchid/{SECOND_A}/sp-openid/{'o' * 33}/delete",
            field="sp_openid",
            location="path",
        ),
        Row("sub_mchid 33", "POST", f"{RE}/sub-mchid/{LONG33}/sp-openid/{OPENID}/delete", field="sub_mchid"),
        Row("sp_openid empty", "POST", f"{RE}/sub-mchid/{SECOND_A}/sp-openid//delete", field="sp_openid"),
        Row(
            "sp_openid blank",
            "POST",
            f"{RE}/sub-mchid/{SECOND_A}/sp-openid/%20/delete",
            field="sp_openid",
            location="path",
            issue="blank",
        ),
        Row("both empty", "POST", f"{RE}/sub-mchid//sp-openid//delete", field="sub_mchid", location="path"),
        # the same refusal as R1's body gives this value (it was INVALID_REQUEST "never added")
        Row(
            "sp_openid with an emoji",
            "POST",
            f"{RE}/sub-mchid/{SECOND_A}/sp-openid/o%F0%9F%98%80/delete",
            field="sp_openid",
            value="o\U0001f600",
            location="path",
            issue="1–3 byte UTF-8",
        ),
        Row(
            "never added",
            "POST",
            f"{RE}/sub-mchid/{SECOND_A}/sp-openid/oNeverAdded/delete",
            None,
            400,
            "INVALID_REQUEST",
        ),
        Row(
            "another platform's second-level",
            "POST",
            f"{RE}/sub-mchid/{SECOND_B}/sp-openid/{OPENID}/delete",
            None,
            403,
            "NO_AUTH",
        ),
        Row(
            "429",
            "POST",
            RE_DEL,
            None,
            429,
            "FREQUENCY_LIMITED",
            kw={"headers": {FAULT: "FREQUENCY_LIMITED"}},
        ),
        *common("R3", "POST", RE_DEL),
    ],
}


def submission(pointer: str | None = None, value: Any = ..., code: str = "conf_new_0001") -> Any:
    def build(client: ApiClient, env: Mapping[str, str]) -> dict[str, Any]:
        body = make_body(client, code)
        return mutate(body, pointer, value) if pointer else body

    return build


A3 = f"{A}/{{code}}/cancel"
NO_NEW_APPLYMENT = ("GET", f"{A}?business_code=conf_new_0001", 404, "RESOURCE_NOT_EXISTS")
APPLY4SUBJECT: dict[str, list[Row]] = {
    "A1": [
        Row(
            "business_code missing",
            "POST",
            A,
            submission("/business_code"),
            field="/business_code",
            unchanged=NO_NEW_APPLYMENT,
        ),
        Row(
            "business_code pattern",
            "POST",
            A,
            submission("/business_code", "conf-new-1"),
            field="/business_code",
            value="conf-new-1",
        ),
        Row("business_code 129", "POST", A, submission("/business_code", "b" * 129), field="/business_code"),
        Row("contact_info missing", "POST", A, submission("/contact_info"), field="/contact_info"),
        Row(
            "contact_type enum",
            "POST",
            A,
            submission("/contact_info/contact_type", "BOSS"),
            field="/contact_info/contact_type",
        ),
        Row("mobile missing", "POST", A, submission("/contact_info/mobile"), field="/contact_info/mobile"),
        Row(
            "emoji deep in the body",
            "POST",
            A,
            submission("/subject_info/business_license_info/company_address", "深圳\U0001f3e2"),
            field="/subject_info/business_license_info/company_address",
        ),
        Row(
            "escaped emoji deep in the body",
            "POST",
            A,
            lambda client, env: json.dumps(
                submission("/subject_info/business_license_info/company_address", "深圳\U0001f3e2")(
                    client, env
                )
            ).encode("ascii"),
            field="/subject_info/business_license_info/company_address",
        ),
        Row("name 1025", "POST", A, submission("/contact_info/name", "A" * 1025), field="/contact_info/name"),
        Row(
            "name not decryptable",
            "POST",
            A,
            submission("/contact_info/name", "bm90IGEgY2lwaGVydGV4dA=="),
            field="/contact_info/name",
            unchanged=NO_NEW_APPLYMENT,
        ),
        Row(
            "subject_type enum",
            "POST",
            A,
            submission("/subject_info/subject_type", "SUBJECT_TYPE_X"),
            field="/subject_info/subject_type",
        ),
        Row(
            "licence needed",
            "POST",
            A,
            submission("/subject_info/business_license_info"),
            field="/subject_info/business_license_info",
        ),
        Row(
            "licence_valid_date not JSON",
            "POST",
            A,
            submission("/subject_info/business_license_info/licence_valid_date", "2019-01-01,forever"),
            field="/subject_info/business_license_info/licence_valid_date",
        ),
        Row(
            "identification_type enum",
            "POST",
            A,
            submission("/identification_info/identification_type", "ID"),
            field="/identification_info/identification_type",
        ),
        Row(
            "category_id enum",
            "POST",
            A,
            submission("/subject_info/special_operation_info", [{"category_id": 1}]),
            field="/subject_info/special_operation_info/0/category_id",
        ),
        Row(
            "confirm_mchid_list digits",
            "POST",
            A,
            submission("/addition_info/confirm_mchid_list", ["abc"]),
            field="/addition_info/confirm_mchid_list/0",
        ),
        Row(
            "channel merchant names another channel",
            "POST",
            A,
            submission("/channel_id", "1230000301"),
            field="/channel_id",
        ),
        Row(
            "institution without channel_id",
            "POST",
            A,
            submission("/channel_id"),
            who="b",
            field="/channel_id",
        ),
        Row(
            "institution names a foreign channel",
            "POST",
            A,
            submission("/channel_id", "1230000001"),
            403,
            "NO_AUTH",
            who="b",
            field="/channel_id",
            location="body",
        ),
        # channel_id in the query string (website/YAML): a refusal names it there, not in the body
        Row(
            "institution names a foreign channel in the query",
            "POST",
            f"{A}?channel_id=1230000001",
            submission("/channel_id"),
            403,
            "NO_AUTH",
            who="b",
            field="channel_id",
            location="query",
            unchanged=NO_NEW_APPLYMENT,
        ),
        Row(
            "channel merchant names another in the query",
            "POST",
            f"{A}?channel_id=1230000301",
            submission(),
            field="channel_id",
            value="1230000301",
            location="query",
            unchanged=NO_NEW_APPLYMENT,
        ),
        Row(
            "Wechatpay-Serial missing",
            "POST",
            A,
            submission(),
            kw={"wechatpay_serial": None},
            location="header",
        ),
        Row("a service provider may not call", "POST", A, submission(), who="c", location="authorization"),
        Row(
            "business_code reused, other materials",
            "POST",
            A,
            lambda c, e: mutate(
                make_body(c, e["code"]), "/subject_info/business_license_info/merchant_name", "另一家公司"
            ),
            400,
            "INVALID_REQUEST",
            field="/business_code",
        ),
        *common("A1", "POST", A, submission()),
    ],
    "A2": [
        Row("neither key", "GET", A, location="query"),
        Row(
            "applyment_id twice, different",
            "GET",
            f"{A}?applyment_id={{aid}}&applyment_id={{aid2}}",
            field="applyment_id",
            location="query",
        ),
        Row(
            "applyment_id not digits", "GET", f"{A}?applyment_id=abc", field="applyment_id", location="query"
        ),
        Row("business_code 129", "GET", f"{A}?business_code={'b' * 129}", field="business_code"),
        Row(
            "keys of different applyments",
            "GET",
            f"{A}?applyment_id={{aid}}&business_code={{code2}}",
            field="applyment_id",
        ),
        Row("unknown applyment_id", "GET", f"{A}?applyment_id=20000011111", None, 404, "RESOURCE_NOT_EXISTS"),
        Row(
            "unknown business_code",
            "GET",
            f"{A}?business_code=1900013511_10000",
            None,
            404,
            "RESOURCE_NOT_EXISTS",
        ),
        Row(
            "another caller's applyment",
            "GET",
            f"{A}?applyment_id={{aid}}",
            None,
            404,
            "RESOURCE_NOT_EXISTS",
            who="b",
        ),
        Row(
            "a service provider may not call",
            "GET",
            f"{A}?applyment_id={{aid}}",
            who="c",
            location="authorization",
        ),
        *common("A2", "GET", f"{A}?applyment_id={{aid}}"),
    ],
    "A3": [
        Row("business_code 129", "POST", f"{A}/{'b' * 129}/cancel", field="business_code", location="path"),
        # an empty parameter between two segments names it (it was 404 NOT_FOUND, saying nothing)
        Row("business_code empty", "POST", f"{A}//cancel", field="business_code", location="path"),
        Row(
            "unknown business_code", "POST", f"{A}/1900013511_10000/cancel", None, 404, "RESOURCE_NOT_EXISTS"
        ),
        Row("unknown applyment_id", "POST", f"{A}/20000011111/cancel", None, 404, "RESOURCE_NOT_EXISTS"),
        # an applyment_id is ASCII digits: '²' passed str.isdigit() and int() refused it (a 500), and
        # full-width or Arabic-Indic digits were read as the number and cancelled that applyment
        Row("a superscript digit as the key", "POST", f"{A}/%C2%B2/cancel", None, 404, "RESOURCE_NOT_EXISTS"),
        Row(
            "applyment_id in full-width digits",
            "POST",
            f"{A}/{{aid_fullwidth}}/cancel",
            None,
            404,
            "RESOURCE_NOT_EXISTS",
            unchanged=("GET", f"{A}?applyment_id={{aid}}", 200, "WAITTING_FOR_AUDIT"),
        ),
        Row(
            "applyment_id in Arabic-Indic digits",
            "POST",
            f"{A}/{{aid_arabic}}/cancel",
            None,
            404,
            "RESOURCE_NOT_EXISTS",
            unchanged=("GET", f"{A}?applyment_id={{aid}}", 200, "WAITTING_FOR_AUDIT"),
        ),
        Row(
            "seed form, other applyment_id",
            "POST",
            f"{A3}?applyment_id={{aid2}}",
            field="applyment_id",
            location="query",
            unchanged=("GET", f"{A}?applyment_id={{aid}}", 200, "WAITTING_FOR_AUDIT"),
        ),
        Row(
            "PASSED applyment",
            "POST",
            f"{A}/{{passed}}/cancel",
            None,
            400,
            "INVALID_REQUEST",
            state="APPLYMENT_STATE_PASSED",
        ),
        Row(
            "another caller's applyment",
            "POST",
            f"{A}/{{aid}}/cancel",
            None,
            404,
            "RESOURCE_NOT_EXISTS",
            who="b",
        ),
        Row("a service provider may not call", "POST", A3, who="c", location="authorization"),
        *common("A3", "POST", A3),
    ],
    "A4": [
        Row("sub_mchid not digits", "GET", f"{A}/merchants/abc/state", field="sub_mchid", location="path"),
        Row("sub_mchid 33", "GET", f"{A}/merchants/{LONG33}/state", field="sub_mchid"),
        Row("sub_mchid empty", "GET", f"{A}/merchants//state", field="sub_mchid", location="path"),
        Row(
            "a service provider may not call",
            "GET",
            f"{A}/merchants/1230000901/state",
            who="c",
            location="authorization",
        ),
        *common("A4", "GET", f"{A}/merchants/1230000901/state"),
    ],
}

TABLES = {**WEBIZPAY, **MERCHANT_SIDE, **RECHARGE, **APPLY4SUBJECT}
