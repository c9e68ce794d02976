"""Scan-to-recharge employees (R1 add, R2 list, R3 delete) through real HTTP on both backends:
shapes, state rules, permissions, bad input, rate limits, sandbox preload and reset."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from conftest import SANDBOX_TOKEN
from pg import wait_for_lock_waiters
from support import (
    SECOND_A,
    SECOND_B,
    SP_A,
    SP_B,
    SUB_A,
    ApiClient,
    World,
    in_one_window,
    sign_request,
    statements_in_writes,
    statements_run,
)
from wxpartner.protocol.times import parse_rfc3339
from wxpartner.server.app import WxPartnerApp, create_app
from wxpartner.server.settings import Settings
from wxpartner.store.db import Database

BASE = "/v3/platsolution/ecommerce/recharge-employees"
OPENID = "oLTPCuCsfN3ABBz50VUZBNlHDbUU"
SEED_KEYS = {"create_time", "sp_openid", "state", "sub_mchid", "update_time"}


def add(client: ApiClient, sp_openid: str = OPENID, sub_mchid: str = SECOND_A) -> httpx.Response:
    return client.post(BASE, {"sub_mchid": sub_mchid, "sp_openid": sp_openid})


def listing(client: ApiClient, sub_mchid: str = SECOND_A) -> httpx.Response:
    return client.get(f"{BASE}/sub-mchid/{sub_mchid}")


def delete(client: ApiClient, sp_openid: str = OPENID, sub_mchid: str = SECOND_A) -> httpx.Response:
    return client.post(f"{BASE}/sub-mchid/{sub_mchid}/sp-openid/{sp_openid}/delete")


def openids(client: ApiClient, sub_mchid: str = SECOND_A) -> list[str]:
    resp = listing(client, sub_mchid)
    assert resp.status_code == 200, resp.text
    return [e["sp_openid"] for e in resp.json().get("employees", [])]


def advance(control: TestClient, seconds: float) -> None:
    assert control.post("/sandbox/clock", json={"advance": seconds}).status_code == 200


def error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    assert body["code"] == code, body
    return body


# --- R1 / R2 / R3 happy paths and shapes -------------------------------------------------------------


def test_add_returns_an_effective_employee_with_china_time_millis(client_a: ApiClient) -> None:
    resp = add(client_a)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == SEED_KEYS
    assert body["sub_mchid"] == SECOND_A and body["sp_openid"] == OPENID and body["state"] == "EFFECTIVE"
    assert body["create_time"] == body["update_time"]
    assert body["create_time"].endswith("+08:00") and len(body["create_time"]) == len(
        "2015-05-20T13:29:35.120+08:00"
    )
    assert abs(parse_rfc3339(body["create_time"]).timestamp() - time.time()) < 30


def test_list_shows_effective_employees_oldest_first(client_a: ApiClient, control: TestClient) -> None:
    assert openids(client_a) == []
    assert listing(client_a).json() == {"employees": []}
    assert add(client_a, "oSecond").status_code == 200
    advance(control, 5)
    assert add(client_a, "oFirst").status_code == 200
    resp = listing(client_a)
    assert [e["sp_openid"] for e in resp.json()["employees"]] == ["oSecond", "oFirst"]
    assert all(set(e) == SEED_KEYS and e["state"] == "EFFECTIVE" for e in resp.json()["employees"])


def test_delete_is_the_seed_shape_and_keeps_create_time(client_a: ApiClient, control: TestClient) -> None:
    added = add(client_a).json()
    advance(control, 86400)
    resp = delete(client_a)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == SEED_KEYS
    assert body["state"] == "DELETED"
    assert body["create_time"] == added["create_time"]
    gap = parse_rfc3339(body["update_time"]) - parse_rfc3339(body["create_time"])
    assert 86400 <= gap.total_seconds() < 86400 + 30
    assert openids(client_a) == []  # deleted employees are not listed


def test_delete_is_signed_over_an_empty_body(http: TestClient, world: World, client_a: ApiClient) -> None:
    assert add(client_a).status_code == 200
    url = f"{BASE}/sub-mchid/{SECOND_A}/sp-openid/{OPENID}/delete"
    signed = sign_request(world.merchants[SP_A], "POST", url)
    assert signed.message.endswith(b"\n\n")  # the message's body line is empty
    assert "Content-Type" not in signed.headers  # the seed's curl: Authorization and Accept only
    resp = http.post(url, headers=signed.headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["state"] == "DELETED"


def test_delete_as_the_official_demo_sends_it(http: TestClient, world: World, client_a: ApiClient) -> None:
    """Java/Go demo: empty body plus Content-Type: application/json and Wechatpay-Serial."""
    assert add(client_a).status_code == 200
    url = f"{BASE}/sub-mchid/{SECOND_A}/sp-openid/{OPENID}/delete"
    signed = sign_request(world.merchants[SP_A], "POST", url, wechatpay_serial=world.platform_pub.key_id)
    headers = {**signed.headers, "Content-Type": "application/json"}
    resp = http.post(url, headers=headers, content=b"")
    assert resp.status_code == 200, resp.text
    assert resp.json()["state"] == "DELETED"


def test_delete_with_a_tampered_path_is_a_sign_error(http: TestClient, world: World) -> None:
    signed = sign_request(world.merchants[SP_A], "POST", f"{BASE}/sub-mchid/{SECOND_A}/sp-openid/oA/delete")
    resp = http.post(f"{BASE}/sub-mchid/{SECOND_A}/sp-openid/oB/delete", headers=signed.headers)
    error(resp, 401, "SIGN_ERROR")


# --- state rules ----------------------------------------------------------------------------------


def test_an_add_reads_what_it_checks_in_one_statement(client_a: ApiClient, app: WxPartnerApp) -> None:
    """On PostgreSQL an add of a new employee is one statement run in autocommit (no BEGIN/COMMIT
    round trips): the second-level merchant checks, the insert and the slot (the merchant's quota row
    made on its first add); adding the same employee again tries it (nothing written) and reads. On
    SQLite the checks and the employee's row come from one statement, then the insert and the slot;
    adding the same employee again is that one read alone."""
    db = app.state.db
    postgres = db.engine.dialect.name == "postgresql"

    def business(seen: list[str]) -> list[str]:
        # The verification's credential lookup is remembered for at most a second
        # (credential_cache.MAX_AGE_S): on a loaded machine an add may look again; it is not the add's.
        return [
            sql
            for sql in seen
            if ("recharge_" in sql or "merchant" in sql) and "merchant_certificates" not in sql
        ]

    with statements_run(db) as first_seen, statements_in_writes(db) as first_in_writes:
        assert add(client_a, "oWarm").status_code == 200  # the merchant's first add: no quota row yet
    with statements_run(db) as seen, statements_in_writes(db) as in_writes:
        first = add(client_a, "oCounted")
    with statements_run(db) as again_seen:
        again = add(client_a, "oCounted")
    assert first.status_code == again.status_code == 200 and again.json() == first.json()
    assert first.json()["state"] == "EFFECTIVE" and openids(client_a) == ["oWarm", "oCounted"]
    replay = business(again_seen)
    reads = [sql for sql in replay if sql.startswith("SELECT")]
    assert len(reads) == 1 and "recharge_employees" in reads[0] and "merchant_relations" in reads[0], replay
    if postgres:
        for one, in_a_write in ((business(first_seen), first_in_writes), (business(seen), in_writes)):
            assert len(one) == 1 and one[0].startswith("WITH inserted AS"), one
            assert all(t in one[0] for t in ("recharge_employees", "recharge_quotas", "merchant_relations"))
            assert business(in_a_write) == [], in_a_write
        assert replay == [business(seen)[0], reads[0]], replay  # the one statement (no row), then the read
    else:
        counted = business(seen)
        assert counted[0] == reads[0] and len(counted) == 4, counted  # the read, insert, quota row, slot
        assert replay == reads, replay


def test_a_list_and_a_delete_check_access_in_one_statement(client_a: ApiClient, app: WxPartnerApp) -> None:
    """R2 and R3 ask whether sub_mchid is a merchant and the caller's second-level merchant in one
    statement; then R2 lists, R3 marks the row deleted and frees its slot."""
    assert add(client_a, "oListed").status_code == 200
    with statements_run(app.state.db) as listed:
        assert openids(client_a) == ["oListed"]
    with statements_run(app.state.db) as deleted:
        assert delete(client_a, "oListed").json()["state"] == "DELETED"
    for seen, rest in (
        (listed, ["SELECT"]),
        (deleted, ["UPDATE recharge_employees", "UPDATE recharge_quotas"]),
    ):
        business = [sql for sql in seen if "recharge_" in sql or "merchant" in sql]
        assert len(business) == 1 + len(rest), seen
        assert "merchant_relations" in business[0] and "recharge_" not in business[0], seen
        assert [
            sql for sql, start in zip(business[1:], rest, strict=True) if sql.startswith(start)
        ] == business[1:]


def test_adding_an_effective_employee_again_is_idempotent(client_a: ApiClient, control: TestClient) -> None:
    first = add(client_a).json()
    advance(control, 60)
    again = add(client_a)
    assert again.status_code == 200
    assert again.json() == first
    # no daily slot used by the retries: two more distinct employees still fit today
    assert add(client_a, "oTwo").status_code == 200
    assert add(client_a, "oThree").status_code == 200


def test_re_adding_a_deleted_employee_makes_it_effective_with_new_times(
    client_a: ApiClient, control: TestClient
) -> None:
    first = add(client_a).json()
    advance(control, 60)
    assert delete(client_a).status_code == 200
    advance(control, 60)
    again = add(client_a)
    assert again.status_code == 200, again.text
    body = again.json()
    assert body["state"] == "EFFECTIVE"
    assert body["create_time"] == body["update_time"]
    assert parse_rfc3339(body["create_time"]) > parse_rfc3339(first["create_time"])
    assert openids(client_a) == [OPENID]


def test_deleting_twice_returns_the_deleted_record_unchanged(
    client_a: ApiClient, control: TestClient
) -> None:
    add(client_a)
    first = delete(client_a).json()
    advance(control, 60)
    second = delete(client_a)
    assert second.status_code == 200
    assert second.json() == first


def test_deleting_an_unknown_employee_is_invalid_request(client_a: ApiClient) -> None:
    body = error(delete(client_a, "oNeverAdded"), 400, "INVALID_REQUEST")
    assert body["detail"]["field"] == "sp_openid"
    assert "oNeverAdded" in body["message"]


def test_at_most_three_employees_in_effect(client_a: ApiClient, control: TestClient) -> None:
    for name in ("o1", "o2", "o3"):
        assert add(client_a, name).status_code == 200
    advance(control, 86400)  # a new day: the daily rule is not what refuses
    body = error(add(client_a, "o4"), 400, "INVALID_REQUEST")
    assert body["detail"]["rule"] == "max_employees"
    assert openids(client_a) == ["o1", "o2", "o3"]  # nothing written
    assert delete(client_a, "o1").status_code == 200
    assert add(client_a, "o4").status_code == 200
    assert sorted(openids(client_a)) == ["o2", "o3", "o4"]


def test_three_configurations_per_china_day(client_a: ApiClient, control: TestClient) -> None:
    # Freeze the business clock at 10:00 China time so the test never straddles midnight.
    resp = control.post("/sandbox/clock", json={"set": "2025-05-20T10:00:00+08:00", "freeze": True})
    assert resp.status_code == 200
    for name in ("o1", "o2", "o3"):
        assert add(client_a, name).status_code == 200
    assert delete(client_a, "o1").status_code == 200
    body = error(add(client_a, "o4"), 400, "INVALID_REQUEST")
    assert body["detail"]["rule"] == "max_per_day"
    # re-adding the deleted employee is a configuration too
    error(add(client_a, "o1"), 400, "INVALID_REQUEST")
    assert sorted(openids(client_a)) == ["o2", "o3"]
    # 23:59:59 is still the same day; 00:00 China time (16:00 UTC) is the next one
    control.post("/sandbox/clock", json={"set": "2025-05-20T23:59:59+08:00", "freeze": True})
    error(add(client_a, "o4"), 400, "INVALID_REQUEST")
    control.post("/sandbox/clock", json={"set": "2025-05-20T16:00:00Z", "freeze": True})
    resp = add(client_a, "o4")
    assert resp.status_code == 200, resp.text
    assert resp.json()["create_time"] == "2025-05-21T00:00:00.000+08:00"


# --- permissions ------------------------------------------------------------------------------------


@pytest.mark.parametrize("sub", [SECOND_B, SUB_A])
def test_only_own_second_level_merchants(client_a: ApiClient, client_b: ApiClient, sub: str) -> None:
    """SECOND_B belongs to another platform; SUB_A is SP_A's sub-merchant, not a second-level one."""
    assert add(client_b, sub_mchid=SECOND_B).status_code == 200
    for resp in (add(client_a, sub_mchid=sub), listing(client_a, sub), delete(client_a, sub_mchid=sub)):
        body = error(resp, 403, "NO_AUTH")
        assert body["detail"]["issue"] == "not a second-level merchant of the caller"
    assert openids(client_b, SECOND_B) == [OPENID]  # the other platform's employee is untouched


def test_unknown_second_level_merchant_is_no_auth(client_a: ApiClient) -> None:
    for resp, field, location in (
        (add(client_a, sub_mchid="1299999999"), "/sub_mchid", "body"),
        (listing(client_a, "1299999999"), "sub_mchid", "path"),
        (delete(client_a, sub_mchid="1299999999"), "sub_mchid", "path"),
    ):
        body = error(resp, 403, "NO_AUTH")
        assert body["detail"] == {
            "field": field,
            "location": location,
            "value": "1299999999",
            # the words of another platform's merchant: whether a number is registered is not told
            "issue": "not a second-level merchant of the caller",
        }


# --- bad input ---------------------------------------------------------------------------------------

LONG = "o" * 33


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"sub_mchid": "", "sp_openid": OPENID}, "/sub_mchid"),
        ({"sub_mchid": "1" * 33, "sp_openid": OPENID}, "/sub_mchid"),
        ({"sub_mchid": SECOND_A, "sp_openid": ""}, "/sp_openid"),
        ({"sub_mchid": SECOND_A, "sp_openid": LONG}, "/sp_openid"),
        ({"sub_mchid": SECOND_A}, "/sp_openid"),
        ({"sp_openid": OPENID}, "/sub_mchid"),
        ({"sub_mchid": 1230000201, "sp_openid": OPENID}, "/sub_mchid"),
    ],
)
def test_add_bad_body_is_param_error(client_a: ApiClient, body: dict[str, Any], field: str) -> None:
    resp = client_a.post(BASE, body)
    err = error(resp, 400, "PARAM_ERROR")
    assert err["detail"]["field"] == field
    assert err["detail"]["location"] == "body"
    assert openids(client_a) == []


def test_add_without_a_body_is_param_error(client_a: ApiClient) -> None:
    error(client_a.post(BASE), 400, "PARAM_ERROR")
    error(client_a.post(BASE, "not json"), 400, "PARAM_ERROR")


def test_exactly_32_characters_is_accepted(client_a: ApiClient) -> None:
    openid = "o" * 32
    assert add(client_a, openid).status_code == 200
    assert delete(client_a, openid).json()["sp_openid"] == openid


@pytest.mark.parametrize(
    ("url", "field"),
    [
        (f"{BASE}/sub-mchid/{'1' * 33}", "sub_mchid"),
        (f"{BASE}/sub-mchid/", "sub_mchid"),
    ],
)
def test_list_bad_path_is_param_error(client_a: ApiClient, url: str, field: str) -> None:
    err = error(client_a.get(url), 400, "PARAM_ERROR")
    assert err["detail"]["field"] == field and err["detail"]["location"] == "path"


@pytest.mark.parametrize(
    ("sub", "openid", "field"),
    [
        ("1" * 33, OPENID, "sub_mchid"),
        (SECOND_A, LONG, "sp_openid"),
        ("", OPENID, "sub_mchid"),
        (SECOND_A, "", "sp_openid"),
        ("", "", "sub_mchid"),
    ],
)
def test_delete_bad_path_is_param_error(client_a: ApiClient, sub: str, openid: str, field: str) -> None:
    add(client_a)
    err = error(delete(client_a, openid, sub), 400, "PARAM_ERROR")
    assert err["detail"]["field"] == field and err["detail"]["location"] == "path"
    assert openids(client_a) == [OPENID]  # nothing changed


def test_percent_encoded_openid_is_decoded(client_a: ApiClient) -> None:
    assert add(client_a, "o-a_b").status_code == 200
    resp = client_a.post(f"{BASE}/sub-mchid/{SECOND_A}/sp-openid/o%2Da_b/delete")
    assert resp.status_code == 200, resp.text
    assert resp.json()["sp_openid"] == "o-a_b"


def test_wrong_method_is_405(client_a: ApiClient) -> None:
    error(client_a.get(f"{BASE}/sub-mchid/{SECOND_A}/sp-openid/{OPENID}/delete"), 405, "METHOD_NOT_ALLOWED")


# --- rate limits (in-process; the 2-worker proof is in test_recharge_rate_limit.py) --------------------


@pytest.fixture
def make_http(settings: Settings) -> Iterator[Callable[..., TestClient]]:
    """Another in-process app over the same database, with changed settings."""
    opened: list[tuple[TestClient, Any]] = []

    def make(**changes: Any) -> TestClient:
        app = create_app(dataclasses.replace(settings, **changes))
        client = TestClient(app, base_url="http://testserver")
        client.__enter__()
        opened.append((client, app))
        return client

    yield make
    for client, app in opened:
        client.__exit__(None, None, None)
        app.state.db.dispose()


def test_add_limit_refuses_beyond_the_budget_and_changes_nothing(
    make_http: Callable[..., TestClient], world: World
) -> None:
    http = make_http(extra={"recharge_rate_limits": {"add": 2, "list": 3}})
    a = ApiClient(http, world, SP_A)
    refused: list[str] = []

    def burst() -> list[int]:
        # fresh names per attempt: the employees of a discarded attempt stay, so reset first
        assert (
            http.post("/sandbox/reset", headers={"Authorization": f"Bearer {SANDBOX_TOKEN}"}).status_code
            == 200
        )
        names = [f"oBurst{i}" for i in range(3)]
        statuses = [add(a, name).status_code for name in names]
        refused[:] = [n for n, s in zip(names, statuses, strict=True) if s == 429]
        return statuses

    statuses = in_one_window(burst)
    assert statuses == [200, 200, 429]
    assert openids(a) == ["oBurst0", "oBurst1"]  # the refused add wrote nothing
    assert refused == ["oBurst2"]


def test_429_is_a_signed_frequency_limited_error(make_http: Callable[..., TestClient], world: World) -> None:
    http = make_http(extra={"recharge_rate_limits": {"list": 1}})
    a = ApiClient(http, world, SP_A)
    responses: list[httpx.Response] = []

    def burst() -> list[int]:
        responses[:] = [listing(a), listing(a)]
        return [r.status_code for r in responses]

    assert in_one_window(burst) == [200, 429]
    body = responses[1].json()  # ApiClient already verified the response signature
    assert responses[1].headers["Wechatpay-Signature"]
    assert body["code"] == "FREQUENCY_LIMITED"
    assert body["detail"] == {"operation": "list", "limit": 1, "window_seconds": 1}


def test_budgets_are_per_operation_and_per_platform(
    make_http: Callable[..., TestClient], world: World
) -> None:
    http = make_http(extra={"recharge_rate_limits": {"add": 1, "list": 1, "delete": 1}})
    a, b = ApiClient(http, world, SP_A), ApiClient(http, world, SP_B)

    def burst() -> list[int]:
        return [
            add(a).status_code,
            add(a).status_code,  # add budget of SP_A spent
            listing(a).status_code,  # list has its own budget
            delete(a).status_code,  # so has delete
            add(b, sub_mchid=SECOND_B).status_code,  # another platform has its own budgets
            delete(a).status_code,
        ]

    assert in_one_window(burst) == [200, 429, 200, 200, 200, 429]


def test_unauthenticated_calls_do_not_count(make_http: Callable[..., TestClient], world: World) -> None:
    http = make_http(extra={"recharge_rate_limits": {"list": 2}})
    a = ApiClient(http, world, SP_A)
    url = f"{BASE}/sub-mchid/{SECOND_A}"

    def burst() -> list[int]:
        forged = sign_request(world.merchants[SP_A], "GET", url, private_key=world.other_key)
        bad = [http.get(url, headers=forged.headers).status_code for _ in range(3)]
        return [*bad, *(listing(a).status_code for _ in range(3))]

    assert in_one_window(burst) == [401, 401, 401, 200, 200, 429]


def test_rate_limits_switched_off(make_http: Callable[..., TestClient], world: World) -> None:
    http = make_http(rate_limits=False, extra={"recharge_rate_limits": {"list": 1}})
    a = ApiClient(http, world, SP_A)
    assert in_one_window(lambda: [listing(a).status_code for _ in range(4)]) == [200] * 4


def test_a_limit_of_zero_means_unlimited(make_http: Callable[..., TestClient], world: World) -> None:
    http = make_http(extra={"recharge_rate_limits": {"list": 0}})
    a = ApiClient(http, world, SP_A)
    assert in_one_window(lambda: [listing(a).status_code for _ in range(4)]) == [200] * 4


def test_bad_rate_limit_settings_are_refused_at_start(settings: Settings) -> None:
    for extra in ({"recharge_rate_limits": {"query": 1}}, {"recharge_rate_limits": {"add": "10"}}):
        with pytest.raises(ValueError, match="recharge rate limit"):
            create_app(dataclasses.replace(settings, extra=extra)).state.db.dispose()


# --- sandbox: control API preload, scenario section, reset -----------------------------------------


def test_control_api_preloads_employees(client_a: ApiClient, control: TestClient) -> None:
    resp = control.post(
        "/sandbox/recharge-employees",
        json={
            "sub_mchid": SECOND_A,
            "employees": [
                "oPre1",
                {"sp_openid": "oPre2", "create_time": "2025-05-20T13:29:35.120+08:00"},
                {
                    "sp_openid": "oGone",
                    "state": "DELETED",
                    "create_time": 1700000000,
                    "update_time": 1700000100,
                },
            ],
        },
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["loaded"] == 3
    listed = listing(client_a).json()["employees"]
    assert [e["sp_openid"] for e in listed] == ["oPre2", "oPre1"]  # oldest first
    assert listed[0]["create_time"] == "2025-05-20T13:29:35.120+08:00"
    everything = control.get("/sandbox/recharge-employees", params={"sub_mchid": SECOND_A}).json()[
        "employees"
    ]
    assert {e["sp_openid"]: e["state"] for e in everything} == {
        "oPre1": "EFFECTIVE",
        "oPre2": "EFFECTIVE",
        "oGone": "DELETED",
    }
    # preloaded employees count toward the 3-in-effect rule, but used no daily slot
    assert add(client_a, "oThird").status_code == 200
    assert error(add(client_a, "oFourth"), 400, "INVALID_REQUEST")["detail"]["rule"] == "max_employees"
    # a preload that leaves exactly three in effect is within the rule
    resp = control.post("/sandbox/recharge-employees", json={"sub_mchid": SECOND_A, "employees": ["oThird"]})
    assert resp.status_code == 200, resp.text
    # a preloaded DELETED employee deletes idempotently and re-adds
    gone = next(e for e in everything if e["sp_openid"] == "oGone")
    assert gone["update_time"] == "2023-11-15T06:15:00.000+08:00"
    again = delete(client_a, "oGone")
    assert again.status_code == 200 and again.json()["update_time"] == gone["update_time"]
    assert delete(client_a, "oPre1").status_code == 200
    assert add(client_a, "oGone").json()["state"] == "EFFECTIVE"


def test_control_api_refuses_bad_preloads_and_writes_nothing(
    client_a: ApiClient, control: TestClient
) -> None:
    too_many = {"sub_mchid": SECOND_A, "employees": ["o1", "o2", "o3", "o4"]}
    resp = control.post("/sandbox/recharge-employees", json=too_many)
    assert resp.status_code == 400 and "at most 3" in resp.json()["message"]
    # the rule as R1 names it (the control API's refusals used to carry no detail)
    assert resp.json()["detail"] == {"rule": "max_employees", "limit": 3}
    foreign = control.post(
        "/sandbox/recharge-employees", json={"sub_mchid": SECOND_A, "mchid": SP_B, "employees": ["o1"]}
    )
    assert foreign.json()["detail"] == {
        "field": "sub_mchid",
        "value": SECOND_A,
        "issue": f"not a second-level merchant of {SP_B}",
    }, foreign.text
    for bad in (
        {"sub_mchid": SECOND_A, "employees": [{"sp_openid": "o1", "state": "GONE"}]},
        {"sub_mchid": SECOND_A, "employees": [LONG]},
        {"sub_mchid": SECOND_A, "employees": [{"sp_openid": "o1", "create_time": "yesterday"}]},
        {"sub_mchid": SUB_A, "employees": ["o1"]},  # no platform has it as second-level merchant
        {"sub_mchid": SECOND_A, "mchid": SP_B, "employees": ["o1"]},  # not SP_B's
        [{"sub_mchid": SECOND_A, "employees": ["o1"]}, {"sub_mchid": SECOND_B, "employees": [LONG]}],
        # found by an audit: times no answer can render were a 500
        {"sub_mchid": SECOND_A, "employees": [{"sp_openid": "o1", "create_time": 1e300}]},
        {"sub_mchid": SECOND_A, "employees": [{"sp_openid": "o1", "create_time": -1}]},
        {"sub_mchid": SECOND_A, "employees": [{"sp_openid": "o1", "update_time": 1e12}]},
        {
            "sub_mchid": SECOND_A,
            "employees": [{"sp_openid": "o1", "create_time": "9999-12-31T23:59:59-12:00"}],
        },
        {"sub_mchid": SECOND_A, "employees": [{"sp_openid": "o1\x00"}]},
    ):
        resp = control.post("/sandbox/recharge-employees", json=bad)
        assert resp.status_code == 400, (bad, resp.text)
        assert resp.json()["code"] == "PARAM_ERROR"
    for raw in ("Infinity", "NaN", "-Infinity"):
        body = f'{{"sub_mchid": "{SECOND_A}", "employees": [{{"sp_openid": "o1", "create_time": {raw}}}]}}'
        resp = control.post("/sandbox/recharge-employees", content=body)
        assert resp.status_code == 400 and "between 1970 and 9999" in resp.json()["message"], resp.text
    assert openids(client_a) == []
    assert control.get("/sandbox/recharge-employees").json() == {
        "employees": [],
        "next_offset": None,
        "next_after": None,
    }


def test_control_api_needs_the_token(http: TestClient) -> None:
    resp = http.post("/sandbox/recharge-employees", json={"sub_mchid": SECOND_A, "employees": ["o1"]})
    assert resp.status_code == 401


def test_scenario_section_loads_and_exports(client_a: ApiClient, control: TestClient) -> None:
    text = f"""
recharge_employees:
  - sub_mchid: "{SECOND_A}"
    mchid: "{SP_A}"
    employees:
      - oScen1
      - {{sp_openid: oScen2, state: DELETED}}
"""
    resp = control.post("/sandbox/scenario", content=text)
    assert resp.status_code == 200, resp.text
    assert resp.json()["recharge_employees"] == 2
    assert openids(client_a) == ["oScen1"]
    exported = control.get("/sandbox/scenario").json()["recharge_employees"]
    assert exported[0]["mchid"] == SP_A and exported[0]["sub_mchid"] == SECOND_A
    assert {e["sp_openid"]: e["state"] for e in exported[0]["employees"]} == {
        "oScen1": "EFFECTIVE",
        "oScen2": "DELETED",
    }
    bad = control.post(
        "/sandbox/scenario",
        content=f'recharge_employees: [{{sub_mchid: "{SECOND_A}", employees: [a, b, c, d]}}]',
    )
    assert bad.status_code == 400 and bad.json()["code"] == "SCENARIO_ERROR"


def test_reset_clears_employees_and_limits(client_a: ApiClient, control: TestClient) -> None:
    for name in ("o1", "o2", "o3"):
        assert add(client_a, name).status_code == 200
    assert control.post("/sandbox/reset", json={"mchid": SP_A}).status_code == 200
    assert openids(client_a) == []
    for name in ("o4", "o5", "o6"):  # both limits start afresh
        assert add(client_a, name).status_code == 200
    assert control.post("/sandbox/reset", json={}).status_code == 200
    assert openids(client_a) == []


# --- atomicity across connections (the store, as several processes would use it) -------------------


def test_concurrent_adds_never_exceed_three(database_url: str, client_a: ApiClient) -> None:
    from wxpartner.domain import recharge
    from wxpartner.store.recharge_repo import RechargeStore

    db = Database(database_url, pool_size=8)
    results: list[str] = []
    gate = threading.Barrier(8)

    def one(i: int) -> None:
        gate.wait()
        try:
            with db.write() as conn:
                recharge.add(RechargeStore(conn), time.time(), SP_A, SECOND_A, f"oRace{i}")
            results.append("ok")
        except Exception as exc:
            results.append(getattr(exc, "code", repr(exc)))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    db.dispose()
    assert sorted(results) == ["INVALID_REQUEST"] * 5 + ["ok"] * 3
    assert len(openids(client_a)) == 3


def _add_as_served(db: Database, sp_openid: str, one_statement: bool) -> None:
    """R1 as its handler runs it: on PostgreSQL (``one_statement``) the one statement first, then,
    when it wrote nothing, the transaction."""
    from wxpartner.domain import recharge
    from wxpartner.store.recharge_repo import RechargeStore

    if one_statement and not db.sqlite:
        with db.autocommit() as conn:
            if recharge.add_at_once(RechargeStore(conn), time.time(), SP_A, SECOND_A, sp_openid) is not None:
                return
    with db.write() as conn:
        recharge.add(RechargeStore(conn), time.time(), SP_A, SECOND_A, sp_openid)


def test_concurrent_adds_by_both_paths_never_exceed_three(database_url: str, client_a: ApiClient) -> None:
    """Adds in one statement and adds in a transaction at once, two of each employee: three in effect,
    each employee added once, every other add answered (no deadlock between the two orders of work)."""
    db = Database(database_url, pool_size=12)
    results: list[str] = []
    gate = threading.Barrier(12)

    def one(i: int) -> None:
        gate.wait()
        try:
            _add_as_served(db, f"oBoth{i % 6}", one_statement=i % 2 == 0)
            results.append("ok")
        except Exception as exc:
            results.append(getattr(exc, "code", repr(exc)))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    db.dispose()
    assert set(results) <= {"ok", "INVALID_REQUEST"}, results
    added = openids(client_a)
    assert len(added) == 3 and len(set(added)) == 3, added
    assert results.count("ok") == sum(1 for i in range(12) if f"oBoth{i % 6}" in added), results
    # the slots: three in effect, three configured today
    assert error(add(client_a, "oBothMore"), 400, "INVALID_REQUEST")["detail"]["rule"] == "max_employees"


def test_a_slot_taken_meanwhile_undoes_the_one_statement_add(database_url: str, client_a: ApiClient) -> None:
    """PostgreSQL: the one statement inserts the employee, then waits for the merchant's quota row,
    which another add holds; that add takes the last slot and commits: the statement finds no slot
    and writes nothing (the employee is not left without one), and the transaction path refuses."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite adds in a transaction (no DML in a CTE)")
    from wxpartner.domain import recharge
    from wxpartner.store.recharge_repo import RechargeStore
    from wxpartner.store.recharge_tables import recharge_quotas

    for name in ("oHeld1", "oHeld2"):
        assert add(client_a, name).status_code == 200
    db = Database(database_url, pool_size=4)
    try:
        holder = db.engine.connect()
        holder_tx = holder.begin()
        taken = holder.execute(
            recharge_quotas.update()
            .where(recharge_quotas.c.sub_mchid == SECOND_A)
            .values(effective=recharge_quotas.c.effective + 1)
        )
        assert taken.rowcount == 1
        answer: list[Any] = []

        def one_statement() -> None:
            with db.autocommit() as conn:
                answer.append(recharge.add_at_once(RechargeStore(conn), time.time(), SP_A, SECOND_A, "oLate"))

        worker = threading.Thread(target=one_statement)
        worker.start()
        wait_for_lock_waiters(database_url, 1)  # the statement waits for the quota row
        holder_tx.commit()
        holder.close()
        worker.join()
        assert answer == [None]
        with db.read() as conn:
            store = RechargeStore(conn)
            assert store.get(SP_A, SECOND_A, "oLate") is None  # no employee without a slot
            effective = conn.execute(
                sa.select(recharge_quotas.c.effective).where(recharge_quotas.c.sub_mchid == SECOND_A)
            ).scalar_one()
        assert effective == 3
        refusal = error(add(client_a, "oLate"), 400, "INVALID_REQUEST")
        assert refusal["detail"]["rule"] == "max_employees"
    finally:
        db.dispose()
