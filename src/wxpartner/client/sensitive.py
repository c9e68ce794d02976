"""Sensitive fields (敏感信息, protocol.md §8), encrypted with RSA-OAEP under the WeChat Pay key that the
request then names in ``Wechatpay-Serial``. Callers hand over plaintext; the SDK encrypts on the way out.

A field is sensitive when the model marks it (any ``Annotated`` metadata object with
``sensitive = True``, a class named ``Sensitive``/``SensitiveMarker``, or
``json_schema_extra={"sensitive": True}``), or when the operation lists its JSON pointer (``/a/b``,
``*`` for every list item) - the fallback for models that carry no marker.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import BaseModel

from ..protocol.crypto import oaep_encrypt

Pointer = tuple[str, ...]


def is_sensitive_field(model: type[BaseModel], name: str) -> bool:
    info = model.model_fields[name]
    for meta in info.metadata:
        if getattr(meta, "sensitive", False) is True or type(meta).__name__ in (
            "Sensitive",
            "SensitiveMarker",
        ):
            return True
    extra = info.json_schema_extra
    return isinstance(extra, dict) and extra.get("sensitive") is True


def marked_pointers(model: BaseModel, data: Any, prefix: Pointer = ()) -> list[Pointer]:
    """Pointers (into the dumped ``data``) of every field the model marks sensitive, nested models and
    lists included."""
    found: list[Pointer] = []
    cls = type(model)
    if not isinstance(data, dict):
        return found
    for name, info in cls.model_fields.items():
        alias = info.alias or name
        if alias not in data:
            continue
        value = getattr(model, name)
        if is_sensitive_field(cls, name):
            found.append((*prefix, alias))
        elif isinstance(value, BaseModel):
            found += marked_pointers(value, data[alias], (*prefix, alias))
        elif isinstance(value, list | tuple):
            for i, (item, dumped) in enumerate(zip(value, data[alias], strict=False)):
                if isinstance(item, BaseModel):
                    found += marked_pointers(item, dumped, (*prefix, alias, str(i)))
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
    elif isinstance(data, list):
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
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def encrypt_at(data: Any, pointers: Iterable[Pointer], key: rsa.RSAPublicKey) -> None:
    """Replace each pointed-at plaintext in ``data`` by its Base64 RSA-OAEP ciphertext, in place."""
    for pointer in pointers:
        parent = _get(data, pointer[:-1])
        last = pointer[-1]
        if isinstance(parent, list):
            parent[int(last)] = oaep_encrypt(key, parent[int(last)])
        else:
            parent[last] = oaep_encrypt(key, parent[last])
