"""The APIv3 error catalogue (code -> HTTP status) and the JSON error body (spec: protocol.md §6)."""

from __future__ import annotations

import json
from typing import Any

# code -> (HTTP status, default Chinese message)
CATALOGUE: dict[str, tuple[int, str]] = {
    "PARAM_ERROR": (400, "参数错误"),
    "INVALID_REQUEST": (400, "无效请求"),
    "SIGN_ERROR": (401, "签名错误"),
    "NO_AUTH": (403, "无权限"),
    "NOAUTH": (403, "无权限"),
    "RESOURCE_NOT_EXISTS": (404, "资源不存在"),
    "NOT_FOUND": (404, "资源不存在"),
    "ORDER_NOT_EXIST": (404, "订单不存在"),
    "MCH_NOT_EXISTS": (404, "商户号不存在"),
    "METHOD_NOT_ALLOWED": (405, "请求方法不允许"),
    "REQUEST_ENTITY_TOO_LARGE": (413, "请求体过大"),
    "FREQUENCY_LIMITED": (429, "频率超限"),
    "RATELIMIT_EXCEEDED": (429, "频率超限"),
    "SYSTEM_ERROR": (500, "系统异常，请用相同参数重试"),
    "SYSTEMERROR": (500, "系统异常，请用相同参数重试"),
    "SERVICE_UNAVAILABLE": (503, "服务不可用"),
}


def status_for(code: str) -> int:
    return CATALOGUE.get(code, (400, ""))[0]


class ApiError(Exception):
    """A refusal in WeChat Pay's vocabulary. Domain code raises it; the server renders it."""

    def __init__(
        self,
        code: str,
        message: str | None = None,
        *,
        detail: dict[str, Any] | None = None,
        status: int | None = None,
        retry_after: int | None = None,
    ) -> None:
        self.code = code
        self.status = status if status is not None else status_for(code)
        self.message = message or CATALOGUE.get(code, (400, code))[1]
        self.detail = detail
        # Seconds to wait before repeating, where the server knows it (a rate limit's window): the
        # answer's Retry-After header. Not part of the body, so not signed over either way.
        self.retry_after = retry_after
        super().__init__(f"{self.status} {code}: {self.message}")

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            out["detail"] = self.detail
        return out

    def body_bytes(self) -> bytes:
        return json.dumps(self.body(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def param_error(
    field: str, issue: str, *, value: Any = None, location: str = "body", message: str | None = None
) -> ApiError:
    """400 PARAM_ERROR whose detail names the field (a JSON pointer in bodies) and the offending value."""
    detail: dict[str, Any] = {"field": field, "location": location, "issue": issue}
    if value is not None:
        detail["value"] = value
    return ApiError("PARAM_ERROR", message or f"参数错误：{field} {issue}", detail=detail)


def not_found(what: str, english: str, *, detail: dict[str, Any] | None = None) -> ApiError:
    """404 RESOURCE_NOT_EXISTS naming the resource in both languages, as every message here does;
    ``detail`` (``field_at``) says which parameter named it where a path names several."""
    return ApiError("RESOURCE_NOT_EXISTS", f"{what}不存在 ({english} does not exist)", detail=detail)


def invalid_state(what: str, state: str, action: str) -> ApiError:
    return ApiError(
        "INVALID_REQUEST",
        f"当前状态不允许此操作：{what} is {state}, cannot {action}",
        detail={"state": state},
    )


def field_at(name: str, location: str) -> dict[str, str]:
    """``detail.field`` and ``detail.location`` of a request parameter (protocol.md §6): a JSON pointer
    for a body field, the name for a path or query parameter."""
    return {"field": f"/{name}" if location == "body" else name, "location": location}


def no_auth(reason: str, detail: dict[str, Any] | None = None) -> ApiError:
    return ApiError("NO_AUTH", f"无权限：{reason}", detail=detail)
