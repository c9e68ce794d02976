"""Size limits on what a client may send to ``/v3/...``, checked before anything is parsed or verified.

- Body: at most ``Settings.max_body_bytes`` (1 MiB; the largest real body, an apply4subject submission,
  is a few KiB). A ``Content-Length`` above it is refused before one byte of the body is read; a chunked
  body without one is read only until it passes the limit (the app's ``_read_body``). Answer: 413
  ``REQUEST_ENTITY_TOO_LARGE`` with ``Connection: close``, so the server stops reading the rest.
- Headers: at most ``Settings.max_header_count`` fields and ``Settings.max_header_bytes`` of names and
  values in all → 400 ``INVALID_REQUEST`` (``detail.location = "header"``).
- HTTP layer: uvicorn's httptools parser buffers a header of any length before the app sees it;
  ``server/http_protocol.py`` (``uvicorn.run(http=BoundedHttpToolsProtocol)``) closes such a connection
  with the same 400 once the unfinished head passes ``HEAD_LIMIT`` bytes, or ``HEAD_TIMEOUT`` seconds
  pass before it is complete; a body still incomplete ``BODY_TIMEOUT`` seconds after its head closes
  the connection (the request is not handled).

These refusals come before signature verification, so (like every pre-verification refusal) they are
not signed; they carry a Request-ID and a WeChat error body.

Outside ``/v3`` (control API, dashboard, the simulated pages) every body is read the same way, before
the route sees it, up to ``Settings.max_control_body_bytes`` (16 MiB) for ``/sandbox/...`` with the
sandbox token and ``Settings.max_form_body_bytes`` (64 KiB) for everything else: the same 413 and
``Connection: close``. Without this, Starlette's ``request.body()`` buffered a body of any size.
"""

from __future__ import annotations

import resource

from starlette.datastructures import Headers
from starlette.types import Scope, Send

from ..protocol import constants as c
from ..protocol.errors import ApiError
from ..protocol.request_ids import new_request_id
from .control import has_token
from .settings import Settings

# The unfinished request head (request line + headers) a connection may hold at the HTTP layer.
HEAD_LIMIT = 64 << 10
# How long a connection may take to send them (server/http_protocol.py): a request head within
# HEAD_TIMEOUT seconds of the connection (or of its first byte, for a later request on it), its body
# within BODY_TIMEOUT seconds of the head (16 MiB, the largest upload, needs ~140 KB/s). Without them a
# connection that sent nothing, or a header line a minute, was held open for ever: enough of them
# exhaust the process's file descriptors (slowloris).
HEAD_TIMEOUT = 30.0
BODY_TIMEOUT = 120.0
# File descriptors a worker keeps for itself (database and WAL files, the replay window's maps, logs,
# PostgreSQL connections, callback deliveries) beyond its clients' connections.
FD_RESERVE = 256


def connection_cap() -> int:
    """Connections a worker holds at once: its open-files limit less FD_RESERVE. A connection past it is
    closed as soon as it is accepted, so a flood of idle connections (each may hold HEAD_TIMEOUT) cannot
    take the descriptors the worker needs for its database: the requests it admits still work. Raise
    the limit (``ulimit -n``) to hold more."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    return max(16, soft - FD_RESERVE)


def body_too_large(limit: int) -> ApiError:
    return ApiError(
        "REQUEST_ENTITY_TOO_LARGE",
        f"请求体过大：the body may be at most {limit} bytes",
        detail={"location": "body", "issue": f"request body larger than {limit} bytes", "limit": limit},
    )


def headers_too_large(issue: str, limit: int) -> ApiError:
    return ApiError(
        "INVALID_REQUEST",
        f"Http头过大：{issue}",
        detail={"location": "header", "issue": issue, "limit": limit},
    )


def check_request(scope: Scope, settings: Settings) -> ApiError | None:
    """The refusal for a request whose headers or declared body size break the limits, else None."""
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    if len(headers) > settings.max_header_count:
        return headers_too_large(
            f"{len(headers)} header fields, at most {settings.max_header_count} allowed",
            settings.max_header_count,
        )
    size = sum(len(k) + len(v) for k, v in headers)
    if size > settings.max_header_bytes:
        return headers_too_large(
            f"{size} bytes of header fields, at most {settings.max_header_bytes} allowed",
            settings.max_header_bytes,
        )
    declared = declared_length(scope)
    if declared is not None and declared > settings.max_body_bytes:
        return body_too_large(settings.max_body_bytes)
    return None


def declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the HTTP server refuses malformed lengths itself
    return None


def web_body_limit(scope: Scope, settings: Settings, sandbox_token: str) -> int:
    """The body limit of a request outside /v3: the control API's with the sandbox token, else a form's
    (so a request without the token never makes the server hold more than a form)."""
    if scope["path"].startswith("/sandbox/") and has_token(sandbox_token, Headers(scope=scope)):
        return settings.max_control_body_bytes
    return settings.max_form_body_bytes


async def refuse(send: Send, err: ApiError, request_id: str | None = None) -> None:
    """Answer with the WeChat error body and close the connection: the rest of the request is not read."""
    body = err.body_bytes()
    headers = [
        (b"content-type", c.JSON_CONTENT_TYPE.encode("latin-1")),
        (c.H_REQUEST_ID.lower().encode("latin-1"), (request_id or new_request_id()).encode("latin-1")),
        (b"content-language", b"zh-CN"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": err.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
