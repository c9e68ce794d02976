"""Sensitive fields (敏感信息, protocol.md §8), encrypted with RSA-OAEP under the WeChat Pay key that the
request then names in ``Wechatpay-Serial``. Callers hand over plaintext; the SDK encrypts on the way out.

A field is sensitive when the model marks it (any ``Annotated`` metadata object with
``sensitive = True``, a class named ``Sensitive``/``SensitiveMarker``, or
``json_schema_extra={"sensitive": True}``), or when the operation lists its JSON pointer (``/a/b``,
``*`` for every list item) - the fallback for models that carry no marker.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import json
import types
from collections.abc import Iterable
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from ..models.common import is_sensitive_field
from ..protocol.crypto import oaep_encrypt, oaep_room

Pointer = tuple[str, ...]


# Leaf types that can never hold a model: a field typed only with these (through Optional, Union,
# Annotated, Literal and containers) needs no walk.
_LEAVES: tuple[type, ...] = (
    str,
    int,
    float,
    bytes,
    type(None),
    decimal.Decimal,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    enum.Enum,
)
_CONTAINERS = (Union, types.UnionType, list, tuple, set, frozenset, dict)


def _may_hold_model(annotation: Any) -> bool:
    """False only when the type surely holds no model (unknown types and ``Any`` count as "may")."""
    if isinstance(annotation, type) and get_origin(annotation) is None:
        return not issubclass(annotation, _LEAVES)  # a bare list/dict may hold anything: "may"
    origin = get_origin(annotation)
    if origin is Literal:
        return False
    if origin is Annotated:
        return _may_hold_model(get_args(annotation)[0])
    if origin in _CONTAINERS:
        return any(_may_hold_model(a) for a in get_args(annotation) if a is not Ellipsis)
    return True


# Per model class, the fields the walk must look at: (name, keys, marked sensitive), in field order.
# Computed once per class: before, every call re-read every field's metadata (~13 µs for a W3 issue).
_PLANS: dict[type[BaseModel], tuple[tuple[str, tuple[str, ...], bool], ...]] = {}


def _keys(name: str, info: FieldInfo) -> tuple[str, ...]:
    """Where a field can sit in the body: a model dumps it under its serialization alias (else its
    alias), a dict the model validated may name it by alias or, with ``populate_by_name``, by name.
    Only the alias was looked for, so a field under either other key went out in plaintext."""
    keys = (info.serialization_alias, info.alias, info.validation_alias, name)
    return tuple(dict.fromkeys(k for k in keys if isinstance(k, str)))


def _plan(cls: type[BaseModel]) -> tuple[tuple[str, tuple[str, ...], bool], ...]:
    plan = _PLANS.get(cls)
    if plan is None:
        fields = cls.model_fields.items()
        plan = _PLANS[cls] = tuple(
            (name, _keys(name, info), marked)
            for name, info in fields
            if (marked := is_sensitive_field(cls, name)) or _may_hold_model(info.annotation)
        )
    return plan


def marked_pointers(model: BaseModel, data: Any, prefix: Pointer = ()) -> list[Pointer]:
    """Pointers (into the dumped ``data``) of every field the model marks sensitive, nested models,
    lists and dicts of them included."""
    found: list[Pointer] = []
    if not isinstance(data, dict):
        return found
    for name, keys, marked in _plan(type(model)):
        for key in keys:
            if key not in data:
                continue
            if marked:
                found.append((*prefix, key))
            else:
                found += _held(getattr(model, name), data[key], (*prefix, key))
    return found


def json_key(key: Any) -> str:
    """A mapping key as JSON writes it: 7 as "7", True as "true" (a string stays as it is)."""
    return key if isinstance(key, str) else json.dumps(key)


def _held(value: Any, data: Any, prefix: Pointer) -> list[Pointer]:
    """The marked fields of the models ``value`` holds, at any depth of lists, tuples and dicts (a
    ``dict[str, Model]`` or ``list[list[Model]]`` was not walked: its marked fields went out plain)."""
    if isinstance(value, BaseModel):
        return marked_pointers(value, data, prefix)
    found: list[Pointer] = []
    if isinstance(value, list | tuple) and isinstance(data, list | tuple):
        for i, (item, dumped) in enumerate(zip(value, data, strict=False)):
            found += _held(item, dumped, (*prefix, str(i)))
    elif isinstance(value, dict) and isinstance(data, dict):
        for key, item in value.items():
            text = json_key(key)  # dict[int, Model] dumps 7 as "7"
            if text in data:
                found += _held(item, data[text], (*prefix, text))
    return found


def parse_pointer(pointer: str) -> Pointer:
    return tuple(p for p in pointer.split("/") if p)


def expand(data: Any, pattern: Pointer, prefix: Pointer = ()) -> list[Pointer]:
    """Concrete pointers present in ``data`` that match ``pattern`` (``*`` = any list index/key)."""
    if not pattern:
        return [prefix]
    head, rest = pattern[0], pattern[1:]
    out: list[Pointer] = []
    if isinstance(data, dict):
        keys = list(data) if head == "*" else [head] if head in data else []
        for key in keys:
            out += expand(data[key], rest, (*prefix, key))
    elif isinstance(data, list | tuple):  # a mapping body may hold tuples (sent as JSON arrays)
        indexes = (
            range(len(data))
            if head == "*"
            else [int(head)]
            if head.isdigit() and int(head) < len(data)
            else []
        )
        for i in indexes:
            out += expand(data[i], rest, (*prefix, str(i)))
    return out


def sensitive_pointers(body: Any, data: Any, listed: Iterable[str]) -> list[Pointer]:
    """Every place in ``data`` holding a non-empty string to encrypt (empty strings stay empty, as in
    wechatpay-go)."""
    pointers = marked_pointers(body, data) if isinstance(body, BaseModel) else []
    for pattern in listed:
        pointers += expand(data, parse_pointer(pattern))
    out: list[Pointer] = []
    for p in dict.fromkeys(pointers):
        value = _get(data, p)
        if isinstance(value, str) and value:
            out.append(p)
    return out


def _get(data: Any, pointer: Pointer) -> Any:
    for part in pointer:
        data = data[int(part)] if isinstance(data, list | tuple) else data[part]
    return data


def encrypt_at(data: Any, pointers: Iterable[Pointer], key: rsa.RSAPublicKey) -> None:
    """Replace each pointed-at plaintext in ``data`` by its Base64 RSA-OAEP ciphertext, in place.
    A plaintext longer than the key can encrypt (214 UTF-8 bytes under RSA-2048 with SHA-1) raises
    ValueError naming its JSON pointer, before anything is sent."""
    room = oaep_room(key)
    for pointer in pointers:
        parent = _get(data, pointer[:-1])
        last: str | int = int(pointer[-1]) if isinstance(parent, list) else pointer[-1]
        plaintext = parent[last]
        size = len(plaintext.encode("utf-8"))
        if size > room:
            where = "/" + "/".join(pointer)
            raise ValueError(
                f"{where}: {size} bytes of plaintext (UTF-8); RSA-OAEP with this {key.key_size}-bit key "
                f"encrypts at most {room}"
            )
        parent[last] = oaep_encrypt(key, plaintext)
