"""Pages a person acts on (the dashboard; the employee's authorization and payment pages; the
applyment's confirmation page) may not be shown inside another site's frame: a page that frames one
invisibly could lead its visitor into a click that consents, pays or confirms (clickjacking)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from .params import Endpoint


def forbid_framing(response: Response) -> Response:
    response.headers["X-Frame-Options"] = "DENY"  # older browsers
    response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
    return response


def unframed(fn: Endpoint) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        return forbid_framing(await fn(request))

    endpoint.__name__ = fn.__name__
    return endpoint
