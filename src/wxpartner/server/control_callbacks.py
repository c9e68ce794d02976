"""Sandbox control API for callback notifications: inspect the outbox, redeliver, run a delivery pass.

Importing this module also registers the background delivery task (server/app.py BACKGROUND_TASKS),
the check of the callback settings at start-up, and the outbox's part of a sandbox reset.
"""

from __future__ import annotations

from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..sandbox import scenario
from ..store import outbox
from . import cursors
from .app import BACKGROUND_TASKS, STARTUP_HOOKS
from .callbacks import check_callback_settings, deliver_forever, deliverer_for
from .control import ControlError, control_route
from .params import choice_param, int_param, known_fields
from .settle import settle_for_read

if deliver_forever not in BACKGROUND_TASKS:
    BACKGROUND_TASKS.append(deliver_forever)
if check_callback_settings not in STARTUP_HOOKS:
    STARTUP_HOOKS.append(check_callback_settings)
if outbox.reset not in scenario.RESETTERS:
    scenario.RESETTERS.append(outbox.reset)


@control_route("/callbacks", ["GET"])
async def list_callbacks(request: Request) -> Response:
    """GET /sandbox/callbacks?mchid=&event_type=&state=pending|delivered|failed&limit=&offset= (or
    &after=, the answer's next_after: keyset paging, as deep as you like at the cost of the first)"""
    st = request.app.state.wx
    db = st.db
    q = request.query_params
    # a misspelt filter (?mchd=) was ignored, and the answer listed every merchant's callbacks
    known_fields(dict(q), "mchid", "event_type", "state", "limit", "offset", "after", location="query")
    state = choice_param(q, "state", outbox.STATES)
    limit = int_param(q, "limit", 50, 1, 500)
    after = cursors.decode(q, float, str)
    offset = int_param(q, "offset", 0, 0, 10**9)
    await settle_for_read(st)  # a quota card past its end queues its WEBIZPAY.QUOTACARDEXPIRED first

    def read() -> tuple[int, list[dict[str, Any]]]:
        with db.read() as conn:
            return outbox.list_notifications(
                conn,
                mchid=q.get("mchid") or None,
                event_type=q.get("event_type") or None,
                state=state,
                limit=limit,
                offset=offset,
                after=(after[0], after[1]) if after else None,
            )

    total, data = await anyio.to_thread.run_sync(read)
    # set whenever the page is full (the next may be empty), as the journal's next_before_id
    last = data[-1] if len(data) == limit else None
    next_after = cursors.encode([last["create_time"], last["id"]]) if last else None
    return JSONResponse(
        {"total_count": total, "limit": limit, "offset": offset, "data": data, "next_after": next_after}
    )


@control_route("/callbacks/deliver", ["POST"])
async def deliver_now(request: Request) -> Response:
    """Send everything due now, synchronously (whatever settings.deliver_callbacks says); sends
    another process has in flight are waited for, so the caller's receiver has them on return."""
    deliverer = deliverer_for(request.app.state.wx)
    results = await anyio.to_thread.run_sync(deliverer.deliver_now)
    return JSONResponse({"attempts": [r.view() for r in results]})


@control_route("/callbacks/{notification_id}", ["GET"])
async def get_callback(request: Request) -> Response:
    db = request.app.state.wx.db
    nid = request.path_params["notification_id"]

    def read() -> dict[str, Any] | None:
        with db.read() as conn:
            return outbox.get_notification(conn, nid)

    view = await anyio.to_thread.run_sync(read)
    if view is None:
        raise ControlError(404, "RESOURCE_NOT_EXISTS", f"no callback notification {nid}")
    return JSONResponse(view)


@control_route("/callbacks/{notification_id}/redeliver", ["POST"])
async def redeliver(request: Request) -> Response:
    """Make the notification due now (one more send if all were used) and send it at once, claimed in
    the same statement so the attempt returned is this call's; a send of it in flight elsewhere is
    waited for first (Deliverer.redeliver)."""
    st = request.app.state.wx
    nid = request.path_params["notification_id"]

    def apply() -> tuple[bool, list[dict[str, Any]], dict[str, Any] | None]:
        results = deliverer_for(st).redeliver(nid)
        if results is None:
            return False, [], None
        with st.db.read() as conn:
            return True, [r.view() for r in results], outbox.get_notification(conn, nid)

    found, attempts, view = await anyio.to_thread.run_sync(apply)
    if not found:
        raise ControlError(404, "RESOURCE_NOT_EXISTS", f"no callback notification {nid}")
    return JSONResponse({"attempts": attempts, "notification": view})
