"""Dashboard access: log in once with the sandbox token; the browser keeps a cookie derived from it.

The cookie holds HMAC-SHA256(token, "wxpartner-dashboard"), never the token itself; it is HttpOnly and
SameSite=Strict, which keeps other sites from posting the dashboard's forms. "Site" ignores the port,
so a page on another port of the same host (a dev server on localhost:3000) would still carry the
cookie: a form post whose Origin (or, without one, Referer) is not the dashboard's own is refused too.
Pages may not be framed (X-Frame-Options, frame-ancestors). Changing the sandbox token logs every
browser out.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qs, quote, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ...protocol.detail import described
from ..framing import forbid_framing
from ..params import Endpoint, input_checked, refuse_nul
from .layout import bad_request, forbidden

COOKIE = "wxpartner_dashboard"


def cookie_value(token: str) -> str:
    return hmac.new(token.encode(), b"wxpartner-dashboard", hashlib.sha256).hexdigest()


def message_signature(request: Request, text: str) -> str:
    """A page message's mark that this server wrote it (HMAC of the sandbox token): the dashboard's flash
    and the confirmation page's note travel in the redirect's query string, and a page shows only a
    marked one, so a link cannot make a page say what its author likes ("your token expired, enter it
    at …"). Empty without a token (nothing is shown then)."""
    token: str = request.app.state.wx.sandbox_token
    if not token:
        return ""
    key = hmac.new(token.encode(), b"wxpartner-page-message", hashlib.sha256).digest()
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()[:32]


def signed_message(request: Request, text: str) -> bool:
    """Whether the query's ``sig`` marks ``text`` (see message_signature)."""
    expected = message_signature(request, text)
    given = request.query_params.get("sig", "")
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def logged_in(request: Request) -> bool:
    token: str = request.app.state.wx.sandbox_token
    given = request.cookies.get(COOKIE, "")
    return bool(token) and hmac.compare_digest(given.encode(), cookie_value(token).encode())


def token_ok(request: Request, given: str) -> bool:
    token: str = request.app.state.wx.sandbox_token
    return bool(token) and hmac.compare_digest(given.strip().encode(), token.encode())


def checked(fn: Endpoint) -> Endpoint:
    """Input the control API would refuse too (server/params.py) gets a 400 page: parameters with a NUL
    here, anything a page checks with params (``form`` included) below."""
    return input_checked(fn, lambda refused: bad_request(described(refused.message, refused.detail)))


UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def same_origin(request: Request) -> bool:
    """A browser's form post names where it comes from (Origin; Referer for old browsers): it must be
    this dashboard's own scheme, host and port. A client that sends neither (curl, scripts) is not a
    browser another page could drive, and passes."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return True
    parts = urlsplit(source)
    return (
        f"{parts.scheme}://{parts.netloc}".lower() == f"{request.url.scheme}://{request.url.netloc}".lower()
    )


def _cross_origin(request: Request) -> Response | None:
    """The 403 for a form another origin posts (see same_origin), else None."""
    if request.method in UNSAFE_METHODS and not same_origin(request):
        return forbidden("a form of another origin may not post to the dashboard")
    return None


def public(fn: Endpoint) -> Endpoint:
    """A page without the login (log in, log out) still takes no form from another origin: a page
    elsewhere could otherwise log the browser out, or in under a token of its choosing."""
    inner = checked(fn)

    async def endpoint(request: Request) -> Response:
        refused = _cross_origin(request)
        return forbid_framing(refused if refused is not None else await inner(request))

    endpoint.__name__ = fn.__name__
    return endpoint


def guarded(fn: Endpoint) -> Endpoint:
    inner = checked(fn)

    async def endpoint(request: Request) -> Response:
        refused = _cross_origin(request)
        if refused is not None:
            response: Response = refused
        elif not logged_in(request):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            response = RedirectResponse(f"/dashboard/login?next={quote(target)}", status_code=303)
        else:
            response = await inner(request)
        return forbid_framing(response)

    endpoint.__name__ = fn.__name__
    return endpoint


async def form(request: Request) -> dict[str, str]:
    """An url-encoded form (the dashboard's only kind), without needing python-multipart."""
    raw = (await request.body()).decode("utf-8", errors="replace")
    fields = {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}
    refuse_nul(fields.items(), "form")
    return fields


def set_login(response: Response, token: str, secure: bool) -> None:
    response.set_cookie(
        COOKIE, cookie_value(token), httponly=True, samesite="strict", secure=secure, path="/"
    )
