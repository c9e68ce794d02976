"""What the family listings share: one page of ``reads.PAGE`` rows at a time, filtered by ``?mchid=``,
sorted by time while few rows match; state badges. Pages are keyset pages (``?after=``, a cursor: see
store/dashboard_reads.py), whose "← Newer" and "Older →" links cost the same at any depth and can be
shared; ``?offset=`` (old links) still starts a page, up to MAX_OFFSET."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request

from ...domain import apply4subject as d
from ...store import dashboard_reads as reads
from ...store.schema import BIGINT_MAX
from .. import cursors
from ..params import int_param
from .layout import badge, esc


async def settled(st: Any) -> None:
    """Make the transitions the business clock owes (``SETTLE_HOOKS``: expired quota cards become
    DISABLED and queue their callback, applyments the auto policy's after_seconds is due for take its
    step) before a page reads: ``settle.settle_for_read``, as the control API's reads do."""
    from ..settle import settle_for_read

    await settle_for_read(st)


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

MAX_OFFSET = 100_000  # ?offset= (old links) walks the rows before the page: ?after= goes deeper
PAGING_PARAMS = ("offset", "after", "msg", "tone", "sig")  # what a pager link does not carry over


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


def after_of(request: Request, shapes: dict[str, tuple[type, ...]]) -> list[Any] | None:
    """``?after=`` as the tag and key it encodes (cursors.decode_tagged); not a cursor of this page is a
    400 page, as is ``after`` with ``offset``."""
    return cursors.decode_tagged(request.query_params, shapes)


# The cursors of the pages sorted by store.dashboard_reads._newest: by time ("t"), by key ("k").
Shapes = dict[str, tuple[type, ...]]
EMPLOYEE_CURSOR: Shapes = {"t": (float, str), "k": (str,)}
CARD_CURSOR: Shapes = {"t": (float, str), "k": (str,)}
RECHARGE_CURSOR: Shapes = {"t": (float, str, str, str), "k": (str, str, str)}
APPLYMENT_CURSOR: Shapes = {"": (int,)}


def page_link(request: Request, after: list[Any] | None) -> str:
    """This page's URL with its filters, starting after ``after`` (None: the first page)."""
    params = {k: v for k, v in request.query_params.items() if k not in PAGING_PARAMS}
    if after is not None:
        params["after"] = cursors.encode(after)
    return f"{request.url.path}?{urlencode(params)}" if params else request.url.path


def pager(request: Request, found: reads.Slice) -> str:
    """ "« Newest", "← Newer" and "Older →" links that keep the filters: cursors, each an index range
    however deep the page (store.dashboard_reads: the way back is read as the way on)."""
    links = []
    if found.newer and found.newer_after is not None:
        links.append(f'<a class="page-newest" href="{esc(page_link(request, None))}">« Newest</a>')
    if found.newer:
        links.append(
            f'<a class="page-newer" rel="prev" href="{esc(page_link(request, found.newer_after))}">← Newer</a>'
        )
    if found.more and found.next_after is not None:
        links.append(
            f'<a class="page-older" rel="next" href="{esc(page_link(request, found.next_after))}">Older →</a>'
        )
    note = ""
    if found.restarted:
        note = (
            '<p class="muted" id="page-restarted">The list changed order since that link was made '
            f"(more or fewer than {reads.SORT_CAP} rows match now): this is its first page.</p>"
        )
    return note + (f'<nav class="pager" aria-label="pages">{"".join(links)}</nav>' if links else "")


def sort_note(found: reads.Slice, by_time: str, by_key: str) -> str:
    """How the page is sorted: by time while few rows match (see store.dashboard_reads.SORT_CAP)."""
    if found.by_time:
        return by_time
    return f"{by_key} (more than {reads.SORT_CAP} match: filter to sort by time)"


FILTERS = ("mchid", "employee_id", "state")  # the filters a listing may have, as they are named


def nothing_found(request: Request, plain: str) -> str:
    """A listing's empty state: ``plain`` ("No applyment submitted yet.") when no filter is given, else
    that nothing matches the filters, with the way to clear them (the plain text was a lie there)."""
    given = [(k, request.query_params[k]) for k in FILTERS if request.query_params.get(k)]
    if not given:
        return f'<p class="muted">{esc(plain)}</p>'
    what = ", ".join(f"{k} {v}" for k, v in given)
    return (
        f'<p class="muted empty-filtered">Nothing matches {esc(what)}. '
        f'<a href="{esc(request.url.path)}">Clear the filters</a></p>'
    )


def mchid_of(request: Request) -> str | None:
    return request.query_params.get("mchid") or None
