"""商户开户意愿确认: the applyment state machine, who may call, resubmission and cancel rules, the
sandbox audit actions and auto policy, and the checks on decrypted sensitive fields. No HTTP, no SQL."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..protocol.errors import ApiError, param_error
from .clock import MAX_CLOCK_TS
from .merchants import Role

EDITTING = "APPLYMENT_STATE_EDITTING"
AUDIT = "APPLYMENT_STATE_WAITTING_FOR_AUDIT"
CONFIRM_CONTACT = "APPLYMENT_STATE_WAITTING_FOR_CONFIRM_CONTACT"
CONFIRM_LEGALPERSON = "APPLYMENT_STATE_WAITTING_FOR_CONFIRM_LEGALPERSON"
PASSED = "APPLYMENT_STATE_PASSED"
REJECTED = "APPLYMENT_STATE_REJECTED"
FREEZED = "APPLYMENT_STATE_FREEZED"
CANCELED = "APPLYMENT_STATE_CANCELED"
STATES = (EDITTING, AUDIT, CONFIRM_CONTACT, CONFIRM_LEGALPERSON, PASSED, REJECTED, FREEZED, CANCELED)

AUTHORIZED = "AUTHORIZE_STATE_AUTHORIZED"
UNAUTHORIZED = "AUTHORIZE_STATE_UNAUTHORIZED"

# qrcode_data is returned only in these states (spec §2 table).
QR_STATES = frozenset({CONFIRM_CONTACT, CONFIRM_LEGALPERSON, PASSED, FREEZED})
# Cancel (spec §2.2, Emulator choice): allowed before the audit passes and after a rejection;
# CANCELED again is an idempotent 204; PASSED and FREEZED are refused.
CANCELLABLE = frozenset({EDITTING, AUDIT, CONFIRM_CONTACT, CONFIRM_LEGALPERSON, REJECTED})
# A business_code whose applyment is here can never be reused (spec §2.3).
CODE_SPENT = frozenset({REJECTED, CANCELED})

FIRST_APPLYMENT_ID = 20000000000001  # > 2^31, like the documented examples

ALLOWED_CALLERS = frozenset({Role.CHANNEL, Role.INSTITUTION})
CALLER_TYPE_MESSAGE = "只能由从业机构或渠道商调用该接口，请检查调用方商户类型"


def check_caller(role: Role) -> None:
    """Only channel merchants and licensed institutions (observed real refusal: 400 PARAM_ERROR)."""
    if role not in ALLOWED_CALLERS:
        raise ApiError(
            "PARAM_ERROR",
            CALLER_TYPE_MESSAGE,
            detail={
                "location": "authorization",
                "issue": f"caller role {role.value} is not channel/institution",
            },
        )


# What A1 refuses in a caller's channel_id (spec A1: "required when an institution calls, omitted when
# a channel merchant calls"): an institution names none, or one that is not its channel merchant; a
# channel merchant names another.
CHANNEL_MISSING, CHANNEL_NOT_OWN, CHANNEL_NOT_SELF = "missing", "not_own", "not_self"


def channel_problem(
    role: Role, caller: str, channel_id: str | None, is_own_channel: Callable[[], bool]
) -> str | None:
    """Which of A1's channel_id rules ``channel_id`` breaks for ``caller`` (CHANNEL_…), or None.
    ``is_own_channel()``: the channel_id is a registered channel merchant of the caller (asked only
    when it matters)."""
    if role == Role.INSTITUTION:
        if not channel_id:
            return CHANNEL_MISSING
        if not is_own_channel():
            return CHANNEL_NOT_OWN
    elif role == Role.CHANNEL and channel_id and channel_id != caller:
        return CHANNEL_NOT_SELF
    return None


@dataclass(frozen=True)
class Action:
    """A sandbox audit/confirmation step: the states it may start from and where it leads."""

    name: str
    sources: frozenset[str]
    target: str | None  # None: the state does not change (authorize)


ACTIONS: dict[str, Action] = {
    a.name: a
    for a in (
        Action("approve", frozenset({AUDIT}), CONFIRM_CONTACT),
        Action("confirm_contact", frozenset({CONFIRM_CONTACT}), CONFIRM_LEGALPERSON),
        Action("confirm_legalperson", frozenset({CONFIRM_LEGALPERSON}), PASSED),
        # Straight to PASSED (e.g. payment verification instead of the legal-person step).
        Action("pass", frozenset({AUDIT, CONFIRM_CONTACT, CONFIRM_LEGALPERSON}), PASSED),
        Action("reject", frozenset({AUDIT, CONFIRM_CONTACT, CONFIRM_LEGALPERSON}), REJECTED),
        Action("freeze", frozenset({AUDIT}), FREEZED),
        # "the submission hit an error": the caller may resubmit with the same business_code.
        Action("edit", frozenset({AUDIT}), EDITTING),
        # Authorization completed in the mini program: the merchant numbers become AUTHORIZED.
        Action("authorize", frozenset({PASSED, FREEZED}), None),
    )
}


class StepRefused(ValueError):
    """A sandbox step that does not fit the applyment's state. ``detail`` has the shape of the business
    API's state refusals (``cancel_changes``): the state it is in and the issue."""

    def __init__(self, action: Action, state: str, message: str | None = None) -> None:
        sources = ", ".join(sorted(action.sources))
        super().__init__(message or f"{action.name} is not possible in {state} (only from {sources})")
        self.detail = {"state": state, "issue": f"{action.name} is possible only from {sources}"}


def action_for(name: str, state: str) -> Action:
    action = ACTIONS.get(name)
    if action is None:
        raise ValueError(f"unknown action {name!r}; one of {', '.join(ACTIONS)}")
    if state not in action.sources:
        raise StepRefused(action, state)
    return action


def dropped_reasons(state: str, reject_param: str | None, reject_reason: str | None) -> bool:
    """True when a reject_param or reject_reason given for an applyment in ``state`` is not kept."""
    kept_param, kept_reason = kept_reasons(state, reject_param, reject_reason)
    return (bool(reject_param) and kept_param is None) or (bool(reject_reason) and kept_reason is None)


def cancel_changes(state: str) -> bool:
    """True: move to CANCELED; False: already cancelled (idempotent 204); refused otherwise."""
    if state == CANCELED:
        return False
    if state in CANCELLABLE:
        return True
    raise ApiError(
        "INVALID_REQUEST",
        f"申请单状态为{state}，不允许撤销 (an applyment in {state} cannot be cancelled)",
        detail={"state": state, "issue": "cancel is allowed before the audit passes or after a rejection"},
    )


def resubmit_outcome(state: str, same_payload: bool) -> str:
    """What a submit with an existing business_code does: ``replay`` (same id, no change) or
    ``replace`` (EDITTING: new materials, back to audit); refused otherwise (spec §2.3)."""
    if state == EDITTING:
        return "replace"
    if state in CODE_SPENT:
        raise ApiError(
            "INVALID_REQUEST",
            f"业务申请编号已使用，申请单状态为{state}，请更换business_code重新提交 (use a new business_code)",
            detail={"field": "/business_code", "location": "body", "state": state},
        )
    if not same_payload:
        raise ApiError(
            "INVALID_REQUEST",
            "业务申请编号已存在且申请资料不同，请更换business_code (business_code already used with other data)",
            detail={"field": "/business_code", "location": "body", "state": state},
        )
    return "replay"


# --- sensitive fields -------------------------------------------------------------------------

_MOBILE = re.compile(r"^\+?[0-9][0-9-]{4,19}$")
_IDCARD = re.compile(r"^[0-9]{17}[0-9Xx]$|^[0-9]{15}$")
PLAINTEXT_LIMIT = 214  # bytes: RSA-2048 OAEP/SHA-1


def encrypted_fields(body: dict[str, Any]) -> Iterator[tuple[str, str, bool]]:
    """(JSON pointer, ciphertext, required) of every ENC field present or required in the body."""
    contact = body.get("contact_info") or {}
    ident = body.get("identification_info") or {}
    yield "/contact_info/name", contact.get("name", ""), True
    yield "/contact_info/mobile", contact.get("mobile", ""), True
    yield "/contact_info/id_card_number", contact.get("id_card_number") or "", False
    yield "/identification_info/identification_name", ident.get("identification_name", ""), True
    yield "/identification_info/identification_number", ident.get("identification_number", ""), True
    yield "/identification_info/identification_address", ident.get("identification_address") or "", False
    for i, ubo in enumerate(body.get("ubo_info_list") or []):
        for name in ("ubo_id_doc_name", "ubo_id_doc_number", "ubo_id_doc_address"):
            yield f"/ubo_info_list/{i}/{name}", ubo.get(name, ""), True


def decrypt_all(body: dict[str, Any], decrypt: Callable[[str, str], str]) -> dict[str, str]:
    """pointer -> plaintext for every given ENC field, checked; missing required ones refused."""
    out: dict[str, str] = {}
    for pointer, cipher, required in encrypted_fields(body):
        if not cipher:
            if required:
                raise param_error(
                    pointer, "is required", message=f"参数“{pointer}”是必填项 ({pointer} is required)"
                )
            continue
        plain = decrypt(cipher, pointer)
        _check_plaintext(pointer, plain)
        out[pointer] = plain
    _cross_checks(body, out)
    return out


def _bad(pointer: str, issue: str) -> ApiError:
    # The value is never echoed: it is decrypted personal data.
    return param_error(pointer, issue, message=f"参数“{pointer}”格式错误：{issue}")


def _check_plaintext(pointer: str, plain: str) -> None:
    if not plain.strip():
        raise _bad(pointer, "decrypts to an empty value")
    if len(plain.encode("utf-8")) > PLAINTEXT_LIMIT:
        raise _bad(pointer, f"decrypted value exceeds {PLAINTEXT_LIMIT} bytes")
    if plain != plain.strip():
        raise _bad(pointer, "must not have leading or trailing spaces, tabs or newlines")
    if pointer.endswith("/mobile") and not _MOBILE.match(plain):
        raise _bad(pointer, "is not a mobile number (digits, optional + and -)")


def _cross_checks(body: dict[str, Any], plain: dict[str, str]) -> None:
    contact = body.get("contact_info") or {}
    ident = body.get("identification_info") or {}
    if ident.get("identification_type") == "IDENTIFICATION_TYPE_IDCARD" and not _IDCARD.match(
        plain["/identification_info/identification_number"]
    ):
        raise _bad(
            "/identification_info/identification_number", "is not a mainland ID card number (15 or 18)"
        )
    if contact.get("contact_type") == "LEGAL":
        if plain["/contact_info/name"] != plain["/identification_info/identification_name"]:
            raise _bad("/contact_info/name", "must equal identification_name when contact_type is LEGAL")
        idno = plain.get("/contact_info/id_card_number")
        if idno is not None and idno != plain["/identification_info/identification_number"]:
            raise _bad(
                "/contact_info/id_card_number", "must equal identification_number when contact_type is LEGAL"
            )
    if contact.get("contact_type") == "SUPER" and not contact.get("contact_id_doc_type"):
        raise param_error(
            "/contact_info/contact_id_doc_type",
            "is required when contact_type is SUPER",
            message="参数“/contact_info/contact_id_doc_type”是必填项 (an agent's ID document type)",
        )


# Which subject types need which certificate (Inference, spec A1 notes).
_SUBJECT_NEEDS = {
    "SUBJECT_TYPE_ENTERPRISE": ("business_license_info",),
    "SUBJECT_TYPE_INDIVIDUAL": ("business_license_info",),
    "SUBJECT_TYPE_GOVERNMENT": ("certificate_info",),
    "SUBJECT_TYPE_INSTITUTIONS_CLONED": ("certificate_info",),
    "SUBJECT_TYPE_OTHERS": ("certificate_info",),
    "SUBJECT_TYPE_INSTITUTIONS": ("business_license_info", "certificate_info"),  # either one
    "SUBJECT_TYPE_MICRO": ("assist_prove_info",),
}


def check_subject(subject: dict[str, Any]) -> None:
    needs = _SUBJECT_NEEDS.get(subject.get("subject_type", ""), ())
    if needs and not any(subject.get(n) for n in needs):
        pointer = f"/subject_info/{needs[0]}"
        raise param_error(
            pointer,
            f"is required for {subject.get('subject_type')}"
            + (f" (or {needs[1]})" if len(needs) > 1 else ""),
            message=f"参数“{pointer}”是必填项 ({pointer} is required for this subject type)",
        )


def fingerprints(
    body: dict[str, Any], plain: dict[str, str], caller_mchid: str, channel_id: str | None
) -> tuple[str, ...]:
    """SHA-256 of the submission with decrypted sensitive values (OAEP ciphertext differs on every
    retry), so an identical resubmit is recognised; only the digest is stored. The first is the one to
    store, any other one an identical submission may have been stored under.

    ``channel_id`` (body or query, already checked) counts by whom it names: the channel merchant the
    applyment is made under. A channel merchant calls without it (spec A1) and may name itself, so
    both mean the caller; an institution always names one of its channel merchants. Applyments stored
    before this rule digested an omitted channel_id as null: that digest still matches."""
    channel = channel_id or caller_mchid
    first = _digest(body, plain, channel)
    return (first, _digest(body, plain, None)) if channel == caller_mchid else (first,)


def _digest(body: dict[str, Any], plain: dict[str, str], channel: str | None) -> str:
    doc = _with_values(body, plain)
    doc["channel_id"] = channel
    return hashlib.sha256(json.dumps(doc, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def mask(value: str) -> str:
    """Dashboard form of personal data: one character kept at each end, two from 8 characters on
    (张*三, 13*******00); a value of two characters or fewer keeps its first (张*)."""
    if len(value) <= 2:
        return value[:1] + "*"
    keep = 2 if len(value) >= 8 else 1
    return value[:keep] + "*" * (len(value) - 2 * keep) + value[-keep:]


def masked_materials(body: dict[str, Any], plain: dict[str, str]) -> dict[str, Any]:
    """What the sandbox keeps for its dashboard: the submission with sensitive fields masked."""
    return _with_values(body, {p: mask(v) for p, v in plain.items()})


def _with_values(body: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(json.dumps(body))
    for pointer, _cipher, _required in list(encrypted_fields(body)):
        parts = pointer.strip("/").split("/")
        node: Any = doc
        for p in parts[:-1]:
            node = node[int(p)] if isinstance(node, list) else node.get(p)
        if isinstance(node, dict) and parts[-1] in node:
            if pointer in values:
                node[parts[-1]] = values[pointer]
            else:
                node.pop(parts[-1])
    return doc


# --- automatic audit policy -----------------------------------------------------------------------

OUTCOMES = {"approve": CONFIRM_CONTACT, "pass": PASSED, "reject": REJECTED, "freeze": FREEZED}

# The sandbox's reason for a freeze nobody gave one for (spec §2: a FREEZED applyment shows its reason).
FREEZE_REASON = "主体已入驻，请联系人扫码授权"


# The sandbox's rejection nobody gave a field and reason for (a scenario's REJECTED applyment): the
# auto policy's defaults, the spec's example.
REJECT_PARAM = "merchant_name"
REJECT_REASON = "公司名称与工商局登记不一致"


def kept_reasons(
    target: str, reject_param: str | None, reject_reason: str | None
) -> tuple[str | None, str | None]:
    """What a move to ``target`` stores: ``reject_param`` in REJECTED only, ``reject_reason`` in
    REJECTED and FREEZED (a rejection without them gets REJECT_PARAM and REJECT_REASON, a freeze
    without one FREEZE_REASON), neither elsewhere."""
    if target == REJECTED:
        return reject_param or REJECT_PARAM, reject_reason or REJECT_REASON
    if target == FREEZED:
        return None, reject_reason or FREEZE_REASON
    return None, None


@dataclass(frozen=True)
class AutoPolicy:
    """Advance an applyment out of WAITTING_FOR_AUDIT once it has waited ``after_seconds`` of sandbox
    time or been queried ``after_queries`` times (whichever comes first; None = not that trigger)."""

    outcome: str = "approve"
    after_seconds: float | None = None
    after_queries: int | None = None
    reject_param: str = REJECT_PARAM
    reject_reason: str = REJECT_REASON
    authorize: bool = False  # with outcome "pass": complete the authorization too

    FIELDS = ("outcome", "after_seconds", "after_queries", "reject_param", "reject_reason", "authorize")

    @classmethod
    def parse(cls, data: dict[str, Any]) -> AutoPolicy:
        unknown = sorted(set(data) - set(cls.FIELDS))
        if unknown:  # a misspelt "outcome" would otherwise approve what was meant to be rejected
            raise ValueError(f"unknown field(s): {', '.join(unknown)}; known: {', '.join(cls.FIELDS)}")
        authorize = data.get("authorize", False)
        if not isinstance(authorize, bool):
            raise ValueError("authorize must be true or false")
        outcome = data.get("outcome", "approve")
        if not isinstance(outcome, str) or outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")
        secs = data.get("after_seconds")
        queries = data.get("after_queries")
        if secs is not None and not (
            isinstance(secs, int | float) and not isinstance(secs, bool) and 0 <= secs <= MAX_CLOCK_TS
        ):  # NaN and infinity fail the comparison too; no wait can outlast the clock's range
            raise ValueError(f"after_seconds must be a number from 0 to {MAX_CLOCK_TS:.0f}")
        if queries is not None and (not isinstance(queries, int) or isinstance(queries, bool) or queries < 1):
            raise ValueError("after_queries must be an integer >= 1")
        if secs is None and queries is None:
            raise ValueError("give after_seconds and/or after_queries")
        reject_param = data.get("reject_param", cls.reject_param)
        reject_reason = data.get("reject_reason", FREEZE_REASON if outcome == "freeze" else cls.reject_reason)
        if not (isinstance(reject_param, str) and 0 < len(reject_param) <= 256):
            raise ValueError("reject_param must be a string of 1-256 characters")
        if not (isinstance(reject_reason, str) and 0 < len(reject_reason) <= 1024):
            raise ValueError("reject_reason must be a string of 1-1024 characters")
        return cls(
            outcome,
            None if secs is None else float(secs),
            queries,
            reject_param,
            reject_reason,
            authorize,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "after_seconds": self.after_seconds,
            "after_queries": self.after_queries,
            "reject_param": self.reject_param,
            "reject_reason": self.reject_reason,
            "authorize": self.authorize,
        }

    def wait_cutoff(self, now: float) -> float | None:
        """The latest ``state_since`` whose wait by time is over at ``now`` (None: no wait by time). The
        one comparison the A2 query and a clock move's batch read (SQL ``state_since <= cutoff``) both
        make: the policy computed ``now - since >= after_seconds`` instead, which in floating point
        disagreed with the read (a clock advanced by exactly ``after_seconds`` left one applyment in
        four of a fractional wait in audit, while the read took it as due)."""
        return None if self.after_seconds is None else now - self.after_seconds

    def authorize_unused(self) -> str | None:
        """Why ``authorize`` can never act (set with an outcome other than pass), else None."""
        if self.authorize and self.outcome != "pass":
            return f"authorize: true needs outcome pass (the only outcome that reaches {PASSED}), not {self.outcome}"
        return None

    def due(self, state: str, since: float, now: float, queries: int) -> bool:
        """In WAITTING_FOR_AUDIT since ``since`` and queried ``queries`` times: take the step at ``now``?"""
        if state != AUDIT:
            return False
        cutoff = self.wait_cutoff(now)
        by_time = cutoff is not None and since <= cutoff
        by_queries = self.after_queries is not None and queries >= self.after_queries
        return by_time or by_queries

    def pending(self, queries: int) -> str:
        """What this policy will do to an applyment in audit with ``queries`` counted,
        in words ("reject at A2 query 3 (1 made) or once in audit 600 s (…)"): the dashboard shows it."""
        when = []
        if self.after_queries is not None:
            when.append(f"at A2 query {self.after_queries} ({queries} made)")
        if self.after_seconds is not None:
            when.append(f"once in audit {self.after_seconds:g} s")
        return f"{self.outcome} → {self.target.removeprefix('APPLYMENT_STATE_')} {' or '.join(when)}"

    @property
    def target(self) -> str:
        return OUTCOMES[self.outcome]
