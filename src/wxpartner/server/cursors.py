"""``?after=``: keyset paging for the control API's long lists (callbacks, applyments, recharge
employees). ``offset`` makes the database walk every row before the page (≈ 0.1 s at offset 90,000 of
the callbacks; a script walking 100,000 rows 100 at a time walked ≈ 50 million); ``after`` names the
last row of the previous page by its sort key, and the next page starts there through the index
whatever its depth. Rows written or deleted meanwhile (a retention pruning callbacks) do not shift it
either: no row is skipped or repeated. The cursor is opaque to clients: base64url of a JSON list."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any

from .params import bad


def encode(key: Sequence[Any]) -> str:
    """The cursor of the row whose sort key is ``key``."""
    raw = json.dumps(list(key), ensure_ascii=False, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(params: Any, *types: type) -> list[Any] | None:
    """``?after=`` as the sort key it encodes (one value of each of ``types``), None when absent;
    anything else is 400 PARAM_ERROR. ``after`` with an ``offset`` is refused (which would win?)."""
    return decode_tagged(params, {"": types})


def decode_tagged(params: Any, shapes: dict[str, tuple[type, ...]]) -> list[Any] | None:
    """``decode`` for a list with several orders (the dashboard's: by time while few rows match, by
    key beyond): ``shapes`` maps a tag to the types of its key; the cursor is the tag, then the key
    (no tag, "": the key alone). The list answered is tag and key."""
    text = params.get("after")
    if not text:
        return None
    if params.get("offset") not in (None, "", "0"):
        raise bad(
            "after and offset contradict each other: give one (after continues from next_after)",
            field="after, offset",
            location="query",
            issue="contradictory",
        )
    try:
        key = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        key = None
    for tag, types in shapes.items():
        values = key
        if tag:
            values = key[1:] if isinstance(key, list) and key[:1] == [tag] else None
        if (
            isinstance(values, list)
            and len(values) == len(types)
            and all(_fits(v, t) for v, t in zip(values, types, strict=True))
        ):
            typed = [float(v) if t is float else v for v, t in zip(values, types, strict=True)]
            return [tag, *typed] if tag else typed
    raise bad(
        "after must be a next_after value this list answered",
        field="after",
        location="query",
        issue="not a cursor of this list",
    )


def _fits(value: Any, kind: type) -> bool:
    if isinstance(value, bool):
        return False
    if kind is float:
        return isinstance(value, int | float) and abs(value) < 1e300  # JSON has no NaN or infinity here
    if kind is int:
        return isinstance(value, int) and -(2**63) <= value < 2**63
    return isinstance(value, str) and len(value) <= 256 and "\x00" not in value
