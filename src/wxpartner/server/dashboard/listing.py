"""What the family listings share: one page of ``reads.PAGE`` rows at a time (``?offset=``), filtered by
``?mchid=``, sorted by time while few rows match; state badges."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import anyio
from starlette.requests import Request

from ...domain import apply4subject as d
from ...store import dashboard_reads as reads
from ...store.schema import BIGINT_MAX
from ..params import int_param
from .layout import badge, esc


async def settled(st: Any) -> None:
    """Make the transitions the business clock owes (``SETTLE_HOOKS``: expired quota cards become
    DISABLED and queue their callback, applyments the auto policy's after_seconds is due for take its
    step) before a page reads, as an API read would: the page shows what the API answers, whatever the
    background sweep has reached. One batch of each (a clock move settles the rest: server/settle.py)."""
    from ..app import SETTLE_HOOKS

    def run() -> None:
        for hook in SETTLE_HOOKS:
            hook(st)

    await anyio.to_thread.run_sync(run)


# Badge tone per state of any family (unknown states are muted).
TONE = {
    "AUTHORIZED": "",
    "ACTIVE": "",
    "EFFECTIVE": "",
    "USED": "mute",
    "DISABLED": "mute",
    "DELETED": "mute",
    "REVOKED": "bad",
    "DEREGISTERED": "bad",
    d.AUDIT: "warn",
    d.CONFIRM_CONTACT: "warn",
    d.CONFIRM_LEGALPERSON: "warn",
    d.EDITTING: "warn",
    d.PASSED: "",
    d.REJECTED: "bad",
    d.FREEZED: "bad",
    d.CANCELED: "mute",
}

MAX_OFFSET = 100_000  # deeper pages cost a long index walk: filter instead


def state_badge(state: str) -> str:
    short = state.removeprefix("APPLYMENT_STATE_")
    return f'<span title="{esc(state)}">{badge(short, TONE.get(state, "mute"))}</span>'


def offset_of(request: Request) -> int:
    """``?offset=``, at most ``MAX_OFFSET``; not a whole number is a 400 page (ControlError)."""
    return min(int_param(request.query_params, "offset", 0, 0, BIGINT_MAX), MAX_OFFSET)


def filter_form(request: Request, path: str, extra: str = "") -> str:
    """The ?mchid= filter form of a listing, with ``extra`` fields (trusted HTML)."""
    mchid = request.query_params.get("mchid", "")
    return (
        f'<form method="get" action="{path}" class="row card">'
        f'<div><label for="f-mchid">mchid (service provider or sub-merchant)</label>'
        f'<input id="f-mchid" name="mchid" value="{esc(mchid)}"></div>{extra}'
        f'<div><button type="submit">Filter</button> <a href="{path}">clear</a></div></form>'
    )


def pager(request: Request, more: bool) -> str:
    """← Newer / Older → links that keep the other query parameters."""
    offset = offset_of(request)
    params = dict(request.query_params)
    links = []
    if offset > 0:
        newer = {**params, "offset": str(max(0, offset - reads.PAGE))}
        links.append(f'<a href="?{esc(urlencode(newer))}">← Newer</a>')
    if more:
        links.append(
            f'<a href="?{esc(urlencode({**params, "offset": str(offset + reads.PAGE)}))}">Older →</a>'
        )
    return f'<div class="pager">{"".join(links)}</div>' if links else ""


def sort_note(found: reads.Slice, by_time: str, by_key: str) -> str:
    """How the page is sorted: by time while few rows match (see store.dashboard_reads.SORT_CAP)."""
    if found.by_time:
        return by_time
    return f"{by_key} (more than {reads.SORT_CAP} match: filter to sort by time)"


def mchid_of(request: Request) -> str | None:
    return request.query_params.get("mchid") or None
