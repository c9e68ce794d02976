"""What the SDK raises: one small hierarchy.

``WxPayError`` is the root. ``ApiError`` (and its subclasses, chosen by the WeChat error ``code``) means
WeChat Pay answered with a non-2xx status; ``VerificationError`` means a 2xx answer (or a callback) could
not be proven to come from WeChat Pay; ``TransportError`` means no answer arrived.
"""

from __future__ import annotations

import json
from typing import Any

from ..protocol.keys import KeyLoadError


class WxPayError(Exception):
    """Root of every error the SDK raises on purpose."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Most subclasses take keyword-only arguments that are not in ``args``: the default pickling
        # (multiprocessing, concurrent.futures, Celery) would call ``cls(*args)`` and turn the real
        # error into a TypeError in the receiving process. The attributes travel as they are.
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


def _rebuild(cls: type[WxPayError], args: tuple[Any, ...], state: dict[str, Any]) -> WxPayError:
    err = cls.__new__(cls)
    Exception.__init__(err, *args)
    err.__dict__.update(state)
    return err


class ConfigurationError(WxPayError, ValueError):
    """The client was configured in a way that cannot work (the message says what to add)."""


class KeyConfigurationError(ConfigurationError, KeyLoadError):
    """A key or certificate given to the client cannot be read. It was the protocol's bare
    ``KeyLoadError`` (a ``ValueError``), which ``except ConfigurationError`` / ``WxPayError`` missed."""


class ClientClosedError(WxPayError, RuntimeError):
    """A call on a client after ``close()`` / ``aclose()`` (or its ``with`` block ended). Before, the
    own connection pool silently opened new connections that nothing would close, while an httpx
    client raised a bare RuntimeError: one clear error whatever the HTTP underneath."""


class ApiError(WxPayError):
    """A non-2xx answer. ``code``/``message``/``detail`` come from the WeChat error body; an unknown
    ``code`` still lands here, so ``except ApiError`` catches every refusal."""

    codes: tuple[str, ...] = ()
    # Set when an earlier attempt of this call ended ambiguously (a 5xx, or no answer after the request
    # was sent) and a repeat got this refusal: "attempt 1: 500 SYSTEM_ERROR". That attempt may have
    # taken effect, so the refusal may describe the state it left (a revoke answered "already revoked").
    after_ambiguous: str | None = None

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        detail: Any = None,
        request_id: str | None = None,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail
        self.request_id = request_id
        self.body = body
        self.headers = headers or {}
        text = f"{status} {code}: {message}"
        if detail is not None:
            text += f" detail={json.dumps(detail, ensure_ascii=False)[:500]}"
        if request_id:
            text += f" (Request-ID {request_id})"
        super().__init__(text)

    @property
    def retryable(self) -> bool:
        """WeChat Pay itself asks to retry these with identical parameters: 429, 500 ``SYSTEM_ERROR``
        and 503 ``SERVICE_UNAVAILABLE``. The pipeline repeats 429 and 503 for any call (turned away
        unhandled) and a 500 only for idempotent calls (it may follow a change that took effect, and the
        same parameters are one effect only where they identify the call). Other 5xx (a proxy's 502/504
        without a WeChat code) are repeated only for idempotent calls too."""
        return self.status == 429 or self.code in RETRY_CODES


RETRY_CODES = frozenset({"SYSTEM_ERROR", "SYSTEMERROR", "SERVICE_UNAVAILABLE"})


class ParamError(ApiError):
    codes = ("PARAM_ERROR",)


class InvalidRequestError(ApiError):
    """Breaks an APIv3 rule or a business rule (e.g. the object's state does not allow the action)."""

    codes = ("INVALID_REQUEST",)


class SignError(ApiError):
    """WeChat Pay could not verify our request signature; ``detail.sign_information`` (sandbox and
    real WeChat Pay) shows the message the server expected."""

    codes = ("SIGN_ERROR",)


class NoAuthError(ApiError):
    codes = ("NO_AUTH", "NOAUTH")


class NotFoundError(ApiError):
    codes = ("RESOURCE_NOT_EXISTS", "NOT_FOUND", "ORDER_NOT_EXIST", "MCH_NOT_EXISTS")


class MethodNotAllowedError(ApiError):
    codes = ("METHOD_NOT_ALLOWED",)


class RateLimitedError(ApiError):
    codes = ("FREQUENCY_LIMITED", "RATELIMIT_EXCEEDED")


class ServerError(ApiError):
    """500 ``SYSTEM_ERROR``: WeChat Pay asks to retry with the same parameters (the SDK does, for
    idempotent calls; for another its message says it was not repeated: check before repeating it)."""

    codes = ("SYSTEM_ERROR", "SYSTEMERROR")


class ServiceUnavailableError(ApiError):
    codes = ("SERVICE_UNAVAILABLE",)


ERROR_CLASSES: dict[str, type[ApiError]] = {
    code: cls
    for cls in (
        ParamError,
        InvalidRequestError,
        SignError,
        NoAuthError,
        NotFoundError,
        MethodNotAllowedError,
        RateLimitedError,
        ServerError,
        ServiceUnavailableError,
    )
    for code in cls.codes
}


def api_error_from(status: int, body: bytes, headers: dict[str, str]) -> ApiError:
    """Build the typed error for a non-2xx answer; a non-JSON or empty body still gives a usable error."""
    code, message, detail = f"HTTP_{status}", "", None
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    if isinstance(data, dict):
        code = str(data.get("code") or code)
        message = str(data.get("message") or "")
        detail = data.get("detail")
    elif body:
        message = body[:200].decode("utf-8", errors="replace")
    cls = ERROR_CLASSES.get(code)
    if cls is None:
        cls = {429: RateLimitedError, 500: ServerError, 503: ServiceUnavailableError}.get(status, ApiError)
    lowered = {k.lower(): v for k, v in headers.items()}
    return cls(
        status,
        code,
        message,
        detail=detail,
        request_id=lowered.get("request-id"),
        body=body,
        headers=headers,
    )


class VerificationError(WxPayError):
    """A 2xx answer or a callback that failed verification. Treat it as forged: do not act on it.

    ``reason`` is a stable keyword (``missing_header``, ``stale_timestamp``, ``probe``, ``unknown_serial``,
    ``bad_signature``, ``bad_content_type``, ``bad_signature_type``); ``serial`` is the key the message
    named, ``key`` describes the key tried, ``message`` is the exact byte string that was checked;
    ``status`` the HTTP status of the refused answer (``None`` for a callback): a write refused so may
    still have taken effect, as after a timeout.
    """

    status: int | None = None  # set by the pipeline for an answer

    def __init__(
        self,
        reason: str,
        explanation: str,
        *,
        serial: str | None = None,
        key: str | None = None,
        message: bytes | None = None,
        request_id: str | None = None,
    ) -> None:
        self.reason = reason
        self.serial = serial
        self.key = key
        self.message = message
        self.request_id = request_id
        text = f"verification failed ({reason}): {explanation}"  # answers and callbacks alike
        if serial:
            text += f"; Wechatpay-Serial={serial}"
        if key:
            text += f"; key tried: {key}"
        if message is not None:
            shown = message[:300].decode("utf-8", errors="replace").replace("\n", "\\n")
            text += f"; signed message ({len(message)} bytes) = {shown!r}"
        if request_id:
            text += f" (Request-ID {request_id})"
        super().__init__(text)


class TransportError(WxPayError):
    """No usable answer: connection refused, timeout, dropped connection. ``sent`` tells whether the
    request may have reached the server (then only an idempotent call may be repeated)."""

    def __init__(self, message: str, *, sent: bool, cause: BaseException | None = None) -> None:
        self.sent = sent
        super().__init__(message)
        if cause is not None:
            self.__cause__ = cause


class DecodeError(WxPayError):
    """A verified 2xx answer whose body does not fit the operation's response model (a newer or
    different API shape). ``body`` holds the exact bytes; ``request_id`` identifies the call."""

    def __init__(self, message: str, *, body: bytes, request_id: str | None) -> None:
        self.body = body
        self.request_id = request_id
        super().__init__(message + (f" (Request-ID {request_id})" if request_id else ""))
