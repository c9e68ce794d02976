"""Turn bodies, queries and path values into models; every failure becomes 400 PARAM_ERROR whose
detail names the field (a JSON pointer for bodies), the offending value and the precise issue."""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar, get_args

from pydantic import BaseModel, ValidationError

from ..models.common import is_sensitive_field
from ..protocol.detail import dotted, error_fields, others_note, shown_value
from ..protocol.errors import ApiError, param_error

M = TypeVar("M", bound=BaseModel)
Location = tuple[int | str, ...]


def json_pointer(loc: tuple[int | str, ...]) -> str:
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in loc)


def _sensitive(model: type[BaseModel], loc: Location) -> bool:
    """Whether ``loc`` is in a field its model marks sensitive (models/common.py: the marker the SDK
    encrypts by): its value is a ciphertext, never echoed."""
    current: type[BaseModel] | None = model
    for part in loc:
        if isinstance(part, int):
            continue  # a list index: the item has the list's type
        if current is None:
            return False
        name = (
            part
            if part in current.model_fields
            else next((n for n, f in current.model_fields.items() if f.alias == part), None)
        )
        if name is None:
            return False
        if is_sensitive_field(current, name):
            return True
        current = _model_in(current.model_fields[name].annotation)
    return False


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model a field's type holds (through Optional, lists and Annotated), None when none."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        if (found := _model_in(arg)) is not None:
            return found
    return None


def _from_validation(exc: ValidationError, location: str, model: type[BaseModel]) -> ApiError:
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
    name = json_pointer if location == "body" else dotted
    field = name(loc)
    note = others_note(error_fields(exc, name)[1:])  # the other wrong fields, so all are fixed at once
    if etype == "missing" or (err.get("input", ...) is None and location == "body"):
        # A null is treated as absent (protocol.md §10): a required field sent as null is missing.
        issue = "is required"
        return param_error(
            field, issue, location=location, message=f"参数“{field}”是必填项 ({field} is required){note}"
        )
    msg = err.get("msg", "invalid value")
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    value = shown_value(field, err.get("input"), sensitive=_sensitive(model, loc))
    return param_error(
        field, msg, value=value, location=location, message=f"参数“{field}”格式错误：{msg}{note}"
    )


# Characters no stored string may hold, refused wherever a request carries text (body strings, path
# and query values), with the same answer on both backends: NUL, which PostgreSQL text cannot store (a
# 500 there, stored on SQLite), and characters above U+FFFF (protocol.md §10).
_NUL_ISSUE = "the NUL character (U+0000) is not supported"
_FOUR_BYTE_ISSUE = "characters outside the 1–3 byte UTF-8 range (e.g. emoji) are not supported"


def _refused_in(text: str) -> str | None:
    """The issue with ``text``, None when it may be taken. Every path and query value of every request
    comes here: the checks run in C (a generator over the characters, ``ord(ch) > 0xFFFF``, cost a W4
    query ≈ 2.5 % of its CPU beside the RSA work)."""
    if "\x00" in text:
        return _NUL_ISSUE
    if not text.isascii() and max(text) > "\uffff":
        return _FOUR_BYTE_ISSUE
    return None


_WHY = {
    _NUL_ISSUE: "the NUL character U+0000 is not supported",
    _FOUR_BYTE_ISSUE: "4-byte UTF-8 characters are not supported",
}


def _refusal(field: str, issue: str, value: Any, location: str) -> ApiError:
    return param_error(
        field, issue, value=value, location=location, message=f"参数“{field}”包含不支持的字符 ({_WHY[issue]})"
    )


def first_text(doc: Any, refused: Callable[[str], str | None]) -> tuple[Location, str | None, str] | None:
    """The location, value (None for a key) and issue of the first string or key in a decoded JSON
    document, breadth first, that ``refused`` names an issue for; None when there is none. Iterative
    (a body nested as deep as the parser allows must not exhaust the stack), and linear in the nodes."""
    queue: deque[tuple[Location, Any]] = deque([((), doc)])
    while queue:
        loc, node = queue.popleft()
        if isinstance(node, str) and (issue := refused(node)) is not None:
            return loc, node, issue
        if isinstance(node, dict):
            for key, item in node.items():
                if (issue := refused(key)) is not None:
                    return (*loc, key), None, issue
                queue.append(((*loc, key), item))
        elif isinstance(node, list):
            queue.extend(((*loc, i), item) for i, item in enumerate(node))
    return None


# What may carry a refused character: the lead byte of a 4-byte UTF-8 sequence (or a byte no UTF-8
# text holds), the escape of a high surrogate ("\ud83d\ude00" is how json.dumps and wechatpayv3 send
# an emoji by default), or the escape of NUL (a raw NUL byte is not valid JSON). A regex scans the
# body in C (a generator over its bytes cost ~20 µs per request); a match is then checked on the
# decoded document (an escaped backslash before "ud83d" is plain text).
_MAYBE_REFUSED = re.compile(rb"[\xf0-\xff]|\\u[dD][89abAB]|\\u0000")


def _refuse_unsupported_characters(body: bytes, model: type[BaseModel]) -> None:
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
    except (ValueError, RecursionError):  # RecursionError: nested deeper than json.loads goes
        return  # not JSON (for us): the model's parse says so
    found = first_text(doc, _refused_in)
    if found is not None:
        loc, value, issue = found
        field = json_pointer(loc) if loc else "/"
        raise _refusal(field, issue, shown_value(field, value, sensitive=_sensitive(model, loc)), "body")


def _refuse_unsupported(values: dict[str, Any], location: str) -> None:
    """Path and query values arrive percent-decoded: ``%00`` is a NUL, ``%F0%9F%98%80`` an emoji. Both
    are refused as in a body, naming the parameter (an emoji ``sub_mchid`` was a 403 NO_AUTH, an emoji
    ``sp_openid`` to delete "never added", where the same value in R1's body is a PARAM_ERROR)."""
    for name, value in values.items():
        if isinstance(value, str) and (issue := _refused_in(value)) is not None:
            raise _refusal(name, issue, shown_value(name, value), location)


_BOM = b"\xef\xbb\xbf"


def parse_body(model: type[M], body: bytes) -> M:
    if not body.strip():
        raise param_error("/", "request body is required", message="请求体不能为空 (a JSON body is required)")
    if _MAYBE_REFUSED.search(body):
        _refuse_unsupported_characters(body, model)
    stripped = body.lstrip()
    if stripped.startswith(_BOM):  # a JSON object behind it was refused as "must be a JSON object"
        raise param_error(
            "/",
            "body starts with a UTF-8 byte order mark (EF BB BF); send the JSON text without it (RFC 8259 §8.1)",
            message="请求体不能以BOM开头 (request body starts with a byte order mark)",
        )
    if not stripped.startswith(b"{"):
        raise param_error("/", "body must be a JSON object", message="请求体必须是JSON对象")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise _from_validation(exc, "body", model) from None


def single_values(params: dict[str, list[str]]) -> dict[str, str]:
    """A query string's parameters, one value each: a parameter given twice with different values is
    a PARAM_ERROR naming it (the first was taken silently, so ``sub_mchid=A&sub_mchid=B`` acted for A);
    the same value twice is that value."""
    out: dict[str, str] = {}
    for name, values in params.items():
        if len(set(values)) > 1:
            shown = shown_value(name, ", ".join(values))
            raise param_error(
                name,
                f"given {len(values)} times with different values; give it once",
                value=shown,
                location="query",
                message=f"参数“{name}”重复且取值不同 ({name} appears more than once with different values)",
            )
        out[name] = values[0]
    return out


def parse_mapping(model: type[M], values: dict[str, Any], location: str) -> M:
    _refuse_unsupported(values, location)
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise _from_validation(exc, location, model) from None
