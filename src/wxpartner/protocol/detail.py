"""One rule for what a refusal's ``detail`` (protocol.md §6) names and echoes, shared by the business
API, the control API, the scenario loader and the pages: fields as dotted paths of a pydantic location,
values cut to ``VALUE_MAX`` characters and never echoed for a secret-looking field, and a message that
says which other fields are wrong too (``detail.field`` names one, as WeChat's shape has one).

Here and not in ``server``: the sandbox's scenario loader uses it and imports ``server`` only lazily."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

Loc = tuple[int | str, ...]

VALUE_MAX = 64  # characters of an echoed value (the spec gives no length; enough to recognise it)
NAMED_MAX = 5  # other fields a message names; the rest are counted

# A field whose value is never echoed (link and sandbox tokens, keys, passwords, ciphertexts): the last
# part of its name says so. ``key_id`` is a key's public name, not a key.
_SECRET_NAME = re.compile(r"token|secret|passw|private|apiv3|cipher|key$", re.IGNORECASE)


def dotted(loc: Loc) -> str:
    """A pydantic error location as the control API and scenario messages name it: ``store.name``, a
    list's item by its index in brackets (``applyments[0].state``, the form of the loaders' own
    messages, ``merchants[1888000001].certificates[0]``), never pydantic's ``applyments.0.state``."""
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def secret_name(field: str | None) -> bool:
    """Whether ``field`` (a name, dotted path or JSON pointer) looks secret by its last named part
    (list indexes skipped: ``/tokens/0`` is a token)."""
    if not field:
        return False
    named = [p for p in re.split(r"[./\[\]]", field) if p and not p.isdigit()]
    return bool(named) and _SECRET_NAME.search(named[-1]) is not None


def shown_value(field: str | None, value: Any, *, sensitive: bool = False) -> Any:
    """``value`` as ``detail.value`` may carry it: None (left out) for a ``sensitive`` or secret-looking
    field, a nested object or list, or a number JSON cannot write (inf, NaN) or too long to be one; a
    string longer than ``VALUE_MAX`` is cut there and ends in "…"."""
    if sensitive or secret_name(field):
        return None
    if isinstance(value, str):
        return value if len(value) <= VALUE_MAX else value[:VALUE_MAX] + "…"
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and -(10**VALUE_MAX) < value < 10**VALUE_MAX:
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return None


def listed(names: Sequence[str]) -> str:
    """``names`` joined, at most ``NAMED_MAX`` of them and then how many more: a body of a thousand
    unknown keys must not make a message of a thousand names."""
    shown = ", ".join(names[:NAMED_MAX])
    return shown if len(names) <= NAMED_MAX else f"{shown} and {len(names) - NAMED_MAX} more"


def others_note(others: Sequence[str]) -> str:
    """What a message adds when fields besides the one ``detail.field`` names are wrong, so a caller
    fixes them all at once: `` (2 more: b, c)``; empty when there are none."""
    if not others:
        return ""
    shown = ", ".join(others[:NAMED_MAX]) + (", …" if len(others) > NAMED_MAX else "")
    return f" ({len(others)} more: {shown})"


def error_fields(exc: ValidationError, name: Callable[[Loc], str] = dotted) -> list[str]:
    """Each field ``exc`` finds wrong, once (a field may fail several ways), in pydantic's order."""
    return list(dict.fromkeys(name(tuple(e["loc"])) for e in exc.errors(include_url=False)))


def first_problem(exc: ValidationError, within: str = "") -> str:
    """``where: reason`` of the first error (``where`` dotted), then the other fields that are wrong,
    each named after ``within`` (the path of what was validated, ``webizpay.``), as the first is: the
    others were named from the section down (``webizpay.cards[0].amount (1 more: cards[0].user_id)``)."""
    fields = error_fields(exc, lambda loc: within + dotted(loc))
    return f"{fields[0]}: {exc.errors(include_url=False)[0]['msg']}{others_note(fields[1:])}"


def described(message: str, detail: Mapping[str, Any] | None) -> str:
    """``message`` and the field and issue ``detail`` names, for a page where people read it (a
    dashboard flash): ``count must be a whole number (field count: not an integer)``."""
    field, issue = (detail or {}).get("field"), (detail or {}).get("issue")
    if field and issue:
        return f"{message} (field {field}: {issue})"
    if field or issue:
        return f"{message} ({f'field {field}' if field else issue})"
    return message
