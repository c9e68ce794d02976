"""The typed wxpartner / WeChat Pay APIv3 SDK: ``Client`` (sync) and ``AsyncClient`` share one
request pipeline (sign -> send -> verify -> decode -> typed error). See the README's SDK section."""

from .aio import AsyncClient
from .core import Call, Response
from .errors import (
    ApiError,
    ClientClosedError,
    ConfigurationError,
    DecodeError,
    InvalidRequestError,
    MethodNotAllowedError,
    NoAuthError,
    NotFoundError,
    ParamError,
    RateLimitedError,
    ServerError,
    ServiceUnavailableError,
    SignError,
    TransportError,
    VerificationError,
    WxPayError,
)
from .keys import KeySet, TrustedKey
from .notifications import Notification, parse_notification
from .policy import NO_RETRIES, RetryPolicy
from .sync import Client

__all__ = [
    "NO_RETRIES",
    "ApiError",
    "AsyncClient",
    "Call",
    "Client",
    "ClientClosedError",
    "ConfigurationError",
    "DecodeError",
    "InvalidRequestError",
    "KeySet",
    "MethodNotAllowedError",
    "NoAuthError",
    "NotFoundError",
    "Notification",
    "ParamError",
    "RateLimitedError",
    "Response",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailableError",
    "SignError",
    "TransportError",
    "TrustedKey",
    "VerificationError",
    "WxPayError",
    "parse_notification",
]
