"""Authorization relations (授权关系): W1 start, the employee's consent, W2 state, W8 revoke."""

from __future__ import annotations

from urllib.parse import quote

from ...models.webizpay import (
    AuthorizationStateResponse,
    AuthorizationUrlResponse,
    EmployeeRelation,
    RevokeAuthorizationResponse,
)
from ...protocol.errors import ApiError, field_at, no_auth, not_found
from . import quota_cards
from .entities import (
    AUTHORIZED,
    MP_BUSINESS_TYPE_AUTHORIZE,
    REASON_REVOKED,
    REVOKED,
    AuthLink,
    Event,
    Policy,
    Relation,
    new_employee_id,
    new_token,
    rfc3339,
)
from .ports import Repo


def check_merchant(repo: Repo, caller: str, sp_mchid: str, sub_mchid: str, location: str = "body") -> None:
    """§5.1/§5.2: sp_mchid is the signer and sub_mchid one of its sub-merchants, else 403 NO_AUTH whose
    detail names the field (as a PARAM_ERROR does; ``location``: where the pair came from)."""
    if sp_mchid != caller:
        raise no_auth(
            f"sp_mchid {sp_mchid} is not the signing merchant {caller}",
            {
                **field_at("sp_mchid", location),
                "value": sp_mchid,
                "issue": "must equal the mchid of Authorization",
            },
        )
    if not repo.sub_bound(sp_mchid, sub_mchid):
        raise no_auth(
            f"sub_mchid {sub_mchid} is not a sub-merchant of service provider {sp_mchid}",
            {
                **field_at("sub_mchid", location),
                "value": sub_mchid,
                "issue": "not a sub-merchant of sp_mchid",
            },
        )


def start(
    repo: Repo,
    policy: Policy,
    now: float,
    *,
    sp_mchid: str,
    sub_mchid: str,
    user_id: str,
    application_type: str,
    base_url: str,
) -> AuthorizationUrlResponse:
    """W1: a fresh link per call; an employee already AUTHORIZED here needs none (INVALID_REQUEST)."""
    current = repo.authorized_relation(sp_mchid, sub_mchid, user_id)
    if current is not None:
        raise ApiError(
            "INVALID_REQUEST",
            f"员工已授权：user {user_id} is already AUTHORIZED under this sp/sub pair "
            f"(employee_id {current.employee_id}); revoke it before authorizing again",
            detail={"state": AUTHORIZED, "employee_id": current.employee_id},
        )
    link = AuthLink(
        token=new_token(),
        sp_mchid=sp_mchid,
        sub_mchid=sub_mchid,
        user_id=user_id,
        application_type=application_type,
        created_at=now,
        expires_at=now + policy.authorization_link_ttl,
    )
    repo.add_auth_link(link)
    page = f"{base_url}/webizpay/authorize?token={quote(link.token)}"
    mini = application_type == "MINIPROGRAM"
    return AuthorizationUrlResponse(
        sp_mchid=sp_mchid,
        sub_mchid=sub_mchid,
        user_id=user_id,
        authorization_url=page,
        expire_time=rfc3339(link.expires_at),
        application_type=application_type,  # type: ignore[arg-type]
        mp_query=f"token={link.token}" if mini else None,
        mp_business_type=MP_BUSINESS_TYPE_AUTHORIZE if mini else None,
    )


def state(repo: Repo, *, sp_mchid: str, sub_mchid: str, user_id: str) -> AuthorizationStateResponse:
    """W2: every relation of the user under this pair, oldest first; unknown user -> no list."""
    relations = repo.relations_of(sp_mchid, sub_mchid, user_id)
    return AuthorizationStateResponse(
        sp_mchid=sp_mchid,
        sub_mchid=sub_mchid,
        user_id=user_id,
        employee_list=[
            EmployeeRelation(
                employee_id=r.employee_id,
                authorization_state=r.state,  # type: ignore[arg-type]
                authorization_time=rfc3339(r.authorized_at),
                authorization_revoked_time=rfc3339(r.revoked_at) if r.revoked_at is not None else None,
            )
            for r in relations
        ]
        or None,
    )


def link_for_page(repo: Repo, token: str, now: float) -> AuthLink:
    link = repo.auth_link(token)
    if link is None:
        raise not_found("授权链接", "the authorization link")
    if link.consumed_at is None and now >= link.expires_at:
        raise ApiError(
            "INVALID_REQUEST", "授权链接已过期 (the authorization link has expired; ask for a new one)"
        )
    return link


def consent_by_token(repo: Repo, now: float, token: str) -> Relation:
    """The employee consents on the W1 page. A link is single-use; consenting twice is idempotent."""
    link = link_for_page(repo, token, now)
    if link.consumed_at is not None and link.employee_id:
        existing = repo.relation(link.employee_id)
        if existing is not None:
            return existing
    relation = consent(repo, now, sp_mchid=link.sp_mchid, sub_mchid=link.sub_mchid, user_id=link.user_id)
    repo.consume_auth_link(token, relation.employee_id, now)
    return relation


def consent(repo: Repo, now: float, *, sp_mchid: str, sub_mchid: str, user_id: str) -> Relation:
    """(none) -> AUTHORIZED with a new employee_id and a WEBIZPAY.AUTHORIZED callback. At most one
    AUTHORIZED relation per (sp, sub, user): a racing second consent returns the first one."""
    existing = repo.authorized_relation(sp_mchid, sub_mchid, user_id)
    if existing is not None:
        return existing
    relation = Relation(
        employee_id=new_employee_id(),
        sp_mchid=sp_mchid,
        sub_mchid=sub_mchid,
        user_id=user_id,
        state=AUTHORIZED,
        authorized_at=now,
    )
    if not repo.insert_relation(relation):
        winner = repo.authorized_relation(sp_mchid, sub_mchid, user_id)
        if winner is None:  # pragma: no cover - the conflicting row must be the AUTHORIZED one
            raise ApiError("SYSTEM_ERROR", "授权冲突，请重试")
        return winner
    repo.emit(
        Event(
            sp_mchid,
            "WEBIZPAY.AUTHORIZED",
            "员工企业支付授权成功",
            {
                "sp_mchid": sp_mchid,
                "sub_mchid": sub_mchid,
                "user_id": user_id,
                "employee_id": relation.employee_id,
                "authorization_time": rfc3339(now),
            },
        ),
        now,
    )
    return relation


def owned_relation(repo: Repo, employee_id: str, sp_mchid: str, sub_mchid: str) -> Relation:
    """A relation of another merchant is indistinguishable from a missing one (404)."""
    relation = repo.relation(employee_id)
    if relation is None or relation.sp_mchid != sp_mchid or relation.sub_mchid != sub_mchid:
        raise not_found(f"授权关系 {employee_id}", f"authorization of employee {employee_id}")
    return relation


def revoke(
    repo: Repo, policy: Policy, now: float, *, employee_id: str, sp_mchid: str, sub_mchid: str, reason: str
) -> RevokeAuthorizationResponse:
    """W8 (and the sandbox's 员工注销): AUTHORIZED -> REVOKED, every ACTIVE card of the relation ->
    DISABLED at the same time. Revoking a REVOKED relation answers its original state and time."""
    relation = owned_relation(repo, employee_id, sp_mchid, sub_mchid)
    if relation.state == AUTHORIZED and repo.revoke_relation(employee_id, now, reason):
        for card in repo.active_cards_of(employee_id):
            if card.due(now):  # already past its end: it expired then, not now
                quota_cards.expire(repo, policy, card, now)
            else:
                notify = policy.expired_event_on_cancel
                quota_cards.disable(repo, policy, card, now, REASON_REVOKED, notify=notify)
        repo.emit(
            Event(
                sp_mchid,
                "WEBIZPAY.REVOKED",
                "员工企业支付授权已解除",
                {
                    "sp_mchid": sp_mchid,
                    "sub_mchid": sub_mchid,
                    "user_id": relation.user_id,
                    "authorization_state": REVOKED,
                    "authorization_revoked_time": rfc3339(now),
                    "reason": reason,
                },
            ),
            now,
        )
    current = repo.relation(employee_id)
    assert current is not None and current.revoked_at is not None
    return RevokeAuthorizationResponse(
        sp_mchid=sp_mchid,
        sub_mchid=sub_mchid,
        user_id=current.user_id,
        authorization_state="REVOKED",
        authorization_revoked_time=rfc3339(current.revoked_at),
        reason=current.reason or reason,
    )
