"""Structured JSON logs: one object per line, with the Request-ID of the request a line is about.

Switched on with ``WXPARTNER_LOG_FORMAT=json`` (every worker reads it). Access lines come from the
pipeline observer below and carry only routing facts: never headers, bodies, keys or decrypted fields.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

from ..protocol.errors import ApiError
from .http import RawRequest, RawResponse
from .responses import error_code

access_log = logging.getLogger("wxpartner.access")
_FIELDS = ("request_id", "mchid", "method", "path", "operation", "status", "code", "latency_ms", "fault")
_configured = False


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in _FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure_from_env() -> None:
    """Install the JSON handler on the ``wxpartner`` logger once per process, if asked to."""
    global _configured
    if _configured or os.environ.get("WXPARTNER_LOG_FORMAT", "").lower() != "json":
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("wxpartner")
    root.addHandler(handler)
    root.setLevel(os.environ.get("WXPARTNER_LOG_LEVEL", "INFO").upper())
    root.propagate = False
    _configured = True


def observe(
    ctx: Any,
    req: RawRequest,
    resp: RawResponse,
    request_id: str,
    op_id: str,
    started: float,
    refusal: ApiError | None = None,
) -> None:
    if not access_log.isEnabledFor(logging.INFO):
        return
    extra = {
        "request_id": request_id,
        "mchid": ctx.caller.mchid if ctx is not None else None,
        "method": req.method,
        "path": req.raw_path,
        "operation": op_id,
        "status": resp.status,
        "code": error_code(resp),
        "latency_ms": round((time.perf_counter() - started) * 1000, 3),
    }
    access_log.info("%s %s -> %s", req.method, req.raw_path, resp.status or "dropped", extra=extra)
