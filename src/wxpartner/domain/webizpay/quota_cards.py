"""Quota cards (额度卡): W3 issue, W4/W5 query, W6 cancel, W7 payment link, expiry."""

from __future__ import annotations

from dataclasses import replace
from typing import Literal
from urllib.parse import quote

from ...models.webizpay import (
    CancelQuotaCardRequest,
    CancelQuotaCardResponse,
    IssueQuotaCardRequest,
    IssueQuotaCardResponse,
    PaymentUrlResponse,
    QuotaCard,
)
from ...protocol.errors import ApiError, not_found, param_error
from ...protocol.times import china_time_text, parse_rfc3339
from .entities import (
    ACTIVE,
    AUTHORIZED,
    DISABLED,
    MP_BUSINESS_TYPE_PAY,
    REASON_EXPIRED,
    Card,
    Event,
    PaymentLink,
    Policy,
    Template,
    new_card_no,
    new_token,
    rfc3339,
)
from .ports import Repo

# The latest end time taken: an offset can put a year-9999 time into year 10000 UTC, which no date
# type holds (pages showing the card failed on it). W3 and a scenario's restored card hold to it.
LATEST_END = "9999-12-31T23:59:59Z"
LATEST_END_AT = parse_rfc3339(LATEST_END).timestamp()


def end_time(card: Card) -> str:
    """effective_end_time as answered: the instant sent, written as the seeds write every time
    (``2023-12-31T23:59:59+08:00``, README "Emulator choices"); stored as sent."""
    return answered_end_time(card.end_text)


def answered_end_time(end_text: str) -> str:
    """A stored effective_end_time as W3/W4/W5 answer it (and the dashboard shows it)."""
    try:
        return china_time_text(end_text)
    except ValueError:  # a row an older version took (full-width digits) stays as it was stored
        return end_text


def entity(card: Card) -> QuotaCard:
    """The W4/W5 card object. ``card_disabled_time``/``reason`` only when the card is not usable."""
    return QuotaCard(
        sp_mchid=card.sp_mchid,
        sub_mchid=card.sub_mchid,
        card_no=card.card_no,
        out_card_no=card.out_card_no,
        employee_id=card.employee_id,
        card_template_id=card.card_template_id,
        card_rule=card.card_rule,  # type: ignore[arg-type]
        refund_rule=card.refund_rule,  # type: ignore[arg-type]
        amount=card.amount,
        remain_amount=card.remain_amount,
        effective_end_time=end_time(card),
        effective_begin_time=rfc3339(card.begin_at),
        card_state=card.state,  # type: ignore[arg-type]
        card_name=card.card_name,
        reason=card.reason if card.state == DISABLED else None,
        card_usage_time=rfc3339(card.used_at) if card.used_at is not None else None,
        transaction_id=card.transaction_id,
        card_disabled_time=rfc3339(card.disabled_at) if card.disabled_at is not None else None,
        card_remark=card.card_remark or None,
    )


def issued(card: Card) -> IssueQuotaCardResponse:
    return IssueQuotaCardResponse(
        sp_mchid=card.sp_mchid,
        sub_mchid=card.sub_mchid,
        out_card_no=card.out_card_no,
        employee_id=card.employee_id,
        card_no=card.card_no,
        effective_begin_time=rfc3339(card.begin_at),
        effective_end_time=end_time(card),
    )


def _same_issue(card: Card, employee_id: str, body: IssueQuotaCardRequest, end_at: float) -> bool:
    return (
        card.employee_id == employee_id
        and card.card_template_id == body.card_template_id
        and card.amount == body.amount
        and card.card_name == body.card_name
        and card.end_at == end_at
        and (card.card_remark or None) == (body.card_remark or None)
        and card.avail_mch_range_id == body.avail_mch_range_id
    )


def _replay(
    card: Card, employee_id: str, body: IssueQuotaCardRequest, end_at: float
) -> IssueQuotaCardResponse:
    if not _same_issue(card, employee_id, body, end_at):
        raise ApiError(
            "INVALID_REQUEST",
            f"商户卡号已存在：out_card_no {body.out_card_no} was already used for card {card.card_no} "
            "with different parameters; use a new out_card_no",
            detail={
                "field": "/out_card_no",
                "location": "body",
                "value": body.out_card_no,
                "issue": "already used with different parameters",
                "card_no": card.card_no,
            },
        )
    return issued(card)


def _end_at(body: IssueQuotaCardRequest) -> float:
    return parse_rfc3339(body.effective_end_time).timestamp()


def _new_card(
    employee_id: str, body: IssueQuotaCardRequest, now: float, end_at: float, template: Template
) -> Card:
    return Card(
        card_no=new_card_no(),
        sp_mchid=body.sp_mchid,
        sub_mchid=body.sub_mchid,
        out_card_no=body.out_card_no,
        employee_id=employee_id,
        card_template_id=template.card_template_id,
        card_rule=template.card_rule,
        refund_rule=template.refund_rule,
        amount=body.amount,
        remain_amount=body.amount,
        card_name=body.card_name,
        card_remark=body.card_remark,
        begin_at=now,
        end_at=end_at,
        end_text=body.effective_end_time,
        state=ACTIVE,
        avail_mch_range_id=body.avail_mch_range_id,
    )


def issue_at_once(
    repo: Repo, policy: Policy, now: float, caller: str, employee_id: str, body: IssueQuotaCardRequest
) -> IssueQuotaCardResponse | None:
    """W3's usual case, a new card that every rule of ``issue`` (and ``check_merchant`` before it)
    lets through, written by one statement (``Repo.issue_card``, PostgreSQL): the caller signs as
    sp_mchid and the end time is in (now, LATEST_END] (checked here), and the statement inserts the
    card only if sub_mchid is sp_mchid's sub-merchant, there is a template (the provider's stored
    one, else the built-in one), the range (if any) is the provider's, the employee's relation is
    sp/sub's and AUTHORIZED, and out_card_no is new. None: nothing written (a replay, a refusal, a race
    lost, or SQLite): the caller then runs ``check_merchant`` and ``issue``, which answer precisely."""
    if body.sp_mchid != caller:
        return None
    end_at = _end_at(body)
    if not now < end_at <= LATEST_END_AT:
        return None
    builtin = policy.builtin(body.card_template_id)
    # The rules of the template the statement finds (the stored one wins): these are not stored.
    placeholder = builtin or Template(body.card_template_id, "", "")
    card = repo.issue_card(_new_card(employee_id, body, now, end_at, placeholder), builtin, AUTHORIZED)
    return issued(card) if card is not None else None


def issue(
    repo: Repo, policy: Policy, now: float, employee_id: str, body: IssueQuotaCardRequest
) -> IssueQuotaCardResponse:
    """W3. Idempotent on (sp, sub, out_card_no): the same body again returns the same card (also
    after its relation was revoked, so a retry after a 5xx is safe); a different body is refused."""
    end_at = _end_at(body)
    if end_at > LATEST_END_AT:
        raise param_error(
            "/effective_end_time",
            f"must not be later than {LATEST_END}",
            value=body.effective_end_time,
            message=f"卡片有效期截止时间不能晚于{LATEST_END}",
        )
    existing = repo.card_by_out_no(body.sp_mchid, body.sub_mchid, body.out_card_no)
    if existing is not None:
        return _replay(existing, employee_id, body, end_at)
    template = repo.template(body.sp_mchid, body.card_template_id) or policy.builtin(body.card_template_id)
    if template is None:
        raise param_error(
            "/card_template_id",
            "unknown card template for this service provider (templates are configured in the sandbox)",
            value=body.card_template_id,
            message=f"额度卡模板不存在：{body.card_template_id}",
        )
    if (
        body.avail_mch_range_id is not None
        and repo.range_known(body.sp_mchid, body.avail_mch_range_id) is False
    ):
        raise param_error(
            "/avail_mch_range_id",
            "no available-merchant range with this id for the service provider",
            value=body.avail_mch_range_id,
            message=f"可用商户范围不存在：{body.avail_mch_range_id}",
        )
    if end_at <= now:
        raise param_error(
            "/effective_end_time",
            f"must be later than the current time {rfc3339(now)}",
            value=body.effective_end_time,
            message="卡片有效期截止时间必须大于当前时间",
        )
    relation = repo.relation_for_update(employee_id)  # no revoke may slip between check and insert
    if relation is None or relation.sp_mchid != body.sp_mchid or relation.sub_mchid != body.sub_mchid:
        raise not_found(f"授权关系 {employee_id}", f"authorization of employee {employee_id}")
    if relation.state != AUTHORIZED:
        raise ApiError(
            "INVALID_REQUEST",
            f"员工未授权：relation {employee_id} is {relation.state}; cards can only be issued to an "
            "AUTHORIZED employee",
            detail={"state": relation.state},
        )
    card = _new_card(employee_id, body, now, end_at, template)
    if not repo.insert_card(card):  # lost a race on out_card_no: answer as the replay it is
        winner = repo.card_by_out_no(body.sp_mchid, body.sub_mchid, body.out_card_no)
        if winner is None:  # pragma: no cover - card_no collision (1 in 10^17): let the client retry
            raise ApiError("SYSTEM_ERROR", "系统繁忙，请稍后用相同参数重试")
        return _replay(winner, employee_id, body, end_at)
    return issued(card)


def owned_card(
    card: Card | None,
    employee_id: str,
    sp_mchid: str,
    sub_mchid: str,
    what: str,
    *,
    repo: Repo | None = None,
    named_by: Literal["card_no", "out_card_no"] = "card_no",
) -> Card:
    """Another employee's or merchant's card is indistinguishable from a missing one (404). With
    ``repo`` (the caller may act for sp/sub), a value that is this employee's card by its other number
    says so in the 404's detail: seed 001 says out_card_no serves "后续查询、作废等操作", while W4, W6 and W7
    take the card_no W3 answered and only W5 the out_card_no."""
    if not _owned(card, employee_id, sp_mchid, sub_mchid):
        hint = _other_number(repo, employee_id, sp_mchid, sub_mchid, what, named_by) if repo else None
        raise not_found(f"额度卡 {what}", f"quota card {what}", detail=hint)
    assert card is not None
    return card


def _owned(card: Card | None, employee_id: str, sp_mchid: str, sub_mchid: str) -> bool:
    return (
        card is not None
        and card.employee_id == employee_id
        and card.sp_mchid == sp_mchid
        and card.sub_mchid == sub_mchid
    )


def _other_number(
    repo: Repo, employee_id: str, sp_mchid: str, sub_mchid: str, what: str, named_by: str
) -> dict[str, str] | None:
    """The 404's detail when ``what`` names this employee's card by the number the path does not take."""
    if named_by == "card_no":
        other = repo.card_by_out_no(sp_mchid, sub_mchid, what)
        if other is None or not _owned(other, employee_id, sp_mchid, sub_mchid):
            return None
        issue = (
            f"no quota card has this card_no; it is the out_card_no of card {other.card_no}: W4, W6 and W7 "
            "take the card_no W3 answered (W5 reads a card by its out_card_no)"
        )
    else:
        other = repo.card(what)
        if other is None or not _owned(other, employee_id, sp_mchid, sub_mchid):
            return None
        issue = (
            f"no quota card has this out_card_no; it is the card_no of the card whose out_card_no is "
            f"{other.out_card_no}: W5 takes the merchant's out_card_no (W4 reads a card by its card_no)"
        )
    return {"field": named_by, "location": "path", "value": what, "issue": issue}


def disable(repo: Repo, policy: Policy, card: Card, at: float, reason: str, *, notify: bool) -> Card | None:
    """ACTIVE -> DISABLED, once (a conditional update); None if someone else got there first."""
    if not repo.disable_card(card.card_no, at, reason):
        return None
    done = replace(card, state=DISABLED, disabled_at=at, reason=reason)
    if notify:
        repo.emit(
            _disabled_event(card.sp_mchid, card.sub_mchid, card.card_no, card.employee_id, at, reason), at
        )
    return done


def _disabled_event(
    sp_mchid: str, sub_mchid: str, card_no: str, employee_id: str, at: float, reason: str
) -> Event:
    return Event(
        sp_mchid,
        "WEBIZPAY.QUOTACARDEXPIRED",
        "额度卡已失效",
        {
            "sp_mchid": sp_mchid,
            "sub_mchid": sub_mchid,
            "card_no": card_no,
            "employee_id": employee_id,
            "card_state": DISABLED,
            "card_disabled_time": rfc3339(at),
            "reason": reason,
        },
    )


def expire(repo: Repo, policy: Policy, card: Card, now: float) -> Card:
    """Persist an overdue card's expiry (card_disabled_time = effective_end_time) and notify once."""
    if not card.due(now):
        return card
    disable(repo, policy, card, card.end_at, REASON_EXPIRED, notify=True)
    return repo.card(card.card_no) or card


def expire_due(repo: Repo, policy: Policy, now: float, limit: int = 200) -> int:
    """The background sweep: the ``limit`` most overdue ACTIVE cards, each disabled at its end time
    and notified once, as ``expire`` does one card (one statement for the batch, its callbacks in one
    more: a card at a time took two statements each, ≈ 60 µs a card on SQLite, ≈ 0.35 ms on PostgreSQL).
    A card another writer changed meanwhile is left out. Returns how many it disabled."""
    expired = repo.disable_overdue(now, limit, REASON_EXPIRED)
    repo.emit_all(
        [
            (
                _disabled_event(c.sp_mchid, c.sub_mchid, c.card_no, c.employee_id, c.end_at, REASON_EXPIRED),
                c.end_at,
            )
            for c in expired
        ]
    )
    return len(expired)


def cancel_at_once(
    repo: Repo,
    policy: Policy,
    now: float,
    caller: str,
    employee_id: str,
    card_no: str,
    body: CancelQuotaCardRequest,
) -> CancelQuotaCardResponse | None:
    """W6's usual case, an ACTIVE card not yet due that ``check_merchant`` and ``owned_card`` let
    through, disabled by one statement (``Repo.cancel_card``, PostgreSQL) with its
    WEBIZPAY.QUOTACARDEXPIRED callback when the policy sends one on cancel (as ``disable``): the caller
    signs as sp_mchid (checked here), and the statement moves the card only if it is ``employee_id``'s
    under sp/sub, ACTIVE and not due, and sub_mchid is sp_mchid's sub-merchant. None: nothing written
    (a card already DISABLED or due, a refusal, a race lost, or SQLite): the caller then runs the
    checks and ``cancel``, which answer precisely."""
    if body.sp_mchid != caller:
        return None
    sp, sub = body.sp_mchid, body.sub_mchid
    event = _disabled_event(sp, sub, card_no, employee_id, now, body.reason)
    if not repo.cancel_card(
        card_no, employee_id, sp, sub, now, body.reason, event if policy.expired_event_on_cancel else None
    ):
        return None
    return CancelQuotaCardResponse(
        sp_mchid=sp,
        sub_mchid=sub,
        employee_id=employee_id,
        card_no=card_no,
        card_state=DISABLED,
        card_disabled_time=rfc3339(now),
    )


def cancel(repo: Repo, policy: Policy, now: float, card: Card, reason: str) -> CancelQuotaCardResponse:
    """W6. Cancelling a DISABLED card answers its current state and original disabled time."""
    card = expire(repo, policy, card, now)
    if card.state == ACTIVE:
        # The card as this cancel left it; when another request disabled it first, as that one did.
        card = (
            disable(repo, policy, card, now, reason, notify=policy.expired_event_on_cancel)
            or repo.card(card.card_no)
            or card
        )
    return CancelQuotaCardResponse(
        sp_mchid=card.sp_mchid,
        sub_mchid=card.sub_mchid,
        employee_id=card.employee_id,
        card_no=card.card_no,
        card_state=card.state,  # type: ignore[arg-type]
        card_disabled_time=rfc3339(card.disabled_at) if card.disabled_at is not None else None,
    )


def payment_url(
    repo: Repo, policy: Policy, now: float, card: Card, application_type: str, base_url: str
) -> PaymentUrlResponse:
    """W7: only an ACTIVE, unexpired card of an AUTHORIZED relation opens the payment-code page."""
    card = expire(repo, policy, card, now)
    if card.state != ACTIVE:
        raise ApiError(
            "INVALID_REQUEST",
            f"额度卡已失效：card {card.card_no} is DISABLED ({card.reason}); it cannot open the payment page",
            detail={"state": card.state},
        )
    relation = repo.relation(card.employee_id)
    if relation is None or relation.state != AUTHORIZED:
        state = relation.state if relation else "unknown"
        raise ApiError(
            "INVALID_REQUEST",
            f"员工授权已解除：relation {card.employee_id} is {state}",
            detail={"state": state},
        )
    link = PaymentLink(
        token=new_token(),
        card_no=card.card_no,
        sp_mchid=card.sp_mchid,
        sub_mchid=card.sub_mchid,
        employee_id=card.employee_id,
        application_type=application_type,
        created_at=now,
        expires_at=min(now + policy.payment_link_ttl, card.end_at),
    )
    repo.add_payment_link(link)
    mini = application_type == "MINIPROGRAM"
    return PaymentUrlResponse(
        sp_mchid=card.sp_mchid,
        sub_mchid=card.sub_mchid,
        employee_id=card.employee_id,
        card_no=card.card_no,
        expire_time=rfc3339(link.expires_at),
        payment_url=f"{base_url}/webizpay/pay?token={quote(link.token)}",
        application_type=application_type,  # type: ignore[arg-type]
        mp_query=f"token={link.token}" if mini else None,
        mp_business_type=MP_BUSINESS_TYPE_PAY if mini else None,
    )
