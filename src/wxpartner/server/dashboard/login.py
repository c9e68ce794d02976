"""Dashboard login with the sandbox token, and logout (see auth.py for the cookie)."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from .auth import COOKIE, form, set_login, token_ok
from .layout import page
from .routing import route


@route("/login", ["GET", "POST"], public=True)
async def login(request: Request) -> Response:
    nxt = request.query_params.get("next") or "/dashboard"
    if not nxt.startswith("/dashboard"):  # no open redirect to other sites
        nxt = "/dashboard"
    error = ""
    if request.method == "POST":
        fields = await form(request)
        if token_ok(request, fields.get("token", "")):
            resp = RedirectResponse(nxt, status_code=303)
            set_login(resp, request.app.state.wx.sandbox_token, request.url.scheme == "https")
            return resp
        error = '<div class="flash bad" role="alert">That is not the sandbox token.</div>'
    body = (
        f'{error}<section class="card" style="max-width:420px">'
        f'<form method="post" action="/dashboard/login?{urlencode({"next": nxt})}">'
        '<label for="token">Sandbox token (printed by <code>wxpartner serve</code>, also in '
        "connection.json)</label>"
        '<input id="token" name="token" type="password" autocomplete="current-password" style="width:100%" '
        'autofocus><p><button type="submit">Log in</button></p></form></section>'
    )
    return page("Log in", body, nav=False, status=401 if error else 200)


@route("/logout", ["POST"], public=True)
async def logout(_request: Request) -> Response:
    resp = RedirectResponse("/dashboard/login", status_code=303)
    resp.delete_cookie(COOKIE, path="/")
    return resp
