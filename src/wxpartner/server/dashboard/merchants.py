"""Merchants & keys page: the merchants, 100 a page by mchid (``?mchid=`` finds those starting with
it, ``?after=`` is the next page's cursor), with their API certificates and children, and WeChat Pay's
platform keys. APIv3 keys and private keys are never shown."""

from __future__ import annotations

from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response

from ...domain.merchants import Merchant, shown_url
from ...store import dashboard_reads as reads
from ...store import registry
from ...store.registry import PlatformKeyRow
from .layout import badge, card, esc, fmt_ts, page, table
from .listing import after_of, nothing_found, page_link
from .routing import route

PAGE = 100
CURSOR: dict[str, tuple[type, ...]] = {"": (str,)}


def _merchant_row(m: Merchant, certs: list[dict[str, Any]], kids: list[tuple[str, str]]) -> list[str]:
    cert_html = "<br>".join(
        f"<code>{esc(c['serial_no'])}</code>" + (" " + badge("revoked", "bad") if c["revoked"] else "")
        for c in certs
    )
    return [
        f'<span class="mono merchant-id">{esc(m.mchid)}</span>',
        esc(m.name),
        badge(m.role.value, "mute"),
        esc(m.key_mode.value),
        badge("set") if m.apiv3_key else badge("none", "mute"),
        cert_html or '<span class="muted">none</span>',
        ", ".join(f"{esc(ch)} <span class=muted>({esc(kind)})</span>" for ch, kind in kids),
        esc(shown_url(m.notify_url or "")),
    ]


def _platform_key_row(k: PlatformKeyRow) -> list[str]:
    return [
        f"<code>{esc(k.key_id)}</code>",
        esc(k.kind),
        esc(k.mchid or "all merchants"),
        esc(fmt_ts(k.not_before)) + " → " + esc(fmt_ts(k.not_after)),
        badge("retired", "mute") if k.retired else badge("active"),
    ]


@route("/merchants")
async def merchants(request: Request) -> Response:
    st = request.app.state.wx
    prefix = request.query_params.get("mchid") or None
    after = after_of(request, CURSOR)

    def read() -> tuple[reads.MerchantListing, list[PlatformKeyRow]]:
        with st.db.read() as conn:
            found = reads.merchants_page(conn, after=after[0] if after else None, limit=PAGE, prefix=prefix)
            return found, registry.list_platform_keys(conn)

    found, keys = await anyio.to_thread.run_sync(read)
    merchants_html = table(
        ("mchid", "name", "role", "key mode", "APIv3 key", "API certificates", "children", "notify_url"),
        [_merchant_row(m, found.certificates[m.mchid], found.children[m.mchid]) for m in found.merchants],
        empty_html=nothing_found(request, "No merchants registered."),
    )
    links = []
    if after is not None:
        links.append(f'<a class="page-newest" href="{esc(page_link(request, None))}">« First</a>')
    if found.more:
        last = found.merchants[-1].mchid
        links.append(f'<a class="page-older" rel="next" href="{esc(page_link(request, [last]))}">Next →</a>')
    finder = (
        '<form method="get" action="/dashboard/merchants" class="row card"><div><label for="f-mchid">'
        f'mchid starts with</label><input id="f-mchid" name="mchid" value="{esc(prefix or "")}"></div>'
        '<div><button type="submit">Find</button> <a href="/dashboard/merchants">clear</a></div></form>'
    )
    body = (
        finder
        + card(f"Merchants by mchid, {PAGE} a page (APIv3 keys are never shown)", merchants_html)
        + (f'<nav class="pager" aria-label="pages">{"".join(links)}</nav>' if links else "")
        + card(
            "WeChat Pay platform keys",
            table(("key id", "kind", "for", "valid", "state"), [_platform_key_row(k) for k in keys]),
        )
    )
    return page("Merchants & keys", body, active="merchants")
