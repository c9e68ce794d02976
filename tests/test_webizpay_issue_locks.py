"""W3 on PostgreSQL and the employee's relation row: issues share it, a revoke takes it.

The one-statement issue (store/webizpay_repo.py: ``_issue_at_once``) locks the employee's relation so
that no revoke slips between its check and its insert. Issues to one employee must not wait for one
another on that lock: they write nothing to the row, and out_card_no is unique by its index. Taken
FOR UPDATE, every issue to one employee queued on the row (the benchmark issues all its cards to one
employee; its workers idled 42-45 % of the time at W3's peak, waiting in PostgreSQL's ``Lock/tuple``
and ``Lock/transactionid``). A revoke must still wait for an issue in flight and then disable its
card, and an issue that comes while a revoke holds the row must write nothing.

SQLite is not here: its writers take turns (one write lock), and the one statement is PostgreSQL's.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from pg import wait_for_lock_waiters
from support import SP_A, SUB_A, ApiClient
from webizpay_support import authorize, get_card, issue_body
from wxpartner.domain.webizpay import authorizations, quota_cards
from wxpartner.domain.webizpay.entities import Policy
from wxpartner.models.webizpay import IssueQuotaCardRequest, IssueQuotaCardResponse
from wxpartner.server.app import WxPartnerApp
from wxpartner.store.webizpay_repo import WebizpayRepo
from wxpartner.store.webizpay_tables import webizpay_cards

# An issue's one statement waiting on a lock (its text is cut before its FROM in pg_stat_activity).
_ISSUE_WAITS = sa.text(
    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
    "AND query LIKE 'INSERT INTO webizpay_cards%' AND datname = current_database()"
)


def _postgresql_only(database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite's writers take turns (one write lock); the one-statement issue is PostgreSQL's")


def _cards_url(employee_id: str) -> str:
    return f"/v3/webizpay/employees/{employee_id}/quota-cards"


@contextlib.contextmanager
def _issue_in_flight(
    app: WxPartnerApp, employee_id: str, out_card_no: str
) -> Iterator[IssueQuotaCardResponse]:
    """The one-statement issue of ``out_card_no`` run, not yet committed: what it locked stays locked
    until the block ends (then it commits)."""
    with app.state.db.engine.connect() as conn, conn.begin():
        body = IssueQuotaCardRequest(**issue_body(out_card_no))
        made = quota_cards.issue_at_once(WebizpayRepo(conn), Policy(), time.time(), SP_A, employee_id, body)
        assert made is not None, "the one statement wrote nothing"
        yield made


def _done_or_waiting(answer: Future[Any], database_url: str) -> bool:
    """Until ``answer`` is done (True) or an issue's statement waits on a lock (False)."""
    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    deadline = time.monotonic() + 60  # bounds a wait that should end at once; not a measure
    try:
        while not answer.done():
            with engine.connect() as conn:
                if conn.execute(_ISSUE_WAITS).scalar_one():
                    return answer.done()
            assert time.monotonic() < deadline, "neither answered nor waiting"
            time.sleep(0.005)
        return True
    finally:
        engine.dispose()


def test_issues_to_one_employee_do_not_wait_for_one_another(
    database_url: str, app: WxPartnerApp, client_a: ApiClient, control: TestClient
) -> None:
    """An issue to the employee is in flight (its statement run, not committed): another issue to the
    same employee is answered meanwhile, with a card of its own; the first then commits its card."""
    _postgresql_only(database_url)
    emp = authorize(client_a, control, "lock_user_01")
    with ThreadPoolExecutor(1) as pool, _issue_in_flight(app, emp, "held_card_01") as held:
        other = pool.submit(client_a.post, _cards_url(emp), issue_body("other_card_01"))
        answered = _done_or_waiting(other, database_url)
        assert answered, "the second issue waited for the first one's lock of the relation"
    resp = other.result()
    assert resp.status_code == 200, resp.text
    assert resp.json()["card_no"] != held.card_no
    for card_no in (held.card_no, resp.json()["card_no"]):
        assert get_card(client_a, emp, card_no).json()["card_state"] == "ACTIVE"


def test_a_revoke_waits_for_an_issue_in_flight_and_disables_its_card(
    database_url: str, app: WxPartnerApp, client_a: ApiClient, control: TestClient
) -> None:
    """A revoke that comes while an issue's statement is in flight waits for it, then finds its card
    and disables it: no ACTIVE card is left on a REVOKED relation."""
    _postgresql_only(database_url)
    emp = authorize(client_a, control, "lock_user_02")
    revoke = {"sp_mchid": SP_A, "sub_mchid": SUB_A}
    with ThreadPoolExecutor(1) as pool:
        with _issue_in_flight(app, emp, "held_card_02") as held:
            revoked = pool.submit(client_a.post, f"/v3/webizpay/employees/{emp}/revoke", revoke)
            wait_for_lock_waiters(database_url, 1)  # the revoke's UPDATE waits for the issue's lock
            assert not revoked.done()
        resp = revoked.result()
    assert resp.status_code == 200, resp.text
    card = get_card(client_a, emp, held.card_no).json()
    assert card["card_state"] == "DISABLED", card


def test_an_issue_during_a_revoke_in_flight_writes_nothing(
    database_url: str, app: WxPartnerApp, client_a: ApiClient, control: TestClient
) -> None:
    """An issue that comes while a revoke holds the relation (not yet committed) waits for it, then
    is refused as to a REVOKED employee, with no card written."""
    _postgresql_only(database_url)
    emp = authorize(client_a, control, "lock_user_03")
    with ThreadPoolExecutor(1) as pool:
        with app.state.db.engine.connect() as conn, conn.begin():
            authorizations.revoke(
                WebizpayRepo(conn), Policy(), time.time(), employee_id=emp, sp_mchid=SP_A, sub_mchid=SUB_A,
                reason="held",
            )  # fmt: skip
            issued = pool.submit(client_a.post, _cards_url(emp), issue_body("late_card_03"))
            wait_for_lock_waiters(database_url, 1)  # the issue waits for the revoke's lock
            assert not issued.done()
        resp = issued.result()
    assert resp.status_code == 400, resp.text
    assert resp.json()["code"] == "INVALID_REQUEST" and resp.json()["detail"] == {"state": "REVOKED"}
    with app.state.db.read() as conn:
        written = conn.execute(
            sa.select(sa.func.count()).where(webizpay_cards.c.out_card_no == "late_card_03")
        ).scalar_one()
    assert written == 0
