"""Issue 9's audit: the statements a business request runs are compiled once (``store/db.py:
LeanStatement``, run on the driver cursor), not built and compiled per call through SQLAlchemy's
general execution path (``conn.execute`` of a fresh construct: ≈ 0.1–0.3 ms each in-process). So are,
since session 26, those of the employee's pages (W1/W7 links), the sweeps, the sandbox control API's
setup calls and the pytest plugin's reset between tests.

``before_execute`` fires for ``conn.execute`` only; a LeanStatement fires ``before_cursor_execute``
alone. Settings are the tests' defaults: rate limits on (recharge's; apply4subject's are off in the
fixture), journal and metrics on. Reads of caches a request refreshes now and then (fault rules,
keyring) are not counted: they are not per-request work."""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from starlette.testclient import TestClient

from apply4subject_support import BASE as A_BASE
from apply4subject_support import make_body, set_roles, submit
from conftest import SANDBOX_TOKEN
from support import SECOND_A, SP_A, SP_B, SUB_A, ApiClient, World
from webizpay_support import authorize, issue, link_token, payment_token, start_url
from wxpartner.domain.clock import ClockState
from wxpartner.domain.webizpay_bills import TradeRow
from wxpartner.domain.webizpay_merchants import StoreEntity
from wxpartner.protocol.times import format_rfc3339
from wxpartner.server import webizpay_background
from wxpartner.server.app import WxPartnerApp, create_app
from wxpartner.server.settings import Settings
from wxpartner.store import sandbox, webizpay_bills_repo
from wxpartner.store.db import Database
from wxpartner.store.webizpay_merchants_repo import MatchRepo, upsert_store_entity

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
def _general_path_when(db: Database, counted: Callable[[], bool]) -> Iterator[list[str]]:
    """The statements run through ``conn.execute`` while ``counted()`` holds, inside the block."""
    seen: list[str] = []

    def record(_conn: Any, clause: Any, *_args: Any) -> None:
        sql = " ".join(str(clause).split())
        if counted() and not any(table in sql for table in REFRESHES):
            seen.append(sql[:120])

    for engine in db.engines:
        sa.event.listen(engine, "before_execute", record)
    try:
        yield seen
    finally:
        for engine in db.engines:
            sa.event.remove(engine, "before_execute", record)


def general_path(db: Database) -> contextlib.AbstractContextManager[list[str]]:
    """The statements run through ``conn.execute`` while a request is handled, inside the block."""
    return _general_path_when(db, _in_request)


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
    app: WxPartnerApp, client_a: ApiClient, control: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check is not blind: a trade source (the W12 bill's hook) that reads through conn.execute
    is seen (no business request builds its statements per call any more)."""

    def source(conn: Connection, sp: str, sub: str, start: float, end: float) -> list[TradeRow]:
        conn.execute(sa.select(sa.literal(1).label("built_per_call"))).all()
        return []

    monkeypatch.setattr(webizpay_bills_repo, "TRADE_SOURCES", [source])
    assert control.post(
        "/sandbox/clock", json={"set": "2026-03-15T12:00:00+08:00", "freeze": True}
    ).is_success
    body = {"sp_mchid": SP_A, "sub_mchid": SUB_A, "date": "2026-03-14", "type": "QYZFALL"}
    found = _each(app.state.db, {"W12": lambda: _ok(client_a.post("/v3/webizpay/bill/trade-bill", body))})
    assert list(found) == ["W12"] and any("built_per_call" in sql for sql in found["W12"])


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


W_RANGES = "/v3/webizpay/avail-mch-ranges"
W_MATCHES = "/v3/webizpay/stores/entity-matches"
ORG = "91110000710926094P"  # check digit valid


def test_the_rarer_webizpay_and_recharge_requests_compile_nothing_per_call(
    app: WxPartnerApp, client_a: ApiClient, control: TestClient
) -> None:
    """Issue 9's rest: W3 with an available-merchant range, W8 revoke (of an employee with an active
    card), R1 refused for want of a slot (the quota's read), W9–W17 and the bill download."""
    assert control.post(
        "/sandbox/clock", json={"set": "2026-03-15T12:00:00+08:00", "freeze": True}
    ).is_success
    employee = authorize(client_a, control, "employee_rest")
    issue(client_a, employee, "rest_card_0")
    created = _ok(client_a.post(W_RANGES, {"sp_mchid": SP_A, "identifier_type": "ORGANIZATION_CODE"}))
    range_id = created.json()["range_id"]
    for n in range(3):  # the sub-merchant's 3 slots
        _ok(client_a.post(R_BASE, {"sub_mchid": SECOND_A, "sp_openid": f"o_rest_{n}"}))
    idents = f"{W_RANGES}/{range_id}/merchant-identifiers"
    state: dict[str, str] = {}

    def w9() -> httpx.Response:
        detail = {"organization_code": ORG, "store_name": "某某餐饮", "product_type": "CODE_PAY"}
        body = {"sp_mchid": SP_A, "out_batch_id": "rest_batch_1", "match_details": [detail]}
        resp = _ok(client_a.post(W_MATCHES, body))
        state["batch"] = resp.json()["batch_id"]
        return resp

    def w11() -> httpx.Response:
        body = {
            "sp_mchid": SP_A,
            "sub_mchid": SUB_A,
            "start_date": "2026-02-01",
            "end_date": "2026-03-14",
            "out_operation_id": "rest_proof_1",
        }
        resp = _ok(client_a.post("/v3/webizpay/bill/proof", body))
        state["proof"] = resp.json()["download_url"]
        return resp

    def w12() -> httpx.Response:
        body = {"sp_mchid": SP_A, "sub_mchid": SUB_A, "date": "2026-03-14", "type": "QYZFALL"}
        resp = _ok(client_a.post("/v3/webizpay/bill/trade-bill", body))
        state["bill"] = resp.json()["download_url"]
        return resp

    def download(name: str) -> httpx.Response:
        parts = urlsplit(state[name])
        return _ok(client_a.get(f"{parts.path}?{parts.query}"))

    def w10() -> httpx.Response:
        return _ok(client_a.get(f"{W_MATCHES}/{state['batch']}?sp_mchid={SP_A}"))

    ranged = _issue_body("rest_card_1") | {"avail_mch_range_id": range_id}
    identifier = {"sp_mchid": SP_A, "merchant_identifier": ORG}
    calls: dict[str, Callable[[], httpx.Response]] = {
        "W3 issue with a range": lambda: _ok(
            client_a.post(f"/v3/webizpay/employees/{employee}/quota-cards", ranged)
        ),
        "W8 revoke": lambda: _ok(
            client_a.post(f"/v3/webizpay/employees/{employee}/revoke", {"sp_mchid": SP_A, "sub_mchid": SUB_A})
        ),
        "R1 refused, no slot": lambda: _ok(
            client_a.post(R_BASE, {"sub_mchid": SECOND_A, "sp_openid": "o_rest_3"}), 400
        ),
        "W9 match": w9,
        "W9 again": w9,
        # each query moves the batch one step: ACCEPTED, then PROCESSING, then FINISHED (the match)
        "W10 query": w10,
        "W10 query 2": w10,
        "W10 query 3": w10,
        "W11 proof": w11,
        "W11 again": w11,
        "the proof's download": lambda: download("proof"),
        "W12 trade bill": w12,
        "the bill's download": lambda: download("bill"),
        "W13 range": lambda: _ok(
            client_a.post(W_RANGES, {"sp_mchid": SP_A, "identifier_type": "TRANSACTION_ID"})
        ),
        "W14 ranges": lambda: _ok(client_a.get(f"{W_RANGES}?sp_mchid={SP_A}")),
        "W15 identifier": lambda: _ok(client_a.post(idents, identifier)),
        "W15 again": lambda: _ok(client_a.post(idents, identifier)),
        "W16 identifiers": lambda: _ok(client_a.get(f"{idents}?sp_mchid={SP_A}&offset=0&limit=10")),
        "W17 delete": lambda: _ok(client_a.delete(f"{idents}/{ORG}", {"sp_mchid": SP_A})),
    }
    assert _each(app.state.db, calls) == {}


def test_a_resubmission_compiles_nothing_per_call(
    app: WxPartnerApp, client_a: ApiClient, world: World, control: TestClient
) -> None:
    """A1 resubmitting an EDITTING applyment (``replace``)."""
    set_roles(app, world)
    applyment_id = _ok(submit(client_a, make_body(client_a, "paths_edit"))).json()["applyment_id"]
    assert control.post(f"/sandbox/apply4subject/applyments/{applyment_id}/edit", json={}).is_success
    again = make_body(client_a, "paths_edit", merchant_name="改过的公司名称")
    assert _each(app.state.db, {"A1 resubmission": lambda: _ok(submit(client_a, again))}) == {}


def test_store_entities_in_list_padded_to_a_power_of_two(app: WxPartnerApp) -> None:
    """W10's IN list is one compiled statement per power of two of codes, padded with the last code:
    every count finds exactly the stored entities among the codes asked for."""
    stored = {
        f"ORG{n:04d}": StoreEntity(f"ORG{n:04d}", n % 2 == 0, ("CODE_PAY",) if n % 3 else ())
        for n in range(0, 1000, 7)
    }
    with app.state.db.write() as conn:
        for entity in stored.values():
            upsert_store_entity(conn, entity)
    with app.state.db.read() as conn:
        repo = MatchRepo(conn)
        assert repo.store_entities([]) == {}
        for count in (1, 2, 3, 5, 8, 9, 1000):
            codes = [f"ORG{n:04d}" for n in range(1000 - count, 1000)]
            expected = {code: stored[code] for code in codes if code in stored}
            assert repo.store_entities(codes) == expected, count


# ---- outside a /v3 request: the employee's pages, the sweeps, the control API, the plugin's reset ----


def _under(files: tuple[str, ...]) -> bool:
    """Whether the statement runs under a function of one of ``files`` (on this thread's stack)."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename.endswith(files):
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def general_path_under(db: Database, files: tuple[str, ...]) -> contextlib.AbstractContextManager[list[str]]:
    """The statements run through ``conn.execute`` under a function of ``files``, inside the block."""
    return _general_path_when(db, lambda: _under(files))


def _each_under(
    db: Database, files: tuple[str, ...], calls: dict[str, Callable[[], Any]]
) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, call in calls.items():
        with general_path_under(db, files) as seen:
            call()
        if seen:
            found[name] = seen
    return found


PAGES = ("server/webizpay_pages.py",)
CONTROL = (
    "server/control.py",
    "server/control_webizpay.py",
    "server/control_ops.py",
    "server/control_recharge.py",
)
SWEEPS = ("server/webizpay_background.py",)
FORM = {"content-type": "application/x-www-form-urlencoded"}


def test_the_check_sees_a_statement_built_per_call_outside_requests(
    app: WxPartnerApp, control: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check of the pages, sweeps and control API is not blind: a clock read through conn.execute
    under a control call is seen."""

    def read_clock(conn: Connection) -> ClockState:
        conn.execute(sa.select(sa.literal(1).label("built_per_call"))).all()
        return ClockState()

    monkeypatch.setattr(sandbox, "read_clock", read_clock)
    found = _each_under(app.state.db, CONTROL, {"clock": lambda: _ok(control.get("/sandbox/clock"))})
    assert list(found) == ["clock"] and any("built_per_call" in sql for sql in found["clock"])


def test_the_employee_pages_compile_nothing_per_call(
    app: WxPartnerApp, client_a: ApiClient, control: TestClient
) -> None:
    """The W1 link's page (shown, then consent) and the W7 link's page (shown, then a payment)."""
    employee = authorize(client_a, control, "employee_pages")
    card = issue(client_a, employee, "pages_card_0")["card_no"]
    paying = payment_token(client_a, employee, card)
    consenting = link_token(_ok(start_url(client_a, "employee_pages_2")).json()["authorization_url"])
    calls: dict[str, Callable[[], Any]] = {
        "the authorization page": lambda: _ok(control.get(f"/webizpay/authorize?token={consenting}")),
        "consent": lambda: _ok(
            control.post("/webizpay/authorize", content=f"token={consenting}", headers=FORM)
        ),
        "the payment page": lambda: _ok(control.get(f"/webizpay/pay?token={paying}")),
        "a payment": lambda: _ok(
            control.post("/webizpay/pay", content=f"token={paying}&amount=1&store_name=s", headers=FORM)
        ),
    }
    assert _each_under(app.state.db, PAGES, calls) == {}


def test_the_sweeps_compile_nothing_per_call(settings: Settings, world: World) -> None:
    """A sweep round with due cards and expired links to delete, and one with nothing to do (the
    background round off: the calls below are the only sweeps)."""
    settings.extra["webizpay_sweep_seconds"] = 0
    app = create_app(settings)
    try:
        with TestClient(app, headers={"Authorization": f"Bearer {SANDBOX_TOKEN}"}) as control:
            client = ApiClient(control, world, SP_A)
            db = app.state.db
            start = dt.datetime(2026, 3, 15, 4, tzinfo=dt.UTC).timestamp()
            _ok(control.post("/sandbox/clock", json={"set": start, "freeze": True}))
            employee = authorize(client, control, "employee_sweeps")
            end = format_rfc3339(dt.datetime.fromtimestamp(start + 86400, dt.UTC))
            for n in range(3):
                issue(client, employee, f"sweeps_card_{n}", effective_end_time=end)
            _ok(start_url(client, "employee_sweeps_2"))
            with db.write() as conn:  # past the cards' end and the links' kept expiry, nothing settled
                sandbox.write_clock(conn, ClockState().set_to(start + 30 * 86400, frozen=True))
            done: dict[str, int] = {}
            calls: dict[str, Callable[[], Any]] = {
                "a sweep of due cards": lambda: done.update(due=webizpay_background.sweep_once(app.state)),
                "a sweep, none due": lambda: done.update(none=webizpay_background.sweep_once(app.state)),
                "the links' prune": lambda: done.update(
                    pruned=webizpay_background.prune_links_once(app.state)
                ),
                "the links' prune, none": lambda: done.update(
                    left=webizpay_background.prune_links_once(app.state)
                ),
            }
            assert _each_under(db, SWEEPS, calls) == {}
            assert done == {"due": 3, "none": 0, "pruned": 2, "left": 0}  # pruned: the two W1 links
    finally:
        app.state.db.dispose()


def test_the_control_apis_setup_calls_compile_nothing_per_call(
    app: WxPartnerApp, client_a: ApiClient, control: TestClient
) -> None:
    """Clock moves (and what they settle), consents, payments, refunds, fault rules, notify URLs,
    employees preloaded, templates, resets (of everything and of one merchant)."""
    _ok(control.post("/sandbox/clock", json={"set": "2026-03-15T12:00:00+08:00", "freeze": True}))
    employee = authorize(client_a, control, "employee_control")
    card = issue(client_a, employee, "control_card_0")["card_no"]
    paid: dict[str, str] = {}
    rule: dict[str, str] = {}

    def pay() -> Any:
        resp = _ok(control.post("/sandbox/webizpay/payments", json={"card_no": card, "amount": 5}))
        paid["id"] = resp.json()["transaction_id"]
        return resp

    def add_rule() -> Any:
        resp = _ok(control.post("/sandbox/faults", json={"kind": "SYSTEM_ERROR", "path": "/nowhere"}), 201)
        rule["id"] = resp.json()["id"]
        return resp

    consent = {"sp_mchid": SP_A, "sub_mchid": SUB_A, "user_id": "employee_control_2"}
    preload = {"sub_mchid": SECOND_A, "mchid": SP_A, "employees": ["o_control_0", "o_control_1"]}
    template = {"sp_mchid": SP_A, "card_template_id": "control_template"}
    calls: dict[str, Callable[[], Any]] = {
        "the clock read": lambda: _ok(control.get("/sandbox/clock")),
        "the clock moved": lambda: _ok(control.post("/sandbox/clock", json={"advance": 60})),
        "a consent": lambda: _ok(control.post("/sandbox/webizpay/authorizations", json=consent)),
        "a payment": pay,
        "a refund": lambda: _ok(
            control.post("/sandbox/webizpay/refunds", json={"transaction_id": paid["id"], "amount": 2})
        ),
        "a fault rule": add_rule,
        "its deletion": lambda: _ok(control.delete(f"/sandbox/faults/{rule['id']}")),
        "the rules cleared": lambda: _ok(control.delete("/sandbox/faults")),
        "a notify URL": lambda: _ok(
            control.put(f"/sandbox/merchants/{SP_A}/notify-url", json={"notify_url": "https://example.com/n"})
        ),
        "employees preloaded": lambda: _ok(control.post("/sandbox/recharge-employees", json=preload)),
        "a template": lambda: _ok(control.post("/sandbox/webizpay/templates", json=template)),
        "a merchant's reset": lambda: _ok(control.post("/sandbox/reset", json={"mchid": SP_A})),
        "the reset": lambda: _ok(control.post("/sandbox/reset", json={})),
    }
    assert _each_under(app.state.db, CONTROL, calls) == {}


def test_the_plugins_reset_compiles_nothing_per_call(tmp_path: Path, database_url: str) -> None:
    """The pytest plugin's reset between tests (its server's data deleted, the clock, notify URLs,
    fault rules, the journal and the auto policy put back): one write transaction, no statement
    built per call."""
    from wxpartner.store import registry
    from wxpartner.testing_server import WxPartnerServer

    server = WxPartnerServer(tmp_path / "plugin", database_url=database_url)
    commits: list[int] = []
    try:
        server.set_notify_url("https://example.com/changed")  # the reset puts it back
        for engine in server.db.engines:
            # this thread's: the server's background sweep, every 2 s, reads in its own thread
            sa.event.listen(engine, "commit", lambda _conn: commits.append(threading.get_ident()))
        found = _each_under(server.db, ("wxpartner/testing_server.py",), {"reset": server.reset})
        assert found == {}
        # one write transaction (it was two: the data's deletes, then the rest)
        assert commits.count(threading.get_ident()) == 1
        with server.db.read() as conn:
            assert registry.notify_urls(conn)[server.mchid] is None
    finally:
        server.close()
