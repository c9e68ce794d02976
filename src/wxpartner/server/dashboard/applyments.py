"""Applyment pages (apply4subject): the list, one applyment with its QR code and confirmation link, and
the audit steps WeChat Pay would take, as buttons."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote

import anyio
from starlette.requests import Request
from starlette.responses import Response

from ...domain import apply4subject as d
from ...store import dashboard_reads as reads
from ...store.apply4subject_repo import Apply4SubjectRepo, Applyment
from .. import apply4subject_flow as flow
from .auth import form
from .layout import badge, card, esc, facts, fmt_ts, not_found, page, table
from .listing import (
    APPLYMENT_CURSOR,
    after_of,
    filter_form,
    mchid_of,
    nothing_found,
    offset_of,
    pager,
    settled,
    state_badge,
)
from .routing import back, flash, route

STATES = (
    d.EDITTING,
    d.AUDIT,
    d.CONFIRM_CONTACT,
    d.CONFIRM_LEGALPERSON,
    d.PASSED,
    d.REJECTED,
    d.FREEZED,
    d.CANCELED,
)


@route("/applyments")
async def applyments(request: Request) -> Response:
    st = request.app.state.wx
    mchid, offset, after = mchid_of(request), offset_of(request), after_of(request, APPLYMENT_CURSOR)
    state = request.query_params.get("state") or None
    options = "".join(
        f'<option{" selected" if s == state else ""} value="{s}">{s.removeprefix("APPLYMENT_STATE_")}</option>'
        for s in STATES
    )
    extra = f'<div><label for="f-state">state</label><select id="f-state" name="state"><option value="">any</option>{options}</select></div>'
    filters = filter_form(request, "/dashboard/applyments", extra)
    if state is not None and state not in STATES:  # was an empty list, "No applyment submitted yet."
        refused = f"state must be one of {', '.join(STATES)} (not {state})"
        body = f'<div class="flash bad" role="status">{esc(refused)}</div>' + filters
        return page("Applyments", body, active="applyments", status=400)

    await settled(st)  # what the auto policy's after_seconds owes, as the applyment's A2 would make it

    def read() -> reads.Slice:
        with st.db.read() as conn:
            return reads.applyments(conn, mchid, state, offset, after)

    found = await anyio.to_thread.run_sync(read)
    rows = [
        [
            f'<a class="mono applyment-id" href="/dashboard/applyments/{a["applyment_id"]}">{a["applyment_id"]}</a>',
            esc(a["business_code"]),
            esc(a["mchid"])
            + (f"<br><span class=muted>channel {esc(a['channel_id'])}</span>" if a["channel_id"] else ""),
            state_badge(a["state"])
            + (f"<br><span class=muted>{esc(a['reject_reason'])}</span>" if a["reject_reason"] else ""),
            esc(", ".join(json.loads(a["confirm_mchids"]))),
            esc(a["query_count"]),
            esc(fmt_ts(a["created_at"])),
        ]
        for a in found.rows
    ]
    body = (
        flash(request)
        + filters
        + card(
            "Applyments (商户开户意愿确认), newest first",
            table(
                (
                    "applyment_id",
                    "business_code",
                    "submitted by",
                    "state",
                    "merchant numbers",
                    "queries",
                    "submitted (UTC)",
                ),
                rows,
                empty_html=nothing_found(request, "No applyment submitted yet."),
            ),
        )
        + pager(request, found)
    )
    return page("Applyments", body, active="applyments")


def _actions(app: Applyment) -> str:
    """A button per audit step possible from the applyment's state (the reject form asks why)."""
    out = []
    for name, action in d.ACTIONS.items():
        if app.state not in action.sources:
            continue
        target = f" → {action.target.removeprefix('APPLYMENT_STATE_')}" if action.target else ""
        extra = ""
        if name == "authorize":  # the dashboard had no way to name numbers the applyment does not list
            need = not app.confirm_mchids
            why = (
                "required: the applyment has no confirm_mchid_list"
                if need
                else "optional, besides " + ", ".join(app.confirm_mchids)
            )
            extra = (
                f'<div><label for="sub_mchids">sub_mchids, comma-separated ({esc(why)})</label>'
                f'<input id="sub_mchids" name="sub_mchids" inputmode="numeric" pattern="[0-9, ]+"'
                f"{' required' if need else ''}></div>"
            )
        elif name == "reject":
            extra = (
                '<div><label for="reject_param">reject_param</label><input id="reject_param" name="reject_param" '
                'value="business_license_copy"></div><div><label for="reject_reason">reject_reason</label>'
                '<input id="reject_reason" name="reject_reason" value="营业执照照片模糊"></div>'
            )
        out.append(
            f'<form method="post" class="row" action="/dashboard/applyments/{app.applyment_id}/action">'
            f'<input type="hidden" name="action" value="{esc(name)}">{extra}'
            f'<div><button type="submit" class="{"danger" if name in ("reject", "freeze") else ""}" '
            f'data-action="{esc(name)}">{esc(name)}{esc(target)}</button></div></form>'
        )
    return "".join(out) or '<p class="muted">No audit step is possible from this state.</p>'


def _policy_fact(app: Applyment, policy: d.AutoPolicy | None) -> str:
    """What the auto policy will do to this applyment: the page said nothing, and an applyment moved
    (or did not) at an A2 query with no hint why."""
    if policy is None:
        return '<span class="muted">none (PUT /sandbox/apply4subject/auto-policy sets one)</span>'
    if app.state != d.AUDIT:
        return f'<span class="muted">acts in {esc(d.AUDIT)} only</span>'
    text = policy.pending(app.query_count)
    if policy.after_seconds is not None:
        text += f" (at {fmt_ts(app.state_since + policy.after_seconds)} UTC, business time)"
    return f'<span id="auto-policy">{esc(text)}</span>'


@route("/applyments/{applyment_id}")
async def applyment(request: Request) -> Response:
    st = request.app.state.wx
    applyment_id = flow.as_id(request.path_params["applyment_id"])

    if applyment_id is not None:
        await settled(st)

    def read() -> tuple[Applyment | None, list[dict[str, Any]], d.AutoPolicy | None]:
        if applyment_id is None:
            return None, [], None
        with st.db.read() as conn:
            repo = Apply4SubjectRepo(conn)
            found = repo.by_id(applyment_id)
            auths = reads.applyment_authorizations(conn, found.mchid) if found else []
            return found, auths, repo.policy()

    app, auths, policy = await anyio.to_thread.run_sync(read)
    if app is None:
        return not_found(f"applyment {request.path_params['applyment_id']}", active="applyments")
    covered = set(app.confirm_mchids)
    auth_rows = [
        [
            esc(a["sub_mchid"]),
            badge("AUTHORIZE_STATE_AUTHORIZED"),
            esc(fmt_ts(a["authorized_at"])),
            esc(a["applyment_id"] or ""),
        ]
        for a in auths
        if a["sub_mchid"] in covered or a["applyment_id"] == app.applyment_id
    ]
    for sub in sorted(covered - {a["sub_mchid"] for a in auths}):
        auth_rows.append([esc(sub), badge("AUTHORIZE_STATE_UNAUTHORIZED", "mute"), "", ""])
    summary = facts(
        [
            ("applyment_id", f"<code>{app.applyment_id}</code>"),
            ("business_code", esc(app.business_code)),
            (
                "submitted by",
                esc(app.mchid) + (f" (channel {esc(app.channel_id)})" if app.channel_id else ""),
            ),
            ("state", f'<span id="applyment-state">{state_badge(app.state)}</span>'),
            ("in this state since", esc(fmt_ts(app.state_since)) + " UTC (business time)"),
            ("reject", esc(f"{app.reject_param or ''} {app.reject_reason or ''}".strip()) or "—"),
            ("A2 queries", esc(app.query_count)),
            ("auto policy", _policy_fact(app, policy)),
        ]
    )
    confirm = '<p class="muted">The QR code (qrcode_data) appears once the audit passed.</p>'
    if app.state in d.QR_STATES:
        url = flow.confirm_url(st.settings.base_url(), app.confirm_token)
        png = base64.b64encode(flow.qrcode_png(url)).decode("ascii")
        confirm = (
            f'<p><img class="qr" alt="qrcode_data" width="164" src="data:image/png;base64,{png}"></p>'
            f"<p>The code leads to the confirmation page the contact and the legal person use: "
            f'<a id="confirm-link" href="{esc(url)}" target="_blank" rel="noopener">open the confirmation page</a></p>'
        )
    body = (
        flash(request)
        + '<div class="grid">'
        + card("Applyment", summary)
        + card("Confirmation (qrcode_data)", confirm)
        + "</div>"
        + card("Audit (sandbox steps WeChat Pay would take)", _actions(app))
        + card(
            "Merchant numbers (A4 authorize_state)",
            table(
                ("sub_mchid", "authorize_state", "since (UTC)", "applyment"), auth_rows, empty="None listed."
            ),
        )
        + card(
            "Materials as stored (sensitive fields masked)",
            f"<pre>{esc(json.dumps(app.materials, ensure_ascii=False, indent=2))}</pre>",
        )
    )
    return page(f"Applyment {app.applyment_id}", body, active="applyments")


@route("/applyments/{applyment_id}/action", ["POST"])
async def applyment_action(request: Request) -> Response:
    st = request.app.state.wx
    raw_id = request.path_params["applyment_id"]
    applyment_id = flow.as_id(raw_id)
    fields = await form(request)
    name = fields.get("action", "")

    def apply() -> str:
        if applyment_id is None:
            raise ValueError(f"no applyment {raw_id}")
        with st.db.write() as conn:
            repo = Apply4SubjectRepo(conn)
            found = repo.by_id(applyment_id)
            if found is None:
                raise ValueError(f"no applyment {applyment_id}")
            moved = flow.apply_action(
                repo,
                found,
                name,
                flow.business_now(conn),
                reject_param=fields.get("reject_param") or None,
                reject_reason=fields.get("reject_reason") or None,
                sub_mchids=[n for n in fields.get("sub_mchids", "").replace(",", " ").split() if n],
            )
            return f"{name}: the applyment is now {moved.state}"

    try:
        msg, bad = await anyio.to_thread.run_sync(apply), False
    except ValueError as exc:  # BadActionInput included
        msg, bad = str(exc), True
    return back(request, f"/dashboard/applyments/{quote(raw_id, safe='')}", msg, bad=bad)
