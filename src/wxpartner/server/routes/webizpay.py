"""Enterprise payment (企业支付) W1–W8: authorization relations and quota cards (spec webizpay.md §3).

Every handler checks §5.1/§5.2 first (sp_mchid is the signer, sub_mchid bound to it: else 403
NO_AUTH), then runs the domain inside one write transaction (reads use a read transaction and only
write when an overdue card must be persisted as DISABLED).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from ...domain.webizpay import authorizations, quota_cards
from ...domain.webizpay.entities import Card, Policy
from ...models.webizpay import (
    AuthorizationStateResponse,
    AuthorizationUrlRequest,
    AuthorizationUrlResponse,
    CancelQuotaCardRequest,
    CancelQuotaCardResponse,
    CardPath,
    EmployeePath,
    IssueQuotaCardRequest,
    IssueQuotaCardResponse,
    OutCardPath,
    PaymentUrlQuery,
    PaymentUrlResponse,
    QuotaCard,
    RevokeAuthorizationRequest,
    RevokeAuthorizationResponse,
    SpSubQuery,
    UserPath,
)
from ...sandbox import scenario
from ...store import webizpay_repo, webizpay_trades  # noqa: F401  (bill rows for W11/W12)
from ...store.webizpay_repo import WebizpayRepo
from .. import webizpay_background, webizpay_pages  # noqa: F401  (sweep, employee pages, control)
from ..context import Ctx
from ..operations import operation

TAGS = ("webizpay",)


def policy(ctx: Ctx) -> Policy:
    return Policy.from_settings(ctx.state.settings.extra)


@operation(
    "POST",
    "/v3/webizpay/users/{user_id}/authorization-url",
    op_id="webizpay.start_authorization",
    summary="发起员工授权 (W1)",
    path=UserPath,
    body=AuthorizationUrlRequest,
    response=AuthorizationUrlResponse,
    tags=TAGS,
)
def start_authorization(ctx: Ctx, path: UserPath, body: AuthorizationUrlRequest) -> AuthorizationUrlResponse:
    with ctx.write() as conn:
        repo = WebizpayRepo(conn)
        authorizations.check_merchant(repo, ctx.mchid, body.sp_mchid, body.sub_mchid)
        return authorizations.start(
            repo,
            policy(ctx),
            ctx.now_ts,
            sp_mchid=body.sp_mchid,
            sub_mchid=body.sub_mchid,
            user_id=path.user_id,
            application_type=body.application_type,
            base_url=ctx.state.settings.base_url(),
        )


@operation(
    "GET",
    "/v3/webizpay/users/{user_id}/authorization-state",
    op_id="webizpay.authorization_state",
    summary="查询员工授权状态 (W2)",
    path=UserPath,
    query=SpSubQuery,
    response=AuthorizationStateResponse,
    tags=TAGS,
)
def authorization_state(ctx: Ctx, path: UserPath, query: SpSubQuery) -> AuthorizationStateResponse:
    with ctx.read() as conn:
        repo = WebizpayRepo(conn)
        authorizations.check_merchant(repo, ctx.mchid, query.sp_mchid, query.sub_mchid, "query")
        return authorizations.state(
            repo, sp_mchid=query.sp_mchid, sub_mchid=query.sub_mchid, user_id=path.user_id
        )


@operation(
    "POST",
    "/v3/webizpay/employees/{employee_id}/quota-cards",
    op_id="webizpay.issue_quota_card",
    summary="下发额度卡 (W3)",
    path=EmployeePath,
    body=IssueQuotaCardRequest,
    response=IssueQuotaCardResponse,
    tags=TAGS,
)
def issue_quota_card(ctx: Ctx, path: EmployeePath, body: IssueQuotaCardRequest) -> IssueQuotaCardResponse:
    one = ctx.one_statement()
    if one is not None:  # PostgreSQL: a new card is one statement; anything else as below
        with one as conn:
            made = quota_cards.issue_at_once(
                WebizpayRepo(conn), policy(ctx), ctx.now_ts, ctx.mchid, path.employee_id, body
            )
        if made is not None:
            return made
    with ctx.write() as conn:
        repo = WebizpayRepo(conn)
        # The merchant relation, a replayed out_card_no and the template in one statement (the checks
        # below keep their order and read these answers instead of the database).
        repo.prefetch_issue(body.sp_mchid, body.sub_mchid, body.out_card_no, body.card_template_id)
        authorizations.check_merchant(repo, ctx.mchid, body.sp_mchid, body.sub_mchid)
        return quota_cards.issue(repo, policy(ctx), ctx.now_ts, path.employee_id, body)


def _merchants_card(
    ctx: Ctx,
    repo: WebizpayRepo,
    sp_mchid: str,
    sub_mchid: str,
    employee_id: str,
    found: Card | None,
    what: str,
    location: str,
    named_by: Literal["card_no", "out_card_no"] = "card_no",
) -> Card:
    """The caller may act for sp/sub, and the card is that employee's under them (else the refusal)."""
    authorizations.check_merchant(repo, ctx.mchid, sp_mchid, sub_mchid, location)
    return quota_cards.owned_card(found, employee_id, sp_mchid, sub_mchid, what, repo=repo, named_by=named_by)


def _read_card(
    ctx: Ctx,
    query: SpSubQuery,
    employee_id: str,
    find: Callable[[WebizpayRepo], Card | None],
    what: str,
    named_by: Literal["card_no", "out_card_no"] = "card_no",
) -> Card:
    """Read the card; one overdue is persisted as DISABLED (and notified) before it is shown."""
    now = ctx.now_ts
    with ctx.read() as conn:
        repo = WebizpayRepo(conn)
        card = _merchants_card(
            ctx, repo, query.sp_mchid, query.sub_mchid, employee_id, find(repo), what, "query", named_by
        )
    if card.due(now):
        with ctx.write() as conn:
            card = quota_cards.expire(WebizpayRepo(conn), policy(ctx), card, now)
    return card


@operation(
    "GET",
    "/v3/webizpay/employees/{employee_id}/quota-cards/{card_no}",
    op_id="webizpay.get_quota_card",
    summary="查询额度卡 (W4)",
    path=CardPath,
    query=SpSubQuery,
    response=QuotaCard,
    tags=TAGS,
)
def get_quota_card(ctx: Ctx, path: CardPath, query: SpSubQuery) -> QuotaCard:
    card = _read_card(
        ctx,
        query,
        path.employee_id,
        lambda repo: repo.card_checking_bound(query.sp_mchid, query.sub_mchid, path.card_no),
        path.card_no,
    )
    return quota_cards.entity(card)


@operation(
    "GET",
    "/v3/webizpay/employees/{employee_id}/out-quota-cards/{out_card_no}",
    op_id="webizpay.get_quota_card_by_out_no",
    summary="通过商户卡号查询额度卡 (W5)",
    path=OutCardPath,
    query=SpSubQuery,
    response=QuotaCard,
    tags=TAGS,
)
def get_quota_card_by_out_no(ctx: Ctx, path: OutCardPath, query: SpSubQuery) -> QuotaCard:
    card = _read_card(
        ctx,
        query,
        path.employee_id,
        lambda repo: repo.card_by_out_no_checking_bound(query.sp_mchid, query.sub_mchid, path.out_card_no),
        path.out_card_no,
        "out_card_no",
    )
    return quota_cards.entity(card)


@operation(
    "POST",
    "/v3/webizpay/employees/{employee_id}/quota-cards/{card_no}/cancel",
    op_id="webizpay.cancel_quota_card",
    summary="作废额度卡 (W6)",
    path=CardPath,
    body=CancelQuotaCardRequest,
    response=CancelQuotaCardResponse,
    tags=TAGS,
)
def cancel_quota_card(ctx: Ctx, path: CardPath, body: CancelQuotaCardRequest) -> CancelQuotaCardResponse:
    one = ctx.one_statement()
    if one is not None:  # PostgreSQL: disabling an ACTIVE card is one statement; anything else as below
        with one as conn:
            done = quota_cards.cancel_at_once(
                WebizpayRepo(conn), policy(ctx), ctx.now_ts, ctx.mchid, path.employee_id, path.card_no, body
            )
        if done is not None:
            return done
    with ctx.write() as conn:
        repo = WebizpayRepo(conn)
        found = repo.card_checking_bound(body.sp_mchid, body.sub_mchid, path.card_no)
        card = _merchants_card(
            ctx, repo, body.sp_mchid, body.sub_mchid, path.employee_id, found, path.card_no, "body"
        )
        return quota_cards.cancel(repo, policy(ctx), ctx.now_ts, card, body.reason)


@operation(
    "GET",
    "/v3/webizpay/employees/{employee_id}/quota-cards/{card_no}/payment-url",
    op_id="webizpay.payment_url",
    summary="获取额度卡付款链接 (W7)",
    path=CardPath,
    query=PaymentUrlQuery,
    response=PaymentUrlResponse,
    tags=TAGS,
)
def payment_url(ctx: Ctx, path: CardPath, query: PaymentUrlQuery) -> PaymentUrlResponse:
    with ctx.write() as conn:
        repo = WebizpayRepo(conn)
        card = _merchants_card(
            ctx,
            repo,
            query.sp_mchid,
            query.sub_mchid,
            path.employee_id,
            repo.card_checking_bound(query.sp_mchid, query.sub_mchid, path.card_no),
            path.card_no,
            "query",
        )
        return quota_cards.payment_url(
            repo, policy(ctx), ctx.now_ts, card, query.application_type, ctx.state.settings.base_url()
        )


@operation(
    "POST",
    # The seed (2025.04.29) writes /employee/; the newer official page, website and YAML /employees/.
    "/v3/webizpay/employees/{employee_id}/revoke",
    "/v3/webizpay/employee/{employee_id}/revoke",
    op_id="webizpay.revoke_authorization",
    summary="解除员工授权 (W8)",
    path=EmployeePath,
    body=RevokeAuthorizationRequest,
    response=RevokeAuthorizationResponse,
    tags=TAGS,
)
def revoke_authorization(
    ctx: Ctx, path: EmployeePath, body: RevokeAuthorizationRequest
) -> RevokeAuthorizationResponse:
    pol = policy(ctx)
    with ctx.write() as conn:
        repo = WebizpayRepo(conn)
        authorizations.check_merchant(repo, ctx.mchid, body.sp_mchid, body.sub_mchid)
        return authorizations.revoke(
            repo,
            pol,
            ctx.now_ts,
            employee_id=path.employee_id,
            sp_mchid=body.sp_mchid,
            sub_mchid=body.sub_mchid,
            reason=pol.revoke_reason,
        )


scenario.RESETTERS.append(webizpay_repo.reset)
