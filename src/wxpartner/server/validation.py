"""Turn bodies, queries and path values into models; every failure becomes 400 PARAM_ERROR whose
detail names the field (a JSON pointer for bodies), the offending value and the precise issue."""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ..protocol.errors import ApiError, param_error

M = TypeVar("M", bound=BaseModel)


def json_pointer(loc: tuple[int | str, ...]) -> str:
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in loc)


def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) > 256:
        return value[:256] + "…"
    if isinstance(value, dict | list):
        return None  # nested objects are named by the pointer, not echoed back
    return value


def _from_validation(exc: ValidationError, location: str) -> ApiError:
    err = exc.errors(include_url=False)[0]
    loc = tuple(err.get("loc", ()))
    etype = err.get("type", "")
    if etype == "json_invalid":
        return param_error(
            "/",
            f"body is not valid JSON: {err.get('msg', '')}",
            location=location,
            message="请求体不是合法的JSON (request body is not valid JSON)",
        )
    field = json_pointer(loc) if location == "body" else ".".join(str(p) for p in loc)
    if etype == "missing" or (err.get("input", ...) is None and location == "body"):
        # A null is treated as absent (protocol.md §10): a required field sent as null is missing.
        issue = "is required"
        return param_error(
            field, issue, location=location, message=f"参数“{field}”是必填项 ({field} is required)"
        )
    msg = err.get("msg", "invalid value")
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    value = _short(err.get("input"))
    return param_error(field, msg, value=value, location=location, message=f"参数“{field}”格式错误：{msg}")


def _four_byte_field(doc: Any) -> tuple[str, str | None] | None:
    """The JSON pointer (and value) of the first string holding a character above U+FFFF, so the
    refusal names the field like every other field error; None when there is none."""
    stack: list[tuple[tuple[int | str, ...], Any]] = [((), doc)]
    while stack:
        loc, node = stack.pop(0)
        if isinstance(node, str) and any(ord(ch) > 0xFFFF for ch in node):
            return json_pointer(loc) if loc else "/", _short(node)
        if isinstance(node, dict):
            for key, item in node.items():
                if any(ord(ch) > 0xFFFF for ch in key):
                    return json_pointer((*loc, key)), None
                stack.append(((*loc, key), item))
        elif isinstance(node, list):
            stack.extend(((*loc, i), item) for i, item in enumerate(node))
    return None


# What may carry a character above U+FFFF: the lead byte of a 4-byte UTF-8 sequence (or a byte no
# UTF-8 text holds), or the escape of a high surrogate ("\ud83d\ude00" is how json.dumps and
# wechatpayv3 send an emoji by default). A regex scans the body in C (a generator over its bytes cost
# ~20 µs per request); a match is then checked on the decoded document (an escaped backslash before
# "ud83d" is plain text).
_MAYBE_FOUR_BYTE = re.compile(rb"[\xf0-\xff]|\\u[dD][89abAB]")


def _refuse_four_byte_characters(body: bytes) -> None:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise param_error(
            "/",
            f"body is not valid UTF-8 (byte {body[exc.start]:#04x} at offset {exc.start})",
            message="请求体不是合法的UTF-8编码 (request body is not valid UTF-8)",
        ) from None
    try:
        doc = json.loads(text)
    except ValueError:
        return  # not JSON: the model's parse says so
    found = _four_byte_field(doc)
    if found is not None:
        pointer, value = found
        raise param_error(
            pointer,
            "characters outside the 1–3 byte UTF-8 range (e.g. emoji) are not supported",
            value=value,
            message=f"参数“{pointer}”包含不支持的字符 (4-byte UTF-8 characters are not supported)",
        )


def parse_body(model: type[M], body: bytes) -> M:
    if not body.strip():
        raise param_error("/", "request body is required", message="请求体不能为空 (a JSON body is required)")
    if _MAYBE_FOUR_BYTE.search(body):
        _refuse_four_byte_characters(body)
    stripped = body.lstrip()
    if not stripped.startswith(b"{"):
        raise param_error("/", "body must be a JSON object", message="请求体必须是JSON对象")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise _from_validation(exc, "body") from None


def parse_mapping(model: type[M], values: dict[str, Any], location: str) -> M:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise _from_validation(exc, location) from None
