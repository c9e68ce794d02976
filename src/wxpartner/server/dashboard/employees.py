"""Employees page (webizpay): enterprise-payment authorizations and the links waiting for consent."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import anyio
from starlette.requests import Request
from starlette.responses import Response

from ...store import dashboard_reads as reads
from ...store import sandbox
from .layout import badge, card, esc, fmt_ts, page, table
from .listing import (
    EMPLOYEE_CURSOR,
    TONE,
    after_of,
    filter_form,
    mchid_of,
    nothing_found,
    offset_of,
    pager,
    sort_note,
)
from .routing import route


def _cards(n: int) -> str:
    """The bounded count of an employee's cards (store.dashboard_reads.CARDS_COUNT_CAP)."""
    return f"{reads.CARDS_COUNT_CAP}+" if n > reads.CARDS_COUNT_CAP else str(n)


@route("/employees")
async def employees(request: Request) -> Response:
    st = request.app.state.wx
    mchid, offset, after = mchid_of(request), offset_of(request), after_of(request, EMPLOYEE_CURSOR)

    def read() -> tuple[reads.Slice, list[dict[str, Any]]]:
        with st.db.read() as conn:
            now = sandbox.read_clock(conn).now_ts()
            return reads.employees(conn, mchid, offset, after), reads.open_links(conn, mchid, now)

    found, links = await anyio.to_thread.run_sync(read)
    rows = [
        [
            f'<code class="employee-id">{esc(r["employee_id"])}</code>',
            esc(r["user_id"]),
            f"{esc(r['sp_mchid'])} → {esc(r['sub_mchid'])}",
            badge(r["state"], TONE.get(r["state"], "mute")),
            esc(fmt_ts(r["authorized_at"])),
            esc(fmt_ts(r["revoked_at"]))
            + (f" <span class=muted>{esc(r['reason'])}</span>" if r["reason"] else ""),
            f'<a href="/dashboard/cards?{esc(urlencode({"employee_id": r["employee_id"]}))}">{_cards(r["cards"])} card(s)</a>',
        ]
        for r in found.rows
    ]
    link_rows = [
        [
            esc(r["user_id"]),
            f"{esc(r['sp_mchid'])} → {esc(r['sub_mchid'])}",
            esc(fmt_ts(r["created_at"])),
            esc(fmt_ts(r["expires_at"])),
        ]
        for r in links
    ]
    body = (
        filter_form(request, "/dashboard/employees")
        + card(
            "Enterprise-payment authorizations (webizpay), "
            + sort_note(found, "newest first", "by employee_id"),
            table(
                (
                    "employee_id",
                    "user_id",
                    "service provider → enterprise",
                    "state",
                    "authorized (UTC)",
                    "revoked",
                    "quota cards",
                ),
                rows,
                empty_html=nothing_found(request, "No employee has authorized yet."),
            ),
        )
        + pager(request, found)
        + card(
            "Authorization links waiting for the employee's consent",
            table(
                ("user_id", "service provider → enterprise", "created", "expires"),
                link_rows,
                empty="No open authorization links.",
            ),
        )
    )
    return page("Employees & authorizations", body, active="employees")
