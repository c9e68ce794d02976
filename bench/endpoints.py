"""What is measured: each endpoint is a call factory (the i-th request) plus the state it needs.

Factories are module-level functions bound with functools.partial so the signing pool can pickle them.
Mutating endpoints get a fresh resource per request (a new out_card_no, a new card to cancel), because
the benchmark measures the real work, not the idempotent shortcut.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .presign import Call, CallFactory, Signer


@dataclass
class Endpoint:
    name: str
    method: str
    factory: CallFactory
    signer: Signer
    # Prepares state for `count` requests (e.g. pre-issues cards); returns nothing.
    prepare: Callable[[int], None] | None = None
    notes: dict[str, Any] = field(default_factory=dict)


def floor_call(method: str, i: int) -> Call:
    if method == "GET":
        return Call("GET", f"/v3/floor/items/{i}")
    body = json.dumps({"sp_mchid": "1900000001", "out_card_no": f"floor{i:026d}", "amount": 100})
    return Call("POST", "/v3/floor/items", body.encode())


def certificates_call(i: int) -> Call:
    return Call("GET", "/v3/certificates")
