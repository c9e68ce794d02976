"""Dashboard pages over real HTTP (in-process): login, merchants, journal explanations, faults, clock."""

from __future__ import annotations

import httpx
import pytest
from starlette.testclient import TestClient

from conftest import SANDBOX_TOKEN
from support import SP_A, SP_B, SUB_A, ApiClient, World
from wxpartner.protocol.times import parse_rfc3339
from wxpartner.server.app import WxPartnerApp, create_app
from wxpartner.server.dashboard import esc, render_page
from wxpartner.server.settings import Settings


def login(http: TestClient) -> None:
    resp = http.post("/dashboard/login", data={"token": SANDBOX_TOKEN}, follow_redirects=False)
    assert resp.status_code == 303, resp.text
    assert "wxpartner_dashboard" in resp.headers["set-cookie"]
    assert SANDBOX_TOKEN not in resp.headers["set-cookie"]
    assert "httponly" in resp.headers["set-cookie"].lower()


def test_pages_need_login(http: TestClient) -> None:
    resp = http.get("/dashboard/journal?failed=1", follow_redirects=False)
    assert resp.status_code == 303
    assert resp.headers["location"].startswith("/dashboard/login?next=")
    bad = http.post("/dashboard/login", data={"token": "wrong"})
    assert bad.status_code == 401 and "not the sandbox token" in bad.text
    assert http.get("/dashboard", follow_redirects=False).status_code == 303


def test_overview_and_merchants(http: TestClient) -> None:
    login(http)
    home = http.get("/dashboard")
    assert home.status_code == 200 and "Business clock" in home.text
    page = http.get("/dashboard/merchants").text
    assert SP_A in page and SP_B in page
    assert "PRIVATE KEY" not in page and "0123456789abcdef0123456789abcdef" not in page


def test_journal_explains_a_failed_signature(http: TestClient, world: World) -> None:
    client = ApiClient(http, world, SP_A)
    bad = client.get("/v3/certificates?x=1", private_key=world.other_key, check=False)
    assert bad.status_code == 401
    login(http)
    listing = http.get("/dashboard/journal", params={"failed": "1"}).text
    rid = bad.headers["Request-ID"]
    assert rid in listing and "refused" in listing
    detail = http.get(f"/dashboard/journal/{rid}").text
    assert "Signature explanation" in detail
    assert "GET⏎\n/v3/certificates?x=1⏎" in detail
    assert http.get("/dashboard/journal/NOPE").status_code == 404


def test_fault_form_applies_to_requests(http: TestClient, world: World) -> None:
    login(http)
    resp = http.post(
        "/dashboard/faults", data={"kind": "SYSTEM_ERROR", "count": "1", "operation": "", "probability": "1"}
    )
    assert resp.status_code == 200 and "Added SYSTEM_ERROR rule" in resp.text
    client = ApiClient(http, world, SP_B)
    assert client.get("/v3/certificates").status_code == 500
    assert client.get("/v3/certificates").status_code == 200
    bad = http.post("/dashboard/faults", data={"kind": "SYSTEM_ERROR", "count": "zero"})
    assert "count must be a whole number" in bad.text
    page = http.get("/dashboard/faults").text
    rule_id = page.split('action="/dashboard/faults/')[1].split("/delete")[0]
    assert "Deleted" in http.post(f"/dashboard/faults/{rule_id}/delete").text
    assert "No fault rules" in http.post("/dashboard/faults/clear").text


def test_a_form_post_from_another_origin_is_refused(http: TestClient, control: TestClient) -> None:
    """SameSite=Strict ignores ports: a page on localhost:3000 could post with the cookie of the
    dashboard on localhost:8080. Its Origin (or Referer) gives it away; nothing changes."""
    login(http)
    for header in (
        {"Origin": "http://testserver:3000"},
        {"Origin": "https://testserver"},
        {"Origin": "null"},
        {"Referer": "http://evil.example/page"},
    ):
        resp = http.post("/dashboard/clock", data={"action": "freeze"}, headers=header)
        assert resp.status_code == 403 and "another origin" in resp.text, (header, resp.text[:200])
        assert control.get("/sandbox/clock").json()["frozen"] is False
    own = {"Origin": "http://testserver", "Referer": "http://testserver/dashboard/clock"}
    resp = http.post("/dashboard/clock", data={"action": "freeze"}, headers=own)
    assert resp.status_code == 200 and control.get("/sandbox/clock").json()["frozen"] is True
    page = http.get("/dashboard/clock")
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]


def test_clock_controls(http: TestClient, control: TestClient) -> None:
    login(http)
    assert "Business time is now" in http.post("/dashboard/clock", data={"action": "freeze"}).text
    frozen = control.get("/sandbox/clock").json()
    assert frozen["frozen"] is True
    http.post("/dashboard/clock", data={"action": "advance", "advance": "2d"})
    assert control.get("/sandbox/clock").json()["now_ts"] == frozen["now_ts"] + 2 * 86400
    http.post("/dashboard/clock", data={"action": "set", "set": "2030-01-02T03:04:05+08:00"})
    assert control.get("/sandbox/clock").json()["now"].startswith("2030-01-02T03:04:05")
    assert "unknown action" in http.post("/dashboard/clock", data={"action": "x"}).text
    http.post("/dashboard/clock", data={"action": "reset"})
    assert control.get("/sandbox/clock").json()["frozen"] is False


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        # found by an audit: these were written, then every /v3 call and the clock pages answered 500
        ({"action": "advance", "advance": "1e15"}, "the clock must stay between 1970 and 9999"),
        ({"action": "advance", "advance": "inf"}, "not a finite duration"),
        ({"action": "advance", "advance": "nan"}, "not a finite duration"),
        # Python's "could not convert string to float" was flashed as it was
        (
            {"action": "advance", "advance": "3 days"},
            "&#x27;3 days&#x27; is not a duration: use seconds or 90s",
        ),
        ({"action": "advance", "advance": ""}, "empty duration"),
        ({"action": "set", "set": "9999-12-31T23:59:59-12:00"}, "the clock must stay between 1970 and 9999"),
        ({"action": "set", "set": "1969-12-31T23:59:59Z"}, "the clock must stay between 1970 and 9999"),
    ],
)
def test_clock_form_refuses_a_clock_out_of_range(
    http: TestClient, control: TestClient, world: World, fields: dict[str, str], fragment: str
) -> None:
    login(http)
    http.post("/dashboard/clock", data={"action": "freeze"})
    before = control.get("/sandbox/clock").json()
    resp = http.post("/dashboard/clock", data=fields)
    assert resp.status_code == 200 and fragment in resp.text and 'class="flash bad"' in resp.text
    assert control.get("/sandbox/clock").json() == before  # nothing written
    assert http.get("/dashboard/clock").status_code == 200
    w1 = ApiClient(http, world, SP_A).post(
        "/v3/webizpay/users/emp_clock_1/authorization-url",
        {"sp_mchid": SP_A, "sub_mchid": SUB_A, "application_type": "H5"},
    )
    assert w1.status_code == 200, w1.text


NINES = "9" * 30  # past every integer column


def test_journal_and_fault_forms_refuse_numbers_past_a_column(http: TestClient, control: TestClient) -> None:
    """Found by an audit: each was a database error (500)."""
    login(http)
    for query in ({"status": NINES}, {"before_id": NINES}):
        resp = http.get("/dashboard/journal", params=query)
        assert resp.status_code == 400 and 'class="flash bad"' in resp.text and "must be between" in resp.text
    assert http.get(f"/dashboard/journal/{NINES}").status_code == 404
    for count in (NINES, "1e30", "inf"):
        resp = http.post("/dashboard/faults", data={"kind": "SYSTEM_ERROR", "count": count})
        assert resp.status_code == 200 and 'class="flash bad"' in resp.text and "count must be" in resp.text
    assert control.get("/sandbox/faults").json()["data"] == []


@pytest.mark.parametrize(
    "url",
    [
        "/dashboard/cards?mchid=a%00b",
        "/dashboard/employees?mchid=a%00b",
        "/dashboard/callbacks?mchid=a%00b",
        "/dashboard/recharge?mchid=a%00b",
        "/dashboard/applyments?mchid=a%00b",
        "/dashboard/journal?mchid=a%00b",
        "/dashboard/journal/a%00b",
        "/dashboard/cards?offset=" + "9" * 5000,  # more digits than int() reads
        "/dashboard/callbacks?offset=%C2%B2",  # a digit to str.isdigit, not to int()
    ],
)
def test_unusable_query_parameters_get_a_400_page(http: TestClient, url: str) -> None:
    """Found by an audit: NUL was a 500 on PostgreSQL (no column can hold it), offsets a 500 anywhere."""
    login(http)
    resp = http.get(url)
    assert resp.status_code == 400 and "Bad request" in resp.text and 'class="flash bad"' in resp.text


def test_nul_in_a_form_is_a_400_page_even_before_login(http: TestClient) -> None:
    resp = http.post("/dashboard/login", data={"token": "a\x00b"})
    assert resp.status_code == 400 and "must not contain NUL" in resp.text
    login(http)
    resp = http.post("/dashboard/faults", data={"kind": "SYSTEM_ERROR", "note": "a\x00b"})
    assert resp.status_code == 400 and "must not contain NUL" in resp.text


def test_family_data_pages_are_tolerant(http: TestClient) -> None:
    login(http)
    index = http.get("/dashboard/data")
    assert index.status_code == 200
    assert http.get("/dashboard/data/merchants").status_code == 404  # foundation tables have own pages
    assert http.get("/dashboard/data/no_such_table").status_code == 404
    for href in index.text.split('href="/dashboard/data/')[1:]:
        name = href.split('"')[0]
        assert http.get(f"/dashboard/data/{name}").status_code == 200


def test_a_stored_time_no_date_holds_does_not_break_a_page(
    http: TestClient,
    control: TestClient,
    client_a: ApiClient,
    app: WxPartnerApp,
) -> None:
    """W3 took end times whose offset put them in year 10000 UTC (refused now); rows stored before
    must not turn the data page into a 500."""
    import sqlalchemy as sa

    from webizpay_support import authorize, issue
    from wxpartner.store.webizpay_tables import webizpay_cards

    far = parse_rfc3339("9999-12-31T23:59:59-23:59").timestamp()  # 10000-01-01T23:58:59Z
    card = issue(client_a, authorize(client_a, control, "employee123"), "dash_card_far")
    with app.state.db.write() as conn:
        conn.execute(
            sa.update(webizpay_cards).where(webizpay_cards.c.card_no == card["card_no"]).values(end_at=far)
        )
    login(http)
    page = http.get("/dashboard/data/webizpay_cards")
    assert page.status_code == 200
    assert f"{far} (epoch seconds)" in page.text


@pytest.mark.parametrize("ts", [1e12, -1e12, float("inf"), float("nan")])
def test_fmt_ts_shows_what_no_date_holds(ts: float) -> None:
    from wxpartner.server.dashboard.layout import fmt_ts

    assert fmt_ts(ts) == f"{ts} (epoch seconds)"
    assert fmt_ts(0.0) == "1970-01-01 00:00:00"


def test_render_page_escapes_and_shares_the_look() -> None:
    html = render_page("Confirm <it>", f"<p>{esc('<script>')}</p>", nav=False)
    assert "<title>Confirm &lt;it&gt; · wxpartner</title>" in html
    assert "&lt;script&gt;" in html and "<style>" in html and "/dashboard/logout" not in html


def test_family_data_grouping_and_masking() -> None:
    from wxpartner.store import dashboard_tables as data

    assert data.group_of("callback_attempts") == "Callbacks & delivery attempts"
    assert data.group_of("apply4subject_authorizations") == "Applyments (apply4subject)"
    assert data.group_of("recharge_employees") == "Recharge employees"
    assert data.group_of("webizpay_relations") == "Employees & authorizations"
    assert data.group_of("webizpay_cards") == "Quota cards & spends"
    assert data.group_of("something_else") == "Other"
    assert data.mask("confirm_token", "abcdefghijkl") == "••••kl (hidden)"
    assert data.mask("apiv3_key", "short") == "•••• (hidden)"
    assert data.mask("state", "ACTIVE") == "ACTIVE"
    assert data.mask("content", "x" * 500).endswith("… (500 chars)")


def test_callbacks_page_lists_notifications(http: TestClient, app) -> None:  # type: ignore[no-untyped-def]
    outbox = pytest.importorskip("wxpartner.store.outbox")
    import time

    with app.state.db.write() as conn:
        nid = outbox.enqueue(
            conn,
            mchid=SP_A,
            event_type="WEBIZPAY.AUTHORIZED",
            summary="员工授权成功",
            resource={"secret_looking": "do-not-show"},
            now=time.time(),
        )
    login(http)
    text = http.get("/dashboard/callbacks").text
    assert nid in text and "WEBIZPAY.AUTHORIZED" in text and "has no notify_url" in text
    assert "do-not-show" not in text
    assert nid not in http.get("/dashboard/callbacks", params={"mchid": SP_B}).text


def test_family_pages_show_employees_cards_spends_and_recharge(
    http: TestClient, control: TestClient, client_a: ApiClient
) -> None:
    from support import SECOND_A
    from webizpay_support import authorize, issue

    emp = authorize(client_a, control, "employee123")
    card = issue(client_a, emp, "dash_card_1")
    paid = control.post(
        "/sandbox/webizpay/payments", json={"card_no": card["card_no"], "amount": 1234, "goods_name": "午餐"}
    )
    assert paid.status_code == 200, paid.text
    assert (
        control.post(
            "/sandbox/recharge-employees", json={"sub_mchid": SECOND_A, "employees": ["oDash1"]}
        ).status_code
        == 200
    )
    login(http)
    overview = http.get("/dashboard").text
    assert 'id="family-counts"' in overview and "quota cards" in overview
    employees = http.get("/dashboard/employees").text
    assert emp in employees and "employee123" in employees and "1 card(s)" in employees
    assert emp not in http.get("/dashboard/employees", params={"mchid": SP_B}).text
    cards = http.get("/dashboard/cards", params={"employee_id": emp}).text
    assert card["card_no"] in cards and paid.json()["transaction_id"] in cards
    assert "¥12.34" in cards and "¥87.66" in cards and "午餐" in cards  # the spend and what remains
    assert card["card_no"] not in http.get("/dashboard/cards", params={"employee_id": "nobody"}).text
    recharge = http.get("/dashboard/recharge").text
    assert "oDash1" in recharge and SECOND_A in recharge and "EFFECTIVE" in recharge
    assert http.get("/dashboard/cards", params={"offset": "100"}).status_code == 200


def test_the_callbacks_page_caps_its_offset_as_the_family_pages_do(
    app: WxPartnerApp, http: TestClient
) -> None:
    """The callbacks page read offsets up to 10,000,000 (≈ 0.1 s of index walk per 90,000), where every
    other page stops at MAX_OFFSET: an offset past it reads as MAX_OFFSET. Past the end, the way back
    is a cursor to the last page (the pages' links are cursors now: test_dashboard_paging.py)."""
    from test_big_store_reads import _notifications
    from wxpartner.server.dashboard import callbacks
    from wxpartner.server.dashboard.listing import MAX_OFFSET

    _notifications(app, SP_A, 0, callbacks.PAGE + 3)
    login(http)
    deep = http.get("/dashboard/callbacks", params={"offset": str(MAX_OFFSET * 50)})
    assert deep.status_code == 200 and "Older →" not in deep.text
    back = http.get(_link(deep.text, "page-newer")).text
    assert back.count('class="mono notification-id"') == callbacks.PAGE and f">n-{SP_A}-0</a>" in back


def _link(html: str, cls: str) -> str:
    """The href of the pager link of class ``cls``."""
    import html as h
    import re

    found = re.search(rf'<a class="{cls}"[^>]* href="([^"]+)"', html)
    assert found, f"no {cls} link"
    return h.unescape(found.group(1))


def test_family_pages_paginate(http: TestClient, control: TestClient) -> None:
    from support import SECOND_A
    from wxpartner.store import dashboard_reads as family_reads

    # DELETED rows (history): the limit of 3 employees in effect does not apply to those.
    openids = [
        {"sp_openid": f"oPage{i:03d}", **({"state": "DELETED"} if i > 1 else {})}
        for i in range(family_reads.PAGE + 5)
    ]
    assert (
        control.post(
            "/sandbox/recharge-employees", json={"sub_mchid": SECOND_A, "employees": openids}
        ).status_code
        == 200
    )
    login(http)
    first = http.get("/dashboard/recharge").text
    assert "Older →" in first and first.count("<code>oPage") == family_reads.PAGE
    second = http.get(_link(first, "page-older")).text
    assert second.count("<code>oPage") == 5 and "← Newer" in second and "Older →" not in second
    assert http.get(_link(second, "page-newer")).text == first


def test_applyment_page_shows_qr_and_drives_the_audit(
    http: TestClient,
    control: TestClient,
    app,
    world: World,  # type: ignore[no-untyped-def]
) -> None:
    from apply4subject_support import SUB_X, set_roles, submit_ok

    set_roles(app, world)
    applyment_id = submit_ok(ApiClient(http, world, SP_A), "dash_1")
    login(http)
    listing = http.get("/dashboard/applyments").text
    assert f"/dashboard/applyments/{applyment_id}" in listing and "dash_1" in listing
    assert "dash_1" not in http.get("/dashboard/applyments", params={"state": "APPLYMENT_STATE_PASSED"}).text
    detail = http.get(f"/dashboard/applyments/{applyment_id}").text
    assert "WAITTING_FOR_AUDIT" in detail and 'data-action="approve"' in detail
    assert "data:image/png" not in detail and "13800138000" not in detail
    moved = http.post(f"/dashboard/applyments/{applyment_id}/action", data={"action": "approve"})
    assert "now APPLYMENT_STATE_WAITTING_FOR_CONFIRM_CONTACT" in moved.text
    assert "data:image/png;base64," in moved.text and 'id="confirm-link"' in moved.text
    view = control.get(f"/sandbox/apply4subject/applyments/{applyment_id}").json()
    assert view["confirm_url"] in moved.text
    wrong = http.post(f"/dashboard/applyments/{applyment_id}/action", data={"action": "freeze"})
    assert "not possible" in wrong.text and 'class="flash bad"' in wrong.text
    no_reason = http.post(f"/dashboard/applyments/{applyment_id}/action", data={"action": "reject"})
    assert "reject needs reject_param" in no_reason.text
    assert SUB_X in moved.text and "AUTHORIZE_STATE_UNAUTHORIZED" in moved.text
    assert http.get("/dashboard/applyments/12345").status_code == 404
    assert http.get("/dashboard/applyments/abc").status_code == 404


def test_callbacks_page_filters_paginates_and_sends_now(
    http: TestClient,
    control: TestClient,
    app,  # type: ignore[no-untyped-def]
) -> None:
    from receiver import start_receiver
    from wxpartner.store import outbox

    rec = start_receiver()
    try:
        control.put(f"/sandbox/merchants/{SP_A}/notify-url", json={"notify_url": rec.url})
        now = control.get("/sandbox/clock").json()["now_ts"]
        with app.state.db.write() as conn:
            nid = outbox.enqueue(
                conn, mchid=SP_A, event_type="WEBIZPAY.REVOKED", summary="s", resource={}, now=now
            )
        login(http)
        assert nid in http.get("/dashboard/callbacks", params={"state": "pending"}).text
        sent = http.post(f"/dashboard/callbacks/{nid}/redeliver")
        assert f"{nid}: attempt 1 answered 200, now delivered" in sent.text
        assert len(rec.deliveries) == 1
        assert nid not in http.get("/dashboard/callbacks", params={"state": "pending"}).text
        assert nid in http.get("/dashboard/callbacks", params={"state": "delivered"}).text
        assert "No notification nope" in http.post("/dashboard/callbacks/nope/redeliver").text
    finally:
        rec.stop()


def test_end_user_pages_share_the_look_without_nav_or_login(http: TestClient, client_a: ApiClient) -> None:
    from webizpay_support import link_token, start_url

    http.cookies.clear()  # no dashboard login: the link token is the only credential
    token = link_token(start_url(client_a, "look_employee").json()["authorization_url"])
    for path in (
        f"/webizpay/authorize?token={token}",
        "/webizpay/pay?token=nope",
        "/apply4subject/confirm/x",
    ):
        resp = http.get(path, follow_redirects=False)
        assert resp.status_code in (200, 404), (path, resp.status_code)
        text = resp.text
        assert "<style>" in text and "--brand:#07c160" in text, path  # the dashboard's stylesheet
        assert 'lang="zh-CN"' in text and "class=narrow" in text, path
        assert "/dashboard" not in text and "Log out" not in text, path  # no admin navigation
    assert "look_employee" in http.get(f"/webizpay/authorize?token={token}").text


def test_big_tables_page_in_key_order(http: TestClient, control: TestClient, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Beyond SORT_CAP matching rows a page follows the primary key (index-backed), and says so."""
    from support import SECOND_A
    from wxpartner.store import dashboard_reads as family_reads

    monkeypatch.setattr(family_reads, "SORT_CAP", 3)
    monkeypatch.setattr(family_reads, "COUNT_CAP", 2)
    rows = [
        {
            "sp_openid": f"oKey{i}",
            "state": "DELETED" if i > 2 else "EFFECTIVE",
            "update_time": 1_700_000_000 + i,
        }
        for i in range(6)
    ]
    resp = control.post("/sandbox/recharge-employees", json={"sub_mchid": SECOND_A, "employees": rows})
    assert resp.status_code == 200, resp.text
    login(http)
    text = http.get("/dashboard/recharge").text
    assert "by merchant and openid (more than 3 match" in text
    assert text.index("oKey0") < text.index("oKey5")  # key order, not newest first
    assert ">2+<" in http.get("/dashboard").text  # the overview's bounded count (3 in effect)
    few = http.get("/dashboard/recharge", params={"mchid": "nobody"}).text
    assert "latest change first" in few


def test_pages_after_a_clock_move_show_what_the_api_answers(settings: Settings, world: World) -> None:
    """Found in the sandbox audit: a quota card past its end stayed ACTIVE on the dashboard (cards page,
    family data, no expiry callback on the overview or callbacks page) until the background sweep ran,
    2 s later, or never with the sweep off, while the API already answered DISABLED."""
    from webizpay_support import authorize, get_card, issue

    settings.extra["webizpay_sweep_seconds"] = 0  # the sweep off: only reads expire cards
    app = create_app(settings)
    try:
        with TestClient(app) as http:
            control = TestClient(app, headers={"Authorization": f"Bearer {SANDBOX_TOKEN}"})
            client = ApiClient(http, world, SP_A)
            emp = authorize(client, control, "employee_clock")
            made = issue(client, emp, "clock_card_1")
            assert control.post("/sandbox/clock", json={"advance": 400 * 86400}).status_code == 200
            login(http)
            cards = http.get("/dashboard/cards", params={"employee_id": emp}).text
            assert made["card_no"] in cards and "DISABLED" in cards and "有效期结束" in cards
            assert ">ACTIVE<" not in cards
            pending = http.get("/dashboard/callbacks", params={"state": "pending"}).text
            assert "WEBIZPAY.QUOTACARDEXPIRED" in pending
            assert get_card(client, emp, made["card_no"]).json()["card_state"] == "DISABLED"  # the API agrees
    finally:
        app.state.db.dispose()


def test_a_refused_form_flashes_the_field_and_issue(http: TestClient) -> None:
    """The flash after a refused form (or filter) says which field and why, from the refusal's detail;
    it said the message only. The field is escaped like the rest of the flash."""
    login(http)
    resp = http.post("/dashboard/faults", data={"kind": "SYSTEM_ERROR", "count": "often"})
    assert resp.status_code == 200 and 'class="flash bad"' in resp.text
    assert "count must be a whole number (field count: not an integer)" in resp.text
    resp = http.get("/dashboard/journal", params={"status": "abc"})
    assert 'class="flash bad"' in resp.text and "(field status: not an integer)" in resp.text
    resp = http.post("/dashboard/faults", data={"kind": "SYSTEM_ERROR", "<script>x": "1"})
    assert "(field &lt;script&gt;x: unknown field)" in resp.text and "<script>x" not in resp.text


def test_a_400_page_names_the_field_and_issue(http: TestClient) -> None:
    login(http)
    resp = http.get("/dashboard/journal", params={"mchid": "a\x00b"})
    assert resp.status_code == 400 and "(field mchid: contains NUL)" in resp.text


def test_only_the_servers_own_flash_is_shown(http: TestClient) -> None:
    """The flash travels in the redirect's query string; a page shows it only when this server wrote it
    (signed with a key from the sandbox token), so a link cannot make the dashboard say what its
    author likes."""
    login(http)
    made = http.post("/dashboard/faults", data={"kind": "SYSTEM_ERROR", "count": "1"}, follow_redirects=False)
    assert made.status_code == 303 and "sig=" in made.headers["location"]
    shown = http.get(made.headers["location"])
    assert 'class="flash"' in shown.text and "Added SYSTEM_ERROR rule" in shown.text
    lure = "Your token expired: enter it at evil.example"
    forged = http.get("/dashboard/faults", params={"msg": lure, "tone": "bad"})
    assert forged.status_code == 200 and lure not in forged.text and 'class="flash' not in forged.text
    # a real signature does not carry over to another text, nor to the same text in another tone
    query = dict(httpx.URL(made.headers["location"]).params)
    assert lure not in http.get("/dashboard/faults", params={**query, "msg": lure}).text
    assert 'class="flash bad"' not in http.get("/dashboard/faults", params={**query, "tone": "bad"}).text


def test_family_data_reads_a_line_of_each_long_value_not_the_value(app: WxPartnerApp) -> None:
    """A quarter's funding proof is 16 MB of CSV, and the page shows 200 rows: each value was read
    whole to show its first 160 characters (3 GB for 200 proofs). The database now hands over the
    line and the length: no value as big as one document is ever held while reading."""
    import tracemalloc

    import sqlalchemy as sa

    from wxpartner.store import dashboard_tables as data
    from wxpartner.store.webizpay_merchants_tables import webizpay_bill_files as files

    size = 4 * 1024 * 1024
    with app.state.db.write() as conn:
        for i in range(5):
            document = f"`proof {i}," + "x" * size
            conn.execute(
                sa.insert(files).values(
                    token=f"tok{i}", sp_mchid=SP_A, sub_mchid=SP_A, kind="PROOF", filename=f"p{i}.csv",
                    content=document, created_at=float(i), expires_at=float(i) + 300,
                )
            )  # fmt: skip
    tracemalloc.start()
    try:
        cols, rows, _order = data.read_table(app.state.db, "webizpay_bill_files")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    content = [row[cols.index("content")] for row in rows]
    assert content == [f"`proof {i}," + "x" * 151 + f"… ({size + 9} chars)" for i in reversed(range(5))]
    assert peak < size, f"{peak} bytes held while reading: a whole value was read"


def test_cards_page_shows_the_end_time_as_w4_answers_it(
    http: TestClient, control: TestClient, client_a: ApiClient
) -> None:
    """The card's end is shown as W3/W4 answer it (the instant in +08:00), not in the offset and
    spelling the merchant sent: the page and the API named one instant two ways."""
    from webizpay_support import authorize, get_card, issue

    emp = authorize(client_a, control, "employee456")
    card = issue(client_a, emp, "dash_end_1", effective_end_time="2099-12-31t15:59:59z")
    answered = get_card(client_a, emp, card["card_no"]).json()["effective_end_time"]
    assert answered == "2099-12-31T23:59:59+08:00"
    login(http)
    cards = http.get("/dashboard/cards", params={"employee_id": emp}).text
    assert answered in cards and "15:59:59z" not in cards
