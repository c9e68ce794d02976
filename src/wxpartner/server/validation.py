"""Turn bodies, queries and path values into models; every failure becomes 400 PARAM_ERROR whose
detail names the field (a JSON pointer for bodies), the offending value and the precise issue."""

from __future__ import annotations

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
    if etype == "missing":
        issue = "is required"
        return param_error(
            field, issue, location=location, message=f"参数“{field}”是必填项 ({field} is required)"
        )
    msg = err.get("msg", "invalid value")
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    value = _short(err.get("input"))
    return param_error(field, msg, value=value, location=location, message=f"参数“{field}”格式错误：{msg}")


def parse_body(model: type[M], body: bytes) -> M:
    if not body.strip():
        raise param_error("/", "request body is required", message="请求体不能为空 (a JSON body is required)")
    if any(b >= 0xF0 for b in body):
        raise param_error(
            "/",
            "characters outside the 1–3 byte UTF-8 range (e.g. emoji) are not supported",
            message="请求体包含不支持的字符 (4-byte UTF-8 characters are not supported)",
        )
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
