"""How dashboard pages register (``@route``, login-guarded unless ``public``) and answer a form: a 303
back to the page with a flash message (post/redirect/get, so a reload never posts twice)."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import Route

from ..params import Endpoint
from .auth import guarded, message_signature, signed_message
from .auth import public as public_page
from .layout import esc

ROUTES: list[Route] = []


def route(
    path: str, methods: list[str] | None = None, *, public: bool = False
) -> Callable[[Endpoint], Endpoint]:
    def register(fn: Endpoint) -> Endpoint:
        endpoint = public_page(fn) if public else guarded(fn)
        ROUTES.append(Route("/dashboard" + path, endpoint, methods=methods or ["GET"]))
        return fn

    return register


def flash(request: Request) -> str:
    """The message ``back`` put in the query string, if any (and if ``back`` put it: see
    auth.message_signature)."""
    msg = request.query_params.get("msg")
    tone = "bad" if request.query_params.get("tone") == "bad" else ""
    if not msg or not signed_message(request, f"{tone}:{msg}"):
        return ""
    return f'<div class="flash{" " + tone if tone else ""}" role="status">{esc(msg)}</div>'


def back(request: Request, path: str, msg: str, *, bad: bool = False) -> RedirectResponse:
    tone = "bad" if bad else ""
    query = {
        "msg": msg,
        **({"tone": tone} if tone else {}),
        "sig": message_signature(request, f"{tone}:{msg}"),
    }
    return RedirectResponse(f"{path}?{urlencode(query)}", status_code=303)
