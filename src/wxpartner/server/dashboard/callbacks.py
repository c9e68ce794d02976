"""Callbacks page: every notification WeChat Pay owes a merchant, with every delivery attempt.

Reads through the callback outbox's own queries (store/outbox.py); without that module the page says so.
"""

from __future__ import annotations

from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response

from .layout import badge, card, esc, fmt_ts, page, table
from .pages import route

STATE_TONE = {"delivered": "", "pending": "warn", "failed": "bad"}


def _attempts(attempts: list[dict[str, Any]]) -> str:
    if not attempts:
        return '<span class="muted">no attempt yet</span>'
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
    return table(("#", "sent (UTC)", "url", "answer", "latency", "error"), rows)


@route("/callbacks")
async def callbacks(request: Request) -> Response:
    st = request.app.state.wx
    mchid = request.query_params.get("mchid") or None
    try:
        from ...store import outbox
    except ImportError:  # the callbacks family is not installed in this build
        return page(
            "Callbacks", card("Callbacks", "<p>No callback outbox in this build.</p>"), active="callbacks"
        )

    def read() -> tuple[int, list[dict[str, Any]]]:
        with st.db.read() as conn:
            return outbox.list_notifications(conn, mchid=mchid, limit=50)

    total, items = await anyio.to_thread.run_sync(read)
    rows = [
        [
            f"<code>{esc(n['id'])}</code>",
            esc(n["mchid"]),
            f"<code>{esc(n['event_type'])}</code><br><span class=muted>{esc(n['summary'])}</span>",
            badge(n["state"], STATE_TONE.get(n["state"], "mute")),
            f"{esc(n['sends'])} / {esc(n['send_limit'])}",
            esc(fmt_ts(n["next_attempt_at"])) if n["next_attempt_at"] else "",
            _attempts(n["attempts"]),
        ]
        for n in items
    ]
    body = card(
        f"Newest {len(items)} of {total} notifications (resources are not shown)",
        table(
            ("id", "mchid", "event", "state", "sends", "next attempt (business time)", "delivery attempts"),
            rows,
            empty="No callbacks yet.",
        ),
    )
    return page("Callbacks", body, active="callbacks")
