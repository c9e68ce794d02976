"""Quota cards page (webizpay): every card with its spends nested under it."""

from __future__ import annotations

from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response

from ...domain.webizpay.quota_cards import answered_end_time
from ...store import dashboard_reads as reads
from .layout import badge, card, esc, fen, fmt_ts, page, table
from .listing import (
    CARD_CURSOR,
    TONE,
    after_of,
    filter_form,
    mchid_of,
    nothing_found,
    offset_of,
    pager,
    settled,
    sort_note,
)
from .routing import route


def _spends(items: list[dict[str, Any]]) -> str:
    if not items:
        return '<span class="muted">no spend yet</span>'
    rows = [
        [
            f'<code class="transaction-id">{esc(p["transaction_id"])}</code>',
            esc(fen(p["amount"])),
            esc(fen(p["refunded_amount"])) + (f" ({p['refunds']})" if p["refunds"] else ""),
            esc(p["goods_name"]),
            esc(p["receive_mch_name"]),
            esc(fmt_ts(p["paid_at"])),
        ]
        for p in items
    ]
    return table(("transaction_id", "amount", "refunded", "goods", "store", "paid (UTC)"), rows)


@route("/cards")
async def cards(request: Request) -> Response:
    st = request.app.state.wx
    mchid, offset, after = mchid_of(request), offset_of(request), after_of(request, CARD_CURSOR)
    employee_id = request.query_params.get("employee_id") or None

    await settled(st)

    def read() -> tuple[reads.Slice, dict[str, list[dict[str, Any]]]]:
        with st.db.read() as conn:
            return reads.cards(conn, mchid, employee_id, offset, after)

    found, spends = await anyio.to_thread.run_sync(read)
    headers = ("card", "name", "employee", "rules", "amount", "remaining", "state", "valid until")
    groups = []
    for c in found.rows:
        cells = [
            f'<code class="card-no">{esc(c["card_no"])}</code><br><span class=muted>{esc(c["out_card_no"])}</span>',
            esc(c["card_name"])
            + (f"<br><span class=muted>{esc(c['card_remark'])}</span>" if c["card_remark"] else ""),
            f"<code>{esc(c['employee_id'])}</code><br>"
            f"<span class=muted>{esc(c['sp_mchid'])} → {esc(c['sub_mchid'])}</span>",
            f"{esc(c['card_rule'])} / {esc(c['refund_rule'])}",
            esc(fen(c["amount"])),
            f'<b class="remain">{esc(fen(c["remain_amount"]))}</b>',
            badge(c["state"], TONE.get(c["state"], "mute"))
            + (f"<br><span class=muted>{esc(c['reason'])}</span>" if c["reason"] else ""),
            esc(answered_end_time(c["end_text"])),
        ]
        # One <tbody> per card: the card's row, then its spends in a nested row.
        groups.append(
            '<tbody class="card-group"><tr>'
            + "".join(f"<td>{cell}</td>" for cell in cells)
            + f'</tr><tr class="spends"><td></td><td colspan="{len(headers) - 1}">'
            + _spends(spends.get(c["card_no"], []))
            + "</td></tr></tbody>"
        )
    listing = (
        "<table><thead><tr>"
        + "".join(f"<th>{esc(h)}</th>" for h in headers)
        + "</tr></thead>"
        + "".join(groups)
        + "</table>"
        if groups
        else nothing_found(request, "No quota card issued yet.")
    )
    extra = (
        f'<div><label for="f-employee">employee_id</label><input id="f-employee" name="employee_id" '
        f'value="{esc(employee_id or "")}"></div>'
    )
    body = (
        filter_form(request, "/dashboard/cards", extra)
        + card("Quota cards and their spends, " + sort_note(found, "newest first", "by card number"), listing)
        + pager(request, found)
    )
    return page("Quota cards & spends", body, active="cards")
