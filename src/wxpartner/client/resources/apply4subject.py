"""Account-opening intention confirmation (商户开户意愿确认, A1–A4, ``/v3/apply4subject/...``).

The encrypted fields of A1 (spec apply4subject.md: ENC) are marked sensitive in ``wxpartner.models``;
the SDK encrypts them with RSA-OAEP under the WeChat Pay key it holds and names that key in
``Wechatpay-Serial``: pass plaintext.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...models import apply4subject as a
from ..core import Call
from ..operations import M, Op, Resource, endpoint
from ..policy import TimeoutLike

BASE = "/v3/apply4subject/applyment"
# Idempotent by business_code (official page: 是否支持幂等: 是).
SUBMIT = Op[a.SubmitApplymentResponse](
    "apply4subject.submit",
    "POST",
    BASE,
    a.SubmitApplymentResponse,
    body=a.SubmitApplymentRequest,
    idempotent=True,
)
QUERY = Op[a.ApplymentResult]("apply4subject.query", "GET", BASE, a.ApplymentResult, idempotent=True)
# The seed puts business_code in the path; the page title also allows applyment_id there.
CANCEL = Op[None]("apply4subject.cancel", "POST", BASE + "/{key}/cancel", None, idempotent=True)
MERCHANT_STATE = Op[a.MerchantAuthorizeState](
    "apply4subject.merchant_state",
    "GET",
    BASE + "/merchants/{sub_mchid}/state",
    a.MerchantAuthorizeState,
    idempotent=True,
)
OPERATIONS = (SUBMIT, QUERY, CANCEL, MERCHANT_STATE)


def _some_key(applyment_id: int | str | None, business_code: str | None) -> None:
    if applyment_id is None and business_code is None:
        raise ValueError("pass applyment_id, business_code or both")


class Apply4Subject(Resource[M]):
    """``client.apply4subject``."""

    @endpoint
    def submit(
        request: a.SubmitApplymentRequest | Mapping[str, Any], *, timeout: TimeoutLike | None = None
    ) -> Call[a.SubmitApplymentResponse]:
        """A1: submit an applyment; sensitive fields are given in plaintext and encrypted here."""
        return SUBMIT.call(body=request, timeout=timeout)

    @endpoint
    def get(
        *,
        applyment_id: int | str | None = None,
        business_code: str | None = None,
        timeout: TimeoutLike | None = None,
    ) -> Call[a.ApplymentResult]:
        """A2: the audit state, by ``applyment_id``, ``business_code`` or both (as the official demo code
        sends them when both are set; the server checks that they name one applyment)."""
        _some_key(applyment_id, business_code)
        query = {
            "applyment_id": str(applyment_id) if applyment_id is not None else None,
            "business_code": business_code,
        }
        return QUERY.call(query=query, timeout=timeout)

    @endpoint
    def cancel(
        *,
        business_code: str | None = None,
        applyment_id: int | str | None = None,
        timeout: TimeoutLike | None = None,
    ) -> Call[None]:
        """A3: cancel (204), by ``business_code`` or ``applyment_id``. Given both, it is sent as seed
        003's curl and demo code send it, ``/{business_code}/cancel?applyment_id=…`` (the server checks
        that the two name one applyment)."""
        _some_key(applyment_id, business_code)
        if business_code is None:
            return CANCEL.call({"key": str(applyment_id)}, timeout=timeout)
        query = {"applyment_id": str(applyment_id)} if applyment_id is not None else None
        return CANCEL.call({"key": business_code}, query=query, timeout=timeout)

    @endpoint
    def merchant_state(
        sub_mchid: str, *, timeout: TimeoutLike | None = None
    ) -> Call[a.MerchantAuthorizeState]:
        """A4: whether the special merchant confirmed its account-opening intention."""
        return MERCHANT_STATE.call({"sub_mchid": sub_mchid}, timeout=timeout)
