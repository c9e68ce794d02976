"""Checks of control-API and dashboard input (JSON bodies, query strings, forms, path segments), shared so
every endpoint refuses a bad value the same way: ``ControlError`` 400 ``PARAM_ERROR`` naming it, raised
before anything is read or written.

What they keep out is what the database cannot take: integers past a column's range, infinite or NaN
floats, strings longer than their column or holding a NUL (PostgreSQL refuses both with an error, so
they were 500s there; SQLite stores them). The dashboard renders a ``ControlError`` as a 400 page.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from ..store.schema import BIGINT_MAX, BIGINT_MIN
from .validation import first_text

M = TypeVar("M", bound=BaseModel)


class ControlError(Exception):
    """A control-API refusal; ``detail`` is the business API's ``detail`` object (protocol.md §6: field,
    location, value, issue, state...) when the refusal has one, so both APIs answer in one shape."""

    def __init__(self, status: int, code: str, message: str, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.detail = status, code, message, detail


def bad(message: str) -> ControlError:
    return ControlError(400, "PARAM_ERROR", message)


def integer(
    value: Any,
    name: str,
    *,
    lo: int = BIGINT_MIN,
    hi: int = BIGINT_MAX,
    text: bool = True,
    what: str = "a whole number",
) -> int:
    """A JSON integer (a whole float such as 2.0 too), or with ``text`` its decimal text (query strings
    and forms carry text), between ``lo`` and ``hi``."""
    if isinstance(value, bool):
        raise bad(f"{name} must be {what}")
    if isinstance(value, int):
        result = value
    elif isinstance(value, float) and value.is_integer():  # False for inf and NaN
        result = int(value)
    elif isinstance(value, str) and text:
        try:
            result = int(value.strip())
        except ValueError:  # also a text of more than 4300 digits
            raise bad(f"{name} must be {what}") from None
    else:
        raise bad(f"{name} must be {what}")
    if not lo <= result <= hi:
        raise bad(f"{name} must be between {lo} and {hi}")
    return result


def optional_integer(value: Any, name: str, **limits: Any) -> int | None:
    """``integer``, or None for an absent or empty value."""
    return None if value is None or value == "" else integer(value, name, **limits)


def int_param(params: Any, name: str, default: int, lo: int, hi: int) -> int:
    """A query-string integer between ``lo`` and ``hi``; ``default`` when absent or empty."""
    value = optional_integer(params.get(name), name, lo=lo, hi=hi)
    return default if value is None else value


def number(
    value: Any,
    name: str,
    *,
    lo: float = -math.inf,
    hi: float = math.inf,
    text: bool = True,
    what: str = "a finite number",
) -> float:
    """A finite JSON number (bool is not one; Infinity and NaN are refused), or with ``text`` its decimal
    text, between ``lo`` and ``hi``."""
    try:
        if isinstance(value, bool) or not (
            isinstance(value, int | float) or (text and isinstance(value, str))
        ):
            raise ValueError
        result = float(value)  # OverflowError for an int past the float range
    except (ValueError, OverflowError):
        raise bad(f"{name} must be {what}") from None
    if not math.isfinite(result):
        raise bad(f"{name} must be {what}")
    if not lo <= result <= hi:
        raise bad(f"{name} must be between {lo:g} and {hi:g}")
    return result


def known_fields(body: dict[str, Any], *names: str) -> None:
    """Refuse a body with a field the endpoint does not read: a misspelt one would otherwise be ignored
    and the call would do something else (``{"mchd": …}`` to /sandbox/reset reset every merchant)."""
    unknown = sorted(set(body) - set(names))
    if unknown:
        raise bad(f"unknown field(s): {', '.join(unknown)}; known: {', '.join(names)}")


def flag(value: Any, name: str) -> bool:
    """A JSON boolean, or absent (False): the string "false" must not switch anything on."""
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad(f"{name} must be true or false")
    return value


def string(value: Any, name: str, *, max_length: int, required: bool = True) -> str | None:
    """A non-empty string of at most ``max_length`` characters (its column's length) without NUL; None
    when absent and not ``required``."""
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise bad(
            f"{name} is required (a non-empty string)" if required else f"{name} must be a non-empty string"
        )
    if len(value) > max_length:
        raise bad(f"{name} must be at most {max_length} characters")
    if "\x00" in value:
        raise bad(f"{name} must not contain NUL characters")
    return value


def length_of(column: sa.Column[Any]) -> int:
    """The declared length of a string column: what PostgreSQL enforces (SQLite does not)."""
    length = getattr(column.type, "length", None)
    assert isinstance(length, int), column
    return length


def refuse_nul(items: Iterable[tuple[str, Any]], where: str) -> None:
    """Query or path parameters: no NUL (no column can hold it on PostgreSQL, so none can match it)."""
    for key, value in items:
        if "\x00" in key or (isinstance(value, str) and "\x00" in value):
            raise bad(f"{where} {key!r} must not contain NUL characters")


Endpoint = Callable[[Request], Awaitable[Response]]


def input_checked(fn: Endpoint, render: Callable[[str], Response]) -> Endpoint:
    """A page endpoint whose bad input (a NUL in a query or path parameter here, anything it checks
    with these functions inside) is answered by ``render(message)``, a 400 page, instead of a 500."""

    async def endpoint(request: Request) -> Response:
        try:
            refuse_nul(request.query_params.multi_items(), "query parameter")
            refuse_nul(request.path_params.items(), "path parameter")
            return await fn(request)
        except ControlError as exc:
            return render(exc.message)

    endpoint.__name__ = fn.__name__
    return endpoint


def nul_pointer(data: Any) -> str | None:
    """The JSON pointer of a string (or key) in ``data`` that holds a NUL ("" for ``data`` itself); None
    when none does."""
    found = first_text(data, lambda text: "NUL" if "\x00" in text else None)
    return None if found is None else "".join(f"/{part}" for part in found[0])


def validated(model: type[M], data: Any) -> M:
    """``model`` from a request body; the first validation error as a 400 naming its field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise bad(f"{where}: {first['msg']}" if where else str(first["msg"])) from None
