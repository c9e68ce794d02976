"""Who may call: merchants, their roles, key modes and relations."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlsplit, urlunsplit

NOTIFY_URL_MAX = 512


class Role(StrEnum):
    SERVICE_PROVIDER = "service_provider"  # 服务商: calls webizpay as sp_mchid
    PLATFORM = "platform"  # 平台商户: calls recharge-employees
    CHANNEL = "channel"  # 渠道商: calls apply4subject
    INSTITUTION = "institution"  # 从业机构 (bank / payment institution): calls apply4subject with channel_id
    SUB_MERCHANT = "sub_merchant"  # 子商户 of a service provider
    SECOND_LEVEL = "second_level"  # 二级商户 of a platform
    SPECIAL = "special"  # 特约商户 confirmed through apply4subject


class KeyMode(StrEnum):
    PUBLIC_KEY = "public_key"  # responses signed with the WeChat Pay public key (PUB_KEY_ID_...)
    CERTIFICATE = "certificate"  # responses signed with a platform certificate; /v3/certificates works
    MIGRATING = "migrating"  # either, as the request's Wechatpay-Serial names; callbacks randomly


class RelationKind(StrEnum):
    SUB_MERCHANT = "sub_merchant"  # service provider -> sub-merchant
    SECOND_LEVEL = "second_level"  # platform -> second-level merchant
    CHANNEL = "channel"  # institution -> channel merchant


@dataclass(frozen=True, slots=True)
class Merchant:
    mchid: str
    name: str
    role: Role
    apiv3_key: str | None = field(repr=False)  # a Merchant, a Caller or a Ctx shown anywhere keeps it out
    key_mode: KeyMode
    notify_url: str | None


@dataclass(frozen=True, slots=True)
class Caller:
    """The verified signer of a request: the ``mchid`` of its Authorization header."""

    merchant: Merchant
    serial_no: str
    # The request's Wechatpay-Serial: which WeChat Pay key the caller holds (picks the signer; spec §7).
    wechatpay_serial: str | None

    @property
    def mchid(self) -> str:
        return self.merchant.mchid


def shown_url(url: str) -> str:
    """``url`` as attempts show it: a password in its user part (a receiver behind basic auth, which
    the sender passes on) becomes ``***``; it was recorded with every attempt as configured."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    name = user.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{name}:***@{host}"))


def notify_url_problem(url: object) -> str | None:
    """Why ``url`` cannot be a callback URL, or None when it can (``None`` itself: no URL). Callbacks
    are POSTed to it (protocol §9): an absolute http(s) URL with a host. Anything else was stored and
    then failed each of the notification's 10 sends."""
    if url is None:
        return None
    if not isinstance(url, str) or not 0 < len(url) <= NOTIFY_URL_MAX:
        return f"notify_url must be a URL of at most {NOTIFY_URL_MAX} characters, or null"
    if not url.isprintable() or " " in url:
        return "notify_url must be a URL without spaces or control characters (percent-encode them)"
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError as exc:
        return f"notify_url is not a valid URL: {exc}"
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        return (
            "notify_url must be an absolute http:// or https:// URL with a host, "
            "e.g. https://merchant.example/notify"
        )
    return None
