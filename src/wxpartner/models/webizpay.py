"""Enterprise payment (企业支付, ``/v3/webizpay/...``) W1–W8: requests, responses and callback resources.

Field names, order, lengths and enums follow spec/webizpay.md and the seeds 000 (cancel), 001 (issue)
and 004 (revoke). Field order matters: responses are serialized in declaration order, as in the seeds.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from .common import ListOrAbsent, NotBlank, Rfc3339, WxModel

# Identifier alphabet of user_id / out_card_no: 6–32 of digits, letters, _ - | *
IDENT_6_32 = r"^[0-9A-Za-z_\-|*]{6,32}$"

Mchid = Annotated[str, StringConstraints(min_length=1, max_length=32)]
UserId = Annotated[str, StringConstraints(min_length=6, max_length=32, pattern=IDENT_6_32)]
OutCardNo = Annotated[str, StringConstraints(min_length=6, max_length=32, pattern=IDENT_6_32)]
EmployeeId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
CardNo = Annotated[str, StringConstraints(min_length=1, max_length=64)]

ApplicationType = Literal["H5", "MINIPROGRAM"]
AuthorizationState = Literal["AUTHORIZED", "REVOKED"]
CardState = Literal["ACTIVE", "DISABLED"]
CardRule = Literal["SINGLE", "MULTIPLE"]
RefundRule = Literal["RETURN", "NOT_RETURN"]
TransactionState = Literal["SUCCESS", "REFUND", "NOTPAY", "CLOSED", "REVOKED", "USERPAYING", "PAYERROR"]
# Answers and callbacks take these enums open (`Known | str`, see common.py); requests keep them closed.

# Fen amounts are strict JSON integers; the upper bound keeps them inside a signed 64-bit column.
FEN_MAX = 2**63 - 1


# ---- path and query parameters -------------------------------------------------------------------


class UserPath(WxModel):
    user_id: UserId


class EmployeePath(WxModel):
    employee_id: EmployeeId


class CardPath(WxModel):
    employee_id: EmployeeId
    card_no: CardNo


class OutCardPath(WxModel):
    employee_id: EmployeeId
    # W5 allows 64 here although issue limits out_card_no to 32 (spec §6): accept the wider form.
    out_card_no: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class SpSubQuery(WxModel):
    sp_mchid: Mchid
    sub_mchid: Mchid


class PaymentUrlQuery(WxModel):
    sp_mchid: Mchid
    sub_mchid: Mchid
    application_type: ApplicationType


# ---- W1 start authorization ----------------------------------------------------------------------


class AuthorizationUrlRequest(WxModel):
    sp_mchid: Mchid
    sub_mchid: Mchid
    application_type: ApplicationType


class AuthorizationUrlResponse(WxModel):
    sp_mchid: str
    sub_mchid: str
    user_id: str
    authorization_url: str | None = None
    expire_time: str | None = None
    application_type: ApplicationType | str
    mp_query: str | None = None
    mp_business_type: str | None = None


# ---- W2 authorization state ----------------------------------------------------------------------


class EmployeeRelation(WxModel):
    employee_id: str
    authorization_state: AuthorizationState | str
    authorization_time: str
    authorization_revoked_time: str | None = None


class AuthorizationStateResponse(WxModel):
    sp_mchid: str
    sub_mchid: str
    user_id: str
    # Optional in the sources, absent for a user without relations (as wxpartner answers): read as
    # empty, and left out of an answer when empty. It was ``list | None``, which made every strictly
    # typed caller check for None before ``employee_list[0]``.
    employee_list: ListOrAbsent[EmployeeRelation] = Field(default_factory=list, exclude_if=lambda v: not v)


# ---- W3 issue a quota card (seed 001) ------------------------------------------------------------


class IssueQuotaCardRequest(WxModel):
    sp_mchid: Mchid
    sub_mchid: Mchid
    card_template_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    amount: Annotated[int, Field(gt=0, le=FEN_MAX)]
    card_name: Annotated[str, StringConstraints(min_length=1, max_length=20), NotBlank]
    out_card_no: OutCardNo
    effective_end_time: Rfc3339
    card_remark: Annotated[str, StringConstraints(max_length=50)] | None = None
    # Website/YAML only (not in the seed): restricts where the card can be used (W13–W17).
    avail_mch_range_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None


class IssueQuotaCardResponse(WxModel):
    sp_mchid: str
    sub_mchid: str
    out_card_no: str
    employee_id: str
    card_no: str
    effective_begin_time: str
    effective_end_time: str


# ---- W4 / W5 the card object ---------------------------------------------------------------------


class QuotaCard(WxModel):
    sp_mchid: str
    sub_mchid: str
    card_no: str
    out_card_no: str
    employee_id: str
    card_template_id: str
    card_rule: CardRule | str
    refund_rule: RefundRule | str
    amount: int
    remain_amount: int
    effective_end_time: str
    effective_begin_time: str
    card_state: CardState | str
    card_name: str
    reason: str | None = None
    card_usage_time: str | None = None
    transaction_id: str | None = None
    card_disabled_time: str | None = None
    card_remark: str | None = None


# ---- W6 cancel (seed 000) ------------------------------------------------------------------------


class CancelQuotaCardRequest(WxModel):
    sp_mchid: Mchid
    sub_mchid: Mchid
    reason: Annotated[str, StringConstraints(min_length=1, max_length=50), NotBlank]


class CancelQuotaCardResponse(WxModel):
    sp_mchid: str
    sub_mchid: str
    employee_id: str
    card_no: str
    card_state: CardState | str
    card_disabled_time: str | None = None


# ---- W7 payment link -----------------------------------------------------------------------------


class PaymentUrlResponse(WxModel):
    sp_mchid: str
    sub_mchid: str
    employee_id: str
    card_no: str
    expire_time: str
    payment_url: str
    application_type: ApplicationType | str | None = None
    mp_query: str | None = None
    mp_business_type: str | None = None


# ---- W8 revoke (seed 004) ------------------------------------------------------------------------


class RevokeAuthorizationRequest(WxModel):
    sp_mchid: Mchid
    sub_mchid: Mchid


class RevokeAuthorizationResponse(WxModel):
    sp_mchid: str
    sub_mchid: str
    user_id: str
    authorization_state: AuthorizationState | str
    authorization_revoked_time: str
    reason: str


# ---- callback resources (decrypted ``resource`` of WEBIZPAY.* notifications, spec §4) --------------


class AuthorizedEvent(WxModel):
    sp_mchid: str
    sub_mchid: str
    user_id: str
    employee_id: str
    authorization_time: str


class RevokedEvent(WxModel):
    sp_mchid: str
    sub_mchid: str
    user_id: str
    authorization_state: AuthorizationState | str
    authorization_revoked_time: str
    reason: str


class QuotaCardExpiredEvent(WxModel):
    sp_mchid: str
    sub_mchid: str
    card_no: str
    employee_id: str
    card_state: CardState | str
    card_disabled_time: str
    reason: str | None = None


class PaymentSuccessEvent(WxModel):
    sp_mchid: str
    sub_mchid: str
    card_no: str
    employee_id: str
    receive_mch_name: str
    receive_mch_full_name: str
    receive_mch_organization_code: str
    acquirer: str
    transaction_id: str
    out_trade_no: str
    refund_id: str | None = None
    out_refund_no: str | None = None
    transaction_state: TransactionState | str
    amount: int
    goods_name: str
    pay_success_time: str


class PaymentRefundSuccessEvent(WxModel):
    sp_mchid: str
    sub_mchid: str
    card_no: str
    employee_id: str
    transaction_id: str
    out_trade_no: str
    refund_id: str
    out_refund_no: str
    amount: int
    pay_success_time: str
    refunded_amount: int
    refund_amount: int
    refund_state: Literal["SUCCESS"] | str
    refund_create_time: str
    refund_success_time: str
