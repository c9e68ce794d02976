"""Business clock page: see it, advance, set, freeze, thaw, or go back to real time."""

from __future__ import annotations

import anyio
from starlette.requests import Request
from starlette.responses import Response

from ...domain.clock import ClockState, parse_duration
from ...protocol.times import format_rfc3339, parse_rfc3339
from ...store import sandbox
from ..settle import Settled, settle
from .auth import form
from .layout import badge, card, esc, page
from .routing import back, flash, route


def clock_html(state: ClockState) -> str:
    """Business time now, and whether it runs (also the overview's tile)."""
    frozen = badge("frozen", "warn") if state.frozen_at is not None else badge("running")
    offset = state.offset_seconds
    shift = f"offset {offset:+.0f}s" if state.frozen_at is None else ""
    return (
        f'<div class="big" id="clock-now">{esc(format_rfc3339(state.now()))}</div>'
        f'<p>{frozen} <span class="muted">{esc(shift)}</span></p>'
    )


def settled_note(done: Settled) -> str:
    """What the move made, for the flash ("; settled: 3 quota cards expired")."""
    made = [f"{n} {label.replace('_', ' ')}" for label, n in done.counts.items() if n]
    text = f"; settled: {', '.join(made)}" if made else ""
    return text + ("" if done.complete else " (more are owed: the background sweep makes the rest)")


def _changed(state: ClockState, action: str, fields: dict[str, str]) -> ClockState:
    """The clock after one form action; ValueError for a bad action or value."""
    if action == "freeze":
        return state.frozen()
    if action == "thaw":
        return state.thawed()
    if action == "reset":
        return ClockState()
    if action == "advance":
        return state.advanced(parse_duration(fields.get("advance", "")))
    if action == "set":
        ts = parse_rfc3339(fields.get("set", "").strip()).timestamp()
        return state.set_to(ts, frozen=state.frozen_at is not None)
    raise ValueError(f"unknown action {action!r}")


def _controls(state: ClockState) -> str:
    def button(action: str, label: str, extra: str = "") -> str:
        return (
            f'<form method="post" class="row" action="/dashboard/clock">{extra}'
            f'<input type="hidden" name="action" value="{action}"><div><button>{label}</button></div></form>'
        )

    return (
        button(
            "advance",
            "Advance",
            '<div><label for="advance">advance by (90s, 15m, 2h, 30d)</label><input id="advance" name="advance" value="1h"></div>',
        )
        + button(
            "set",
            "Set",
            f'<div><label for="set">set to (RFC 3339)</label><input id="set" name="set" value="{esc(format_rfc3339(state.now()))}"></div>',
        )
        + '<div class="row">'
        + button("freeze", "Freeze")
        + button("thaw", "Thaw")
        + button("reset", "Back to real time")
        + "</div>"
    )


@route("/clock", ["GET", "POST"])
async def clock(request: Request) -> Response:
    st = request.app.state.wx
    if request.method == "POST":
        fields = await form(request)

        def apply() -> ClockState:
            with st.db.write() as conn:
                # checked before writing: a clock out of range would break every date it feeds
                state = _changed(sandbox.clock_for_change(conn), fields.get("action", ""), fields).checked()
                sandbox.write_clock(conn, state)
                return state

        try:
            state = await anyio.to_thread.run_sync(apply)
        except ValueError as exc:
            return back(request, "/dashboard/clock", str(exc), bad=True)
        done = await anyio.to_thread.run_sync(settle, st)  # as POST /sandbox/clock: what the move owes
        return back(
            request,
            "/dashboard/clock",
            f"Business time is now {format_rfc3339(state.now())}{settled_note(done)}",
        )

    def read() -> ClockState:
        with st.db.read() as conn:
            return sandbox.read_clock(conn)

    state = await anyio.to_thread.run_sync(read)
    help_text = (
        '<p class="muted">Business time drives expiry, audits and callbacks due; wire timestamps '
        "(request signing) always stay real time.</p>"
    )
    body = (
        flash(request)
        + card("Business clock", clock_html(state) + help_text)
        + card("Change it", _controls(state))
    )
    return page("Clock", body, active="clock")
