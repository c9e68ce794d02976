"""No existence oracle: whatever merchant B is refused when it names merchant A's resource (an
employee, a card, a batch, a range, a proof, a bill link, an applyment, ...), B is refused in exactly
the same words when it names one that does not exist at all.

The cases are test_tenant_isolation's; each refused one is sent twice, once with A's real identifiers
and once with a "ghost" tenant whose identifiers have the same shape but name nothing. The two answers
must agree in status, code, message and detail once the identifier B sent is masked.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from apply4subject_support import CHANNEL_B, SUB_X, serial_for, submit
from support import SECOND_A, SP_A, SP_B, SP_C, SUB_A, SUB_B, ApiClient, World
from test_tenant_isolation import (
    CASES,
    END,
    MATCHES,
    PROOF,
    Case,
    TenantA,
    _b_apply_body,
    build_tenant_a,
)
from webizpay_support import authorize, issue_body
from wxpartner.server.app import WxPartnerApp

_NEXT = {**{str(d): str((d + 3) % 10) for d in range(10)}}


def _ghost_value(value: str) -> str:
    """The same shape (length, character classes), another value: digits shifted, letters swapped in
    case-preserving order, the rest kept."""
    out = []
    for ch in value:
        if ch.isascii() and ch.isdigit():
            out.append(_NEXT[ch])
        elif ch.isascii() and ch.islower():
            out.append(chr((ord(ch) - 97 + 7) % 26 + 97))
        elif ch.isascii() and ch.isupper():
            out.append(chr((ord(ch) - 65 + 7) % 26 + 65))
        else:
            out.append(ch)
    return "".join(out)


def ghost_of(t: TenantA) -> TenantA:
    changed = {
        f.name: _ghost_value(getattr(t, f.name))
        for f in dataclasses.fields(t)
        if isinstance(getattr(t, f.name), str) and getattr(t, f.name)
    }
    return dataclasses.replace(t, **changed)


def _masked(text: str, values: list[str]) -> str:
    for value in sorted(values, key=len, reverse=True):
        if value:
            text = text.replace(value, "<id>")
    return re.sub(r"\s+", " ", text)


def _answer(case: Case, b: ApiClient, t: TenantA) -> tuple[int, str]:
    url = case.url(t)
    body = case.body(b, t) if case.body else None
    kw: dict[str, Any] = {"wechatpay_serial": serial_for(b)} if case.encrypted else {}
    resp = b.request(case.method, url, body, **kw)
    ids = [v for v in vars(t).values() if isinstance(v, str)]
    try:
        shown = json.dumps(resp.json(), ensure_ascii=False, sort_keys=True)
    except ValueError:
        shown = resp.text
    return resp.status_code, _masked(shown, ids)


def test_ghost_identifiers_have_the_shape_of_the_real_ones() -> None:
    t = TenantA(employee_id="1234abcXYZ_-", card_no="99")
    g = ghost_of(t)
    assert g.employee_id != t.employee_id and len(g.employee_id) == len(t.employee_id)
    assert g.employee_id == "4567hijEFG_-" and g.card_no == "22"


@pytest.fixture
def tenant(app: WxPartnerApp, world: World, client_a: ApiClient, control: TestClient) -> TenantA:
    """Merchant A with one of everything (test_tenant_isolation's)."""
    return build_tenant_a(app, world, client_a, control)


@pytest.fixture
def callers(client_b: ApiClient, client_c: ApiClient) -> dict[str, ApiClient]:
    """The merchants a case may send as: B (another service provider) and C (sharing SUB_A)."""
    return {SP_B: client_b, SP_C: client_c}


Answer = Callable[[Case, ApiClient], tuple[int, str]]


def _differences(cases: list[Case], callers: dict[str, ApiClient], real: Answer, other: Answer) -> str:
    """Each case answered both ways; the cases whose two answers differ, described."""
    assert cases, "no cases to compare"
    found = []
    for case in cases:
        b = callers[case.caller]
        one, two = real(case, b), other(case, b)
        if one != two:
            found.append(f"{case.op_id} [{case.name}]:\n  A's:   {one}\n  other: {two}")
    return "\n".join(found)


def test_a_foreign_resource_is_refused_as_a_missing_one(
    tenant: TenantA, callers: dict[str, ApiClient]
) -> None:
    ghost = ghost_of(tenant)
    refused = [c for c in CASES if c.status == 404]
    differences = _differences(
        refused, callers, lambda case, b: _answer(case, b, tenant), lambda case, b: _answer(case, b, ghost)
    )
    assert not differences, "B can tell A's resources from missing ones:\n" + differences


GHOST_MERCHANTS = {SP_A: "1239999001", SUB_A: "1239999101", SECOND_A: "1239999201", SUB_X: "1239999901"}


def _swaps(case: Case) -> dict[str, str]:
    """GHOST_MERCHANTS, but SUB_A stays for SP_C, whose own sub-merchant it is too."""
    return {k: v for k, v in GHOST_MERCHANTS.items() if not (case.caller == SP_C and k == SUB_A)}


def _with_ghost_merchants(case: Case) -> Case:
    """The case with A's merchant numbers (service provider, sub-merchant, second level) replaced by
    numbers no merchant has."""
    swap = _swaps(case)

    def rewrite(text: str) -> str:
        for old, new in swap.items():
            text = text.replace(old, new)
        return text

    def url(t: TenantA) -> str:
        return rewrite(case.url(t))

    body = None
    if case.body is not None:
        make = case.body

        def body(b: ApiClient, t: TenantA) -> Any:
            return json.loads(rewrite(json.dumps(make(b, t), ensure_ascii=False)))

    return dataclasses.replace(case, url=url, body=body)


def _unmasked(answer: tuple[int, str], case: Case) -> tuple[int, str]:
    """An answer about ghost merchants with A's merchant numbers put back, to compare with A's."""
    status, text = answer
    for old, new in _swaps(case).items():
        text = text.replace(new, old)
    return status, text


def test_a_foreign_merchant_number_is_refused_as_an_unknown_one(
    tenant: TenantA, callers: dict[str, ApiClient]
) -> None:
    refused = [c for c in CASES if c.status == 403]
    differences = _differences(
        refused,
        callers,
        lambda case, b: _answer(case, b, tenant),
        lambda case, b: _unmasked(_answer(_with_ghost_merchants(case), b, tenant), case),
    )
    assert not differences, "B can tell A's merchants from unknown ones:\n" + differences


def test_a_read_of_a_foreign_resource_answers_as_one_of_a_missing_resource(
    tenant: TenantA, callers: dict[str, ApiClient]
) -> None:
    """The reads B is answered 200 about A's things (an empty list, "unauthorized"): the same answer
    about things that do not exist."""
    ghost = ghost_of(tenant)
    # certificates.list names nothing of A's (and its ciphertext differs on every call)
    reads = [c for c in CASES if c.status == 200 and c.method == "GET" and c.op_id != "certificates.list"]
    differences = _differences(
        reads,
        callers,
        lambda case, b: _answer(case, b, tenant),
        lambda case, b: _unmasked(_answer(_with_ghost_merchants(case), b, ghost), case),
    )
    assert not differences, "B can tell A's resources from missing ones:\n" + differences


def test_the_numbers_a_chose_are_free_for_b(
    tenant: TenantA, client_b: ApiClient, control: TestClient
) -> None:
    """The merchant's own numbers (out_card_no, out_batch_id, out_operation_id, business_code) are
    unique per merchant: B using the ones A used is answered as B using fresh ones, never "already
    exists" (which would tell B what A sent) and never with A's resource."""
    employee = authorize(client_b, control, "bOwnUser01", sp=SP_B, sub=SUB_B)

    def card(out_card_no: str) -> httpx.Response:
        body = issue_body(out_card_no, sp=SP_B, sub=SUB_B, effective_end_time=END)
        return client_b.post(f"/v3/webizpay/employees/{employee}/quota-cards", body)

    def batch(out_batch_id: str) -> httpx.Response:
        return client_b.post(MATCHES, {"sp_mchid": SP_B, "out_batch_id": out_batch_id, "match_details": []})

    def proof(out_operation_id: str) -> httpx.Response:
        body = {"sp_mchid": SP_B, "sub_mchid": SUB_B, "out_operation_id": out_operation_id, **PROOF}
        return client_b.post("/v3/webizpay/bill/proof", body)

    def applyment(business_code: str) -> httpx.Response:
        return submit(client_b, _b_apply_body(CHANNEL_B, business_code)(client_b, tenant))

    cases = [
        (card, tenant.out_card_no, "bFreshCard01", "card_no", tenant.card_no),
        (batch, tenant.out_batch_id, "bFreshBatch01", "batch_id", tenant.batch_id),
        (proof, tenant.out_operation_id, "bFreshProof01", "proof_id", tenant.proof_id),
        (applyment, tenant.business_code, "bFreshBiz0001", "applyment_id", tenant.applyment_id),
    ]
    for send, a_number, fresh, key, a_resource in cases:
        with_a = send(a_number)
        with_fresh = send(fresh)
        assert with_a.status_code == with_fresh.status_code == 200, (key, with_a.text, with_fresh.text)
        assert str(with_a.json()[key]) != a_resource, (key, with_a.text)
