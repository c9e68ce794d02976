"""The page behind ``qrcode_data``: where the contact and then the legal person confirm, and where the
authorization is completed (the real flow happens in a WeChat mini program). No token needed: the
URL's random part is the secret, as a scanned code would be. Plain HTML forms, no script, in the
dashboard's look without its navigation (no dashboard login)."""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import parse_qs, urlencode

import anyio
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from ..domain import apply4subject as d
from ..store.apply4subject_repo import Apply4SubjectRepo, Applyment
from . import apply4subject_flow as flow
from .dashboard.auth import message_signature, signed_message
from .dashboard.layout import badge, page, render_page
from .framing import unframed
from .params import ControlError, refuse_nul
from .web import WEB_ROUTES

# state -> (step the form performs, who acts, button label)
STEPS: dict[str, tuple[str, str, str]] = {
    d.CONFIRM_CONTACT: ("confirm_contact", "联系人 (contact)", "确认联系信息 Confirm contact information"),
    d.CONFIRM_LEGALPERSON: (
        "confirm_legalperson",
        "法定代表人 (legal person)",
        "确认开户意愿 Confirm as legal person",
    ),
    d.PASSED: ("authorize", "联系人 (contact)", "完成授权 Complete authorization"),
    d.FREEZED: ("authorize", "联系人 (contact)", "授权 Authorize"),
}


def _merchant_name(materials: dict[str, Any]) -> str:
    subject = materials.get("subject_info") or {}
    for key in ("business_license_info", "certificate_info"):
        name = (subject.get(key) or {}).get("merchant_name")
        if name:
            return str(name)
    return str((subject.get("assist_prove_info") or {}).get("store_name", ""))


SUBTITLE = "模拟微信小程序 · simulated WeChat mini program"


def _page(app: Applyment, authorized: list[tuple[str, bool]], note: str = "") -> str:
    e = html.escape
    contact = (app.materials.get("contact_info") or {}).get("name", "")
    rows = "".join(
        f"<li><code>{e(sub)}</code>: "
        + (badge("AUTHORIZE_STATE_AUTHORIZED") if ok else badge("AUTHORIZE_STATE_UNAUTHORIZED", "mute"))
        + "</li>"
        for sub, ok in authorized
    )
    step = STEPS.get(app.state)
    form = ""
    if step is None:
        pass
    elif step[0] == "authorize" and authorized and all(ok for _, ok in authorized):
        form = '<p class="muted" id="authorize-done">授权已完成 · authorization complete</p>'
    elif (
        step[0] == "authorize" and not authorized
    ):  # pressing it only answered "no merchant number to authorize"
        form = (
            f'<p>{e(step[1])}</p><button type="button" disabled aria-describedby="authorize-none">'
            f'{e(step[2])}</button><p class="muted" id="authorize-none">没有可授权的商户号 · no merchant '
            "number to authorize: the applyment lists no confirm_mchid_list (the sandbox's authorize "
            "action can name sub_mchids)</p>"
        )
    else:
        form = (
            f'<form method="post"><input type="hidden" name="step" value="{e(step[0])}">'
            f'<p>{e(step[1])}</p><button type="submit">{e(step[2])}</button></form>'
        )
    tone = " bad" if note and note != "confirmed" else ""
    body = (
        (f'<div class="flash{tone} note" role="status">{e(note)}</div>' if note else "")
        + '<section class="card"><p class="muted">wxpartner sandbox — stands in for the WeChat mini program '
        "reached by scanning qrcode_data.</p>" + '<dl class="facts">'
        f"<dt>applyment_id</dt><dd>{app.applyment_id}</dd>"
        f"<dt>business_code</dt><dd>{e(app.business_code)}</dd>"
        f"<dt>merchant</dt><dd>{e(_merchant_name(app.materials))}</dd>"
        f"<dt>contact</dt><dd>{e(str(contact))}</dd>"
        f'<dt>applyment_state</dt><dd id="state">{e(app.state)}</dd></dl>'
        f'<ul id="authorize-states">{rows}</ul>{form}</section>'
    )
    return render_page(
        f"商户开户意愿确认 {app.applyment_id}", body, nav=False, lang="zh-CN", narrow=True, subtitle=SUBTITLE
    )


def _gone() -> HTMLResponse:
    body = '<section class="card"><p class="error">二维码已失效 (unknown or expired code)</p></section>'
    return page("商户开户意愿确认", body, nav=False, lang="zh-CN", narrow=True, subtitle=SUBTITLE, status=404)


def _load(request: Request) -> tuple[Applyment, list[tuple[str, bool]]] | None:
    db = request.app.state.wx.db
    with db.read() as conn:
        repo = Apply4SubjectRepo(conn)
        app = repo.by_token(request.path_params["token"])
        if app is None:
            return None
        return app, repo.authorized_of(app)


async def confirm_page(request: Request) -> Response:
    try:  # no code holds a NUL, and PostgreSQL cannot even compare one (a 500 before)
        refuse_nul(request.path_params.items(), "path")
    except ControlError:
        return _gone()
    if request.method == "POST":
        return await _confirm(request)
    found = await anyio.to_thread.run_sync(lambda: _load(request))
    if found is None:
        return _gone()
    note = request.query_params.get("note", "")
    return HTMLResponse(_page(*found, note=note if signed_message(request, note) else ""))


async def _confirm(request: Request) -> Response:
    form = parse_qs((await request.body()).decode("utf-8", errors="replace"))
    step = (form.get("step") or [""])[0]
    db = request.app.state.wx.db

    def apply() -> str | None:
        with db.write() as conn:
            repo = Apply4SubjectRepo(conn)
            app = repo.by_token(request.path_params["token"])
            if app is None:
                return None
            expected = STEPS.get(app.state)
            if expected is None or expected[0] != step:
                return f"nothing to confirm: the applyment is {app.state}"
            try:
                flow.apply_action(repo, app, step, flow.business_now(conn))
            except ValueError as exc:
                return str(exc)
            return "confirmed"

    note = await anyio.to_thread.run_sync(apply)
    if note is None:
        return _gone()
    query = urlencode({"note": note, "sig": message_signature(request, note)})
    return RedirectResponse(f"{request.url.path}?{query}", status_code=303)


WEB_ROUTES.append(Route(flow.CONFIRM_PATH + "{token}", unframed(confirm_page), methods=["GET", "POST"]))
