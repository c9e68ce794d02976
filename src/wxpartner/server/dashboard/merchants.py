"""Merchants & keys page: every merchant with its API certificates and children, and WeChat Pay's
platform keys. APIv3 keys and private keys are never shown."""

from __future__ import annotations

from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response

from ...domain.merchants import Merchant, shown_url
from ...store import registry
from ...store.registry import PlatformKeyRow
from .layout import badge, card, esc, fmt_ts, page, table
from .routing import route


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

    def read() -> tuple[
        list[Merchant],
        dict[str, list[dict[str, Any]]],
        dict[str, list[tuple[str, str]]],
        list[PlatformKeyRow],
    ]:
        with st.db.read() as conn:
            ms = registry.list_merchants(conn)
            certs = {m.mchid: registry.list_certificates(conn, m.mchid) for m in ms}
            kids = {m.mchid: registry.children(conn, m.mchid) for m in ms}
            keys = registry.list_platform_keys(conn)
        return ms, certs, kids, keys

    ms, certs, kids, keys = await anyio.to_thread.run_sync(read)
    merchants_html = table(
        ("mchid", "name", "role", "key mode", "APIv3 key", "API certificates", "children", "notify_url"),
        [_merchant_row(m, certs[m.mchid], kids[m.mchid]) for m in ms],
        empty="No merchants registered.",
    )
    body = card("Merchants (APIv3 keys are never shown)", merchants_html) + card(
        "WeChat Pay platform keys",
        table(("key id", "kind", "for", "valid", "state"), [_platform_key_row(k) for k in keys]),
    )
    return page("Merchants & keys", body, active="merchants")
