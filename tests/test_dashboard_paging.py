"""The dashboard's long lists page by cursor (``?after=``): "Older →" and "← Newer" links that cost the
same at any depth, keep the filters and can be shared. Pages were ``?offset=``, capped at 100,000 rows
(deeper rows could not be reached) and walking every row before the page. Costs are counted, not
timed (read_cost.py)."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from conftest import SANDBOX_TOKEN
from read_cost import read_cost
from support import SP_A, SP_B, SUB_B, statements_run
from test_big_store_reads import BIG, SMALL, _applyments, _cards, _notifications, _recharge_employees
from wxpartner.domain import apply4subject as d
from wxpartner.server.app import WxPartnerApp
from wxpartner.server.cursors import encode
from wxpartner.server.dashboard import callbacks
from wxpartner.store import dashboard_reads as reads


def _login(http: TestClient) -> None:
    assert http.post("/dashboard/login", data={"token": SANDBOX_TOKEN}).status_code == 200


def _link(page: str, cls: str) -> str | None:
    found = re.search(rf'<a class="{cls}"[^>]* href="([^"]+)"', page)
    return html.unescape(found.group(1)) if found else None


def _ids(page: str, pattern: str) -> list[str]:
    return re.findall(pattern, page)


def _walk(http: TestClient, url: str, pattern: str) -> list[list[str]]:
    """Every page, by "Older →" from ``url``; then back by "← Newer", each page as it was."""
    pages, texts = [], []
    next_url: str | None = url
    while next_url is not None:
        resp = http.get(next_url)
        assert resp.status_code == 200, resp.text
        texts.append(resp.text)
        pages.append(_ids(resp.text, pattern))
        next_url = _link(resp.text, "page-older")
        assert len(pages) < 100
    for i in range(len(texts) - 1, 0, -1):
        newer = _link(texts[i], "page-newer")
        assert newer is not None, i
        assert _ids(http.get(newer).text, pattern) == pages[i - 1], i
    assert _link(texts[0], "page-newer") is None
    return pages


LISTS = {
    "recharge": ("/dashboard/recharge", r"<code>(o\d+)</code>", reads.PAGE),
    "cards": ("/dashboard/cards", r'<code class="card-no">(\d+)</code>', reads.PAGE),
    "applyments": ("/dashboard/applyments", r'class="mono applyment-id"[^>]*>(\d+)<', reads.PAGE),
    "callbacks": ("/dashboard/callbacks", r'class="mono notification-id"[^>]*>(n-\d+-\d+)<', callbacks.PAGE),
}


def _fill(app: WxPartnerApp, name: str, count: int) -> None:
    if name == "recharge":
        _recharge_employees(app, 0, count)
    elif name == "cards":
        _cards(app, SP_B, SUB_B, 0, count)
    elif name == "applyments":
        _applyments(app, SP_B, 0, count, d.AUDIT)
    else:
        _notifications(app, SP_B, 0, count)


@pytest.mark.parametrize("by_key", [False, True], ids=["newest first", "by key"])
@pytest.mark.parametrize("name", sorted(LISTS))
def test_older_and_newer_walk_every_row_once_and_back(
    app: WxPartnerApp, http: TestClient, name: str, by_key: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both orders of a family page (newest first while at most SORT_CAP rows match, by key beyond:
    made small here), and the pages the callbacks and applyments have."""
    if by_key:
        monkeypatch.setattr(reads, "SORT_CAP", 50)
    path, pattern, size = LISTS[name]
    count = 2 * size + 7
    _fill(app, name, count)
    _login(http)
    pages = _walk(http, path, pattern)
    assert [len(p) for p in pages] == [size, size, 7]
    walked = [i for p in pages for i in p]
    assert len(set(walked)) == count
    deep = http.get(path, params={"after": "x"})
    assert deep.status_code == 400 and "after must be a next_after value" in deep.text


def test_the_links_keep_the_filters_and_not_the_message(app: WxPartnerApp, http: TestClient) -> None:
    _recharge_employees(app, 0, 2 * reads.PAGE + 30)
    _login(http)
    sub = "1900000001"  # three employees: one page
    first = http.get("/dashboard/recharge", params={"mchid": SP_A, "msg": "hello", "sig": "x"}).text
    older = _link(first, "page-older")
    assert older is not None and "mchid=" + SP_A in older and "msg=" not in older and "sig=" not in older
    second = http.get(older).text
    assert "« Newest" not in second and _link(second, "page-newer") == f"/dashboard/recharge?mchid={SP_A}"
    third = http.get(_link(second, "page-older") or "").text
    assert _link(third, "page-newest") == f"/dashboard/recharge?mchid={SP_A}"
    only = http.get("/dashboard/recharge", params={"mchid": sub}).text
    assert _link(only, "page-older") is None and _link(only, "page-newer") is None
    assert len(_ids(only, r"<code>(o\d+)</code>")) == 3


def test_a_cursor_of_the_other_order_starts_the_list_again(
    app: WxPartnerApp, http: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A link made while the list was sorted by time, opened once more rows match than SORT_CAP (or
    the other way round): its first page, said so, never a 400 or a page of another order's rows."""
    _recharge_employees(app, 0, 120)
    _login(http)
    older = _link(http.get("/dashboard/recharge").text, "page-older")
    assert older is not None
    monkeypatch.setattr(reads, "SORT_CAP", 50)
    again = http.get(older)
    assert again.status_code == 200 and 'id="page-restarted"' in again.text
    assert _ids(again.text, r"<code>(o\d+)</code>")[:1] == ["o000000000"]  # the first page


@pytest.mark.parametrize(
    "query",
    [
        {"after": "%%%"},
        {"after": encode(["t", "not a time", "x", "y", "z"])},
        {"after": encode(["k", "a", "b", "c"]), "offset": "100"},
    ],
)
def test_a_bad_cursor_is_a_400_page(http: TestClient, query: dict[str, str]) -> None:
    _login(http)
    for path in ("/dashboard/recharge", "/dashboard/employees", "/dashboard/callbacks"):
        resp = http.get(path, params=query)
        assert resp.status_code == 400 and 'class="flash bad"' in resp.text, (path, resp.text[-300:])


def _deep_cost(
    app: WxPartnerApp, fill: Callable[[int, int], None], page: Callable[[], Any], table: str
) -> None:
    fill(0, SMALL)
    small = read_cost(app.state.db, page, table, marker="LIMIT")
    fill(SMALL, BIG)
    big = read_cost(app.state.db, page, table, marker="LIMIT")
    assert big <= 1.5 * small + 100, (table, small, big)


def test_a_deep_page_costs_what_the_first_does(app: WxPartnerApp) -> None:
    """A page near the end of each big list (by key: more than SORT_CAP rows), with the read that finds
    the way back: an index range, where ``offset`` walked every row before the page."""

    def recharge() -> Any:
        with app.state.db.read() as conn:
            first = reads.recharge(conn, None, 0)[0]
            deep = reads.recharge(conn, None, 0, ["k", SP_A, "19" + "9" * 8, "o"])[0]  # past the last
            assert not first.by_time and first.next_after and deep.newer and not deep.rows
            return deep

    def cards() -> Any:
        with app.state.db.read() as conn:
            return reads.cards(conn, SUB_B, None, 0, ["k", f"{SUB_B}999999990"])[0]

    def applyments() -> Any:
        with app.state.db.read() as conn:
            return reads.applyments(conn, SP_B, None, 0, [20_000_000_000_010])

    _deep_cost(app, lambda s, n: _recharge_employees(app, s, n), recharge, "recharge_employees")
    _deep_cost(app, lambda s, n: _cards(app, SP_B, SUB_B, s, n), cards, "webizpay_cards")
    _deep_cost(
        app, lambda s, n: _applyments(app, SP_B, s, n, d.AUDIT), applyments, "apply4subject_applyments"
    )


def test_the_callbacks_way_back_costs_the_same_at_any_depth(app: WxPartnerApp) -> None:
    def newer() -> Any:
        with app.state.db.read() as conn:
            return reads.newer_notifications(
                conn, SP_B, None, [1_747_280_010.0, "n"], None, 0, callbacks.PAGE
            )

    _deep_cost(app, lambda s, n: _notifications(app, SP_B, s, n), newer, "callback_notifications")
    # the page starting at T0 + 10 is near the end (oldest): the newer one starts after T0 + 61
    assert newer() == (True, [1_747_280_061.0, f"n-{SP_B}-61"])


def test_a_filter_nothing_matches_says_so_and_an_unknown_state_is_a_400(
    app: WxPartnerApp, http: TestClient
) -> None:
    """Filtered to nothing, each page said "No applyment submitted yet." (or "No callbacks yet.", ...)
    though there were some; ``?state=`` of no state listed every callback (the filter dropped) or no
    applyment, each as a 200 page."""
    _applyments(app, SP_B, 0, 3, d.AUDIT)
    _notifications(app, SP_B, 0, 3)
    _recharge_employees(app, 0, 3)
    _cards(app, SP_B, SUB_B, 0, 3)
    _login(http)
    for path, empty in (
        ("/dashboard/applyments", "No applyment submitted yet."),
        ("/dashboard/callbacks", "No callbacks yet."),
        ("/dashboard/recharge", "No recharge employee yet."),
        ("/dashboard/cards", "No quota card issued yet."),
        ("/dashboard/employees", "No employee has authorized yet."),
    ):
        filtered = http.get(path, params={"mchid": "1999999999"}).text
        if path != "/dashboard/employees":  # the one list with no row here: its empty state is true
            assert empty not in filtered, path
            assert 'class="muted empty-filtered"' in filtered and "1999999999" in filtered, path
        assert empty in http.get(path).text or path != "/dashboard/employees"
    for path in ("/dashboard/applyments", "/dashboard/callbacks"):
        resp = http.get(path, params={"state": "BOGUS"})
        assert resp.status_code == 400 and "state must be one of" in resp.text, path
        assert 'id="f-state"' in resp.text  # the filters, to correct


def _merchants(app: WxPartnerApp, count: int) -> list[str]:
    from wxpartner.store.schema import merchant_certificates, merchant_relations, merchants

    ids = [f"17{i:08d}" for i in range(count)]
    with app.state.db.write() as conn:
        conn.execute(
            merchants.insert(),
            [
                {
                    "mchid": m,
                    "name": f"Load {m}",
                    "role": "sub_merchant",
                    "key_mode": "public_key",
                    "created_at": 0,
                }
                for m in ids
            ],
        )
        conn.execute(
            merchant_certificates.insert(),
            [{"serial_no": f"SER{m}", "mchid": m, "public_key_pem": "x", "created_at": 0} for m in ids],
        )
        conn.execute(
            merchant_relations.insert(),
            [
                {"parent_mchid": m, "child_mchid": SUB_B, "kind": "sub_merchant", "created_at": 0}
                for m in ids[::2]
            ],
        )
    return ids


def test_many_merchants_are_read_a_page_at_a_time_in_a_few_queries(
    app: WxPartnerApp, http: TestClient, control: TestClient
) -> None:
    """The merchants page and GET /sandbox/merchants read each merchant's certificates and children in
    a query per merchant, and the page showed them all: 40 s for 20,000 merchants on SQLite. Both read
    them for the whole page in one query each; the page shows 100 by mchid (Next →, ?mchid= finds by
    the start), the control API all or ``?limit=`` with ``next_after``."""
    ids = _merchants(app, 250)

    def merchant_reads(action: Callable[[], Any]) -> list[str]:
        """The statements reading merchant tables while ``action`` runs (in any thread: the app's)."""
        with statements_run(app.state.db) as seen:
            action()
        return [s for s in seen if "merchant" in s and s.lstrip().upper().startswith("SELECT")]

    _login(http)
    pages = _walk_merchants(http)
    walked = [m for p in pages for m in p if m.startswith("17")]
    assert walked == ids and len(pages) == 3
    statements = merchant_reads(lambda: http.get("/dashboard/merchants"))
    assert 1 <= len(statements) <= 4, statements
    found = http.get("/dashboard/merchants", params={"mchid": "170000012"}).text
    assert re.findall(r'merchant-id">(\d+)<', found) == [f"170000012{i}" for i in range(10)]
    assert (
        "SER1700000120" in found
        and 'class="muted empty-filtered"' in http.get("/dashboard/merchants", params={"mchid": "18"}).text
    )
    everything = merchant_reads(lambda: control.get("/sandbox/merchants"))
    assert 1 <= len(everything) <= 4, everything
    listed = control.get("/sandbox/merchants").json()
    assert [m["mchid"] for m in listed["data"] if m["mchid"].startswith("17")] == ids
    assert listed["next_after"] is None
    first = {m["mchid"]: m for m in listed["data"]}["1700000000"]
    assert first["certificates"] == [{"serial_no": "SER1700000000", "revoked": False}]
    assert first["children"] == [{"mchid": SUB_B, "kind": "sub_merchant"}]
    paged, after = [], None
    while True:
        page = control.get(
            "/sandbox/merchants", params={"limit": 100, **({"after": after} if after else {})}
        ).json()
        paged += [m["mchid"] for m in page["data"]]
        after = page["next_after"]
        if after is None:
            break
    assert paged == [m["mchid"] for m in listed["data"]]
    for bad in ({"limit": "0"}, {"limit": "1001"}, {"after": "x"}):
        assert control.get("/sandbox/merchants", params=bad).json()["code"] == "PARAM_ERROR"
    # the overview's tile counts them (it read every merchant to count them)
    overview = [s for s in merchant_reads(lambda: http.get("/dashboard")) if "FROM merchants" in s]
    assert overview and all("count(" in s.lower() for s in overview), overview
    assert f'<div class="big">{len(listed["data"])}</div>' in http.get("/dashboard").text


def _walk_merchants(http: TestClient) -> list[list[str]]:
    pages, url = [], "/dashboard/merchants"
    while url:
        text = http.get(url).text
        pages.append(re.findall(r'merchant-id">(\d+)<', text))
        url = _link(text, "page-older")
    return pages


def test_a_notification_has_a_page_to_link_to(
    app: WxPartnerApp, http: TestClient, control: TestClient
) -> None:
    """A notification's id (from the control API, the CLI, a log) led nowhere on the dashboard: the list
    filters by merchant and state only, so the one notification had to be paged for. Its id links to
    its page now, with its attempts and Send now (which comes back to it)."""
    from urllib.parse import quote

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
        _login(http)
        listed = http.get("/dashboard/callbacks").text
        assert f'href="/dashboard/callbacks/{quote(nid, safe="")}"' in listed
        shown = http.get(f"/dashboard/callbacks/{nid}")
        assert (
            shown.status_code == 200
            and 'id="notification"' in shown.text
            and "WEBIZPAY.REVOKED" in shown.text
        )
        assert "no attempt yet" in shown.text or "waiting" in shown.text
        sent = http.post(f"/dashboard/callbacks/{nid}/redeliver", data={"back": "notification"})
        assert str(sent.url).split("?")[0].endswith(f"/dashboard/callbacks/{nid}")
        assert f"{nid}: attempt 1 answered 200, now delivered" in sent.text and "200" in sent.text
        missing = http.get("/dashboard/callbacks/no-such-id")
        assert missing.status_code == 404 and "no-such-id" in missing.text
    finally:
        rec.stop()
