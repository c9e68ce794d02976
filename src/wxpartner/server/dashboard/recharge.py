"""Recharge employees page: employees per second-level merchant and the limits' counters."""

from __future__ import annotations

from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response

from ...store import dashboard_reads as reads
from .layout import badge, card, esc, fmt_ts, page, table
from .listing import (
    RECHARGE_CURSOR,
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


@route("/recharge")
async def recharge(request: Request) -> Response:
    st = request.app.state.wx
    mchid, offset, after = mchid_of(request), offset_of(request), after_of(request, RECHARGE_CURSOR)

    def read() -> tuple[reads.Slice, list[dict[str, Any]]]:
        with st.db.read() as conn:
            return reads.recharge(conn, mchid, offset, after)

    found, quotas = await anyio.to_thread.run_sync(read)
    rows = [
        [
            f"<code>{esc(r['sp_openid'])}</code>",
            esc(r["mchid"]),
            esc(r["sub_mchid"]),
            badge(r["state"], TONE.get(r["state"], "mute")),
            esc(fmt_ts(r["create_time"])),
            esc(fmt_ts(r["update_time"])),
        ]
        for r in found.rows
    ]
    quota_rows = [
        [esc(q["sub_mchid"]), esc(q["effective"]), esc(q["day"]), esc(q["day_count"])] for q in quotas
    ]
    body = (
        filter_form(request, "/dashboard/recharge")
        + card(
            "Recharge employees, " + sort_note(found, "latest change first", "by merchant and openid"),
            table(
                (
                    "sp_openid",
                    "platform merchant",
                    "second-level merchant",
                    "state",
                    "added (UTC)",
                    "changed (UTC)",
                ),
                rows,
                empty_html=nothing_found(request, "No recharge employee yet."),
            ),
        )
        + pager(request, found)
        + card(
            "Limits per second-level merchant",
            table(
                ("sub_mchid", "employees in effect", "day (China)", "configurations that day"),
                quota_rows,
                empty="No counters yet.",
            ),
        )
    )
    return page("Recharge employees", body, active="recharge")
