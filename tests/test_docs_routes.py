"""Every `METHOD /path` the README shows (/v3, /sandbox, /dashboard, /openapi.json, health, metrics) is
served by a route for that method, so the docs cannot keep an endpoint that was renamed or removed."""

from __future__ import annotations

import re
from pathlib import Path

from starlette.routing import BaseRoute, Match, Mount

from wxpartner.server.app import WxPartnerApp, create_app
from wxpartner.server.settings import Settings

README = Path(__file__).resolve().parent.parent / "README.md"
ENDPOINT = re.compile(
    r"\b(GET|POST|PUT|PATCH|DELETE) (/(?:v3|sandbox|dashboard|openapi\.json|healthz|readyz|metrics)[^\s`|)\\]*)"
)
PLACEHOLDER = re.compile(r"\{[^}/]*\}|<[^>/]*>|…")


def _matches(routes: list[BaseRoute], scope: dict[str, object]) -> bool:
    for route in routes:
        match, child = route.matches(scope)
        if match != Match.FULL:
            continue
        if not isinstance(route, Mount):
            return True
        inner = {**scope, **child, "path": str(child.get("path_params", {}).get("path", "/"))}
        if _matches(route.routes, inner):
            return True
    return False


def _served(app: WxPartnerApp, method: str, path: str) -> bool:
    if path.startswith("/v3/"):
        op, _params, _allowed = app.state.router.match(method, path)
        return op is not None
    return _matches(app.web.routes, {"type": "http", "method": method, "path": path, "root_path": ""})


def test_every_endpoint_the_readme_shows_is_served(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=str(tmp_path), database_url=f"sqlite:///{tmp_path}/docs.sqlite3"))
    endpoints = {(m.group(1), m.group(2)) for m in ENDPOINT.finditer(README.read_text())}
    assert len(endpoints) > 40  # the pattern still finds them
    missing = []
    for method, shown in sorted(endpoints):
        path = PLACEHOLDER.sub("X1", shown.split("?", 1)[0])
        if not _served(app, method, path):
            missing.append(f"{method} {shown}")
    assert missing == []
