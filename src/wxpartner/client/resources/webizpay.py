"""Enterprise payment (企业支付, ``/v3/webizpay/...``), W1–W17: the operation table and its resources.

``idempotent`` marks calls that are safe to repeat after an ambiguous failure (a timeout after the
request left): queries, and writes keyed by the caller's own number (``out_card_no``,
``out_batch_id``, ``out_operation_id``) or that name the state they leave, so a repeat adds no effect:
W6 cancel and W8 revoke (a card's, a relation's terminal state, by the id in the path), W15 add
and W17 delete (the identifier is its own key in the range, named by value). What real WeChat Pay
answers such a repeat is Unknown (the sandbox's 200 is an emulator choice): a refusal of a repeat
carries ``ApiError.after_ambiguous`` (README: which calls are safe to repeat). The sandbox answers a
repeated W17 whose first attempt removed the identifier 404 ``RESOURCE_NOT_EXISTS`` naming
``merchant_identifier`` in its detail: the SDK returns that as the delete's success (``gone``).
Creating an available-merchant range (W13) carries no caller key: it is not repeated, not even after
a 500 ``SYSTEM_ERROR`` (which may follow a change that took effect).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Generic

import httpx

from ...models import webizpay as w
from ...models import webizpay_bills as b
from ...models import webizpay_merchants as m
from ..core import Call, Response
from ..operations import M, Op, Resource, endpoint, paged
from ..policy import TimeoutLike, as_timeout

Body = Mapping[str, Any]

# -- the table ---------------------------------------------------------------------------------------
P = "/v3/webizpay"
AUTHORIZATION_URL = Op[w.AuthorizationUrlResponse](
    "webizpay.start_authorization", "POST", P + "/users/{user_id}/authorization-url",
    w.AuthorizationUrlResponse, body=w.AuthorizationUrlRequest, idempotent=True,
)  # fmt: skip
AUTHORIZATION_STATE = Op[w.AuthorizationStateResponse](
    "webizpay.authorization_state", "GET", P + "/users/{user_id}/authorization-state",
    w.AuthorizationStateResponse, query=w.SpSubQuery, idempotent=True,
)  # fmt: skip
ISSUE_QUOTA_CARD = Op[w.IssueQuotaCardResponse](
    "webizpay.issue_quota_card", "POST", P + "/employees/{employee_id}/quota-cards",
    w.IssueQuotaCardResponse, body=w.IssueQuotaCardRequest, idempotent=True,
)  # fmt: skip
GET_QUOTA_CARD = Op[w.QuotaCard](
    "webizpay.get_quota_card", "GET", P + "/employees/{employee_id}/quota-cards/{card_no}",
    w.QuotaCard, query=w.SpSubQuery, idempotent=True,
)  # fmt: skip
GET_OUT_QUOTA_CARD = Op[w.QuotaCard](
    "webizpay.get_quota_card_by_out_no", "GET", P + "/employees/{employee_id}/out-quota-cards/{out_card_no}",
    w.QuotaCard, query=w.SpSubQuery, idempotent=True,
)  # fmt: skip
CANCEL_QUOTA_CARD = Op[w.CancelQuotaCardResponse](
    "webizpay.cancel_quota_card", "POST", P + "/employees/{employee_id}/quota-cards/{card_no}/cancel",
    w.CancelQuotaCardResponse, body=w.CancelQuotaCardRequest, idempotent=True,
)  # fmt: skip
PAYMENT_URL = Op[w.PaymentUrlResponse](
    "webizpay.payment_url", "GET", P + "/employees/{employee_id}/quota-cards/{card_no}/payment-url",
    w.PaymentUrlResponse, query=w.PaymentUrlQuery, idempotent=True,
)  # fmt: skip
# The seed writes /employee/ (singular); the newer official page and references write /employees/.
REVOKE = Op[w.RevokeAuthorizationResponse](
    "webizpay.revoke_authorization", "POST", P + "/employees/{employee_id}/revoke",
    w.RevokeAuthorizationResponse, body=w.RevokeAuthorizationRequest, idempotent=True,
)  # fmt: skip
CREATE_ENTITY_MATCH = Op[m.EntityMatchBatch](
    "webizpay.start_entity_match", "POST", P + "/stores/entity-matches",
    m.EntityMatchBatch, body=m.CreateEntityMatchRequest, idempotent=True,
)  # fmt: skip
GET_ENTITY_MATCH = Op[m.EntityMatchResult](
    "webizpay.query_entity_match", "GET", P + "/stores/entity-matches/{batch_id}",
    m.EntityMatchResult, query=m.SpQuery, idempotent=True,
)  # fmt: skip
APPLY_PROOF = Op[b.ProofResponse](
    "webizpay.apply_funding_proof", "POST", P + "/bill/proof", b.ProofResponse, body=b.ProofRequest, idempotent=True,
)  # fmt: skip
APPLY_TRADE_BILL = Op[b.TradeBillResponse](
    "webizpay.apply_trade_bill", "POST", P + "/bill/trade-bill",
    b.TradeBillResponse, body=b.TradeBillRequest, idempotent=True,
)  # fmt: skip
CREATE_RANGE = Op[m.RangeIdResponse](
    "webizpay.create_avail_mch_range", "POST", P + "/avail-mch-ranges", m.RangeIdResponse, body=m.CreateRangeRequest,
)  # fmt: skip
LIST_RANGES = Op[m.RangeList](
    "webizpay.list_avail_mch_ranges", "GET", P + "/avail-mch-ranges", m.RangeList, query=m.SpQuery, idempotent=True,
)  # fmt: skip
ADD_IDENTIFIER = Op[m.RangeIdResponse](
    "webizpay.add_merchant_identifier", "POST", P + "/avail-mch-ranges/{range_id}/merchant-identifiers",
    m.RangeIdResponse, body=m.AddIdentifierRequest, idempotent=True,
)  # fmt: skip
LIST_IDENTIFIERS = Op[m.IdentifierPage](
    "webizpay.list_merchant_identifiers", "GET", P + "/avail-mch-ranges/{range_id}/merchant-identifiers",
    m.IdentifierPage, query=m.ListIdentifiersQuery, idempotent=True,
)  # fmt: skip
DELETE_IDENTIFIER = Op[m.RangeIdResponse](
    "webizpay.delete_merchant_identifier", "DELETE",
    P + "/avail-mch-ranges/{range_id}/merchant-identifiers/{merchant_identifier}",
    m.RangeIdResponse, body=m.DeleteIdentifierRequest, idempotent=True,  # by value: a repeat adds nothing
)  # fmt: skip

# The file a W11/W12 download_url points to (an unsigned answer; not among the 17 operations).
DOWNLOAD = Op[bytes]("billdownload.file", "GET", "/v3/billdownload/file", None, idempotent=True)

OPERATIONS = (
    AUTHORIZATION_URL, AUTHORIZATION_STATE, ISSUE_QUOTA_CARD, GET_QUOTA_CARD, GET_OUT_QUOTA_CARD,
    CANCEL_QUOTA_CARD, PAYMENT_URL, REVOKE, CREATE_ENTITY_MATCH, GET_ENTITY_MATCH, APPLY_PROOF,
    APPLY_TRADE_BILL, CREATE_RANGE, LIST_RANGES, ADD_IDENTIFIER, LIST_IDENTIFIERS, DELETE_IDENTIFIER,
)  # fmt: skip


# -- the resources -----------------------------------------------------------------------------------
class Users(Resource[M]):
    """Employees by the merchant's own ``user_id`` (W1, W2)."""

    @endpoint
    def authorization_url(
        user_id: str, request: w.AuthorizationUrlRequest | Body, *, timeout: TimeoutLike | None = None
    ) -> Call[w.AuthorizationUrlResponse]:
        """W1: start an employee's authorization; returns the link (H5) or mini-program query."""
        return AUTHORIZATION_URL.call({"user_id": user_id}, body=request, timeout=timeout)

    @endpoint
    def authorization_state(
        user_id: str, *, sp_mchid: str, sub_mchid: str, timeout: TimeoutLike | None = None
    ) -> Call[w.AuthorizationStateResponse]:
        """W2: the employee's authorization relations and their states."""
        return AUTHORIZATION_STATE.call(
            {"user_id": user_id}, query={"sp_mchid": sp_mchid, "sub_mchid": sub_mchid}, timeout=timeout
        )


class QuotaCards(Resource[M]):
    """Quota cards of an authorized employee (W3–W7)."""

    @endpoint
    def issue(
        employee_id: str, request: w.IssueQuotaCardRequest | Body, *, timeout: TimeoutLike | None = None
    ) -> Call[w.IssueQuotaCardResponse]:
        """W3: issue a card; repeating with the same ``out_card_no`` and parameters returns the same card."""
        return ISSUE_QUOTA_CARD.call({"employee_id": employee_id}, body=request, timeout=timeout)

    @endpoint
    def get(
        employee_id: str, card_no: str, *, sp_mchid: str, sub_mchid: str, timeout: TimeoutLike | None = None
    ) -> Call[w.QuotaCard]:
        """W4: a card by WeChat's ``card_no``."""
        return GET_QUOTA_CARD.call(
            {"employee_id": employee_id, "card_no": card_no},
            query={"sp_mchid": sp_mchid, "sub_mchid": sub_mchid},
            timeout=timeout,
        )

    @endpoint
    def get_by_out_card_no(
        employee_id: str,
        out_card_no: str,
        *,
        sp_mchid: str,
        sub_mchid: str,
        timeout: TimeoutLike | None = None,
    ) -> Call[w.QuotaCard]:
        """W5: a card by the merchant's ``out_card_no``."""
        return GET_OUT_QUOTA_CARD.call(
            {"employee_id": employee_id, "out_card_no": out_card_no},
            query={"sp_mchid": sp_mchid, "sub_mchid": sub_mchid},
            timeout=timeout,
        )

    @endpoint
    def cancel(
        employee_id: str,
        card_no: str,
        request: w.CancelQuotaCardRequest | Body,
        *,
        timeout: TimeoutLike | None = None,
    ) -> Call[w.CancelQuotaCardResponse]:
        """W6: cancel (void) a card."""
        return CANCEL_QUOTA_CARD.call(
            {"employee_id": employee_id, "card_no": card_no}, body=request, timeout=timeout
        )

    @endpoint
    def payment_url(
        employee_id: str,
        card_no: str,
        *,
        sp_mchid: str,
        sub_mchid: str,
        application_type: w.ApplicationType,
        timeout: TimeoutLike | None = None,
    ) -> Call[w.PaymentUrlResponse]:
        """W7: a short-lived payment link for a card."""
        query = {"sp_mchid": sp_mchid, "sub_mchid": sub_mchid, "application_type": application_type}
        return PAYMENT_URL.call(
            {"employee_id": employee_id, "card_no": card_no}, query=query, timeout=timeout
        )


class Employees(Resource[M]):
    """Authorization relations by WeChat's ``employee_id`` (W8)."""

    @endpoint
    def revoke(
        employee_id: str, request: w.RevokeAuthorizationRequest | Body, *, timeout: TimeoutLike | None = None
    ) -> Call[w.RevokeAuthorizationResponse]:
        """W8: revoke the employee's enterprise-payment authorization."""
        return REVOKE.call({"employee_id": employee_id}, body=request, timeout=timeout)


class Stores(Resource[M]):
    """Store-entity matching batches (W9, W10)."""

    @endpoint
    def create_entity_match(
        request: m.CreateEntityMatchRequest | Body, *, timeout: TimeoutLike | None = None
    ) -> Call[m.EntityMatchBatch]:
        """W9: start a matching batch (a repeated ``out_batch_id`` returns the existing batch)."""
        return CREATE_ENTITY_MATCH.call(body=request, timeout=timeout)

    @endpoint
    def get_entity_match(
        batch_id: str, *, sp_mchid: str, timeout: TimeoutLike | None = None
    ) -> Call[m.EntityMatchResult]:
        """W10: a batch's state and results."""
        return GET_ENTITY_MATCH.call({"batch_id": batch_id}, query={"sp_mchid": sp_mchid}, timeout=timeout)


class Bills(Resource[M]):
    """Funding proofs and trade bills (W11, W12)."""

    @endpoint
    def apply_proof(
        request: b.ProofRequest | Body, *, timeout: TimeoutLike | None = None
    ) -> Call[b.ProofResponse]:
        """W11: apply for a funding proof (出资凭证) file."""
        return APPLY_PROOF.call(body=request, timeout=timeout)

    @endpoint
    def apply_trade_bill(
        request: b.TradeBillRequest | Body, *, timeout: TimeoutLike | None = None
    ) -> Call[b.TradeBillResponse]:
        """W12: apply for a daily business bill."""
        return APPLY_TRADE_BILL.call(body=request, timeout=timeout)

    @endpoint
    def download(download_url: str, *, timeout: TimeoutLike | None = None) -> Call[bytes]:
        """The file a W11/W12 ``download_url`` points to (``GET /v3/billdownload/file?token=...``), sent
        to this client's host whatever host the URL names. WeChat Pay does not sign this answer (its
        bill download page: skip verification), so an answer without signature headers is accepted; a
        signed one (wxpartner signs it) is verified like any other."""
        target = httpx.URL(download_url)
        return Call(
            "GET",
            target.raw_path.split(b"?", 1)[0].decode("ascii"),
            _content,
            query=tuple(target.params.multi_items()),
            idempotent=DOWNLOAD.idempotent,
            op_id=DOWNLOAD.op_id,
            expects_json=False,
            unsigned_ok=True,
            timeout=None if timeout is None else as_timeout(timeout),
        )


def _content(resp: Response) -> bytes:
    return resp.content


class Ranges(Resource[M]):
    """Available-merchant ranges and their merchant identifiers (W13–W17)."""

    @endpoint
    def create(
        request: m.CreateRangeRequest | Body, *, timeout: TimeoutLike | None = None
    ) -> Call[m.RangeIdResponse]:
        """W13: create a range. Not repeated after an ambiguous failure, a 500 included (each call
        creates a range: a repeat would make a second one); list the ranges (W14) before trying again."""
        return CREATE_RANGE.call(body=request, timeout=timeout)

    @endpoint
    def list(*, sp_mchid: str, timeout: TimeoutLike | None = None) -> Call[m.RangeList]:
        """W14: the service provider's ranges."""
        return LIST_RANGES.call(query={"sp_mchid": sp_mchid}, timeout=timeout)

    @endpoint
    def add_identifier(
        range_id: str, request: m.AddIdentifierRequest | Body, *, timeout: TimeoutLike | None = None
    ) -> Call[m.RangeIdResponse]:
        """W15: add a merchant identifier to a range."""
        return ADD_IDENTIFIER.call({"range_id": range_id}, body=request, timeout=timeout)

    @endpoint
    def list_identifiers(
        range_id: str, *, sp_mchid: str, offset: int = 0, limit: int = 100, timeout: TimeoutLike | None = None
    ) -> Call[m.IdentifierPage]:
        """W16: one page of a range's identifiers."""
        query = {"sp_mchid": sp_mchid, "offset": offset, "limit": limit}
        return LIST_IDENTIFIERS.call({"range_id": range_id}, query=query, timeout=timeout)

    @paged
    def identifiers(
        offset: int,
        /,
        range_id: str,
        *,
        sp_mchid: str,
        page_size: int = 100,
        timeout: TimeoutLike | None = None,
    ) -> Call[m.IdentifierPage]:
        """W16, every page: iterate over all of a range's identifiers (``for`` on ``Client``, ``async for``
        on ``AsyncClient``), ``page_size`` (at most 500) per request."""
        query = {"sp_mchid": sp_mchid, "offset": offset, "limit": page_size}
        return LIST_IDENTIFIERS.call({"range_id": range_id}, query=query, timeout=timeout)

    @endpoint
    def delete_identifier(
        range_id: str,
        merchant_identifier: str,
        request: m.DeleteIdentifierRequest | Body,
        *,
        timeout: TimeoutLike | None = None,
    ) -> Call[m.RangeIdResponse]:
        """W17: remove an identifier (DELETE with a JSON body). Repeated after an ambiguous failure
        (the identifier names what is deleted); a repeat answered 404 for the identifier (the first
        attempt deleted it) returns this range's id as the delete's own answer would."""
        path = {"range_id": range_id, "merchant_identifier": merchant_identifier}
        call = DELETE_IDENTIFIER.call(path, body=request, timeout=timeout)
        return replace(
            call, gone_field="merchant_identifier", gone=lambda: m.RangeIdResponse(range_id=range_id)
        )


class Webizpay(Generic[M]):
    """``client.webizpay``: users, quota_cards, employees, stores, bills, ranges."""

    _GROUPS = ("users", "quota_cards", "employees", "stores", "bills", "ranges")

    def __init__(self, runner: Any) -> None:
        self._runner = runner
        self.users: Users[M] = Users(runner)
        self.quota_cards: QuotaCards[M] = QuotaCards(runner)
        self.employees: Employees[M] = Employees(runner)
        self.stores: Stores[M] = Stores(runner)
        self.bills: Bills[M] = Bills(runner)
        self.ranges: Ranges[M] = Ranges(runner)

    def __repr__(self) -> str:
        return f"<Webizpay of {self._runner!r}: {', '.join(self._GROUPS)}>"
