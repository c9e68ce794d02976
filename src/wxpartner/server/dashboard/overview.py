"""The dashboard's front page: clock, merchants, active faults, family data counts, latest requests."""

from __future__ import annotations

from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response

from ...domain.clock import ClockState
from ...domain.faults import FaultRule
from ...store import dashboard_reads as family_reads
from ...store import ops_repo, sandbox
from ..control_ops import read_journal
from .clock import clock_html
from .journal import JOURNAL_HEADERS, journal_rows
from .layout import card, esc, page, table
from .listing import settled
from .routing import flash, route

# Where each family count leads (keys are dashboard_reads.counts' labels).
COUNT_LINKS = {
    "authorized employees": "/dashboard/employees",
    "quota cards": "/dashboard/cards",
    "spends": "/dashboard/cards",
    "recharge employees": "/dashboard/recharge",
    "applyments": "/dashboard/applyments",
    "callbacks pending": "/dashboard/callbacks?state=pending",
}


def _family_counts(counts: dict[str, int]) -> str:
    cap = family_reads.COUNT_CAP  # the store counts no further (bounded COUNTs)
    return card(
        "Family data",
        '<div class="row" id="family-counts">'
        + "".join(
            f'<div><div class="big">{n if n <= cap else f"{cap}+"}</div>'
            f'<a href="{COUNT_LINKS[label]}">{esc(label)}</a></div>'
            for label, n in counts.items()
        )
        + "</div>",
    )


@route("")
async def overview(request: Request) -> Response:
    st = request.app.state.wx
    await settled(st)

    def read() -> tuple[ClockState, int, list[FaultRule], list[dict[str, Any]], dict[str, int]]:
        rows = read_journal(st, ops_repo.JournalFilter(limit=15))
        with st.db.read() as conn:
            return (
                sandbox.read_clock(conn),
                family_reads.merchant_count(conn),  # counted, not every merchant read
                ops_repo.list_faults(conn, active_only=True),
                rows,
                family_reads.counts(conn),
            )

    clock, n_merchants, faults, rows, counts = await anyio.to_thread.run_sync(read)
    tiles = (
        '<div class="grid">'
        + card("Business clock", clock_html(clock) + '<a href="/dashboard/clock">Set / freeze / advance</a>')
        + card(
            "Merchants",
            f'<div class="big">{n_merchants}</div><a href="/dashboard/merchants">Merchants & keys</a>',
        )
        + card(
            "Active faults",
            f'<div class="big" id="active-faults">{len(faults)}</div><a href="/dashboard/faults">Fault rules</a>',
        )
        + "</div>"
    )
    recent = card("Latest requests", table(JOURNAL_HEADERS, journal_rows(rows), empty="No /v3 requests yet."))
    return page("Overview", flash(request) + tiles + _family_counts(counts) + recent, active="overview")
