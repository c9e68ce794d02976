"""商户开户意愿确认 — /v3/apply4subject/... (spec apply4subject.md A1–A4, seed 003)."""

from __future__ import annotations

from typing import cast

from ...domain import apply4subject as d
from ...models.apply4subject import (
    ApplymentResult,
    ApplymentState,
    AuthorizeState,
    CancelPath,
    CancelQuery,
    MerchantAuthorizeState,
    MerchantStatePath,
    QueryApplymentQuery,
    SubmitApplymentQuery,
    SubmitApplymentRequest,
    SubmitApplymentResponse,
)
from ...store.apply4subject_repo import Apply4SubjectRepo
from .. import apply4subject_flow as flow
from .. import apply4subject_page as _page  # noqa: F401  (registers the confirmation page)
from .. import control_apply4subject as _control  # noqa: F401  (registers control routes + scenario)
from .. import rate_limits
from ..app import SETTLE_HOOKS, AppState
from ..context import Ctx
from ..operations import operation
from ..settle import SETTLE_LABELS

TAGS = ("apply4subject",)


# Spec: submit 5 and query 20 requests per second per merchant number (cancel and state: not published).
rate_limits.declare(
    "apply4subject",
    "merchant",
    {"apply4subject.submit": ("submit", 5), "apply4subject.query": ("query", 20)},
)


@operation(
    "POST",
    "/v3/apply4subject/applyment",
    "/v3/apply4subject/applyment/",  # the official page's spelling
    op_id="apply4subject.submit",
    summary="提交申请单 (submit an applyment)",
    query=SubmitApplymentQuery,
    body=SubmitApplymentRequest,
    response=SubmitApplymentResponse,
    encrypted_fields=True,
    tags=TAGS,
)
def submit(
    ctx: Ctx, path: dict[str, str], query: SubmitApplymentQuery, body: SubmitApplymentRequest
) -> SubmitApplymentResponse:
    d.check_caller(ctx.caller.merchant.role)
    raw = body.model_dump(exclude_none=True)
    d.check_subject(raw["subject_info"])
    plain = d.decrypt_all(raw, ctx.decrypt)
    one = ctx.one_statement()
    if one is not None:  # PostgreSQL: a new business_code is one statement; anything else as below
        with one as conn:
            # An institution's channel_id is read first (a read, as in the transaction: it locks nothing)
            channel_id = flow.resolve_channel(conn, ctx.caller, body.channel_id, query.channel_id)
            sub = flow.submission(ctx.caller, raw, plain, channel_id)
            made = flow.submit_at_once(Apply4SubjectRepo(conn), sub, ctx.now_ts)
        if made is not None:
            return SubmitApplymentResponse(applyment_id=made.applyment_id)
        with ctx.write() as conn:
            app = flow.submit(Apply4SubjectRepo(conn), sub, ctx.now_ts, tried_at_once=True)
        return SubmitApplymentResponse(applyment_id=app.applyment_id)
    with ctx.write() as conn:
        channel_id = flow.resolve_channel(conn, ctx.caller, body.channel_id, query.channel_id)
        sub = flow.submission(ctx.caller, raw, plain, channel_id)
        app = flow.submit(Apply4SubjectRepo(conn), sub, ctx.now_ts)
    return SubmitApplymentResponse(applyment_id=app.applyment_id)


@operation(
    "GET",
    "/v3/apply4subject/applyment",
    "/v3/apply4subject/applyment/",
    op_id="apply4subject.query",
    summary="查询申请单审核结果 (query the audit result)",
    query=QueryApplymentQuery,
    response=ApplymentResult,
    tags=TAGS,
)
def query(ctx: Ctx, path: dict[str, str], query: QueryApplymentQuery) -> ApplymentResult:
    d.check_caller(ctx.caller.merchant.role)
    # A query is counted (auto audit policy "after N queries"): one statement that commits by itself.
    with ctx.autocommit() as conn:
        app, policy = flow.count_query(
            Apply4SubjectRepo(conn), ctx.mchid, query.applyment_id, query.business_code
        )
    now = ctx.now_ts
    if policy is not None and policy.due(app.state, app.state_since, now, app.query_count):
        with ctx.write() as conn:
            app = flow.advance(Apply4SubjectRepo(conn), app, policy, now)
    return ApplymentResult(
        applyment_state=cast(ApplymentState, app.state),  # written only from domain constants
        qrcode_data=flow.qrcode_data(ctx.state.settings.base_url(), app),
        reject_param=app.reject_param if app.state == d.REJECTED else None,
        reject_reason=app.reject_reason if app.state in (d.REJECTED, d.FREEZED) else None,
    )


@operation(
    "POST",
    "/v3/apply4subject/applyment/{business_code}/cancel",  # or {applyment_id} (seed 003)
    op_id="apply4subject.cancel",
    summary="撤销申请单 (cancel an applyment by business_code or applyment_id)",
    path=CancelPath,
    query=CancelQuery,
    status=204,
    tags=TAGS,
)
def cancel(ctx: Ctx, path: CancelPath, query: CancelQuery) -> None:
    d.check_caller(ctx.caller.merchant.role)
    key, query_id, now = path.business_code, query.applyment_id, ctx.now_ts
    one = ctx.one_statement()
    if one is not None:  # PostgreSQL: a cancel that cancels is one statement; anything else as below
        with one as conn:
            if flow.cancel_at_once(Apply4SubjectRepo(conn), ctx.mchid, key, query_id, now):
                return
    with ctx.write() as conn:
        flow.cancel_by_key(
            Apply4SubjectRepo(conn), ctx.mchid, key, query_id, now, tried_at_once=one is not None
        )


@operation(
    "GET",
    "/v3/apply4subject/applyment/merchants/{sub_mchid}/state",
    op_id="apply4subject.merchant_state",
    summary="获取商户开户意愿确认状态 (merchant authorization state)",
    path=MerchantStatePath,
    response=MerchantAuthorizeState,
    tags=TAGS,
)
def merchant_state(ctx: Ctx, path: MerchantStatePath) -> MerchantAuthorizeState:
    d.check_caller(ctx.caller.merchant.role)
    with ctx.read() as conn:
        authorized = Apply4SubjectRepo(conn).is_authorized(ctx.mchid, path.sub_mchid)
    return MerchantAuthorizeState(
        authorize_state=cast(AuthorizeState, d.AUTHORIZED if authorized else d.UNAUTHORIZED)
    )


def settle_waited(state: AppState) -> int:
    """SETTLE_HOOKS: one batch of the applyments the auto policy's ``after_seconds`` is due for (what
    their next A2 query would do), so a clock move shows its effect at once on the control API's list
    and the dashboard; how many this call moved, 0 only once none is due. A read first: no policy by
    time, or nothing due, takes no write lock.

    Two settlers (hosts, workers) can read the same batch on PostgreSQL, each in its own snapshot; the
    one that waited on the other's row locks then moves none of it, and its 0 would end the clock
    move's settling with later applyments still due. It reads again instead: it has waited for the
    other's commit, which took every applyment of its batch out of audit. No spinning: the read and
    the policy decide by one cutoff (``AutoPolicy.wait_cutoff``), so an applyment the read returns
    moves unless another writer moved it; and should the longest-waiting one come back unchanged
    after a batch that moved nothing, nothing this hook can do would move it, and it stops."""
    last: tuple[int, float] | None = None
    while True:
        with state.db.read() as conn:
            repo = Apply4SubjectRepo(conn)
            policy = repo.policy()
            cutoff = None if policy is None else policy.wait_cutoff(flow.business_now(conn))
            if cutoff is None:
                return 0
            first = repo.waiting_since(d.AUDIT, cutoff, 1)
        if not first or (first[0].applyment_id, first[0].state_since) == last:
            return 0
        last = (first[0].applyment_id, first[0].state_since)
        with state.db.write() as conn:
            if moved := flow.advance_waited(Apply4SubjectRepo(conn), flow.business_now(conn)):
                return moved


SETTLE_HOOKS.append(settle_waited)
SETTLE_LABELS[settle_waited] = "applyments_advanced"
