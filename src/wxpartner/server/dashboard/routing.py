"""How dashboard pages register (``@route``, login-guarded unless ``public``) and answer a form: a 303
back to the page with a flash message (post/redirect/get, so a reload never posts twice)."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import Route

from ..params import Endpoint
from .auth import checked, guarded
from .layout import esc

ROUTES: list[Route] = []


def route(
    path: str, methods: list[str] | None = None, *, public: bool = False
) -> Callable[[Endpoint], Endpoint]:
    def register(fn: Endpoint) -> Endpoint:
        endpoint = checked(fn) if public else guarded(fn)
        ROUTES.append(Route("/dashboard" + path, endpoint, methods=methods or ["GET"]))
        return fn

    return register


def flash(request: Request) -> str:
    """The message ``back`` put in the query string, if any."""
    msg = request.query_params.get("msg")
    if not msg:
        return ""
    tone = " bad" if request.query_params.get("tone") == "bad" else ""
    return f'<div class="flash{tone}" role="status">{esc(msg)}</div>'


def back(path: str, msg: str, *, bad: bool = False) -> RedirectResponse:
    query = {"msg": msg, **({"tone": "bad"} if bad else {})}
    return RedirectResponse(f"{path}?{urlencode(query)}", status_code=303)
