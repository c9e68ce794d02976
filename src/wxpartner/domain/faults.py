"""Fault injection in WeChat Pay's own vocabulary: what a fault is, how a rule matches a request, and
how the per-request header is read. No HTTP, no SQL: the server and the store build on this."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from enum import StrEnum

from ..protocol.detail import shown_value

# The per-request header (in the spirit of WeChat Pay's negative-test header). It is not part of the
# signed message (only method, URL, timestamp, nonce and body are), so adding it keeps a request valid.
FAULT_HEADER = "Wechatpay-Sandbox-Fault"
MAX_LATENCY_MS = 30_000


class FaultKind(StrEnum):
    SYSTEM_ERROR = "SYSTEM_ERROR"  # 500
    FREQUENCY_LIMITED = "FREQUENCY_LIMITED"  # 429
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"  # 503: turned away unhandled (clients repeat any call)
    PARAM_ERROR = "PARAM_ERROR"  # 400
    RESOURCE_NOT_EXISTS = "RESOURCE_NOT_EXISTS"  # 404
    # The business codes seeds 002 (R3) and 003 (A3) list that no sandbox rule yields for every
    # operation (A3 has no NO_AUTH case at all): a merchant tests its handling of them this way.
    NO_AUTH = "NO_AUTH"  # 403
    INVALID_REQUEST = "INVALID_REQUEST"  # 400, the business-rule sense
    LATENCY = "LATENCY"  # sleep latency_ms, then answer normally
    DROP_CONNECTION = "DROP_CONNECTION"  # no answer at all
    SIGNATURE_PROBE = "SIGNATURE_PROBE"  # Wechatpay-Signature starts with WECHATPAY/SIGNTEST/
    BAD_SIGNATURE = "BAD_SIGNATURE"  # a response signature that does not verify


ERROR_KINDS = {
    FaultKind.SYSTEM_ERROR,
    FaultKind.FREQUENCY_LIMITED,
    FaultKind.SERVICE_UNAVAILABLE,
    FaultKind.PARAM_ERROR,
    FaultKind.RESOURCE_NOT_EXISTS,
    FaultKind.NO_AUTH,
    FaultKind.INVALID_REQUEST,
}

# Messages as WeChat Pay words them; the detail says it was the sandbox, so nobody hunts a real bug.
ERROR_MESSAGES = {
    FaultKind.SYSTEM_ERROR: "系统异常，请用相同参数重试",
    FaultKind.FREQUENCY_LIMITED: "频率超限，请降低请求频率",
    FaultKind.SERVICE_UNAVAILABLE: "服务不可用，请稍后重试",
    FaultKind.PARAM_ERROR: "参数错误",
    FaultKind.RESOURCE_NOT_EXISTS: "资源不存在",
    FaultKind.NO_AUTH: "商户权限异常",  # seed 003's wording (seed 002: 没有相关权限)
    FaultKind.INVALID_REQUEST: "请求不符合业务规则",  # seed 002's wording
}

_ALIASES = {
    "SYSTEMERROR": FaultKind.SYSTEM_ERROR,
    "500": FaultKind.SYSTEM_ERROR,
    "RATELIMIT_EXCEEDED": FaultKind.FREQUENCY_LIMITED,
    "429": FaultKind.FREQUENCY_LIMITED,
    "503": FaultKind.SERVICE_UNAVAILABLE,
    "400": FaultKind.PARAM_ERROR,
    "NOT_FOUND": FaultKind.RESOURCE_NOT_EXISTS,
    "404": FaultKind.RESOURCE_NOT_EXISTS,
    "NOAUTH": FaultKind.NO_AUTH,  # the older apply4subject spelling (spec README, discrepancy 6)
    "403": FaultKind.NO_AUTH,
    "DELAY": FaultKind.LATENCY,
    "TIMEOUT": FaultKind.LATENCY,
    "DROP": FaultKind.DROP_CONNECTION,
    "DROPPED": FaultKind.DROP_CONNECTION,
    "PROBE": FaultKind.SIGNATURE_PROBE,
    "SIGNTEST": FaultKind.SIGNATURE_PROBE,
    "TAMPER": FaultKind.BAD_SIGNATURE,
    "BAD_RESPONSE_SIGNATURE": FaultKind.BAD_SIGNATURE,
}


class FaultSpecError(ValueError):
    """A fault header or rule that cannot be understood; the message says what is accepted. ``field``
    (a rule's field, when one is to blame) and ``issue`` are the control API's ``detail``."""

    def __init__(self, message: str, *, field: str | None = None, issue: str = "invalid") -> None:
        super().__init__(message)
        self.field, self.issue = field, issue

    def about(self, field: str) -> FaultSpecError:
        """This refusal, blamed on a rule's ``field``."""
        return FaultSpecError(str(self), field=field, issue=self.issue)


def parse_kind(text: str) -> FaultKind:
    name = text.strip().upper().replace("-", "_")
    if name in FaultKind.__members__:
        return FaultKind(name)
    if name in _ALIASES:
        return _ALIASES[name]
    raise FaultSpecError(
        f"unknown fault {shown_value(None, text.strip())!r}; use one of {', '.join(k.value for k in FaultKind)}",
        issue="unknown fault kind",
    )


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    latency_ms: int = 0
    rule_id: str | None = None  # None: asked for by the request header

    @property
    def label(self) -> str:
        return f"{self.kind.value}={self.latency_ms}ms" if self.kind is FaultKind.LATENCY else self.kind.value


def parse_header(value: str) -> list[Fault]:
    """``SYSTEM_ERROR`` or several, comma-separated: ``LATENCY=1500, BAD_SIGNATURE``."""
    faults: list[Fault] = []
    for part in value.split(","):
        if not part.strip():
            continue
        name, sep, arg = part.partition("=")
        kind = parse_kind(name)
        latency = 0
        if kind is FaultKind.LATENCY:
            latency = parse_latency(arg or "1000")
        elif sep:  # SYSTEM_ERROR=500 looks like it sets something; nothing reads it
            raise FaultSpecError(f"only LATENCY takes a value (LATENCY=1500); {kind.value} takes none")
        faults.append(Fault(kind, latency))
    return faults


def parse_latency(text: str | int) -> int:
    try:
        ms = int(str(text).strip().removesuffix("ms"))
    except ValueError:
        raise FaultSpecError(
            # echoed cut, as every refusal's value (protocol/detail.py): a header may be 32 KiB
            f"latency must be whole milliseconds, got {shown_value(None, str(text))!r}",
            issue="not an integer",
        ) from None
    if not 0 <= ms <= MAX_LATENCY_MS:
        raise FaultSpecError(f"latency must be between 0 and {MAX_LATENCY_MS} ms", issue="out of range")
    return ms


@dataclass(frozen=True, slots=True)
class FaultRule:
    id: str
    kind: FaultKind
    operation: str | None = None
    path: str | None = None
    mchid: str | None = None
    remaining: int | None = None
    probability: float = 1.0
    latency_ms: int = 0
    hits: int = 0
    note: str = ""
    created_at: float = 0.0

    def shape(self) -> tuple[object, ...]:
        """What the rule does, apart from its uses left: two rules of one shape are the same rule."""
        return rule_shape(
            self.kind, self.operation, self.path, self.mchid, self.probability, self.latency_ms, self.note
        )

    def matches(self, op_id: str, path: str, mchid: str) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.mchid and self.mchid != mchid:
            return False
        if self.operation and not fnmatch.fnmatchcase(op_id, self.operation):
            return False
        return not (self.path and not fnmatch.fnmatchcase(path, self.path))

    def fault(self) -> Fault:
        return Fault(self.kind, self.latency_ms, self.id)


def validate_rule(
    *,
    kind: str,
    operation: str | None,
    path: str | None,
    mchid: str | None,
    count: int | None,
    probability: float,
    latency_ms: int | None,
) -> tuple[FaultKind, int]:
    """Check a new rule; returns its kind and latency. Raises FaultSpecError with a helpful message."""
    try:
        fk = parse_kind(kind)
    except FaultSpecError as exc:
        raise exc.about("kind") from None
    if count is not None and count < 1:
        raise FaultSpecError(
            "count must be at least 1 (omit it for an unlimited rule)", field="count", issue="out of range"
        )
    if not 0.0 < probability <= 1.0:
        raise FaultSpecError("probability must be in (0, 1]", field="probability", issue="out of range")
    try:
        latency = (
            parse_latency(latency_ms if latency_ms is not None else 1000) if fk is FaultKind.LATENCY else 0
        )
    except FaultSpecError as exc:
        raise exc.about("latency_ms") from None
    for name, value, limit in (("operation", operation, 128), ("path", path, 512), ("mchid", mchid, 32)):
        if value is not None and len(value) > limit:
            raise FaultSpecError(f"{name} is longer than {limit} characters", field=name, issue="too long")
    return fk, latency


def rule_shape(
    kind: FaultKind,
    operation: str | None,
    path: str | None,
    mchid: str | None,
    probability: float,
    latency_ms: int,
    note: str,
) -> tuple[object, ...]:
    return (
        kind,
        operation or None,
        path or None,
        mchid or None,
        float(probability),
        int(latency_ms),
        note or "",
    )
