"""Checks of control-API and dashboard input (JSON bodies, query strings, forms, path segments), shared so
every endpoint refuses a bad value the same way: ``ControlError`` 400 ``PARAM_ERROR`` naming it, raised
before anything is read or written.

What they keep out is what the database cannot take: integers past a column's range, infinite or NaN
floats, strings longer than their column or holding a NUL (PostgreSQL refuses both with an error, so
they were 500s there; SQLite stores them). The dashboard renders a ``ControlError`` as a 400 page.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Literal, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from ..protocol.detail import dotted, error_fields, listed, others_note, shown_value
from ..store.schema import BIGINT_MAX, BIGINT_MIN
from .validation import first_text

M = TypeVar("M", bound=BaseModel)

# Where a refused parameter came from, as ``detail.location`` names it (protocol.md §6).
Location = Literal["body", "query", "form", "path"]


class ControlError(Exception):
    """A control-API refusal; ``detail`` is the business API's ``detail`` object (protocol.md §6: field,
    location, value, issue, state...) when the refusal has one, so both APIs answer in one shape."""

    def __init__(self, status: int, code: str, message: str, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.detail = status, code, message, detail


def bad(
    message: str,
    *,
    field: str | None = None,
    location: Location | None = None,
    issue: str | None = None,
    value: Any = None,
) -> ControlError:
    """400 PARAM_ERROR: ``message`` for people, ``detail`` for programs (the business API's shape, as
    ``protocol.errors.param_error`` builds it): ``field`` as the message names it (a name, a dotted path
    or a JSON pointer), ``location``, ``issue`` (a short reason) and ``value`` when ``shown_value``
    lets it be echoed."""
    shown = shown_value(field, value)
    detail = {
        key: item
        for key, item in (("field", field), ("location", location), ("value", shown), ("issue", issue))
        if item is not None
    }
    return ControlError(400, "PARAM_ERROR", message, detail or None)


def integer(
    value: Any,
    name: str,
    *,
    location: Location,
    lo: int = BIGINT_MIN,
    hi: int = BIGINT_MAX,
    text: bool = True,
    what: str = "a whole number",
) -> int:
    """A JSON integer (a whole float such as 2.0 too), or with ``text`` its decimal text (query strings
    and forms carry text), between ``lo`` and ``hi``; ``location`` is where ``name`` came from."""

    def refused(message: str, issue: str) -> ControlError:
        return bad(message, field=name, location=location, issue=issue, value=value)

    if isinstance(value, bool):
        raise refused(f"{name} must be {what}", "not an integer")
    if isinstance(value, int):
        result = value
    elif isinstance(value, float) and value.is_integer():  # False for inf and NaN
        result = int(value)
    elif isinstance(value, str) and text:
        try:
            result = int(value.strip())
        except ValueError:  # also a text of more than 4300 digits
            raise refused(f"{name} must be {what}", "not an integer") from None
    else:
        raise refused(f"{name} must be {what}", "not an integer")
    if not lo <= result <= hi:
        raise refused(f"{name} must be between {lo} and {hi}", "out of range")
    return result


def optional_integer(value: Any, name: str, *, location: Location, **limits: Any) -> int | None:
    """``integer``, or None for an absent or empty value."""
    return None if value is None or value == "" else integer(value, name, location=location, **limits)


def int_param(params: Any, name: str, default: int, lo: int, hi: int) -> int:
    """A query-string integer between ``lo`` and ``hi``; ``default`` when absent or empty."""
    value = optional_integer(params.get(name), name, location="query", lo=lo, hi=hi)
    return default if value is None else value


def choice_param(
    params: Any, name: str, allowed: Sequence[str], *, issue: str = "not an allowed value"
) -> str | None:
    """An optional query-string value that must be one of ``allowed``; None when absent or empty (a value
    outside them was an empty or unfiltered page, silently)."""
    value = params.get(name) or None
    if value is not None and value not in allowed:
        raise bad(
            f"{name} must be one of {', '.join(allowed)}",
            field=name,
            location="query",
            issue=issue,
            value=value,
        )
    return value


def number(
    value: Any,
    name: str,
    *,
    location: Location,
    lo: float = -math.inf,
    hi: float = math.inf,
    text: bool = True,
    what: str = "a finite number",
) -> float:
    """A finite JSON number (bool is not one; Infinity and NaN are refused), or with ``text`` its decimal
    text, between ``lo`` and ``hi``."""

    def refused(message: str, issue: str) -> ControlError:
        return bad(message, field=name, location=location, issue=issue, value=value)

    try:
        if isinstance(value, bool) or not (
            isinstance(value, int | float) or (text and isinstance(value, str))
        ):
            raise ValueError
        result = float(value)  # OverflowError for an int past the float range
    except (ValueError, OverflowError):
        raise refused(f"{name} must be {what}", "not a number") from None
    if not math.isfinite(result):
        raise refused(f"{name} must be {what}", "not finite")
    if not lo <= result <= hi:
        raise refused(f"{name} must be between {lo:g} and {hi:g}", "out of range")
    return result


def known_fields(body: dict[str, Any], *names: str, location: Location) -> None:
    """Refuse a body with a field the endpoint does not read: a misspelt one would otherwise be ignored
    and the call would do something else (``{"mchd": …}`` to /sandbox/reset reset every merchant).
    ``detail.field`` is the first unknown one (the message lists them, the first few by name)."""
    unknown = sorted(set(body) - set(names))
    if unknown:
        raise bad(
            f"unknown field(s): {listed(unknown)}; known: {', '.join(names)}",
            field=unknown[0],
            location=location,
            issue="unknown field",
        )


def flag(value: Any, name: str, *, location: Location) -> bool:
    """A JSON boolean, or absent (False): the string "false" must not switch anything on."""
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad(
            f"{name} must be true or false", field=name, location=location, issue="not a boolean", value=value
        )
    return value


def string(
    value: Any, name: str, *, location: Location, max_length: int, required: bool = True
) -> str | None:
    """A non-empty string of at most ``max_length`` characters (its column's length) without NUL; None
    when absent and not ``required``."""
    if value is None and not required:
        return None

    def refused(message: str, issue: str) -> ControlError:
        return bad(message, field=name, location=location, issue=issue, value=value)

    if not isinstance(value, str) or not value:
        message = (
            f"{name} is required (a non-empty string)" if required else f"{name} must be a non-empty string"
        )
        issue = "required" if value is None else "empty" if value == "" else "not a string"
        raise refused(message, issue)
    if len(value) > max_length:
        raise refused(f"{name} must be at most {max_length} characters", "too long")
    if "\x00" in value:
        raise refused(f"{name} must not contain NUL characters", "contains NUL")
    return value


def length_of(column: sa.Column[Any]) -> int:
    """The declared length of a string column: what PostgreSQL enforces (SQLite does not)."""
    length = getattr(column.type, "length", None)
    assert isinstance(length, int), column
    return length


# How a message names a parameter of each location.
_PARAMETER = {"query": "query parameter", "path": "path parameter", "form": "form field", "body": "field"}


def refuse_nul(items: Iterable[tuple[str, Any]], location: Location) -> None:
    """Query, path or form parameters: no NUL (no column can hold it on PostgreSQL, so none can match
    it)."""
    for key, value in items:
        if "\x00" in key or (isinstance(value, str) and "\x00" in value):
            raise bad(
                f"{_PARAMETER[location]} {key!r} must not contain NUL characters",
                field=key,
                location=location,
                issue="contains NUL",
                value=value,
            )


Endpoint = Callable[[Request], Awaitable[Response]]


def input_checked(fn: Endpoint, render: Callable[[ControlError], Response]) -> Endpoint:
    """A page endpoint whose bad input (a NUL in a query or path parameter here, anything it checks
    with these functions inside) is answered by ``render(refusal)``, a 400 page, instead of a 500."""

    async def endpoint(request: Request) -> Response:
        try:
            refuse_nul(request.query_params.multi_items(), "query")
            refuse_nul(request.path_params.items(), "path")
            return await fn(request)
        except ControlError as exc:
            return render(exc)

    endpoint.__name__ = fn.__name__
    return endpoint


def nul_pointer(data: Any) -> str | None:
    """The JSON pointer of a string (or key) in ``data`` that holds a NUL ("" for ``data`` itself); None
    when none does."""
    found = first_text(data, lambda text: "NUL" if "\x00" in text else None)
    return None if found is None else "".join(f"/{part}" for part in found[0])


# Pydantic's error types as ``detail.issue`` words (the ones the params above use); another type is
# given as pydantic's message.
_PYDANTIC_ISSUES = {
    "missing": "required",
    "extra_forbidden": "unknown field",
    "string_type": "not a string",
    "string_too_short": "too short",
    "string_too_long": "too long",
    "string_pattern_mismatch": "pattern mismatch",
    "literal_error": "not an allowed value",
    "bool_type": "not a boolean",
    "bool_parsing": "not a boolean",
    "int_type": "not an integer",
    "int_parsing": "not an integer",
    "dict_type": "not an object",
    "model_type": "not an object",
    "list_type": "not a list",
}


def invalid(exc: ValidationError, location: Location, *, named: bool = True) -> ControlError:
    """The first error of ``exc`` as a 400 whose detail names its field (a dotted path) and issue; the
    message is pydantic's, after the field when ``named``, then which other fields are wrong."""
    first = exc.errors(include_url=False)[0]
    where = dotted(tuple(first["loc"]))
    note = others_note(error_fields(exc)[1:])
    return bad(
        (f"{where}: {first['msg']}" if where and named else str(first["msg"])) + note,
        field=where or None,
        location=location,
        issue=_PYDANTIC_ISSUES.get(first["type"], str(first["msg"])),
        value=None if first["type"] == "extra_forbidden" else first.get("input"),
    )


def validated(model: type[M], data: Any, *, location: Location) -> M:
    """``model`` from a request body; the first validation error as a 400 naming its field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc, location) from None
