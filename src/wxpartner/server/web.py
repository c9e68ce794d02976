"""Everything outside ``/v3``: health and readiness, the sandbox control API, the dashboard."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import anyio
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from . import control

if TYPE_CHECKING:
    from .app import AppState

# Pages (dashboard, simulated employee pages) register here.
WEB_ROUTES: list[BaseRoute] = []


async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    state = request.app.state.wx
    db = state.db

    def ping() -> None:
        with db.read() as conn:
            conn.execute(sa.text("SELECT 1"))

    try:
        await anyio.to_thread.run_sync(ping)
    except Exception as exc:  # the balancer only needs yes/no; the reason helps operators
        return JSONResponse({"status": "unavailable", "reason": type(exc).__name__}, status_code=503)
    return JSONResponse(
        {
            "status": "ready",
            "backend": "sqlite" if db.sqlite else "postgresql",
            "pipeline": "loop" if state.pipeline_on_loop else "threads",
        }
    )


async def openapi_document(request: Request) -> Response:
    from .openapi import build

    state = request.app.state.wx
    return JSONResponse(build(state.router.operations, server_url=state.settings.base_url()))


async def not_found(request: Request, _exc: Exception) -> Response:
    return JSONResponse(
        {"code": "NOT_FOUND", "message": f"接口不存在：{request.method} {request.url.path}"}, status_code=404
    )


async def method_not_allowed(request: Request, _exc: Exception) -> Response:
    return JSONResponse(
        {"code": "METHOD_NOT_ALLOWED", "message": f"请求方法不允许：{request.method} {request.url.path}"},
        status_code=405,
    )


def build_web_app(
    state: AppState, *, lifespan: Callable[[Starlette], AbstractAsyncContextManager[Any]]
) -> Starlette:
    routes: list[BaseRoute] = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/openapi.json", openapi_document),
        *control.CONTROL_ROUTES,
        *WEB_ROUTES,
    ]
    from starlette.exceptions import HTTPException

    async def http_error(request: Request, exc: Exception) -> Response:
        code = getattr(exc, "status_code", 500)
        if code == 405:
            return await method_not_allowed(request, exc)
        if code == 404:
            return await not_found(request, exc)
        return JSONResponse(
            {"code": "INVALID_REQUEST", "message": str(getattr(exc, "detail", ""))}, status_code=code
        )

    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})
    app.state.wx = state
    return app
