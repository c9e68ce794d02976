"""Tenant isolation: for every APIv3 operation in the server's table, merchant B (signing correctly as
itself) aims at merchant A's sub-merchants, employees, cards, batches, proofs, bill links, ranges,
recharge employees and applyments. Each attempt gets the family's documented answer (403 NO_AUTH for
a foreign ``sp_mchid`` or sub-merchant, 404 RESOURCE_NOT_EXISTS for A's resources, or a 200 about B's
own data), no byte of A's data appears in the answer (body or headers), and A reads its own
state back unchanged afterwards.

The matrix is driven by ``wxpartner.server.operations.REGISTRY``: an operation without a case fails
``test_every_operation_has_an_isolation_case``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from starlette.testclient import TestClient

import wxpartner.server.families  # noqa: F401  (registers every operation)
from apply4subject_support import CHANNEL_B, SUB_X, make_body, serial_for, set_roles, submit_ok
from figures import record
from support import SECOND_A, SP_A, SP_B, SP_C, SUB_A, SUB_B, ApiClient, World
from webizpay_support import authorize, issue, issue_body
from wxpartner.server.app import WxPartnerApp
from wxpartner.server.operations import REGISTRY

NOW = "2026-03-15T12:00:00+08:00"  # frozen business clock: bill date windows are deterministic
END = "2026-04-30T23:59:59+08:00"  # A's card end, after business now
RANGES = "/v3/webizpay/avail-mch-ranges"
MATCHES = "/v3/webizpay/stores/entity-matches"
A4S = "/v3/apply4subject/applyment"
RECHARGE = "/v3/platsolution/ecommerce/recharge-employees"
A_IDENTIFIER = "91440300708461136T"


@dataclass
class TenantA:
    """A's resources; every value in `secrets` must stay out of B's answers."""

    user_id: str = "aSecretUser01"
    out_card_no: str = "aSecretCard01"
    card_name: str = "甲方机密额度卡"
    out_batch_id: str = "aSecretBatch01"
    out_operation_id: str = "aSecretProof01"
    sp_openid: str = "oA_secret_openid_000000001"
    business_code: str = "aSecretBiz0001"
    employee_id: str = ""
    card_no: str = ""
    batch_id: str = ""
    range_id: str = ""
    proof_id: str = ""
    operation_id: str = ""
    proof_token: str = ""
    bill_token: str = ""
    applyment_id: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def secrets(self) -> dict[str, str]:
        out = {k: v for k, v in vars(self).items() if isinstance(v, str) and v}
        out.update(self.extra)
        out.update({"sp_mchid A": SP_A, "sub_mchid A": SUB_A, "second-level A": SECOND_A})
        return out


@dataclass
class Case:
    op_id: str
    name: str
    method: str
    url: Callable[[TenantA], str]
    body: Callable[[ApiClient, TenantA], Any] | None = None
    status: int = 404
    code: str | None = "RESOURCE_NOT_EXISTS"
    encrypted: bool = False
    # SP_B by default; SP_C shares A's sub-merchant SUB_A (a legitimate relation of its own), which
    # must still not open A's employees and cards.
    caller: str = SP_B
    check: Callable[[dict[str, Any], TenantA], None] | None = None


def _token(url: str) -> str:
    return urlsplit(url).query.split("token=", 1)[1]


def _sp_sub(sp: str, sub: str) -> Callable[[ApiClient, TenantA], dict[str, Any]]:
    return lambda _b, _a: {"sp_mchid": sp, "sub_mchid": sub}


def _no_employee_list(body: dict[str, Any], _a: TenantA) -> None:
    assert not body.get("employee_list"), body


def _no_ranges(body: dict[str, Any], _a: TenantA) -> None:
    assert body["range_list"] == [], body


def _unauthorized(body: dict[str, Any], _a: TenantA) -> None:
    assert body == {"authorize_state": "AUTHORIZE_STATE_UNAUTHORIZED"}, body


def _own_applyment(body: dict[str, Any], a: TenantA) -> None:
    assert str(body["applyment_id"]) != a.applyment_id


def _card(a: TenantA, tail: str = "") -> str:
    return f"/v3/webizpay/employees/{a.employee_id}/quota-cards/{a.card_no}{tail}"


def _b_apply_body(channel: str, code: str) -> Callable[[ApiClient, TenantA], dict[str, Any]]:
    def build(b: ApiClient, _a: TenantA) -> dict[str, Any]:
        body = make_body(b, code, confirm=[SUB_X])
        body["channel_id"] = channel
        return body

    return build


QS_B = f"sp_mchid={SP_B}&sub_mchid={SUB_B}"
QS_C = f"sp_mchid={SP_C}&sub_mchid={SUB_A}"
QS_A = f"sp_mchid={SP_A}&sub_mchid={SUB_A}"
BILL = {"date": "2026-03-14", "type": "QYZFALL"}
PROOF = {"start_date": "2026-02-01", "end_date": "2026-03-14"}

CASES: list[Case] = [
    # --- W1–W8: sp/sub of the caller, or A's sp/sub -> 403; A's employee/card under B's sp/sub -> 404
    Case(
        "webizpay.start_authorization",
        "A's sub-merchant",
        "POST",
        lambda a: f"/v3/webizpay/users/{a.user_id}/authorization-url",
        lambda _b, _a: {"sp_mchid": SP_B, "sub_mchid": SUB_A, "application_type": "H5"},
        403,
        "NO_AUTH",
    ),
    Case(
        "webizpay.start_authorization",
        "A as sp_mchid",
        "POST",
        lambda a: f"/v3/webizpay/users/{a.user_id}/authorization-url",
        lambda _b, _a: {"sp_mchid": SP_A, "sub_mchid": SUB_A, "application_type": "H5"},
        403,
        "NO_AUTH",
    ),
    Case(
        "webizpay.authorization_state",
        "A's user under B",
        "GET",
        lambda a: f"/v3/webizpay/users/{a.user_id}/authorization-state?{QS_B}",
        status=200,
        code=None,
        check=_no_employee_list,
    ),
    Case(
        "webizpay.authorization_state",
        "A's sp/sub",
        "GET",
        lambda a: f"/v3/webizpay/users/{a.user_id}/authorization-state?{QS_A}",
        status=403,
        code="NO_AUTH",
    ),
    Case(
        "webizpay.issue_quota_card",
        "A's employee",
        "POST",
        lambda a: f"/v3/webizpay/employees/{a.employee_id}/quota-cards",
        lambda _b, _a: issue_body("bIsolation01", sp=SP_B, sub=SUB_B, effective_end_time=END),
    ),
    Case(
        "webizpay.issue_quota_card",
        "A's sp/sub",
        "POST",
        lambda a: f"/v3/webizpay/employees/{a.employee_id}/quota-cards",
        lambda _b, _a: issue_body("bIsolation02", sp=SP_A, sub=SUB_A, effective_end_time=END),
        403,
        "NO_AUTH",
    ),
    Case("webizpay.get_quota_card", "A's card", "GET", lambda a: _card(a, f"?{QS_B}")),
    Case(
        "webizpay.get_quota_card",
        "A's sp/sub",
        "GET",
        lambda a: _card(a, f"?{QS_A}"),
        status=403,
        code="NO_AUTH",
    ),
    Case(
        "webizpay.get_quota_card_by_out_no",
        "A's out_card_no",
        "GET",
        lambda a: f"/v3/webizpay/employees/{a.employee_id}/out-quota-cards/{a.out_card_no}?{QS_B}",
    ),
    Case(
        "webizpay.cancel_quota_card",
        "A's card",
        "POST",
        lambda a: _card(a, "/cancel"),
        lambda _b, _a: {"sp_mchid": SP_B, "sub_mchid": SUB_B, "reason": "hostile"},
    ),
    Case(
        "webizpay.cancel_quota_card",
        "A's sp/sub",
        "POST",
        lambda a: _card(a, "/cancel"),
        lambda _b, _a: {"sp_mchid": SP_A, "sub_mchid": SUB_A, "reason": "hostile"},
        403,
        "NO_AUTH",
    ),
    Case(
        "webizpay.payment_url",
        "A's card",
        "GET",
        lambda a: _card(a, f"/payment-url?{QS_B}&application_type=H5"),
    ),
    Case(
        "webizpay.revoke_authorization",
        "A's employee (/employees/)",
        "POST",
        lambda a: f"/v3/webizpay/employees/{a.employee_id}/revoke",
        _sp_sub(SP_B, SUB_B),
    ),
    Case(
        "webizpay.revoke_authorization",
        "A's employee (/employee/)",
        "POST",
        lambda a: f"/v3/webizpay/employee/{a.employee_id}/revoke",
        _sp_sub(SP_B, SUB_B),
    ),
    Case(
        "webizpay.revoke_authorization",
        "A's sp/sub",
        "POST",
        lambda a: f"/v3/webizpay/employees/{a.employee_id}/revoke",
        _sp_sub(SP_A, SUB_A),
        403,
        "NO_AUTH",
    ),
    # --- the same sub-merchant through another service provider (SP_C also serves SUB_A) -------------
    Case(
        "webizpay.authorization_state",
        "SP_C, shared sub-merchant",
        "GET",
        lambda a: f"/v3/webizpay/users/{a.user_id}/authorization-state?{QS_C}",
        status=200,
        code=None,
        check=_no_employee_list,
        caller=SP_C,
    ),
    Case(
        "webizpay.issue_quota_card",
        "SP_C, shared sub-merchant",
        "POST",
        lambda a: f"/v3/webizpay/employees/{a.employee_id}/quota-cards",
        lambda _b, _a: issue_body("cIsolation01", sp=SP_C, sub=SUB_A, effective_end_time=END),
        caller=SP_C,
    ),
    Case(
        "webizpay.get_quota_card",
        "SP_C, shared sub-merchant",
        "GET",
        lambda a: _card(a, f"?{QS_C}"),
        caller=SP_C,
    ),
    Case(
        "webizpay.get_quota_card_by_out_no",
        "SP_C, shared sub-merchant",
        "GET",
        lambda a: f"/v3/webizpay/employees/{a.employee_id}/out-quota-cards/{a.out_card_no}?{QS_C}",
        caller=SP_C,
    ),
    Case(
        "webizpay.cancel_quota_card",
        "SP_C, shared sub-merchant",
        "POST",
        lambda a: _card(a, "/cancel"),
        lambda _b, _a: {"sp_mchid": SP_C, "sub_mchid": SUB_A, "reason": "hostile"},
        caller=SP_C,
    ),
    Case(
        "webizpay.payment_url",
        "SP_C, shared sub-merchant",
        "GET",
        lambda a: _card(a, f"/payment-url?{QS_C}&application_type=H5"),
        caller=SP_C,
    ),
    Case(
        "webizpay.revoke_authorization",
        "SP_C, shared sub-merchant",
        "POST",
        lambda a: f"/v3/webizpay/employees/{a.employee_id}/revoke",
        _sp_sub(SP_C, SUB_A),
        caller=SP_C,
    ),
    Case(
        "webizpay.apply_funding_proof",
        "SP_C, shared sub-merchant, A's out_operation_id",
        "POST",
        lambda _a: "/v3/webizpay/bill/proof",
        lambda _b, a: {"sp_mchid": SP_C, "sub_mchid": SUB_A, "out_operation_id": a.out_operation_id, **PROOF},
        200,
        None,
        caller=SP_C,
    ),
    # --- W9–W17: foreign sp_mchid -> 403 NO_AUTH; A's batch/range/token -> 404 -----------------
    Case(
        "webizpay.start_entity_match",
        "A as sp_mchid",
        "POST",
        lambda _a: MATCHES,
        lambda _b, _a: {"sp_mchid": SP_A, "out_batch_id": "bIsolation01", "match_details": []},
        403,
        "NO_AUTH",
    ),
    Case(
        "webizpay.start_entity_match",
        "A's out_batch_id makes B's own batch",
        "POST",
        lambda _a: MATCHES,
        lambda _b, a: {"sp_mchid": SP_B, "out_batch_id": a.out_batch_id, "match_details": []},
        200,
        None,
    ),
    Case(
        "webizpay.query_entity_match", "A's batch", "GET", lambda a: f"{MATCHES}/{a.batch_id}?sp_mchid={SP_B}"
    ),
    Case(
        "webizpay.query_entity_match",
        "A as sp_mchid",
        "GET",
        lambda a: f"{MATCHES}/{a.batch_id}?sp_mchid={SP_A}",
        status=403,
        code="NO_AUTH",
    ),
    Case(
        "webizpay.apply_funding_proof",
        "A's sub-merchant",
        "POST",
        lambda _a: "/v3/webizpay/bill/proof",
        lambda _b, _a: {"sp_mchid": SP_B, "sub_mchid": SUB_A, "out_operation_id": "bIsolation01", **PROOF},
        403,
        "NO_AUTH",
    ),
    Case(
        "webizpay.apply_funding_proof",
        "A's out_operation_id makes B's own proof",
        "POST",
        lambda _a: "/v3/webizpay/bill/proof",
        lambda _b, a: {"sp_mchid": SP_B, "sub_mchid": SUB_B, "out_operation_id": a.out_operation_id, **PROOF},
        200,
        None,
    ),
    Case(
        "webizpay.apply_funding_proof",
        "A as sp_mchid",
        "POST",
        lambda _a: "/v3/webizpay/bill/proof",
        lambda _b, _a: {"sp_mchid": SP_A, "sub_mchid": SUB_A, "out_operation_id": "bIsolation02", **PROOF},
        403,
        "NO_AUTH",
    ),
    Case(
        "webizpay.apply_trade_bill",
        "A's sub-merchant",
        "POST",
        lambda _a: "/v3/webizpay/bill/trade-bill",
        lambda _b, _a: {"sp_mchid": SP_B, "sub_mchid": SUB_A, **BILL},
        403,
        "NO_AUTH",
    ),
    Case(
        "webizpay.apply_trade_bill",
        "A as sp_mchid",
        "POST",
        lambda _a: "/v3/webizpay/bill/trade-bill",
        lambda _b, _a: {"sp_mchid": SP_A, "sub_mchid": SUB_A, **BILL},
        403,
        "NO_AUTH",
    ),
    Case(
        "billdownload.file", "A's proof link", "GET", lambda a: f"/v3/billdownload/file?token={a.proof_token}"
    ),
    Case(
        "billdownload.file", "A's bill link", "GET", lambda a: f"/v3/billdownload/file?token={a.bill_token}"
    ),
    Case(
        "webizpay.create_avail_mch_range",
        "A as sp_mchid",
        "POST",
        lambda _a: RANGES,
        lambda _b, _a: {"sp_mchid": SP_A, "identifier_type": "ORGANIZATION_CODE"},
        403,
        "NO_AUTH",
    ),
    Case(
        "webizpay.list_avail_mch_ranges",
        "B's own list",
        "GET",
        lambda _a: f"{RANGES}?sp_mchid={SP_B}",
        status=200,
        code=None,
        check=_no_ranges,
    ),
    Case(
        "webizpay.list_avail_mch_ranges",
        "A as sp_mchid",
        "GET",
        lambda _a: f"{RANGES}?sp_mchid={SP_A}",
        status=403,
        code="NO_AUTH",
    ),
    Case(
        "webizpay.add_merchant_identifier",
        "A's range",
        "POST",
        lambda a: f"{RANGES}/{a.range_id}/merchant-identifiers",
        lambda _b, _a: {"sp_mchid": SP_B, "merchant_identifier": "91110000710926094P"},
    ),
    Case(
        "webizpay.add_merchant_identifier",
        "A as sp_mchid",
        "POST",
        lambda a: f"{RANGES}/{a.range_id}/merchant-identifiers",
        lambda _b, _a: {"sp_mchid": SP_A, "merchant_identifier": "91110000710926094P"},
        403,
        "NO_AUTH",
    ),
    Case(
        "webizpay.list_merchant_identifiers",
        "A's range",
        "GET",
        lambda a: f"{RANGES}/{a.range_id}/merchant-identifiers?sp_mchid={SP_B}&offset=0&limit=100",
    ),
    Case(
        "webizpay.delete_merchant_identifier",
        "A's range and identifier",
        "DELETE",
        lambda a: f"{RANGES}/{a.range_id}/merchant-identifiers/{A_IDENTIFIER}",
        lambda _b, _a: {"sp_mchid": SP_B},
    ),
    # --- recharge employees: another platform's second-level merchant -> 403 NO_AUTH --------------------
    Case(
        "recharge.add_employee",
        "A's second-level merchant",
        "POST",
        lambda _a: RECHARGE,
        lambda _b, _a: {"sub_mchid": SECOND_A, "sp_openid": "oB_hostile_openid_0000001"},
        403,
        "NO_AUTH",
    ),
    Case(
        "recharge.list_employees",
        "A's second-level merchant",
        "GET",
        lambda _a: f"{RECHARGE}/sub-mchid/{SECOND_A}",
        status=403,
        code="NO_AUTH",
    ),
    Case(
        "recharge.delete_employee",
        "A's employee",
        "POST",
        lambda a: f"{RECHARGE}/sub-mchid/{SECOND_A}/sp-openid/{a.sp_openid}/delete",
        status=403,
        code="NO_AUTH",
    ),
    # --- apply4subject: A's applyment by id or business_code -> 404; A as channel -> 403 ----------------
    Case(
        "apply4subject.submit",
        "A as channel_id",
        "POST",
        lambda _a: A4S,
        _b_apply_body(SP_A, "bIsolation01"),
        403,
        "NO_AUTH",
        encrypted=True,
    ),
    Case(
        "apply4subject.submit",
        "A's business_code makes B's own applyment",
        "POST",
        lambda _a: A4S,
        lambda b, a: _b_apply_body(CHANNEL_B, a.business_code)(b, a),
        200,
        None,
        encrypted=True,
        check=_own_applyment,
    ),
    Case(
        "apply4subject.query",
        "A's applyment_id",
        "GET",
        lambda a: f"{A4S}?applyment_id={a.applyment_id}&channel_id={CHANNEL_B}",
    ),
    Case(
        "apply4subject.query",
        "A's business_code",
        "GET",
        lambda a: f"{A4S}?business_code={a.business_code}&channel_id={CHANNEL_B}",
    ),
    Case(
        "apply4subject.cancel",
        "A's applyment_id",
        "POST",
        lambda a: f"{A4S}/{a.applyment_id}/cancel?channel_id={CHANNEL_B}",
    ),
    Case(
        "apply4subject.cancel",
        "A's business_code",
        "POST",
        lambda a: f"{A4S}/{a.business_code}/cancel?channel_id={CHANNEL_B}",
    ),
    Case(
        "apply4subject.merchant_state",
        "merchant authorized through A",
        "GET",
        lambda _a: f"{A4S}/merchants/{SUB_X}/state?channel_id={CHANNEL_B}",
        status=200,
        code=None,
        check=_unauthorized,
    ),
    # --- platform certificates: B's own list, nothing of A's ---------------------------------------------
    Case("certificates.list", "B's own list", "GET", lambda _a: "/v3/certificates", status=200, code=None),
]


def _op_ids() -> list[str]:
    return sorted({op.op_id for op in REGISTRY})


def test_every_operation_has_an_isolation_case() -> None:
    covered = {case.op_id for case in CASES}
    missing = sorted(set(_op_ids()) - covered)
    assert not missing, f"operations without a tenant-isolation case: {missing}"
    stale = sorted(covered - set(_op_ids()))
    assert not stale, f"cases for operations that no longer exist: {stale}"
    record("tenant isolation", operations=len(_op_ids()), cases_per_backend=len(CASES))


# --- A's world -------------------------------------------------------------------------------------


def _ok(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()
    return data


def build_tenant_a(app: WxPartnerApp, world: World, a: ApiClient, control: TestClient) -> TenantA:
    set_roles(app, world)  # A: channel merchant, B: institution (apply4subject callers)
    assert control.post("/sandbox/clock", json={"set": NOW, "freeze": True}).status_code == 200
    t = TenantA()
    t.employee_id = authorize(a, control, t.user_id)
    card = issue(a, t.employee_id, t.out_card_no, card_name=t.card_name, effective_end_time=END)
    t.card_no = card["card_no"]
    batch = _ok(a.post(MATCHES, {"sp_mchid": SP_A, "out_batch_id": t.out_batch_id, "match_details": []}))
    t.batch_id = batch["batch_id"]
    # CLOSED is terminal: A's W10 reads in the snapshot do not step the batch on.
    closed = control.post(f"/sandbox/webizpay/entity-matches/{t.batch_id}/close")
    assert closed.status_code == 200, closed.text
    t.range_id = _ok(a.post(RANGES, {"sp_mchid": SP_A, "identifier_type": "ORGANIZATION_CODE"}))["range_id"]
    added = a.post(
        f"{RANGES}/{t.range_id}/merchant-identifiers", {"sp_mchid": SP_A, "merchant_identifier": A_IDENTIFIER}
    )
    _ok(added)
    proof = _ok(
        a.post(
            "/v3/webizpay/bill/proof",
            {"sp_mchid": SP_A, "sub_mchid": SUB_A, "out_operation_id": t.out_operation_id, **PROOF},
        )
    )
    t.proof_id, t.operation_id = proof["proof_id"], proof["operation_id"]
    t.proof_token = _token(proof["download_url"])
    bill = _ok(a.post("/v3/webizpay/bill/trade-bill", {"sp_mchid": SP_A, "sub_mchid": SUB_A, **BILL}))
    t.bill_token = _token(bill["download_url"])
    _ok(a.post(RECHARGE, {"sub_mchid": SECOND_A, "sp_openid": t.sp_openid}))
    t.applyment_id = str(submit_ok(a, t.business_code, confirm=[SUB_X]))
    granted = control.post("/sandbox/apply4subject/authorizations", json={"mchid": SP_A, "sub_mchid": SUB_X})
    assert granted.status_code in (200, 201), granted.text
    return t


def snapshot(a: ApiClient, t: TenantA) -> dict[str, Any]:
    """Everything A can read about its resources (reads without side effects on a frozen clock)."""
    reads = {
        "authorization": f"/v3/webizpay/users/{t.user_id}/authorization-state?{QS_A}",
        "card": _card(t, f"?{QS_A}"),
        "card by out no": f"/v3/webizpay/employees/{t.employee_id}/out-quota-cards/{t.out_card_no}?{QS_A}",
        "batch": f"{MATCHES}/{t.batch_id}?sp_mchid={SP_A}",
        "ranges": f"{RANGES}?sp_mchid={SP_A}",
        "identifiers": f"{RANGES}/{t.range_id}/merchant-identifiers?sp_mchid={SP_A}&offset=0&limit=100",
        "proof file": f"/v3/billdownload/file?token={t.proof_token}",
        "bill file": f"/v3/billdownload/file?token={t.bill_token}",
        "recharge employees": f"{RECHARGE}/sub-mchid/{SECOND_A}",
        "applyment": f"{A4S}?applyment_id={t.applyment_id}",
        "merchant state": f"{A4S}/merchants/{SUB_X}/state",
    }
    out: dict[str, Any] = {}
    for name, url in reads.items():
        resp = a.get(url)
        assert resp.status_code == 200, f"A cannot read its {name}: {resp.text}"
        out[name] = resp.json() if resp.headers["Content-Type"].startswith("application/json") else resp.text
    assert out["card"]["card_state"] == "ACTIVE" and out["authorization"]["employee_list"], out
    assert out["merchant state"]["authorize_state"] == "AUTHORIZE_STATE_AUTHORIZED", out
    return out


# --- the matrix --------------------------------------------------------------------------------------


def _sent_text(url: str, body: Any) -> str:
    return url + "\n" + ("" if body is None else json.dumps(body, ensure_ascii=False))


def _leaks(resp: httpx.Response, secrets: dict[str, str], sent: str) -> list[str]:
    """A's values found in B's answer, except values B itself put in its request."""
    text = resp.content.decode("utf-8", "replace")
    with contextlib.suppress(ValueError):  # also the JSON-decoded form, in case it escaped non-ASCII
        text += json.dumps(resp.json(), ensure_ascii=False)
    headers = "\n".join(f"{k}: {v}" for k, v in resp.headers.items())
    return [
        f"{name}={value!r}"
        for name, value in secrets.items()
        if value not in sent and (value in text or value in headers)
    ]


def _run_case(case: Case, callers: dict[str, ApiClient], t: TenantA) -> None:
    b = callers[case.caller]
    url = case.url(t)
    body = case.body(b, t) if case.body else None
    kw: dict[str, Any] = {"wechatpay_serial": serial_for(b)} if case.encrypted else {}
    resp = b.request(case.method, url, body, **kw)
    label = f"{case.op_id} [{case.name}] {case.method} {url}"
    assert resp.status_code == case.status, f"{label}: {resp.status_code} {resp.text}"
    assert resp.headers.get("Wechatpay-Signature"), f"{label}: answer not signed"
    if case.code is not None:
        err = resp.json()
        assert err["code"] == case.code, f"{label}: {err}"
        assert set(err) <= {"code", "message", "detail"}, err
    elif case.check is not None:
        case.check(resp.json(), t)
    leaks = _leaks(resp, t.secrets(), _sent_text(url, body))
    assert not leaks, f"{label} leaked A's data: {leaks} in {resp.text[:500]}"


def test_b_cannot_reach_a(
    app: WxPartnerApp,
    world: World,
    client_a: ApiClient,
    client_b: ApiClient,
    client_c: ApiClient,
    control: TestClient,
) -> None:
    """One tenant A (setting it up is the slow part); every operation's cases run against it and A's
    state is read back after each operation, so a change is pinned to the operation that made it."""
    tenant = build_tenant_a(app, world, client_a, control)
    before = snapshot(client_a, tenant)
    callers = {SP_B: client_b, SP_C: client_c}
    for op_id in _op_ids():
        cases = [c for c in CASES if c.op_id == op_id]
        assert cases, f"no isolation case for {op_id}"
        for case in cases:
            _run_case(case, callers, tenant)
        after = snapshot(client_a, tenant)
        assert after == before, f"{op_id}: B changed A's state"


def test_frozen_clock_is_a_business_day() -> None:
    # BILL's date must be the day before NOW (W12 serves finished days only).
    now = dt.datetime.fromisoformat(NOW)
    assert dt.date.fromisoformat(BILL["date"]) == now.date() - dt.timedelta(days=1)


def test_leak_detector_sees_body_headers_and_escaped_text() -> None:
    secrets = {"card": "aSecretCard01", "name": "甲方机密额度卡"}
    escaped = httpx.Response(200, content=b'{"x":"\\u7532\\u65b9\\u673a\\u5bc6\\u989d\\u5ea6\\u5361"}')
    assert _leaks(escaped, secrets, sent="") == ["name='甲方机密额度卡'"]
    in_header = httpx.Response(404, headers={"X-Debug": "aSecretCard01"}, content=b"{}")
    assert _leaks(in_header, secrets, sent="") == ["card='aSecretCard01'"]
    assert _leaks(in_header, secrets, sent="/v3/x/aSecretCard01") == []  # B's own input may be echoed
