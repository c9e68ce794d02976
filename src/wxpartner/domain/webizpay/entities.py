"""Enterprise-payment entities and the emulator's policy (every Unknown of spec §6 decided here)."""

from __future__ import annotations

import datetime as dt
import math
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ...protocol.times import format_rfc3339

AUTHORIZED = "AUTHORIZED"
REVOKED = "REVOKED"
ACTIVE = "ACTIVE"
DISABLED = "DISABLED"

# Reasons written on a card when it becomes DISABLED other than by a cancel (which carries its own).
REASON_EXPIRED = "有效期结束"
REASON_REVOKED = "员工企业支付授权已解除"
# REVOKED callback enum (spec §4): W8 is enterprise-initiated; the sandbox can simulate the employee.
REVOKE_BY_ENTERPRISE = "企业发起"
REVOKE_BY_EMPLOYEE = "员工注销"

MP_BUSINESS_TYPE_AUTHORIZE = "liteAppWebizPayRegister"
MP_BUSINESS_TYPE_PAY = "liteAppWebizPayPayment"


@dataclass(frozen=True, slots=True)
class Template:
    card_template_id: str
    card_rule: str  # SINGLE | MULTIPLE
    refund_rule: str  # RETURN | NOT_RETURN


@dataclass(frozen=True)
class Policy:
    """Emulator choices that are configurable (settings.extra["webizpay"])."""

    authorization_link_ttl: float = 30 * 60
    payment_link_ttl: float = 5 * 60
    # W1/W7 links are deleted this long (business time) after they expire: one is made per call, and
    # kept forever they grew without bound. Until then an expired link still says "expired", not
    # "unknown" (as bill download links, store/webizpay_bills_repo.py).
    link_kept_after_expiry: float = 86400
    # Fire WEBIZPAY.QUOTACARDEXPIRED on every ACTIVE -> DISABLED (cancel and revoke too), as spec §2.2.
    expired_event_on_cancel: bool = True
    revoke_reason: str = REVOKE_BY_ENTERPRISE
    # Templates every service provider has without configuration ("template_123" is the seed's).
    builtin_templates: tuple[Template, ...] = (
        Template("template_123", "MULTIPLE", "RETURN"),
        Template("template_multiple_return", "MULTIPLE", "RETURN"),
        Template("template_multiple_not_return", "MULTIPLE", "NOT_RETURN"),
        Template("template_single_return", "SINGLE", "RETURN"),
        Template("template_single_not_return", "SINGLE", "NOT_RETURN"),
    )

    @classmethod
    def from_settings(cls, extra: dict[str, Any]) -> Policy:
        raw = extra.get("webizpay")
        if not isinstance(raw, dict):
            return cls()
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__ and k != "builtin_templates"}
        return cls(**known)

    @classmethod
    def check_settings(cls, extra: Mapping[str, object]) -> None:
        """ValueError naming a ``settings.extra["webizpay"]`` entry this policy would not take, checked
        once at start-up (``from_settings``, run per request, passes over what it does not know: a
        misspelt ``payment_link_tll`` left the 5 minutes in place without a word)."""
        raw = extra.get("webizpay")
        if raw is None:
            return
        if not isinstance(raw, dict):
            raise ValueError("settings.extra['webizpay'] must be a mapping such as {'payment_link_ttl': 600}")
        known = [name for name in cls.__dataclass_fields__ if name != "builtin_templates"]
        for name, value in raw.items():
            if name not in known:
                raise ValueError(f"unknown webizpay setting {name!r} ({', '.join(known)})")
            default = getattr(cls, name)
            if isinstance(default, bool):
                ok, wanted = isinstance(value, bool), "true or false"
            elif isinstance(default, int | float):  # the ttls (30 * 60 is an int)
                ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
                ok, wanted = ok and value > 0, "a number of seconds above 0"
            else:  # the reason W8 and its callback carry: the relation's reason column holds 64
                ok, wanted = isinstance(value, str) and 0 < len(value) <= 64, "1 to 64 characters"
            if not ok:
                raise ValueError(f"webizpay setting {name} must be {wanted}, got {value!r}")

    def builtin(self, template_id: str) -> Template | None:
        return next((t for t in self.builtin_templates if t.card_template_id == template_id), None)


def rfc3339(ts: float) -> str:
    return format_rfc3339(dt.datetime.fromtimestamp(ts, dt.UTC))


def new_employee_id() -> str:
    return f"WeBizPay_{uuid.uuid4()}"


def new_card_no() -> str:
    return f"10{secrets.randbelow(10**17):017d}"


def new_token() -> str:
    return secrets.token_urlsafe(24)


def new_transaction_id(now: float) -> str:
    day = dt.datetime.fromtimestamp(now, dt.UTC).astimezone(dt.timezone(dt.timedelta(hours=8)))
    return f"4200{secrets.randbelow(10**6):06d}{day:%Y%m%d}{secrets.randbelow(10**10):010d}"


def new_refund_id(now: float) -> str:
    return f"50{secrets.randbelow(10**10):010d}{secrets.randbelow(10**17):017d}"


@dataclass(frozen=True, slots=True)
class AuthLink:
    token: str
    sp_mchid: str
    sub_mchid: str
    user_id: str
    application_type: str
    created_at: float
    expires_at: float
    consumed_at: float | None = None
    employee_id: str | None = None


@dataclass(frozen=True, slots=True)
class Relation:
    employee_id: str
    sp_mchid: str
    sub_mchid: str
    user_id: str
    state: str
    authorized_at: float
    revoked_at: float | None = None
    reason: str | None = None


class Overdue(NamedTuple):
    """A card the expiry sweep disabled (at its end time): what its callback says of it."""

    card_no: str
    sp_mchid: str
    sub_mchid: str
    employee_id: str
    end_at: float


@dataclass(frozen=True, slots=True)
class Card:
    card_no: str
    sp_mchid: str
    sub_mchid: str
    out_card_no: str
    employee_id: str
    card_template_id: str
    card_rule: str
    refund_rule: str
    amount: int
    remain_amount: int
    card_name: str
    card_remark: str | None
    begin_at: float
    end_at: float
    end_text: str  # effective_end_time exactly as the merchant sent it ("as requested")
    state: str
    disabled_at: float | None = None
    reason: str | None = None
    used_at: float | None = None
    transaction_id: str | None = None
    avail_mch_range_id: str | None = None

    def due(self, now: float) -> bool:
        """ACTIVE but past effective_end_time (seed 001: unusable "after" that time, so usable at it):
        must read (and be persisted) as DISABLED."""
        return self.state == ACTIVE and now > self.end_at


@dataclass(frozen=True, slots=True)
class PaymentLink:
    token: str
    card_no: str
    sp_mchid: str
    sub_mchid: str
    employee_id: str
    application_type: str
    created_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class Payment:
    transaction_id: str
    out_trade_no: str
    card_no: str
    sp_mchid: str
    sub_mchid: str
    employee_id: str
    amount: int
    refunded_amount: int
    receive_mch_name: str
    receive_mch_full_name: str
    receive_mch_organization_code: str
    acquirer: str
    goods_name: str
    paid_at: float


@dataclass(frozen=True, slots=True)
class Refund:
    refund_id: str
    out_refund_no: str
    transaction_id: str
    amount: int
    created_at: float
    succeeded_at: float


@dataclass
class Event:
    """A callback to enqueue in the same transaction as the change that caused it."""

    mchid: str
    event_type: str
    summary: str
    resource: dict[str, Any] = field(default_factory=dict)
