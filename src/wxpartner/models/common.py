"""Base model and field types shared by every family (spec README: conventions).

Enums: requests use closed Literals (the server refuses a value it does not know); answers and
callback resources take ``Known | str``: WeChat Pay adds values (apply4subject's merged list already
has more states than the page), and an answer to a write that took effect must still decode. The
Literal documents the known values; anything else arrives as the string sent. Times in answers are
plain strings for the same reason (see Rfc3339)."""

from __future__ import annotations

import re
from typing import Annotated, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, StringConstraints

from ..protocol.times import parse_rfc3339


def is_sensitive_field(model: type[BaseModel], name: str) -> bool:
    """Whether ``model`` marks its field ``name`` sensitive (encrypted on the wire, protocol.md §8):
    ``json_schema_extra={"sensitive": True}`` as our models do, or any ``Annotated`` metadata object
    with ``sensitive = True`` or a class named ``Sensitive``/``SensitiveMarker``, as a caller's own
    models may. The SDK encrypts such a field; the server never echoes its value in an error."""
    info = model.model_fields[name]
    for meta in info.metadata:
        # The marker class itself (``Annotated[str, Sensitive]``, as the README writes it) or an
        # instance of it: the class was taken for its type, ``type``, and the field went out plain.
        named = (meta if isinstance(meta, type) else type(meta)).__name__
        if getattr(meta, "sensitive", False) is True or named in ("Sensitive", "SensitiveMarker"):
            return True
    extra = info.json_schema_extra
    return isinstance(extra, dict) and extra.get("sensitive") is True


class WxModel(BaseModel):
    """Strict JSON types (an amount sent as a string is an error, as at WeChat Pay); unknown keys are
    ignored (new keys may appear at any time); absent and null mean the same."""

    model_config = ConfigDict(strict=True, extra="ignore", populate_by_name=True, frozen=False)


def _rfc3339(value: str) -> str:
    parse_rfc3339(value)
    return value


def _date(value: str) -> str:
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):  # ASCII: \d takes any script's digits
        raise ValueError("expected a date yyyy-MM-DD")
    import datetime as dt

    dt.date.fromisoformat(value)
    return value


# RFC 3339 date-time with offset, kept as the exact string received: for requests (the server checks
# them). Answers keep times as plain strings: a client must not refuse a write's answer over a time
# format (seed 001's own example has "2023-01-01T00:00+08:00", without seconds).
Rfc3339 = Annotated[str, AfterValidator(_rfc3339)]
Date = Annotated[str, AfterValidator(_date)]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank (only whitespace)")
    return value


# A required (必填) text: not only whitespace (U+3000 too), as a decrypted apply4subject value is not.
NotBlank = AfterValidator(_not_blank)


def _none_as_empty(value: object) -> object:
    return [] if value is None else value


Item = TypeVar("Item")
# A list of an answer that WeChat Pay may leave out (or send as null) when it is empty: read as [] either
# way, with ``Field(default_factory=list)``, so a caller indexes and iterates it without a None check.
ListOrAbsent = Annotated[list[Item], BeforeValidator(_none_as_empty)]


def limited(max_length: int, min_length: int = 1, pattern: str | None = None) -> object:
    return StringConstraints(min_length=min_length, max_length=max_length, pattern=pattern)


Mchid = Annotated[str, StringConstraints(min_length=1, max_length=32)]

# The identifier alphabet of user_id / out_card_no: digits, letters, _ - | *
IDENT_PATTERN = r"^[0-9A-Za-z_\-|*]+$"
