"""The request journal under a hostile caller: a refused request is journaled under the mchid its
Authorization header *claims*, so anyone can put rows in merchant A's view. They stay visible (the
operator explains A's SIGN_ERRORs from them) but are marked ``mchid_verified: false`` wherever rows are
shown, and a flood of them cannot rotate A's verified rows out of the two-generation journal: each
process journals unverified requests at a bounded rate and notes how many it left out."""

from __future__ import annotations

import dataclasses
import re
import time

import pytest
from starlette.testclient import TestClient

from conftest import SANDBOX_TOKEN
from support import SP_A, ApiClient, World, sign_request
from wxpartner.domain.merchants import Caller
from wxpartner.server import journal
from wxpartner.server.app import WxPartnerApp, create_app
from wxpartner.server.http import RawRequest, RawResponse
from wxpartner.server.journal import SKIPPED_OPERATION, writer
from wxpartner.server.settings import Settings
from wxpartner.store import ops_repo, registry

KEEP = 5
BURST = 3


@pytest.fixture(autouse=True)
def one_note_until_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """The journal notes the requests it left out at most once an interval (and when read): one hour
    here, so the rows in the journal do not depend on how fast the test runs."""
    monkeypatch.setattr(journal, "SKIPPED_NOTE_INTERVAL", 3600.0)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.extra["journal_keep"] = KEEP
    settings.extra["journal_unverified_burst"] = BURST
    settings.extra["journal_unverified_rate"] = 0.001  # one token in ~17 minutes: none during the test
    return settings


def _journal(control: TestClient, **params: str) -> list[dict[str, object]]:
    resp = control.get("/sandbox/journal", params={"limit": "1000", **params})
    assert resp.status_code == 200, resp.text
    return list(resp.json()["data"])


def test_a_flood_of_refused_requests_claiming_a_merchant_leaves_its_verified_rows(
    client_a: ApiClient, control: TestClient, http: TestClient, app: WxPartnerApp, world: World
) -> None:
    verified = [client_a.get("/v3/certificates", check=False).headers["Request-ID"] for _ in range(3)]
    for _ in range(4 * KEEP):  # an outsider: A's mchid, a key that is not A's
        forged = client_a.get("/v3/certificates", private_key=world.other_key, check=False)
        assert forged.status_code == 401, forged.text
        assert forged.json()["code"] == "SIGN_ERROR"
        writer(app.state).flush()  # a steady flood: written as it comes (the background task's flushes)
    rows = _journal(control, mchid=SP_A)
    ids = [r["request_id"] for r in rows]
    assert set(verified) <= set(ids), "a flood of forged requests rotated A's verified rows out"
    for r in rows:
        if r["request_id"] in verified:
            assert r["mchid_verified"] is True, r
        else:
            assert r["mchid_verified"] is False, r
    refused = [r for r in rows if r["verification"] == "refused" and r["operation"] != SKIPPED_OPERATION]
    assert len(refused) == BURST  # the first ones are shown, for the operator to explain
    notes = [r for r in rows if r["operation"] == SKIPPED_OPERATION]
    assert sum(int(str(r["message"]).split()[0]) for r in notes) == 4 * KEEP - BURST
    assert all(r["mchid"] == SP_A and f"{SP_A}: " in str(r["message"]) for r in notes), notes
    assert writer(app.state).unverified_skipped == 4 * KEEP - BURST

    # one entry, and the dashboard's list and entry pages, mark the claim too
    one = control.get(f"/sandbox/journal/{refused[0]['request_id']}").json()
    assert one["mchid_verified"] is False and one["mchid"] == SP_A
    assert control.get(f"/sandbox/journal/{verified[0]}").json()["mchid_verified"] is True
    login = http.post("/dashboard/login", data={"token": SANDBOX_TOKEN}, follow_redirects=False)
    assert login.status_code == 303, login.text
    page = http.get("/dashboard/journal", params={"mchid": SP_A})
    assert page.status_code == 200
    assert page.text.count('class="badge warn claimed"') == len(rows) - len(verified)
    entry = http.get(f"/dashboard/journal/{refused[0]['request_id']}")
    assert 'class="badge warn claimed"' in entry.text
    assert "claimed" not in http.get(f"/dashboard/journal/{verified[0]}").text


def test_unrouted_requests_claiming_a_merchant_are_bounded_too(
    client_a: ApiClient, control: TestClient, app: WxPartnerApp
) -> None:
    kept = client_a.get("/v3/certificates", check=False).headers["Request-ID"]
    for i in range(4 * KEEP):
        assert client_a.get(f"/v3/no-such-thing/{i}", check=False).status_code == 404
        writer(app.state).flush()
    rows = _journal(control, mchid=SP_A)
    assert kept in [r["request_id"] for r in rows]
    assert [r["mchid_verified"] for r in rows if r["request_id"] != kept] == [False] * (len(rows) - 1)


@pytest.mark.parametrize(
    ("extra", "refusal"),
    [
        (
            {"journal_unverified_rate": -1},
            "journal_unverified_rate'] must be rows a second, 0 or more, got -1",
        ),
        (
            {"journal_unverified_rate": "5"},
            "journal_unverified_rate'] must be rows a second, 0 or more, got '5'",
        ),
        ({"journal_unverified_rate": float("nan")}, "journal_unverified_rate'] must be rows a second"),
        (
            {"journal_unverified_burst": 0},
            "journal_unverified_burst'] must be a whole number of rows, 1 or more",
        ),
        ({"journal_unverified_burst": True}, "journal_unverified_burst'] must be a whole number of rows"),
    ],
)
def test_journal_bucket_settings_the_server_would_not_take_stop_the_start_up(
    settings: Settings, extra: dict[str, object], refusal: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(refusal)):
        create_app(dataclasses.replace(settings, extra={**settings.extra, **extra}))


def test_a_verified_request_cut_off_by_a_stop_is_journaled_as_verified(
    app: WxPartnerApp, control: TestClient, world: World
) -> None:
    """The answer to a request the server stopped before answering is journaled without the handler's
    context; its signature was verified, so its row names the verified caller (and is not an
    unverified claim, nor counted against the bucket)."""
    signed = sign_request(world.merchants[SP_A], "GET", "/v3/certificates")
    req = RawRequest("GET", "/v3/certificates", "", {k.lower(): v for k, v in signed.headers.items()}, b"")
    with app.state.db.read() as conn:
        merchant = registry.get_merchant(conn, SP_A)
    assert merchant is not None
    req.caller = Caller(merchant, world.merchants[SP_A].serial_no, None)
    for _ in range(BURST + 2):  # past the bucket: each one is still journaled
        resp = app.pipeline.cut_off(req, time.perf_counter())
        assert resp.status == 500
    rows = [r for r in _journal(control) if r["request_id"] == _request_id(resp)]
    assert [(r["mchid"], r["verification"], r["mchid_verified"]) for r in rows] == [(SP_A, "ok", True)]
    assert writer(app.state).unverified_skipped == 0


def _request_id(resp: RawResponse) -> str:
    return next(v for k, v in resp.headers if k == "Request-ID")


def test_the_background_flush_writes_the_note_of_requests_left_out(
    client_a: ApiClient, app: WxPartnerApp, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nobody reads the journal: the background task alone writes the note (on SQLite it runs on the
    event loop, a step at a time, and counted no step for a note with no rows buffered)."""
    monkeypatch.setattr(journal, "SKIPPED_NOTE_INTERVAL", 0.0)
    for _ in range(BURST):
        client_a.get("/v3/certificates", private_key=world.other_key, check=False)
    writer(app.state).flush()  # written: nothing is buffered but what comes next
    for _ in range(2):  # left out: only the note is due
        client_a.get("/v3/certificates", private_key=world.other_key, check=False)
    deadline = time.monotonic() + 30
    notes: list[dict[str, object]] = []
    while not notes and time.monotonic() < deadline:
        with app.state.db.read() as conn:
            rows = ops_repo.list_journal(conn, ops_repo.JournalFilter(operation=SKIPPED_OPERATION))
        notes = [r for r in rows if str(r["message"]).startswith("2 unverified requests")]
        if not notes:
            time.sleep(0.05)  # the background task flushes every 0.25 s; the condition is the note
    assert notes, "the background flush never wrote the note"


def test_a_claimed_mchid_with_control_characters_is_journaled_printable(
    http: TestClient, control: TestClient
) -> None:
    """A header value may carry bytes 0x80-0xFF (HTTP's obs-text), which decode to C1 control
    characters: 0x9B is CSI, which a terminal printing ``wxpartner journal`` would act on."""
    auth = b'WECHATPAY2-SHA256-RSA2048 mchid="12\x9b31m00",nonce_str="n",timestamp="1",serial_no="S",signature="x"'
    resp = http.get(
        "/v3/certificates",
        headers={"Authorization": auth, "Accept": "application/json", "User-Agent": "t/1"},  # type: ignore[dict-item]
    )
    assert resp.status_code == 401, resp.text
    row = control.get(f"/sandbox/journal/{resp.headers['Request-ID']}").json()
    assert row["mchid"].isprintable() and "\ufffd31m00" in row["mchid"], row["mchid"]
    assert row["mchid_verified"] is False
