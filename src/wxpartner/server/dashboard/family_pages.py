"""Dashboard pages of the product families: employees & authorizations, quota cards with their spends,
recharge employees, applyments with their audit (QR code, confirmation link, audit actions). One page
of 100 rows at a time (``?offset=``), filtered by ``?mchid=``; database work in a worker thread."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote, urlencode

import anyio
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ...domain import apply4subject as d
from ...store import dashboard_reads as reads
from ...store import sandbox
from ...store.apply4subject_repo import Apply4SubjectRepo, Applyment
from .. import apply4subject_flow as flow
from .auth import form
from .layout import badge, card, esc, facts, fen, fmt_ts, page, table
from .pages import route

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


def _offset(request: Request) -> int:
    raw = request.query_params.get("offset", "0")
    return min(int(raw), MAX_OFFSET) if raw.isdigit() else 0


def _filter(request: Request, path: str, extra: str = "") -> str:
    mchid = request.query_params.get("mchid", "")
    return (
        f'<form method="get" action="{path}" class="row card">'
        f'<div><label for="f-mchid">mchid (service provider or sub-merchant)</label>'
        f'<input id="f-mchid" name="mchid" value="{esc(mchid)}"></div>{extra}'
        f'<div><button type="submit">Filter</button> <a href="{path}">clear</a></div></form>'
    )


def _pager(request: Request, more: bool) -> str:
    offset = _offset(request)
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


def _order(found: reads.Slice, by_time: str, by_key: str) -> str:
    """How the page is sorted: by time while few rows match (see store.dashboard_reads.SORT_CAP)."""
    if found.by_time:
        return by_time
    return f"{by_key} (more than {reads.SORT_CAP} match: filter to sort by time)"


def _mchid(request: Request) -> str | None:
    return request.query_params.get("mchid") or None


# ---- employees & authorizations -------------------------------------------------------------------


@route("/employees")
async def employees(request: Request) -> Response:
    st = request.app.state.wx
    mchid, offset = _mchid(request), _offset(request)

    def read() -> tuple[reads.Slice, list[dict[str, Any]]]:
        with st.db.read() as conn:
            now = sandbox.read_clock(conn).now_ts()
            return reads.employees(conn, mchid, offset), reads.open_links(conn, mchid, now)

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
            f'<a href="/dashboard/cards?{esc(urlencode({"employee_id": r["employee_id"]}))}">{r["cards"]} card(s)</a>',
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
        _filter(request, "/dashboard/employees")
        + card(
            "Enterprise-payment authorizations (webizpay), "
            + _order(found, "newest first", "by employee_id"),
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
                empty="No employee has authorized yet.",
            ),
        )
        + _pager(request, found.more)
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


# ---- quota cards & spends ---------------------------------------------------------------------------


def _spends(items: list[dict[str, Any]]) -> str:
    if not items:
        return '<span class="muted">no spend yet</span>'
    rows = [
        [
            f'<code class="transaction-id">{esc(p["transaction_id"])}</code>',
            esc(fen(p["amount"])),
            esc(fen(p["refunded_amount"])) + (f" ({p['refunds']})" if p["refunds"] else ""),
            esc(p["goods_name"]),
            esc(p["receive_mch_name"]),
            esc(fmt_ts(p["paid_at"])),
        ]
        for p in items
    ]
    return table(("transaction_id", "amount", "refunded", "goods", "store", "paid (UTC)"), rows)


@route("/cards")
async def cards(request: Request) -> Response:
    st = request.app.state.wx
    mchid, offset = _mchid(request), _offset(request)
    employee_id = request.query_params.get("employee_id") or None

    def read() -> tuple[reads.Slice, dict[str, list[dict[str, Any]]]]:
        with st.db.read() as conn:
            return reads.cards(conn, mchid, employee_id, offset)

    found, spends = await anyio.to_thread.run_sync(read)
    headers = ("card", "name", "employee", "rules", "amount", "remaining", "state", "valid until")
    groups = []
    for c in found.rows:
        cells = [
            f'<code class="card-no">{esc(c["card_no"])}</code><br><span class=muted>{esc(c["out_card_no"])}</span>',
            esc(c["card_name"])
            + (f"<br><span class=muted>{esc(c['card_remark'])}</span>" if c["card_remark"] else ""),
            f"<code>{esc(c['employee_id'])}</code><br>"
            f"<span class=muted>{esc(c['sp_mchid'])} → {esc(c['sub_mchid'])}</span>",
            f"{esc(c['card_rule'])} / {esc(c['refund_rule'])}",
            esc(fen(c["amount"])),
            f'<b class="remain">{esc(fen(c["remain_amount"]))}</b>',
            badge(c["state"], TONE.get(c["state"], "mute"))
            + (f"<br><span class=muted>{esc(c['reason'])}</span>" if c["reason"] else ""),
            esc(c["end_text"]),
        ]
        # One <tbody> per card: the card's row, then its spends in a nested row.
        groups.append(
            '<tbody class="card-group"><tr>'
            + "".join(f"<td>{cell}</td>" for cell in cells)
            + f'</tr><tr class="spends"><td></td><td colspan="{len(headers) - 1}">'
            + _spends(spends.get(c["card_no"], []))
            + "</td></tr></tbody>"
        )
    listing = (
        "<table><thead><tr>"
        + "".join(f"<th>{esc(h)}</th>" for h in headers)
        + "</tr></thead>"
        + "".join(groups)
        + "</table>"
        if groups
        else '<p class="muted">No quota card issued yet.</p>'
    )
    extra = (
        f'<div><label for="f-employee">employee_id</label><input id="f-employee" name="employee_id" '
        f'value="{esc(employee_id or "")}"></div>'
    )
    body = (
        _filter(request, "/dashboard/cards", extra)
        + card("Quota cards and their spends, " + _order(found, "newest first", "by card number"), listing)
        + _pager(request, found.more)
    )
    return page("Quota cards & spends", body, active="cards")


# ---- recharge employees -----------------------------------------------------------------------------


@route("/recharge")
async def recharge(request: Request) -> Response:
    st = request.app.state.wx
    mchid, offset = _mchid(request), _offset(request)

    def read() -> tuple[reads.Slice, list[dict[str, Any]]]:
        with st.db.read() as conn:
            return reads.recharge(conn, mchid, offset)

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
        _filter(request, "/dashboard/recharge")
        + card(
            "Recharge employees, " + _order(found, "latest change first", "by merchant and openid"),
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
                empty="No recharge employee yet.",
            ),
        )
        + _pager(request, found.more)
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


# ---- applyments ---------------------------------------------------------------------------------------


@route("/applyments")
async def applyments(request: Request) -> Response:
    st = request.app.state.wx
    mchid, offset = _mchid(request), _offset(request)
    state = request.query_params.get("state") or None

    def read() -> reads.Slice:
        with st.db.read() as conn:
            return reads.applyments(conn, mchid, state, offset)

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
    options = "".join(
        f'<option{" selected" if s == state else ""} value="{s}">{s.removeprefix("APPLYMENT_STATE_")}</option>'
        for s in (
            d.EDITTING,
            d.AUDIT,
            d.CONFIRM_CONTACT,
            d.CONFIRM_LEGALPERSON,
            d.PASSED,
            d.REJECTED,
            d.FREEZED,
            d.CANCELED,
        )
    )
    extra = f'<div><label for="f-state">state</label><select id="f-state" name="state"><option value="">any</option>{options}</select></div>'
    body = (
        _flash(request)
        + _filter(request, "/dashboard/applyments", extra)
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
                empty="No applyment submitted yet.",
            ),
        )
        + _pager(request, found.more)
    )
    return page("Applyments", body, active="applyments")


def _flash(request: Request) -> str:
    msg = request.query_params.get("msg")
    if not msg:
        return ""
    tone = " bad" if request.query_params.get("tone") == "bad" else ""
    return f'<div class="flash{tone}" role="status">{esc(msg)}</div>'


def _actions(app: Applyment) -> str:
    """A button per audit step possible from the applyment's state (the reject form asks why)."""
    out = []
    for name, action in d.ACTIONS.items():
        if app.state not in action.sources:
            continue
        target = f" → {action.target.removeprefix('APPLYMENT_STATE_')}" if action.target else ""
        extra = ""
        if name == "reject":
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


@route("/applyments/{applyment_id}")
async def applyment(request: Request) -> Response:
    st = request.app.state.wx
    applyment_id = flow.as_id(request.path_params["applyment_id"])

    def read() -> tuple[Applyment | None, list[dict[str, Any]]]:
        if applyment_id is None:
            return None, []
        with st.db.read() as conn:
            found = Apply4SubjectRepo(conn).by_id(applyment_id)
            return found, reads.applyment_authorizations(conn, found.mchid) if found else []

    app, auths = await anyio.to_thread.run_sync(read)
    if app is None:
        return page(
            "Not found",
            f"<p>No applyment {esc(request.path_params['applyment_id'])}.</p>",
            active="applyments",
            status=404,
        )
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
        _flash(request)
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
            )
            return f"{name}: the applyment is now {moved.state}"

    try:
        msg, bad = await anyio.to_thread.run_sync(apply), False
    except ValueError as exc:  # BadActionInput included
        msg, bad = str(exc), True
    query = {"msg": msg, **({"tone": "bad"} if bad else {})}
    return RedirectResponse(
        f"/dashboard/applyments/{quote(raw_id, safe='')}?{urlencode(query)}", status_code=303
    )
