"""Structured JSON logs: one object per line, with the Request-ID of the request a line is about.

Switched on with ``WXPARTNER_LOG_FORMAT=json`` (every worker reads it). Access lines come from the
pipeline observer below and carry only routing facts: never headers, bodies, keys or decrypted fields.
A path from a request is logged through ``shown_path``: cut as the journal cuts it and with control
characters escaped, so a request can neither write a line of its own nor a line of 64 KiB.
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
PATH_MAX = 1024  # characters of a logged path: the journal's column (store/ops_tables.py)


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


def shown_path(path: str) -> str:
    """``path`` as a log line may carry it: at most PATH_MAX characters (then "…"), and every character
    that is not printable (CR, LF, ESC, U+0085…) as its ``\\xNN`` escape. httptools refuses such bytes
    in a request line, but a decoded path (``scope["path"]``: %0d%0a is CR LF there) or another ASGI
    server can hand them over, and a plain-text log would break its line there."""
    cut = path if len(path) <= PATH_MAX else path[:PATH_MAX] + "…"
    if cut.isprintable():
        return cut
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in cut)


LEVELS = ("critical", "error", "warning", "info", "debug")


def level_from_env() -> str:
    """``WXPARTNER_LOG_LEVEL`` (default INFO), or ValueError naming the levels. ``serve`` checks it
    before it starts: a typo was a ValueError traceback in every worker after "serving" was printed."""
    level = os.environ.get("WXPARTNER_LOG_LEVEL", "INFO").strip().upper()
    if level not in logging.getLevelNamesMapping():  # WARN, FATAL and NOTSET too, as before
        raise ValueError(f"WXPARTNER_LOG_LEVEL={level.lower()!r}: one of {', '.join(LEVELS)}")
    return level


FORMATS = ("json", "text")


def format_from_env() -> str:
    """``WXPARTNER_LOG_FORMAT``: ``json``, or ``text`` (also when unset); anything else is a ValueError
    naming them, which ``serve`` says before it starts (a misspelt ``jsno`` gave plain text silently)."""
    raw = os.environ.get("WXPARTNER_LOG_FORMAT", "").strip().lower() or "text"
    if raw not in FORMATS:
        raise ValueError(f"WXPARTNER_LOG_FORMAT={raw!r}: one of {', '.join(FORMATS)} (unset: text)")
    return raw


def json_format_on() -> bool:
    return os.environ.get("WXPARTNER_LOG_FORMAT", "").strip().lower() == "json"


def configure_from_env() -> None:
    """Install the JSON handler on the ``wxpartner`` logger once per process, if asked to."""
    global _configured
    if _configured or not json_format_on():
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("wxpartner")
    root.addHandler(handler)
    root.setLevel(level_from_env())
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
    path = shown_path(req.raw_path)
    extra = {
        "request_id": request_id,
        "mchid": ctx.caller.mchid if ctx is not None else None,
        "method": req.method,
        "path": path,
        "operation": op_id,
        "status": resp.status,
        "code": error_code(resp),
        "latency_ms": round((time.perf_counter() - started) * 1000, 3),
    }
    access_log.info("%s %s -> %s", req.method, path, resp.status or "dropped", extra=extra)
