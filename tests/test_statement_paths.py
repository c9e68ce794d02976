"""Issue 9's audit: the statements a business request runs are compiled once (``store/db.py:
LeanStatement``, run on the driver cursor), not built and compiled per call through SQLAlchemy's
general execution path (``conn.execute`` of a fresh construct: ≈ 0.1–0.3 ms each in-process).

``before_execute`` fires for ``conn.execute`` only; a LeanStatement fires ``before_cursor_execute``
alone. Settings are the tests' defaults: rate limits on (recharge's; apply4subject's are off in the
fixture), journal and metrics on. Reads of caches a request refreshes now and then (fault rules,
keyring) are not counted: they are not per-request work."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import sqlalchemy as sa
from starlette.testclient import TestClient

from apply4subject_support import BASE as A_BASE
from apply4subject_support import make_body, set_roles, submit
from support import SECOND_A, SP_A, SP_B, SUB_A, ApiClient, World
from webizpay_support import authorize, issue, start_url
from wxpartner.server.app import WxPartnerApp
from wxpartner.store.db import Database

R_BASE = "/v3/platsolution/ecommerce/recharge-employees"


def _in_request() -> bool:
    """Whether the statement runs inside a request's handling (Pipeline.handle on this stack)."""
    frame = sys._getframe(2)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "handle" and code.co_filename.endswith("pipeline.py"):
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


# Caches a request refreshes at most so often, not per request: the fault rules (every 0.5 s,
# server/faults.py: RULE_CACHE_SECONDS) and the keyring (when another host changed keys).
REFRESHES = ("FROM sandbox_faults", "FROM platform_keys")


@contextlib.contextmanager
def general_path(db: Database) -> Iterator[list[str]]:
    """The statements run through ``conn.execute`` while a request is handled, inside the block."""
    seen: list[str] = []

    def record(_conn: Any, clause: Any, *_args: Any) -> None:
        sql = " ".join(str(clause).split())
        if _in_request() and not any(table in sql for table in REFRESHES):
            seen.append(sql[:120])

    for engine in db.engines:
        sa.event.listen(engine, "before_execute", record)
    try:
        yield seen
    finally:
        for engine in db.engines:
            sa.event.remove(engine, "before_execute", record)


def _each(db: Database, calls: dict[str, Callable[[], httpx.Response]]) -> dict[str, list[str]]:
    """Each call's general-path statements (a call's status is checked by the caller's lambda)."""
    found: dict[str, list[str]] = {}
    for name, call in calls.items():
        with general_path(db) as seen:
            call()
        if seen:
            found[name] = seen
    return found


def _ok(resp: httpx.Response, status: int = 200) -> httpx.Response:
    assert resp.status_code == status, resp.text
    return resp


def test_the_check_sees_a_statement_built_per_call(
    app: WxPartnerApp, client_a: ApiClient, control: TestClient
) -> None:
    """The check is not blind: W8 (revoke) still writes through conn.execute (a rare path, left as it
    is; if it is converted, point this at another one)."""
    employee = authorize(client_a, control, "employee_seen")
    body = {"sp_mchid": SP_A, "sub_mchid": SUB_A}
    found = _each(
        app.state.db,
        {"W8": lambda: _ok(client_a.post(f"/v3/webizpay/employees/{employee}/revoke", body))},
    )
    assert list(found) == ["W8"] and any("webizpay_relations" in sql for sql in found["W8"])


def test_webizpay_and_recharge_requests_compile_nothing_per_call(
    app: WxPartnerApp, client_a: ApiClient, client_b: ApiClient, control: TestClient, world: World
) -> None:
    db = app.state.db
    employee = authorize(client_a, control, "employee_paths")
    card = issue(client_a, employee, "paths_card_0")["card_no"]
    _ok(client_a.post(R_BASE, {"sub_mchid": SECOND_A, "sp_openid": "o_paths_0"}))
    _ok(client_a.get(f"{R_BASE}/sub-mchid/{SECOND_A}"))  # warm-up after the set-up's control calls
    wrong_key = world.merchants[SP_B].private_key
    q = f"sp_mchid={SP_A}&sub_mchid={SUB_A}"
    calls: dict[str, Callable[[], httpx.Response]] = {
        "certificates": lambda: _ok(client_b.get("/v3/certificates")),
        "W1 start authorization": lambda: _ok(start_url(client_a, "employee_paths_2")),
        "W1 refused, the user is authorized": lambda: _ok(start_url(client_a, "employee_paths"), 400),
        "W2 authorization state": lambda: _ok(
            client_a.get(f"/v3/webizpay/users/employee_paths/authorization-state?{q}")
        ),
        "W7 payment link": lambda: _ok(
            client_a.get(
                f"/v3/webizpay/employees/{employee}/quota-cards/{card}/payment-url?{q}&application_type=H5"
            )
        ),
        "W3 issue": lambda: _ok(
            client_a.post(f"/v3/webizpay/employees/{employee}/quota-cards", _issue_body("paths_card_1"))
        ),
        "W4 query": lambda: _ok(client_a.get(f"/v3/webizpay/employees/{employee}/quota-cards/{card}?{q}")),
        "W6 cancel": lambda: _ok(
            client_a.post(
                f"/v3/webizpay/employees/{employee}/quota-cards/{card}/cancel",
                {"sp_mchid": SP_A, "sub_mchid": SUB_A, "reason": "paths"},
            )
        ),
        "R1 add": lambda: _ok(client_a.post(R_BASE, {"sub_mchid": SECOND_A, "sp_openid": "o_paths_1"})),
        "R3 list": lambda: _ok(client_a.get(f"{R_BASE}/sub-mchid/{SECOND_A}")),
        "R2 delete": lambda: _ok(client_a.post(f"{R_BASE}/sub-mchid/{SECOND_A}/sp-openid/o_paths_1/delete")),
        # A signature that does not match asks whether the nonce was seen (a replay is refused as one;
        # PostgreSQL reads request_nonces, a SQLite file its shared-memory window).
        "a signature that does not match": lambda: _ok(
            client_a.get(f"{R_BASE}/sub-mchid/{SECOND_A}", private_key=wrong_key, check=False), 401
        ),
    }
    assert _each(db, calls) == {}


def test_apply4subject_requests_compile_nothing_per_call(
    app: WxPartnerApp, client_a: ApiClient, world: World
) -> None:
    set_roles(app, world)
    chan = client_a
    db = app.state.db
    first = _ok(submit(chan, make_body(chan, "paths_0"))).json()["applyment_id"]
    _ok(chan.get(f"{A_BASE}/merchants/1239876543/state"))  # warm-up after the set-up
    calls: dict[str, Callable[[], httpx.Response]] = {
        "A1 submit": lambda: _ok(submit(chan, make_body(chan, "paths_1"))),
        "A2 query": lambda: _ok(chan.get(f"{A_BASE}?applyment_id={first}")),
        "A3 cancel": lambda: _ok(chan.post(f"{A_BASE}/paths_1/cancel"), 204),
        "A4 merchant state": lambda: _ok(chan.get(f"{A_BASE}/merchants/1239876543/state")),
    }
    assert _each(db, calls) == {}


def _issue_body(out_card_no: str) -> dict[str, Any]:
    from webizpay_support import issue_body

    return issue_body(out_card_no)
