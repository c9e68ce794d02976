"""Reading back what the pipeline answered (error code and message), for the journal, metrics and logs."""

from __future__ import annotations

import json

from .http import RawResponse


def error_fields(resp: RawResponse) -> tuple[str | None, str | None]:
    """(code, message) of a WeChat error body; (None, None) for successes and non-JSON bodies."""
    if resp.status < 400 or not resp.body or not resp.body.startswith(b"{"):
        return None, None
    try:
        data = json.loads(resp.body)
    except ValueError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    code = data.get("code")
    message = data.get("message")
    return (str(code)[:64] if code else None), (str(message)[:512] if message else None)


def error_code(resp: RawResponse) -> str | None:
    return error_fields(resp)[0]
