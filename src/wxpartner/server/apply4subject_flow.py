"""apply4subject use cases shared by the APIv3 routes, the control API, the confirmation page and the
scenario loader: each runs inside the caller's single write transaction, but for A1's and A3's usual
case (``submit_at_once``, ``cancel_at_once``: one statement, which on PostgreSQL the route runs in
autocommit)."""

from __future__ import annotations

import base64
import dataclasses
import io
import secrets
from typing import Any

import segno
from sqlalchemy.engine import Connection

from ..domain import apply4subject as d
from ..domain.merchants import Caller, RelationKind
from ..protocol.errors import ApiError, field_at, no_auth, not_found, param_error
from ..store import registry
from ..store.apply4subject_repo import Apply4SubjectRepo, Applyment
from ..store.sandbox import read_clock

CONFIRM_PATH = "/apply4subject/confirm/"


class BadActionInput(ValueError):
    """The sandbox step's parameters are wrong (as opposed to the step not fitting the state)."""


def business_now(conn: Connection) -> float:
    """The sandbox clock, for writers outside the APIv3 pipeline (control API, page, scenario)."""
    return read_clock(conn).now_ts()


def confirm_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}{CONFIRM_PATH}{token}"


def qrcode_png(url: str) -> bytes:
    """A scannable PNG QR code of the confirmation-page URL (a few hundred bytes: far below 30000)."""
    buf = io.BytesIO()
    segno.make(url, error="m").save(buf, kind="png", scale=4, border=4)
    return buf.getvalue()


def qrcode_data(base_url: str, app: Applyment) -> str | None:
    if app.state not in d.QR_STATES:
        return None
    return base64.b64encode(qrcode_png(confirm_url(base_url, app.confirm_token))).decode("ascii")


def resolve_channel(
    conn: Connection, caller: Caller, in_body: str | None, in_query: str | None
) -> str | None:
    """channel_id from the body (official page) or the query (website/YAML); institutions must name one
    of their registered channel merchants, a channel merchant may only name itself."""
    if in_body and in_query and in_body != in_query:
        raise param_error("/channel_id", "differs from the channel_id in the query string", value=in_body)
    channel_id = in_body or in_query
    where = "body" if in_body else "query"  # a refusal names it where it was sent (protocol.md §6)
    problem = d.channel_problem(
        caller.merchant.role,
        caller.mchid,
        channel_id,
        lambda: registry.is_related(conn, caller.mchid, str(channel_id), RelationKind.CHANNEL),
    )
    if problem == d.CHANNEL_MISSING:
        raise param_error(
            "/channel_id",
            "is required when a licensed institution calls",
            message="参数“channel_id”是必填项 (从业机构调用时必须传入渠道商商户号)",
        )
    if problem == d.CHANNEL_NOT_OWN:
        raise no_auth(
            f"渠道商{channel_id}不属于从业机构{caller.mchid} (not a channel merchant of the caller)",
            {
                **field_at("channel_id", where),
                "value": channel_id,
                "issue": "not a channel merchant of the caller",
            },
        )
    if problem == d.CHANNEL_NOT_SELF:
        raise param_error(
            field_at("channel_id", where)["field"],
            "a channel merchant calls without channel_id (or with its own)",
            value=channel_id,
            location=where,
        )
    return channel_id


@dataclasses.dataclass(frozen=True)
class Submission:
    """What an A1 submit stores, worked out once (its fingerprints, masked materials) for both the
    one-statement path and the statement-by-statement one."""

    fingerprint: str
    also: tuple[str, ...]  # earlier fingerprint forms that still count as the same payload
    new: dict[str, Any]  # the new applyment's columns


def submission(
    caller: Caller, body: dict[str, Any], plain: dict[str, str], channel_id: str | None
) -> Submission:
    fp, *also = d.fingerprints(body, plain, caller.mchid, channel_id)
    new: dict[str, Any] = {
        "mchid": caller.mchid,
        "business_code": body["business_code"],
        "channel_id": channel_id,
        "state": d.AUDIT,
        "fingerprint": fp,
        "materials": d.masked_materials(body, plain),
        "confirm_mchids": list((body.get("addition_info") or {}).get("confirm_mchid_list") or []),
        "confirm_token": secrets.token_urlsafe(24),
    }
    return Submission(fp, tuple(also), new)


def submit_at_once(repo: Apply4SubjectRepo, sub: Submission, now: float) -> Applyment | None:
    """A1's usual case, a business_code the caller never used, as one statement (PostgreSQL: the id
    drawn and the row inserted, ``Apply4SubjectRepo.insert_if_new``). None: nothing written (the code
    exists, a concurrent submit won, or SQLite): the caller then runs ``submit``."""
    return repo.insert_if_new(now=now, **sub.new)


def submit(repo: Apply4SubjectRepo, sub: Submission, now: float, *, tried_at_once: bool = False) -> Applyment:
    """A1: a new applyment, a replay of the same payload, or the resubmission of an EDITTING one.
    ``tried_at_once``: ``submit_at_once`` already found the code taken (in its own statement), so
    this does not try that statement again."""
    new, fp, also = sub.new, sub.fingerprint, sub.also
    code, channel_id, materials, confirm = (
        new["business_code"],
        new["channel_id"],
        new["materials"],
        new["confirm_mchids"],
    )
    made = None if tried_at_once else submit_at_once(repo, sub, now)
    if made is not None:
        return made
    for _ in range(2):  # a concurrent submit of the same code: re-read and apply the resubmit rules
        existing = repo.by_code(new["mchid"], code)
        if existing is None:
            made = repo.insert(now=now, **new)
            if made is not None:
                return made
            continue
        outcome = d.resubmit_outcome(existing.state, existing.fingerprint in (fp, *also))
        if outcome == "replay":
            return existing
        if repo.replace(
            existing.applyment_id,
            from_state=d.EDITTING,
            to_state=d.AUDIT,
            channel_id=channel_id,
            fingerprint=fp,
            materials=materials,
            confirm_mchids=confirm,
            now=now,
        ):
            return repo.by_id(existing.applyment_id) or existing
    raise ApiError(
        "SYSTEM_ERROR", "系统繁忙，请稍后用相同参数重试 (concurrent submissions of one business_code)"
    )


MAX_ID = 2**63 - 1


def is_id_text(text: str) -> bool:
    """ASCII decimal digits, as a JSON integer is written: str.isdigit() also takes '²' (which int()
    refuses: the cancel answered 500) and full-width or Arabic-Indic digits (which int() reads, so
    '２０…' cancelled applyment 20…)."""
    return text.isascii() and text.isdigit()


def as_id(text: str) -> int | None:
    """An applyment_id as stored (BIGINT), or None when the digits cannot name one. Leading zeros name
    the same number (``000123`` is 123), however many, as Go's and Java's integer parsers read them."""
    digits = text.lstrip("0") or "0"
    value = int(digits) if is_id_text(text) and len(digits) <= 20 else -1
    return value if 0 <= value <= MAX_ID else None


def _by_id(repo: Apply4SubjectRepo, text: str, mchid: str) -> Applyment | None:
    applyment_id = as_id(text)
    return repo.by_id(applyment_id, mchid) if applyment_id is not None else None


def find(
    repo: Apply4SubjectRepo, mchid: str, applyment_id: str | None, business_code: str | None
) -> Applyment:
    """A2: by either key; both must denote the same applyment. Another caller's is simply not found."""
    if not applyment_id and not business_code:
        raise param_error(
            "applyment_id",
            "give applyment_id or business_code",
            location="query",
            message="申请单编号和业务申请编号至少传一个 (applyment_id or business_code is required)",
        )
    by_id = _by_id(repo, applyment_id, mchid) if applyment_id else None
    by_code = repo.by_code(mchid, business_code) if business_code else None
    if applyment_id and business_code and by_id and by_code and by_id.applyment_id != by_code.applyment_id:
        raise param_error(
            "applyment_id",
            "applyment_id and business_code denote different applyments",
            value=applyment_id,
            location="query",
        )
    found = by_id if applyment_id else by_code
    if found is None or (applyment_id and business_code and by_code is None):
        raise not_found("申请单", "the applyment")
    return found


def resolve_cancel(repo: Apply4SubjectRepo, mchid: str, key: str, query_id: str | None) -> Applyment:
    """A3 path key: a business_code of the caller, else (all digits) an applyment_id; the seed's demo
    also sends ?applyment_id=..., which must then denote the same applyment."""
    found = repo.by_code(mchid, key)
    if found is None and is_id_text(key):
        found = _by_id(repo, key, mchid)
    if found is None:
        raise not_found("申请单", "the applyment")
    if query_id is not None and as_id(query_id) != found.applyment_id:
        raise param_error(
            "applyment_id",
            f"denotes a different applyment than {key}",
            value=query_id,
            location="query",
        )
    return found


def cancel_at_once(repo: Apply4SubjectRepo, mchid: str, key: str, query_id: str | None, now: float) -> bool:
    """A3's usual case, a cancellable applyment named by the path key (and ``?applyment_id=``), moved by
    one statement (``Apply4SubjectRepo.cancel_named``). False: nothing written (a refusal, a repeat of a
    done cancel, a key that names nothing): the caller then runs ``cancel_by_key``."""
    number = as_id(query_id) if query_id is not None else None
    # A ?applyment_id= that cannot name one is left to ``resolve_cancel``: a PARAM_ERROR.
    if query_id is not None and number is None:
        return False
    path_id = as_id(key) if is_id_text(key) else None
    return repo.cancel_named(mchid, key, path_id, number, now)


def cancel_by_key(
    repo: Apply4SubjectRepo,
    mchid: str,
    key: str,
    query_id: str | None,
    now: float,
    *,
    tried_at_once: bool = False,
) -> None:
    """A3: one statement when it cancels (the usual case); a refusal, a repeat of a done cancel or a key
    that names nothing goes statement by statement for its precise answer. ``tried_at_once``:
    ``cancel_at_once`` already moved nothing (in its own statement), so this does not try it again."""
    if not tried_at_once and cancel_at_once(repo, mchid, key, query_id, now):
        return
    cancel(repo, resolve_cancel(repo, mchid, key, query_id), now)


def cancel(repo: Apply4SubjectRepo, app: Applyment, now: float) -> None:
    if d.cancel_changes(app.state) and not repo.transition(app.applyment_id, d.CANCELLABLE, d.CANCELED, now):
        fresh = repo.by_id(app.applyment_id)
        d.cancel_changes(fresh.state if fresh else d.CANCELED)  # moved meanwhile: judge the new state


def count_query(
    repo: Apply4SubjectRepo, mchid: str, applyment_id: str | None, business_code: str | None
) -> tuple[Applyment, d.AutoPolicy | None]:
    """A2: count one query of the caller's applyment and return it with the auto-audit policy. The
    usual case is one statement (count, read and policy); anything it does not find goes through
    ``find``, for its precise error (or, rarely, an applyment that appeared meanwhile)."""
    number = as_id(applyment_id) if applyment_id else None
    # An applyment_id that cannot name one (beyond BIGINT) is left to ``find``: not found.
    if number is not None if applyment_id else bool(business_code):
        counted = repo.count_query_of(mchid, number, business_code or None)
        if counted is not None:
            return counted
    app = find(repo, mchid, applyment_id, business_code)
    return dataclasses.replace(app, query_count=repo.count_query(app.applyment_id)), repo.policy()


def advance(repo: Apply4SubjectRepo, app: Applyment, policy: d.AutoPolicy, now: float) -> Applyment:
    """The sandbox auto policy's step, once ``policy.due(...)``: from WAITTING_FOR_AUDIT only (a
    concurrent query that advanced it first leaves this one nothing to do, and so does a cancel that
    came first: its merchant numbers are not authorized)."""
    _step(repo, app, policy, now)
    return repo.by_id(app.applyment_id) or app


def _step(repo: Apply4SubjectRepo, app: Applyment, policy: d.AutoPolicy, now: float) -> bool:
    """The policy's step for ``app`` if it is still in WAITTING_FOR_AUDIT: True iff this call made it."""
    target = policy.target
    reject_param, reject_reason = d.kept_reasons(target, policy.reject_param, policy.reject_reason)
    moved = repo.transition(
        app.applyment_id, [d.AUDIT], target, now, reject_param=reject_param, reject_reason=reject_reason
    )
    if moved and policy.outcome == "pass" and policy.authorize:
        repo.authorize(app.mchid, app.confirm_mchids, app.applyment_id, now)
    return moved


def advance_waited(repo: Apply4SubjectRepo, now: float, limit: int = 200) -> int:
    """A clock move's share of the auto policy: applyments that have waited ``after_seconds`` in
    WAITTING_FOR_AUDIT take the step A2 would take on their next query, as of ``now``. Returns how
    many this call moved (one batch of ``limit``), not counting those another writer moved first
    (another host's settling, a query, a cancel): it counted them, so two hosts settling at once each
    said they had advanced them. 0 with applyments still due means another writer took the whole batch
    (on PostgreSQL, after this one waited for its commit): the caller reads again."""
    policy = repo.policy()
    cutoff = None if policy is None else policy.wait_cutoff(now)
    if policy is None or cutoff is None:
        return 0  # the common case: one read
    moved = 0
    for app in repo.waiting_since(d.AUDIT, cutoff, limit):  # the policy's own cutoff: every one is due
        if policy.due(app.state, app.state_since, now, app.query_count) and _step(repo, app, policy, now):
            moved += 1
    return moved


def apply_action(
    repo: Apply4SubjectRepo,
    app: Applyment,
    name: str,
    now: float,
    *,
    reject_param: str | None = None,
    reject_reason: str | None = None,
    authorize: bool = False,
    sub_mchids: list[str] | None = None,
) -> Applyment:
    """A sandbox step (control API, scenario, confirmation page). Raises ValueError when the step is not
    possible from the current state (a concurrent change included).

    The order of the refusals: a value no step could take (too long, not a merchant number), then the
    step against the state (``d.StepRefused``), then what this step needs (a rejection's reasons,
    something to authorize): rejecting a PASSED applyment is refused as the illegal move it is, whatever
    else the request lacks (it was "reject needs reject_param and reject_reason", 400)."""
    if reject_param is not None and len(reject_param) > 256:
        raise BadActionInput("reject_param is at most 256 characters")
    if reject_reason is not None and len(reject_reason) > 1024:
        raise BadActionInput("reject_reason is at most 1024 characters")
    if any(not is_id_text(s) or len(s) > 32 for s in sub_mchids or []):
        raise BadActionInput("sub_mchids are merchant numbers (digits)")
    action = d.action_for(name, app.state)
    if name == "reject" and not (reject_param and reject_reason):
        raise BadActionInput("reject needs reject_param and reject_reason")
    if authorize and name != "authorize" and action.target != d.PASSED:  # answered 200, authorizing nothing
        raise BadActionInput(
            f"authorize: true goes with a step that reaches {d.PASSED} (pass, confirm_legalperson), "
            f"not {name}; the authorize action authorizes a PASSED or FREEZED applyment's numbers"
        )
    authorizes = name == "authorize" or (authorize and action.target == d.PASSED)
    targets = list(dict.fromkeys([*app.confirm_mchids, *(sub_mchids or [])]))
    if authorizes and not targets:  # it answered as done, and the next A4 said UNAUTHORIZED
        raise BadActionInput(
            "no merchant number to authorize: the applyment has no confirm_mchid_list; give sub_mchids"
        )
    if action.target is not None:
        kept_param, kept_reason = d.kept_reasons(action.target, reject_param, reject_reason)
        moved = repo.transition(
            app.applyment_id,
            action.sources,
            action.target,
            now,
            reject_param=kept_param,
            reject_reason=kept_reason,
        )
        if not moved:
            current = repo.by_id(app.applyment_id) or app
            raise d.StepRefused(
                action, current.state, f"the applyment changed meanwhile; {name} is no longer possible"
            )
    if authorizes:
        repo.authorize(app.mchid, targets, app.applyment_id, now)
    return repo.by_id(app.applyment_id) or app
