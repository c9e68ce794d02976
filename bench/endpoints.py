"""What is measured: each endpoint is a call factory (the i-th request) plus the state it needs.

Factories are module-level functions bound with functools.partial so the signing pool can pickle them.
Mutating endpoints get a fresh resource per request (a new out_card_no, a new card to cancel), because
the benchmark measures the real work, not the idempotent shortcut.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .presign import Call, CallFactory, Signer


@dataclass
class Endpoint:
    name: str
    method: str
    factory: CallFactory
    signer: Signer
    # How many distinct requests the prepared state allows (cards to cancel, employees to add).
    capacity: int | None = None


def floor_call(method: str, i: int) -> Call:
    if method == "GET":
        return Call("GET", f"/v3/floor/items/{i}")
    body = json.dumps({"sp_mchid": "1900000001", "out_card_no": f"floor{i:026d}", "amount": 100})
    return Call("POST", "/v3/floor/items", body.encode())


def certificates_call(i: int) -> Call:
    return Call("GET", "/v3/certificates")


# -- wxpartner's endpoints ------------------------------------------------------------------------------
SP = "1900000001"  # the demo service provider (make serve's)
SUB = "1900000101"  # its demo sub-merchant


def issue_call(employee_id: str, stamp: str, i: int) -> Call:
    body = {
        "sp_mchid": SP,
        "sub_mchid": SUB,
        "card_template_id": "template_123",
        "amount": 10000,
        "card_name": "bench card",
        "out_card_no": f"b{stamp}{i:09d}",
        "effective_end_time": "2099-12-31T23:59:59+08:00",
        "card_remark": "bench",
    }
    return Call("POST", f"/v3/webizpay/employees/{employee_id}/quota-cards", json.dumps(body).encode())


def query_call(employee_id: str, card_nos: list[str], i: int) -> Call:
    card = card_nos[i % len(card_nos)]
    return Call(
        "GET", f"/v3/webizpay/employees/{employee_id}/quota-cards/{card}?sp_mchid={SP}&sub_mchid={SUB}"
    )


def cancel_call(employee_id: str, card_nos: list[str], i: int) -> Call:
    body = json.dumps({"sp_mchid": SP, "sub_mchid": SUB, "reason": "bench"}).encode()
    return Call("POST", f"/v3/webizpay/employees/{employee_id}/quota-cards/{card_nos[i]}/cancel", body)


def recharge_add_call(second_levels: list[str], stamp: str, i: int) -> Call:
    # Three employees per second-level merchant: the family's cap, so every add is a real insert.
    body = {"sub_mchid": second_levels[(i // 3) % len(second_levels)], "sp_openid": f"o{stamp}{i:09d}"}
    return Call("POST", "/v3/platsolution/ecommerce/recharge-employees", json.dumps(body).encode())


def applyment_query_call(applyment_ids: list[str], i: int) -> Call:
    return Call("GET", f"/v3/apply4subject/applyment?applyment_id={applyment_ids[i % len(applyment_ids)]}")
