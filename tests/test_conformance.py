"""Fidelity audit, table-driven: every refusal the spec/seeds (or a documented Emulator choice) give for
each of the 24 operations, and the exact response shape of each, over real signed HTTP on both
backends.

One test per operation (and backend) runs that operation's whole table against one prepared sandbox,
so a failure lists every mismatching row at once. A refusal row asserts the HTTP status, the `code`,
for field errors the `detail.field` (a JSON pointer in bodies, the parameter name in path/query) and,
where given, `detail.value`/`detail.location`/`detail.state`; every authenticated answer (errors too)
must be signed, a 401 must not be. A row marked `unchanged` re-reads the resource afterwards: a
refusal never leaves a partial write behind.

Sources: spec/protocol.md §6 (catalogue), webizpay.md W1–W17, recharge-employees.md R1–R3,
apply4subject.md A1–A4, seeds 000–004; the README's family sections for Emulator choices.
"""

from __future__ import annotations

import base64
import dataclasses
import re
import string
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from starlette.testclient import TestClient

from apply4subject_support import make_body, serial_for, set_roles
from conformance_tables import (
    JSON_TYPE,
    MATCHES,
    MILLIS_TIME,
    MISSING,
    OPENID,
    ORG,
    RANGES,
    RE,
    RE_DEL,
    RE_LIST,
    SECONDS_TIME,
    SPSUB,
    TABLES,
    TODAY,
    A,
    Row,
    W,
    auth_body,
    bill,
    card_body,
    match,
    proof,
)
from support import SECOND_A, SP_A, SUB_A, ApiClient, World
from webizpay_support import authorize, issue
from wxpartner.server.app import WxPartnerApp
from wxpartner.server.settings import Settings


def fmt(template: Any, env: Mapping[str, str]) -> Any:
    if isinstance(template, str) and "{" in template and not template.startswith("["):
        return string.Formatter().vformat(template, (), env)
    if isinstance(template, dict):
        return {k: fmt(v, env) for k, v in template.items()}
    if isinstance(template, list):
        return [fmt(v, env) for v in template]
    return template


class Env(dict[str, str]):
    """Prepared resources, built on first use so each operation prepares only what its rows name."""

    def __init__(self, makers: Mapping[str, Callable[[Env], str]]) -> None:
        super().__init__()
        self.makers = makers

    def __missing__(self, key: str) -> str:
        value = self.makers[key](self)
        self[key] = value
        return value


def send(clients: Mapping[str, ApiClient], env: Env, row: Row) -> httpx.Response:
    client = clients[row.who]
    url = fmt(row.url, env)
    body = row.body(client, env) if callable(row.body) else fmt(row.body, env)
    kw = dict(row.kw)
    if row.url.startswith(A) and row.method == "POST" and not row.url.endswith("/cancel"):
        kw.setdefault("wechatpay_serial", serial_for(client))
    return client.request(row.method, url, body, **kw)


def mismatch(row: Row, resp: httpx.Response) -> str | None:
    """None when the answer is exactly what the row expects, else a one-line description."""
    where = f"[{row.name}] {row.method} {row.url} -> {resp.status_code} {resp.text[:300]}"
    if resp.status_code != row.status:
        return f"{where}: expected HTTP {row.status}"
    if not resp.headers.get("Request-ID"):  # protocol.md §5.2: on success and error answers
        return f"{where}: no Request-ID header"
    if resp.headers.get("Content-Type") != JSON_TYPE:
        return f"{where}: Content-Type {resp.headers.get('Content-Type')!r}, expected {JSON_TYPE!r}"
    try:
        err = resp.json()
    except ValueError:
        return f"{where}: error body is not JSON"
    if err.get("code") != row.code or not err.get("message"):
        return f"{where}: expected code {row.code} with a message"
    detail = err.get("detail") or {}
    if row.code == "PARAM_ERROR" and row.field is None and "field" not in detail and "location" not in detail:
        return f"{where}: a PARAM_ERROR must say where (detail.field or detail.location)"
    if row.field is not None and detail.get("field") != row.field:
        return f"{where}: expected detail.field {row.field!r}"
    if row.value is not MISSING and detail.get("value") != row.value:
        return f"{where}: expected detail.value {row.value!r}"
    if row.location is not None and detail.get("location") != row.location:
        return f"{where}: expected detail.location {row.location!r}"
    if row.issue is not None and row.issue not in str(detail.get("issue")):
        return f"{where}: expected detail.issue to say {row.issue!r}"
    if (problem := named_as_protocol_names(row, detail)) is not None:
        return f"{where}: {problem}"
    if row.state is not None and detail.get("state") != row.state and row.state not in err["message"]:
        return f"{where}: expected the state {row.state} named"
    signed = bool(resp.headers.get("Wechatpay-Signature"))
    if signed != (row.signed and row.status != 401):
        return f"{where}: {'401 answers are not signed' if signed else 'authenticated errors are signed'}"
    return None


def named_as_protocol_names(row: Row, detail: Mapping[str, Any]) -> str | None:
    """protocol.md §6: ``detail.field`` is a JSON pointer for a body field and the parameter's name in
    the path or query, and ``location`` says which; a NO_AUTH names the field it refuses, as a
    PARAM_ERROR does (W1–W8 named none, recharge and W9–W17 gave the bare name without a location)."""
    field, location = detail.get("field"), detail.get("location")
    if row.code == "NO_AUTH" and (field is None or location is None):
        return "a NO_AUTH must name its field and location"
    if field is not None and location is None:
        return f"detail.field {field!r} without detail.location"
    if location == "body" and not str(field).startswith("/"):
        return f"a body field is a JSON pointer, got {field!r}"
    if location in ("path", "query") and str(field).startswith("/"):
        return f"a {location} parameter is named without a pointer, got {field!r}"
    return None


def run_rows(clients: Mapping[str, ApiClient], env: Env, rows: list[Row]) -> None:
    problems: list[str] = []
    for row in rows:
        resp = send(clients, env, row)
        problem = mismatch(row, resp)
        if problem is None and row.unchanged is not None:
            method, url, status, text = row.unchanged
            again = clients[row.who].request(method, fmt(url, env))
            present = text.removeprefix("!") in again.text
            if again.status_code != status or present == text.startswith("!"):
                problem = (
                    f"[{row.name}] partial write: {method} {url} -> {again.status_code} {again.text[:200]}"
                )
        if problem:
            problems.append(problem)
    assert not problems, "\n".join(problems)


# --- preparing the sandbox --------------------------------------------------------------------------


def webizpay_makers(client: ApiClient, control: TestClient) -> dict[str, Callable[[Env], str]]:
    def revoked(env: Env) -> str:
        emp = authorize(client, control, "conf_revoked_user")
        env["revoked_card"] = issue(client, emp, "out_conf_revoked")["card_no"]
        resp = client.post(f"{W}/employees/{emp}/revoke", {"sp_mchid": SP_A, "sub_mchid": SUB_A})
        assert resp.status_code == 200, resp.text
        return emp

    def card(env: Env) -> str:
        return str(issue(client, env["emp"], "out_conf_card")["card_no"])

    def range_id(env: Env) -> str:
        resp = client.post(RANGES, {"sp_mchid": SP_A, "identifier_type": "ORGANIZATION_CODE"})
        assert resp.status_code == 200, resp.text
        rid = str(resp.json()["range_id"])
        added = client.post(
            f"{RANGES}/{rid}/merchant-identifiers", {"sp_mchid": SP_A, "merchant_identifier": ORG}
        )
        assert added.status_code == 200, added.text
        return rid

    def batch(env: Env) -> str:
        resp = client.post(MATCHES, match(out_batch_id="batch_conf_0001", match_details=[]))
        assert resp.status_code == 200, resp.text
        return str(resp.json()["batch_id"])

    def proof_out(env: Env) -> str:
        resp = client.post(f"{W}/bill/proof", proof(out_operation_id="proof_conf_0001"))
        assert resp.status_code == 200, resp.text
        return "proof_conf_0001"

    def fourth(env: Env) -> str:
        for i in range(3):
            resp = client.post(RE, {"sub_mchid": SECOND_A, "sp_openid": f"oConfEmployee{i}"})
            assert resp.status_code == 200, resp.text
        return "oConfEmployee3"

    return {
        "user": lambda env: "conf_user_01",
        "authorized_user": lambda env: (authorize(client, control, "conf_authorized"), "conf_authorized")[1],
        "emp": lambda env: authorize(client, control, "conf_employee"),
        "card": card,
        "out": lambda env: (env["card"], "out_conf_card")[1],
        "revoked": revoked,
        "revoked_card": lambda env: (env["revoked"], env["revoked_card"])[1],
        "range": range_id,
        "batch_out": lambda env: (env["batch"], "batch_conf_0001")[1],
        "batch": batch,
        "fourth": fourth,
        "proof_out": proof_out,
    }


def apply4subject_makers(client: ApiClient, control: TestClient) -> dict[str, Callable[[Env], str]]:
    def submitted(code: str) -> Callable[[Env], str]:
        def make(env: Env) -> str:
            resp = client.post(A, make_body(client, code), wechatpay_serial=serial_for(client))
            assert resp.status_code == 200, resp.text
            return str(resp.json()["applyment_id"])

        return make

    def passed(env: Env) -> str:
        aid = submitted("conf_passed_0001")(env)
        assert control.post(f"/sandbox/apply4subject/applyments/{aid}/pass", json={}).status_code == 200
        return aid

    return {
        "code": lambda env: (env["aid"], "conf_code_0001")[1],
        "aid": submitted("conf_code_0001"),
        "code2": lambda env: (env["aid2"], "conf_code_0002")[1],
        "aid2": submitted("conf_code_0002"),
        "passed": passed,
        "aid_fullwidth": lambda env: other_digits(env["aid"], 0xFF10),
        "aid_arabic": lambda env: other_digits(env["aid"], 0x0660),
    }


def other_digits(number: str, zero: int) -> str:
    """``number`` written in the digits starting at code point ``zero``, percent-encoded for a path."""
    return quote("".join(chr(zero + int(d)) for d in number))


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The tables send requests faster than the recharge family's 10 per second (the limits have
    their own tests in test_recharge_rate_limit.py); 0 turns a budget off."""
    extra = {**settings.extra, "recharge_rate_limits": {"add": 0, "list": 0, "delete": 0}}
    return dataclasses.replace(settings, extra=extra)


@pytest.fixture
def sandbox(
    app: WxPartnerApp,
    world: World,
    client_a: ApiClient,
    client_b: ApiClient,
    client_c: ApiClient,
    control: TestClient,
) -> Iterator[tuple[dict[str, ApiClient], Callable[[str], Env]]]:
    set_roles(app, world)  # SP_A channel merchant, SP_B institution, SP_C service provider (apply4subject)
    assert (
        control.post("/sandbox/clock", json={"set": f"{TODAY}T12:00:00+08:00", "freeze": True}).status_code
        == 200
    )
    clients = {"a": client_a, "b": client_b, "c": client_c}
    for c in clients.values():  # "other" in a row's kw means: sign with a key nobody registered
        c.request = _with_other_key(c.request, world)  # type: ignore[method-assign]

    def env_for(op: str) -> Env:
        makers = (
            apply4subject_makers(client_a, control)
            if op.startswith("A")
            else webizpay_makers(client_a, control)
        )
        return Env(makers)

    yield clients, env_for


def _with_other_key(request: Callable[..., httpx.Response], world: World) -> Callable[..., httpx.Response]:
    def wrapped(method: str, url: str, body: Any = None, **kw: Any) -> httpx.Response:
        if kw.get("private_key") == "other":
            kw["private_key"] = world.other_key
        return request(method, url, body, **kw)

    return wrapped


@pytest.mark.parametrize("op", list(TABLES))
def test_refusals(op: str, sandbox: tuple[dict[str, ApiClient], Callable[[str], Env]]) -> None:
    clients, env_for = sandbox
    run_rows(clients, env_for(op), TABLES[op])


def test_a_query_parameter_given_twice_with_one_value_is_that_value(client_a: ApiClient) -> None:
    """Only different values are refused (the tables' "twice, different" rows)."""
    resp = client_a.get(f"{W}/users/conf_user_01/authorization-state?{SPSUB}&sub_mchid={SUB_A}")
    assert resp.status_code == 200, resp.text
    assert resp.json()["sub_mchid"] == SUB_A


def test_tables_cover_every_operation_and_code() -> None:
    assert len(TABLES) == 24
    for op, rows in TABLES.items():
        codes = {r.code for r in rows}
        assert {"PARAM_ERROR", "SIGN_ERROR", "SYSTEM_ERROR"} <= codes, op
        assert all(r.field or r.location for r in rows if r.code == "PARAM_ERROR"), op


# --- response shapes --------------------------------------------------------------------------------


def keys_problems(
    name: str, obj: Any, required: tuple[str, ...], optional: tuple[str, ...] = (), *, ordered: bool = False
) -> list[str]:
    """Required keys present, nothing outside required+optional, and (seeded answers) the seed's order."""
    if not isinstance(obj, dict):
        return [f"{name}: not a JSON object: {obj!r}"]
    out: list[str] = []
    if missing := [k for k in required if k not in obj]:
        out.append(f"{name}: missing {missing} in {obj}")
    if extra := [k for k in obj if k not in required and k not in optional]:
        out.append(f"{name}: unexpected {extra} in {obj}")
    if ordered and [k for k in obj if k in required] != [k for k in required if k in obj]:
        out.append(f"{name}: key order {list(obj)} differs from the seed's {list(required)}")
    if nulls := [k for k, v in obj.items() if v is None]:
        out.append(f"{name}: null values {nulls} (absent optional fields are omitted)")
    return out


def times_problems(
    name: str, obj: dict[str, Any], keys: tuple[str, ...], pattern: re.Pattern[str]
) -> list[str]:
    return [
        f"{name}: {k}={obj.get(k)!r} is not like {pattern.pattern}"
        for k in keys
        if k in obj and not (isinstance(obj[k], str) and pattern.fullmatch(obj[k]))
    ]


def ok(resp: httpx.Response, status: int = 200) -> Any:
    assert resp.status_code == status, resp.text
    assert resp.headers.get("Wechatpay-Signature"), "success answers are signed"
    if status == 204:
        assert resp.content == b""
        return None
    assert resp.headers["Content-Type"] == JSON_TYPE and resp.headers.get("Request-ID")
    return resp.json()


CARD_REQUIRED = (
    "sp_mchid",
    "sub_mchid",
    "card_no",
    "out_card_no",
    "employee_id",
    "card_template_id",
    "card_rule",
    "refund_rule",
    "amount",
    "remain_amount",
    "effective_end_time",
    "effective_begin_time",
    "card_state",
    "card_name",
)
CARD_OPTIONAL = ("reason", "card_usage_time", "transaction_id", "card_disabled_time", "card_remark")


def test_webizpay_w1_w8_shapes(client_a: ApiClient, control: TestClient) -> None:
    p: list[str] = []
    # W1 (both application types)
    h5 = ok(client_a.post(f"{W}/users/shape_user_1/authorization-url", auth_body()))
    p += keys_problems(
        "W1 H5",
        h5,
        ("sp_mchid", "sub_mchid", "user_id", "application_type"),
        ("authorization_url", "expire_time", "mp_query", "mp_business_type"),
    )
    p += times_problems("W1", h5, ("expire_time",), SECONDS_TIME)
    piped = ok(client_a.post(f"{W}/users/emp%7C12%2A/authorization-url", auth_body()))
    assert piped["user_id"] == "emp|12*", piped
    mini = ok(
        client_a.post(f"{W}/users/shape_user_2/authorization-url", auth_body(application_type="MINIPROGRAM"))
    )
    assert mini["application_type"] == "MINIPROGRAM" and mini["mp_query"] and mini["mp_business_type"], mini
    emp = authorize(client_a, control, "shape_user_1")
    # W2: AUTHORIZED relations carry no authorization_revoked_time
    state = ok(client_a.get(f"{W}/users/shape_user_1/authorization-state?{SPSUB}"))
    p += keys_problems("W2", state, ("sp_mchid", "sub_mchid", "user_id"), ("employee_list",))
    (rel,) = state["employee_list"]
    p += keys_problems("W2 item", rel, ("employee_id", "authorization_state", "authorization_time"))
    p += times_problems("W2 item", rel, ("authorization_time",), SECONDS_TIME)
    assert rel["authorization_state"] == "AUTHORIZED" and rel["employee_id"] == emp
    unknown = ok(client_a.get(f"{W}/users/nobody_here/authorization-state?{SPSUB}"))
    assert unknown == {"sp_mchid": SP_A, "sub_mchid": SUB_A, "user_id": "nobody_here"}, unknown
    # W3: the seed's keys in the seed's order; the end time taken in any RFC 3339 form and answered as
    # the seeds write times (the same instant in +08:00, a fraction kept); boundary values of every
    # constraint are accepted.
    issued: dict[str, Any] = {}
    for out_no, end, answered, over in (
        ("shape_card_1", "2099-12-31T23:59:59+08:00", "2099-12-31T23:59:59+08:00", {}),
        (
            "Ab9_-|*",
            "2099-12-31T15:59:59Z",
            "2099-12-31T23:59:59+08:00",
            {"card_name": "卡" * 20, "card_remark": "备" * 50, "amount": 1},
        ),
        ("x" * 32, "2099-12-31T23:59:59.120+08:00", "2099-12-31T23:59:59.120+08:00", {"card_remark": None}),
        (
            "abc123",
            "2099-06-30T12:00:00-05:00",
            "2099-07-01T01:00:00+08:00",
            {"card_remark": None, "amount": 2**53},
        ),
    ):
        body = card_body(out_card_no=out_no, effective_end_time=end, **over)
        got = ok(client_a.post(f"{W}/employees/{emp}/quota-cards", body))
        p += keys_problems(
            "W3",
            got,
            (
                "sp_mchid",
                "sub_mchid",
                "out_card_no",
                "employee_id",
                "card_no",
                "effective_begin_time",
                "effective_end_time",
            ),
            ordered=True,
        )
        p += times_problems("W3", got, ("effective_begin_time",), SECONDS_TIME)
        assert got["effective_end_time"] == answered and got["out_card_no"] == out_no, got
        assert isinstance(got["card_no"], str) and len(got["card_no"]) <= 64, got
        issued[out_no] = got
    card_no = issued["shape_card_1"]["card_no"]
    # W4 / W5: the same card object; an ACTIVE card has no disabled time or reason
    card = ok(client_a.get(f"{W}/employees/{emp}/quota-cards/{card_no}?{SPSUB}"))
    p += keys_problems("W4", card, CARD_REQUIRED, CARD_OPTIONAL)
    p += times_problems("W4", card, ("effective_begin_time", "card_usage_time"), SECONDS_TIME)
    assert card["card_state"] == "ACTIVE" and "card_disabled_time" not in card and "reason" not in card, card
    assert card["card_rule"] in ("SINGLE", "MULTIPLE") and card["refund_rule"] in ("RETURN", "NOT_RETURN")
    assert type(card["amount"]) is int and card["amount"] == card["remain_amount"] == 10000, card
    by_out = ok(client_a.get(f"{W}/employees/{emp}/out-quota-cards/shape_card_1?{SPSUB}"))
    assert by_out == card
    paid = control.post(
        "/sandbox/webizpay/payments", json={"card_no": issued["x" * 32]["card_no"], "amount": 100}
    )
    assert paid.status_code == 200, paid.text
    used = ok(client_a.get(f"{W}/employees/{emp}/out-quota-cards/{'x' * 32}?{SPSUB}"))
    assert "card_remark" not in used and used["remain_amount"] == 9900, used
    p += times_problems("W5 used", used, ("card_usage_time",), SECONDS_TIME)
    assert used["transaction_id"] == paid.json()["transaction_id"], used
    # `|` and `*` belong to the out_card_no alphabet; clients percent-encode path values (protocol.md §10)
    odd = ok(client_a.get(f"{W}/employees/{emp}/out-quota-cards/Ab9_-%7C%2A?{SPSUB}"))
    assert odd["out_card_no"] == "Ab9_-|*", odd
    assert len(emp) <= 64 and emp.startswith("WeBizPay_"), emp
    big = ok(client_a.get(f"{W}/employees/{emp}/out-quota-cards/abc123?{SPSUB}"))
    assert big["amount"] == 2**53 and type(big["amount"]) is int, big
    # W7
    for app_type in ("H5", "MINIPROGRAM"):
        link = ok(
            client_a.get(
                f"{W}/employees/{emp}/quota-cards/{card_no}/payment-url?{SPSUB}&application_type={app_type}"
            )
        )
        p += keys_problems(
            "W7",
            link,
            ("sp_mchid", "sub_mchid", "employee_id", "card_no", "expire_time", "payment_url"),
            ("application_type", "mp_query", "mp_business_type"),
        )
        p += times_problems("W7", link, ("expire_time",), SECONDS_TIME)
    # W6: seed 000's keys and order; the reason shows up in W4 afterwards
    cancel = {"sp_mchid": SP_A, "sub_mchid": SUB_A, "reason": "废" * 50}
    done = ok(client_a.post(f"{W}/employees/{emp}/quota-cards/{card_no}/cancel", cancel))
    p += keys_problems(
        "W6",
        done,
        ("sp_mchid", "sub_mchid", "employee_id", "card_no", "card_state", "card_disabled_time"),
        ordered=True,
    )
    p += times_problems("W6", done, ("card_disabled_time",), SECONDS_TIME)
    assert done["card_state"] == "DISABLED"
    again = ok(client_a.post(f"{W}/employees/{emp}/quota-cards/{card_no}/cancel", {**cancel, "reason": "x"}))
    assert again == done, again  # Emulator choice: a DISABLED card answers its original state and time
    after = ok(client_a.get(f"{W}/employees/{emp}/quota-cards/{card_no}?{SPSUB}"))
    assert after["reason"] == "废" * 50 and after["card_disabled_time"] == done["card_disabled_time"], after
    # W8 (seed 004's singular path): user_id, not employee_id; all keys required, in the seed's order
    revoked = ok(client_a.post(f"{W}/employee/{emp}/revoke", {"sp_mchid": SP_A, "sub_mchid": SUB_A}))
    p += keys_problems(
        "W8",
        revoked,
        ("sp_mchid", "sub_mchid", "user_id", "authorization_state", "authorization_revoked_time", "reason"),
        ordered=True,
    )
    p += times_problems("W8", revoked, ("authorization_revoked_time",), SECONDS_TIME)
    assert revoked["user_id"] == "shape_user_1" and revoked["authorization_state"] == "REVOKED", revoked
    assert ok(client_a.post(f"{W}/employees/{emp}/revoke", {"sp_mchid": SP_A, "sub_mchid": SUB_A})) == revoked
    (rel,) = ok(client_a.get(f"{W}/users/shape_user_1/authorization-state?{SPSUB}"))["employee_list"]
    p += keys_problems(
        "W2 revoked",
        rel,
        ("employee_id", "authorization_state", "authorization_time", "authorization_revoked_time"),
    )
    assert rel["authorization_revoked_time"] == revoked["authorization_revoked_time"], rel
    assert not p, "\n".join(p)


def test_webizpay_w9_w17_shapes(client_a: ApiClient, control: TestClient) -> None:
    assert (
        control.post("/sandbox/clock", json={"set": f"{TODAY}T12:00:00+08:00", "freeze": True}).status_code
        == 200
    )
    p: list[str] = []
    # W9 / W10 (each query moves the batch one step, spec Inference)
    for product in ("CODE_PAY", "CODEPAY", "NONE"):  # both spellings of the sources are accepted
        ok(client_a.post(MATCHES, match(out_batch_id=f"shape_{product}", detail={"product_type": product})))
    batch = ok(client_a.post(MATCHES, match(out_batch_id="shape_batch")))
    p += keys_problems("W9", batch, ("sp_mchid", "out_batch_id", "batch_id", "time", "state"))
    p += times_problems("W9", batch, ("time",), SECONDS_TIME)
    assert batch["state"] == "ACCEPTED" and len(batch["batch_id"]) <= 32, batch
    for _ in range(3):
        got = ok(client_a.get(f"{MATCHES}/{batch['batch_id']}?sp_mchid={SP_A}"))
        p += keys_problems("W10", got, ("sp_mchid", "out_batch_id", "batch_id", "state"), ("match_results",))
        assert got["state"] in ("ACCEPTED", "IN_PROGRESS", "COMPLETED", "CLOSED"), got
    assert got["state"] == "COMPLETED", got
    (result,) = got["match_results"]
    p += keys_problems("W10 item", result, ("organization_code", "store_name", "has_valid_mchid"))
    assert type(result["has_valid_mchid"]) is bool
    # W11 / W12: every response field is required (YAML), entity_name "" when none was given
    proof_resp = ok(client_a.post(f"{W}/bill/proof", proof(out_operation_id="shape_proof")))
    p += keys_problems(
        "W11",
        proof_resp,
        (
            "sp_mchid",
            "out_operation_id",
            "operation_id",
            "sub_mchid",
            "start_date",
            "end_date",
            "entity_name",
            "proof_id",
            "download_url",
            "create_time",
            "updated_time",
        ),
    )
    p += times_problems("W11", proof_resp, ("create_time", "updated_time"), SECONDS_TIME)
    assert proof_resp["entity_name"] == "" and proof_resp["start_date"] == "2026-02-01", proof_resp
    trade = ok(client_a.post(f"{W}/bill/trade-bill", bill()))
    p += keys_problems("W12", trade, ("sp_mchid", "sub_mchid", "date", "type", "download_url"))
    assert trade["type"] == "QYZFALL" and trade["date"] == "2026-03-14", trade
    # W13–W17
    created = ok(client_a.post(RANGES, {"sp_mchid": SP_A, "identifier_type": "ORGANIZATION_CODE"}))
    p += keys_problems("W13", created, ("range_id",))
    rid = created["range_id"]
    listed = ok(client_a.get(f"{RANGES}?sp_mchid={SP_A}"))
    p += keys_problems("W14", listed, ("sp_mchid", "range_list"))
    p += keys_problems("W14 item", listed["range_list"][0], ("range_id", "identifier_type"))
    added = ok(
        client_a.post(f"{RANGES}/{rid}/merchant-identifiers", {"sp_mchid": SP_A, "merchant_identifier": ORG})
    )
    assert added == {"range_id": rid}, added
    page = ok(client_a.get(f"{RANGES}/{rid}/merchant-identifiers?sp_mchid={SP_A}&offset=0&limit=500"))
    assert page == {"offset": 0, "limit": 500, "count": 1, "total_count": 1, "data": [ORG]}, page
    # limit is "required" and also "default 100" on the page: an absent limit answers 100
    page = ok(client_a.get(f"{RANGES}/{rid}/merchant-identifiers?sp_mchid={SP_A}&offset=1"))
    assert page == {"offset": 1, "limit": 100, "count": 0, "total_count": 1, "data": []}, page
    far = ok(client_a.get(f"{RANGES}/{rid}/merchant-identifiers?sp_mchid={SP_A}&offset={2**63 - 1}&limit=1"))
    assert far["count"] == 0 and far["data"] == [] and far["total_count"] == 1, far
    removed = ok(client_a.delete(f"{RANGES}/{rid}/merchant-identifiers/{ORG}", {"sp_mchid": SP_A}))
    assert removed == {"range_id": rid}, removed
    assert not p, "\n".join(p)


def test_recharge_shapes(client_a: ApiClient, settings: Settings) -> None:
    p: list[str] = []
    employee = ("sub_mchid", "sp_openid", "state", "create_time", "update_time")
    added = ok(client_a.post(RE, {"sub_mchid": SECOND_A, "sp_openid": OPENID}))
    p += keys_problems("R1", added, employee)
    p += times_problems("R1", added, ("create_time", "update_time"), MILLIS_TIME)
    assert added["state"] == "EFFECTIVE" and added["sp_openid"] == OPENID, added
    long_id = ok(client_a.post(RE, {"sub_mchid": SECOND_A, "sp_openid": "o" * 32}))  # string(32) exactly
    assert long_id["sp_openid"] == "o" * 32
    listed = ok(client_a.get(RE_LIST))
    p += keys_problems("R2", listed, (), ("employees",))
    for item in listed["employees"]:
        p += keys_problems("R2 item", item, employee)
        p += times_problems("R2 item", item, ("create_time", "update_time"), MILLIS_TIME)
    assert [e["sp_openid"] for e in listed["employees"]] == [OPENID, "o" * 32]
    deleted = ok(client_a.post(RE_DEL))
    p += keys_problems("R3", deleted, employee)
    p += times_problems("R3", deleted, ("create_time", "update_time"), MILLIS_TIME)
    assert deleted["state"] == "DELETED" and deleted["create_time"] == added["create_time"], deleted
    empty = ok(client_a.get(f"{RE}/sub-mchid/{SECOND_A}"))
    assert [e["sp_openid"] for e in empty.get("employees", [])] == ["o" * 32], empty
    assert not p, "\n".join(p)


def test_apply4subject_shapes(
    app: WxPartnerApp, world: World, client_a: ApiClient, control: TestClient
) -> None:
    set_roles(app, world)
    p: list[str] = []
    serial = serial_for(client_a)
    ids: list[int] = []
    for path, code in ((A, "shape_code_1"), (f"{A}/", "shape_code_2")):  # with and without the trailing slash
        got = ok(client_a.post(path, make_body(client_a, code), wechatpay_serial=serial))
        p += keys_problems("A1", got, ("applyment_id",))
        assert type(got["applyment_id"]) is int and got["applyment_id"] > 0, got
        ids.append(got["applyment_id"])
    passed, aid = ids
    audit = ok(client_a.get(f"{A}?applyment_id={aid}"))
    assert audit == {"applyment_state": "APPLYMENT_STATE_WAITTING_FOR_AUDIT"}, audit
    assert ok(client_a.get(f"{A}?business_code=shape_code_2&applyment_id={aid}")) == audit
    act = control.post(
        f"/sandbox/apply4subject/applyments/{aid}/reject",
        json={"reject_param": "merchant_name", "reject_reason": "公司名称与工商局登记不一致"},
    )
    assert act.status_code == 200, act.text
    rejected = ok(client_a.get(f"{A}?business_code=shape_code_2"))
    assert rejected == {
        "applyment_state": "APPLYMENT_STATE_REJECTED",
        "reject_param": "merchant_name",
        "reject_reason": "公司名称与工商局登记不一致",
    }, rejected
    # qrcode_data only in the four states that show the mini-program code (PASSED here): Base64 of a PNG
    assert control.post(f"/sandbox/apply4subject/applyments/{passed}/pass", json={}).status_code == 200
    shown = ok(client_a.get(f"{A}?business_code=shape_code_1"))
    p += keys_problems("A2 PASSED", shown, ("applyment_state", "qrcode_data"))
    assert base64.b64decode(shown["qrcode_data"], validate=True)[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(shown["qrcode_data"]) <= 30000
    # A3: 204 with an empty, signed body, by business_code, by applyment_id and in the seed's curl form
    ok(client_a.post(f"{A}/shape_code_2/cancel"), 204)
    ok(client_a.post(f"{A}/{aid}/cancel"), 204)  # idempotent
    ok(client_a.post(f"{A}/shape_code_2/cancel?applyment_id={aid}"), 204)
    assert ok(client_a.get(f"{A}?applyment_id={aid}"))["applyment_state"] == "APPLYMENT_STATE_CANCELED"
    # A4
    state = ok(client_a.get(f"{A}/merchants/1230000901/state"))
    assert state == {"authorize_state": "AUTHORIZE_STATE_UNAUTHORIZED"}, state
    assert not p, "\n".join(p)
