"""Every route outside /v3, enumerated from the served application (so a route added later is covered
without a new case): each control route refuses every method without the sandbox token (no header, a
wrong one, the token in the query string, the dashboard's cookie), each dashboard page sends a browser
without the login cookie to the login page and refuses a form from another origin, and the routes
anyone may call are exactly the documented public ones."""

from __future__ import annotations

import re

from starlette.routing import Route
from starlette.testclient import TestClient

from conftest import SANDBOX_TOKEN
from wxpartner.server.app import WxPartnerApp
from wxpartner.server.dashboard.auth import COOKIE, cookie_value

# Anyone may call these: probes, the API description, metrics, the dashboard's login and logout, and
# the simulated employee/contact pages (their link's random token is the credential).
PUBLIC = {
    "/healthz",
    "/readyz",
    "/openapi.json",
    "/metrics",
    "/dashboard/login",
    "/dashboard/logout",
    "/webizpay/authorize",
    "/webizpay/pay",
    "/apply4subject/confirm/{token}",
}


def _routes(app: WxPartnerApp) -> list[tuple[str, list[str]]]:
    out = []
    for route in app.web.routes:
        assert isinstance(route, Route), route
        methods = sorted((route.methods or {"GET"}) - {"HEAD"})
        out.append((route.path, methods))
    return out


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", path)


def test_the_public_routes_are_the_documented_ones(app: WxPartnerApp) -> None:
    public = {p for p, _ in _routes(app) if not p.startswith(("/sandbox/", "/dashboard"))}
    public |= {"/dashboard/login", "/dashboard/logout"}
    assert public == PUBLIC


def test_every_control_route_needs_the_token(app: WxPartnerApp, http: TestClient) -> None:
    control = [(p, m) for p, m in _routes(app) if p.startswith("/sandbox/")]
    assert len(control) >= 25
    wrong = [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {SANDBOX_TOKEN[:-1]}"},
        {"Authorization": f"Basic {SANDBOX_TOKEN}"},
        {"X-Sandbox-Token": SANDBOX_TOKEN + "x"},
        {"Cookie": f"{COOKIE}={cookie_value(SANDBOX_TOKEN)}"},
    ]
    for path, methods in control:
        url = _concrete(path)
        for method in methods:
            for headers in wrong:
                resp = http.request(method, url, headers=headers, content=b"{}")
                assert resp.status_code == 401, (method, url, headers, resp.text)
                assert resp.json()["code"] == "UNAUTHORIZED"
            in_query = http.request(method, f"{url}?token={SANDBOX_TOKEN}&sandbox_token={SANDBOX_TOKEN}")
            assert in_query.status_code == 401, (method, url)


def test_every_dashboard_page_needs_the_login_and_its_own_origin(app: WxPartnerApp, http: TestClient) -> None:
    pages = [(p, m) for p, m in _routes(app) if p.startswith("/dashboard") and p not in PUBLIC]
    assert len(pages) >= 15
    for path, methods in pages:
        url = _concrete(path)
        for method in methods:
            # The control API's token as a header opens no page: the dashboard is the cookie's.
            for headers in ({}, {"Authorization": f"Bearer {SANDBOX_TOKEN}"}, {"Cookie": f"{COOKIE}=x"}):
                resp = http.request(method, url, headers=headers, follow_redirects=False)
                assert resp.status_code == 303, (method, url, headers, resp.status_code)
                assert resp.headers["location"].startswith("/dashboard/login?next=")
            if method == "POST":
                cookie = {"Cookie": f"{COOKIE}={cookie_value(SANDBOX_TOKEN)}"}
                for origin in ("http://evil.example", "null", "http://testserver:8080", "https://testserver"):
                    resp = http.post(url, headers={**cookie, "Origin": origin}, follow_redirects=False)
                    assert resp.status_code == 403, (url, origin, resp.status_code)
                resp = http.post(
                    url, headers={**cookie, "Referer": "http://evil.example/x"}, follow_redirects=False
                )
                assert resp.status_code == 403, (url, "referer")


def test_login_and_logout_take_no_form_from_another_origin(http: TestClient) -> None:
    """A page elsewhere could log the browser out (SameSite keeps the cookie from being sent, not the
    answer's Set-Cookie from removing it), or log it in: both are the dashboard's own forms only."""
    cookie = {"Cookie": f"{COOKIE}={cookie_value(SANDBOX_TOKEN)}"}
    for origin in ("http://evil.example", "null"):
        out = http.post("/dashboard/logout", headers={**cookie, "Origin": origin}, follow_redirects=False)
        assert out.status_code == 403, out.status_code
        assert "set-cookie" not in out.headers and out.headers["x-frame-options"] == "DENY"
        login = http.post(
            "/dashboard/login",
            data={"token": SANDBOX_TOKEN},
            headers={"Origin": origin},
            follow_redirects=False,
        )
        assert login.status_code == 403 and "set-cookie" not in login.headers
    # Its own origin (and a client that names none, curl) still logs in and out.
    own = {"Origin": "http://testserver"}
    login = http.post("/dashboard/login", data={"token": SANDBOX_TOKEN}, headers=own, follow_redirects=False)
    assert login.status_code == 303 and COOKIE in login.headers["set-cookie"]
    out = http.post("/dashboard/logout", headers=own, follow_redirects=False)
    assert out.status_code == 303 and f'{COOKIE}=""' in out.headers["set-cookie"]
    assert http.get("/dashboard/login").headers["x-frame-options"] == "DENY"
