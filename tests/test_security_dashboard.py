"""Stored text that merchants, employees, receivers or any client control is shown by the dashboard and
the simulated pages as text, never as markup: a crawl of every dashboard page after each kind of input
carried a tag-breaking payload finds no unescaped payload and no ``javascript:`` link.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urljoin, urlsplit

from starlette.testclient import TestClient

from apply4subject_support import act_ok, set_roles, submit_ok
from conftest import SANDBOX_TOKEN
from support import SP_A, ApiClient, World, sign_request
from webizpay_support import authorize, issue
from wxpartner.server.app import WxPartnerApp


def payload(name: str) -> str:
    """One per field, so a failure says which field got through: it closes an attribute, opens a tag."""
    return f"\"'><xss-{name}>"


_TAG = re.compile(r"<xss-([a-z_]+)>", re.I)
_HREF = re.compile(r"""(?:href|src|action)\s*=\s*["']?\s*javascript:""", re.I)


def _login(http: TestClient) -> None:
    resp = http.post("/dashboard/login", data={"token": SANDBOX_TOKEN}, follow_redirects=False)
    assert resp.status_code == 303, resp.text


def _crawl(http: TestClient, start: list[str], limit: int = 400) -> dict[str, str]:
    """Every dashboard page reachable by GET links from ``start`` (one page per route and id)."""
    seen: dict[str, str] = {}
    queue = list(start)
    while queue and len(seen) < limit:
        url = queue.pop(0)
        if url in seen:
            continue
        resp = http.get(url, headers={"Authorization": ""})
        assert resp.status_code < 500, f"{url}: {resp.status_code} {resp.text[:300]}"
        seen[url] = resp.text
        for href in re.findall(r'href="([^"#]+)"', resp.text):
            target = urljoin(url, href.replace("&amp;", "&"))
            parts = urlsplit(target)
            if parts.path.startswith("/dashboard") and parts.path not in ("/dashboard/logout",):
                # one visit per path and its first 2 query variants keeps the crawl small
                path_variants = [u for u in seen if urlsplit(u).path == parts.path]
                if len(path_variants) < 2 and target not in queue:
                    queue.append(parts.path + (f"?{parts.query}" if parts.query else ""))
    return seen


def test_stored_text_is_never_markup(
    app: WxPartnerApp,
    http: TestClient,
    world: World,
    client_a: ApiClient,
    control: TestClient,
) -> None:
    set_roles(app, world)
    # A merchant's notify URL (printable, no spaces: the payload fits in the query).
    url = "http://127.0.0.1:9/notify?x=" + payload("notify_url").replace(" ", "")
    resp = control.put(f"/sandbox/merchants/{SP_A}/notify-url", json={"notify_url": url})
    assert resp.status_code == 200, resp.text
    # A merchant's name (a scenario adds the merchant).
    loaded = control.post(
        "/sandbox/scenario",
        content=json.dumps(
            {"merchants": [{"mchid": "1230000777", "name": payload("merchant_name"), "role": "sub_merchant"}]}
        ),
    )
    assert loaded.status_code == 200, loaded.text
    # A quota card's name, a payment's goods and store names.
    employee = authorize(client_a, control, "xssUser01")
    card = issue(client_a, employee, "xssCard01", card_name=payload("card_name")[:32])
    paid = control.post(
        "/sandbox/webizpay/payments",
        json={
            "card_no": card["card_no"],
            "amount": 1,
            "goods_name": payload("goods_name"),
            "store": {"name": payload("store_name"), "full_name": payload("store_full_name")},
        },
    )
    assert paid.status_code == 200, paid.text
    # An applyment's rejection reason.
    applyment = submit_ok(client_a, "xssBiz0001")
    act_ok(control, applyment, "reject", reject_param="x", reject_reason=payload("reject_reason"))
    # A refused request's User-Agent, path and query (the journal shows them).
    signed = sign_request(world.merchants[SP_A], "GET", "/v3/webizpay/avail-mch-ranges?sp_mchid=1")
    headers = {
        **signed.headers,
        "User-Agent": payload("user_agent"),
        "Authorization": signed.headers["Authorization"] + "x",
    }
    http.get("/v3/webizpay/avail-mch-ranges?q=" + payload("query"), headers=headers)
    http.get("/v3/" + payload("path"), headers=headers)
    # A signature mismatch over a body: the journal's explanation shows the string the server verified.
    wrong = sign_request(world.merchants[SP_A], "POST", "/v3/webizpay/avail-mch-ranges", b"{}")
    body = json.dumps({"sp_mchid": SP_A, "x": payload("body")}, ensure_ascii=False).encode()
    assert http.post("/v3/webizpay/avail-mch-ranges", content=body, headers=wrong.headers).status_code == 401
    control.get("/sandbox/journal")  # flushes the journal

    del http.headers["Authorization"]
    _login(http)
    crawled = _crawl(http, ["/dashboard"])
    assert len(crawled) > 10, sorted(crawled)
    found = {f"{url}: <xss-{m}>" for url, text in crawled.items() for m in _TAG.findall(text)}
    found |= {f"{url}: javascript: link" for url, text in crawled.items() if _HREF.search(text)}
    assert not found, "\n".join(sorted(found))
    # The payloads did reach the pages, escaped (else the crawl proves nothing).
    everything = "\n".join(crawled.values())
    for name in (
        "merchant_name",
        "card_name",
        "goods_name",
        "store_name",
        "reject_reason",
        "user_agent",
        "path",
    ):
        assert f"&lt;xss-{name}" in everything or f"%3Cxss-{name}" in everything, name
