"""Callbacks page: every notification WeChat Pay owes a merchant, with every delivery attempt.

Reads through the callback outbox's own queries (store/outbox.py); without that module the page says so.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import anyio
from starlette.requests import Request
from starlette.responses import Response

from ...store import dashboard_reads as reads
from .auth import form
from .layout import badge, card, esc, facts, fmt_ts, not_found, page, table
from .listing import after_of, nothing_found, offset_of, pager, settled
from .routing import back, flash, route

PAGE = 50
CURSOR: dict[str, tuple[type, ...]] = {"": (float, str)}  # (create_time, id): the control API's too
STATE_TONE = {"delivered": "", "pending": "warn", "failed": "bad"}


def _waiting(n: dict[str, Any]) -> str:
    lacks = n.get("waiting_for")
    if not lacks:
        return ""
    how = " (PUT /sandbox/merchants/{}/notify-url)".format(n["mchid"]) if "notify_url" in lacks else ""
    return f'<span class="muted">waiting: {esc(n["mchid"])} has no {esc(lacks)}{esc(how)}</span>'


def _attempts(n: dict[str, Any]) -> str:
    attempts: list[dict[str, Any]] = n["attempts"]
    if not attempts:
        return _waiting(n) or '<span class="muted">no attempt yet</span>'
    rows = [
        [
            esc(a["attempt_no"]),
            esc(fmt_ts(a["sent_at"])),
            esc(a["url"]),
            badge(str(a["status"]) if a["status"] is not None else "no answer", "" if a["ok"] else "bad"),
            f"{float(a['latency_ms']):.0f} ms",
            esc(a["error"] or ""),
        ]
        for a in attempts
    ]
    return _waiting(n) + table(("#", "sent (UTC)", "url", "answer", "latency", "error"), rows)


@route("/callbacks")
async def callbacks(request: Request) -> Response:
    st = request.app.state.wx
    mchid = request.query_params.get("mchid") or None
    state = request.query_params.get("state") or None
    offset, after = offset_of(request), after_of(request, CURSOR)
    try:
        from ...store import outbox
    except ImportError:  # the callbacks family is not installed in this build
        return page(
            "Callbacks", card("Callbacks", "<p>No callback outbox in this build.</p>"), active="callbacks"
        )

    options = "".join(f"<option{' selected' if s == state else ''}>{esc(s)}</option>" for s in outbox.STATES)
    filters = (
        '<form method="get" class="row card"><div><label for="f-mchid">mchid</label>'
        f'<input id="f-mchid" name="mchid" value="{esc(mchid or "")}"></div>'
        f'<div><label for="f-state">state</label><select id="f-state" name="state"><option value="">any</option>'
        f"{options}</select></div>"
        '<div><button type="submit">Filter</button> <a href="/dashboard/callbacks">clear</a></div></form>'
    )
    if state is not None and state not in outbox.STATES:  # was dropped: every callback, under "state=..."
        refused = f"state must be one of {', '.join(outbox.STATES)} (not {state})"
        body = f'<div class="flash bad" role="status">{esc(refused)}</div>' + filters
        return page("Callbacks", body, active="callbacks", status=400)
    await settled(st)

    key = (after[0], after[1]) if after else None

    def read() -> tuple[int, list[dict[str, Any]], reads.Slice]:
        with st.db.read() as conn:
            total, items = outbox.list_notifications(
                conn, mchid=mchid, state=state, limit=PAGE + 1, offset=offset if key is None else 0, after=key
            )
            shown = items[:PAGE]
            first = [shown[0]["create_time"], shown[0]["id"]] if shown else None
            newer, newer_after = reads.newer_notifications(conn, mchid, state, first, after, offset, PAGE)
        last = shown[-1] if shown else None
        more = len(items) > PAGE and last is not None
        return (
            total,
            shown,
            reads.Slice(
                shown,
                more,
                next_after=[last["create_time"], last["id"]] if more and last else None,
                newer=newer,
                newer_after=newer_after,
            ),
        )

    total, items, found = await anyio.to_thread.run_sync(read)
    rows = [
        [
            f'<a class="mono notification-id" href="/dashboard/callbacks/{quote(n["id"], safe="")}">{esc(n["id"])}</a>',
            esc(n["mchid"]),
            f"<code>{esc(n['event_type'])}</code><br><span class=muted>{esc(n['summary'])}</span>",
            badge(n["state"], STATE_TONE.get(n["state"], "mute")),
            f"{esc(n['sends'])} / {esc(n['send_limit'])}",
            esc(fmt_ts(n["next_attempt_at"])) if n["next_attempt_at"] else "",
            _attempts(n),
            f'<form method="post" class="inline" action="/dashboard/callbacks/{esc(n["id"])}/redeliver">'
            '<button class="ghost">Send now</button></form>',
        ]
        for n in items
    ]
    body = (
        flash(request)
        + filters
        + card(
            f"Notifications: {len(items)} of {total} on this page, newest first (resources are not shown)",
            table(
                (
                    "id",
                    "mchid",
                    "event",
                    "state",
                    "sends",
                    "next attempt (business time)",
                    "delivery attempts",
                    "",
                ),
                rows,
                empty_html=nothing_found(request, "No callbacks yet."),
            ),
        )
        + pager(request, found)
        + _retention_note(st.settings.callback_retention_days)
    )
    return page("Callbacks", body, active="callbacks")


def _retention_note(days: float) -> str:
    """Where older callbacks went (Deliverer.prune): said where they are looked for."""
    if not days:
        return ""
    return (
        f'<p class="muted">Delivered and failed notifications are deleted {days:g} days (real time) after '
        "they finished, with their attempts (<code>--callback-retention-days</code>); pending ones are kept.</p>"
    )


@route("/callbacks/{notification_id}")
async def notification(request: Request) -> Response:
    """One notification by its id (a link to share, an id from the API, the CLI or a log): its facts
    and every delivery attempt, and Send now. The resource is not shown, as on the list."""
    st = request.app.state.wx
    nid = request.path_params["notification_id"]
    from ...store import outbox

    await settled(st)

    def read() -> dict[str, Any] | None:
        with st.db.read() as conn:
            return outbox.get_notification(conn, nid)

    n = await anyio.to_thread.run_sync(read)
    if n is None:
        return not_found(
            f"callback notification {nid} (delivered and failed ones are deleted after the retention)",
            active="callbacks",
        )
    summary = facts(
        [
            ("id", f"<code>{esc(n['id'])}</code>"),
            (
                "merchant",
                f'<a href="/dashboard/callbacks?mchid={quote(n["mchid"], safe="")}">{esc(n["mchid"])}</a>',
            ),
            ("event", f"<code>{esc(n['event_type'])}</code> <span class=muted>{esc(n['summary'])}</span>"),
            ("created (business time, UTC)", esc(fmt_ts(n["create_time"]))),
            ("state", badge(n["state"], STATE_TONE.get(n["state"], "mute"))),
            ("sends", f"{esc(n['sends'])} / {esc(n['send_limit'])}"),
            (
                "next attempt (business time, UTC)",
                esc(fmt_ts(n["next_attempt_at"])) if n["next_attempt_at"] else "—",
            ),
        ],
        dl_id="notification",
    )
    send = (
        f'<form method="post" class="inline" action="/dashboard/callbacks/{quote(n["id"], safe="")}/redeliver">'
        '<input type="hidden" name="back" value="notification"><button class="ghost">Send now</button></form>'
    )
    body = flash(request) + card("Notification", summary + send) + card("Delivery attempts", _attempts(n))
    return page(f"Callback {n['id']}", body, active="callbacks")


@route("/callbacks/{notification_id}/redeliver", ["POST"])
async def redeliver(request: Request) -> Response:
    """Make the notification due now and send it at once (as the control API's redeliver)."""
    st = request.app.state.wx
    nid = request.path_params["notification_id"]
    from ..callbacks import deliverer_for

    def apply() -> str:
        results = deliverer_for(st).redeliver(nid)
        if results is None:
            return f"No notification {nid}"
        if not results:
            return f"{nid}: nothing sent (no notify_url or APIv3 key, or another process sent it)"
        r = results[0]
        answer = r.status if r.status is not None else (r.error or "no answer")
        return f"{nid}: attempt {r.attempt_no} answered {answer}, now {r.state}"

    msg = await anyio.to_thread.run_sync(apply)
    here = (await form(request)).get("back") == "notification"  # from its own page: back there
    return back(
        request, f"/dashboard/callbacks/{quote(nid, safe='')}" if here else "/dashboard/callbacks", msg
    )
