"""Callback notifications (protocol.md §9): verify the signature and timestamp over the EXACT raw bytes
received, reject WeChat Pay's signature probes, decrypt the AES-256-GCM resource with the APIv3 key and
return a typed event.

Hand over the body exactly as it arrived (``await request.body()`` in FastAPI/Starlette,
``request.get_data()`` in Flask, ``request.body`` in Django) - never a re-serialized JSON object, whose
bytes differ from what WeChat Pay signed.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from ..models import webizpay as w
from ..protocol import constants as c
from ..protocol.crypto import DecryptionError
from ..protocol.notification import decrypt_resource
from .errors import ConfigurationError, VerificationError
from .keys import HeadersLike, KeySet, UnknownSerial, check_apiv3_key, downloadable, norm_headers

if TYPE_CHECKING:
    from .core import Engine, Flow


# What ``Notification.resource`` holds: the model of a known event type, else the plaintext dict.
# Precise rather than Any, so a strictly typed handler narrows it with isinstance.
EventResource = (
    w.AuthorizedEvent
    | w.RevokedEvent
    | w.QuotaCardExpiredEvent
    | w.PaymentSuccessEvent
    | w.PaymentRefundSuccessEvent
    | dict[str, Any]
)


@dataclass(frozen=True)
class Notification:
    """A verified, decrypted callback. ``resource`` is the typed plaintext model for known event types
    (``wxpartner.models.webizpay``), else the plaintext dict; ``plaintext`` is always the dict."""

    id: str
    create_time: str
    event_type: str
    resource_type: str
    summary: str
    resource: EventResource
    plaintext: dict[str, Any]
    original_type: str | None
    verified_by: str
    request_id: str | None
    body: dict[str, Any]


def _event_models() -> dict[str, type[BaseModel]]:
    """event_type -> plaintext model (webizpay is the only family with callbacks)."""
    return {
        "WEBIZPAY.AUTHORIZED": w.AuthorizedEvent,
        "WEBIZPAY.REVOKED": w.RevokedEvent,
        "WEBIZPAY.QUOTACARDEXPIRED": w.QuotaCardExpiredEvent,
        "WEBIZPAY.PAYMENTSUCCESS": w.PaymentSuccessEvent,
        "WEBIZPAY.PAYMENTREFUNDSUCCESS": w.PaymentRefundSuccessEvent,
    }


def typed_resource(event_type: str, plaintext: dict[str, Any]) -> EventResource:
    model = _event_models().get(event_type)
    if model is None:
        return plaintext
    try:
        event: EventResource = model.model_validate(plaintext)  # type: ignore[assignment]
        return event
    except ValidationError:
        return plaintext  # a newer field shape than our models know: still hand over the data


def decode_notification(
    keys: KeySet,
    apiv3_key: str,
    headers: HeadersLike,
    raw_body: bytes | str,
    *,
    check_timestamp: bool = True,
) -> Notification:
    """Verify and decrypt with the given keys; raises ``VerificationError`` (unknown serial included)."""
    body = raw_body.encode("utf-8") if isinstance(raw_body, str) else raw_body
    try:
        key = keys.verify_signed(headers, body, what="callback", check_timestamp=check_timestamp)
    except UnknownSerial as unknown:
        raise keys.unknown_serial_error(unknown.serial) from None
    return _decrypt(key.key_id, apiv3_key, headers, body)


def _decrypt(verified_by: str, apiv3_key: str, headers: HeadersLike, body: bytes) -> Notification:
    h = norm_headers(headers)
    request_id = h.get(c.H_REQUEST_ID.lower())
    try:
        data = json.loads(body)
        resource = data["resource"]
        plaintext = decrypt_resource(apiv3_key, resource)
    except DecryptionError as exc:
        raise VerificationError(
            "bad_resource",
            "the callback resource does not decrypt under the configured APIv3 key (wrong apiv3_key?)",
            request_id=request_id,
        ) from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise VerificationError(
            "bad_resource",
            f"the callback body is not a WeChat Pay notification: {exc}",
            request_id=request_id,
        ) from exc
    event_type = str(data.get("event_type", ""))
    return Notification(
        id=str(data.get("id", "")),
        create_time=str(data.get("create_time", "")),
        event_type=event_type,
        resource_type=str(data.get("resource_type", "")),
        summary=str(data.get("summary", "")),
        resource=typed_resource(event_type, plaintext),
        plaintext=plaintext,
        original_type=resource.get("original_type"),
        verified_by=verified_by,
        request_id=request_id,
        body=data,
    )


def notification_flow(engine: Engine, headers: HeadersLike, raw_body: bytes | str) -> Flow[Notification]:
    """The client-bound variant: an unknown serial triggers a certificate refresh (certificate mode)."""
    from .core import Refresh

    cfg = engine.config
    if cfg.apiv3_key is None:
        raise ConfigurationError("parsing callbacks needs the APIv3 key: pass apiv3_key to the client")
    body = raw_body.encode("utf-8") if isinstance(raw_body, str) else raw_body
    try:
        key = engine.keys.verify_signed(headers, body, what="callback")
    except UnknownSerial as unknown:
        if not cfg.download_certificates or not downloadable(unknown.serial):
            raise engine.keys.unknown_serial_error(unknown.serial) from None
        yield Refresh(unknown.serial)
        try:
            key = engine.keys.verify_signed(headers, body, what="callback")
        except UnknownSerial as still:
            raise engine.keys.unknown_serial_error(still.serial, engine.certificates_note) from None
    return _decrypt(key.key_id, cfg.apiv3_key, headers, body)


def parse_notification(
    headers: HeadersLike,
    raw_body: bytes | str,
    *,
    client: Any = None,
    keys: KeySet | None = None,
    apiv3_key: str | None = None,
) -> Notification:
    """Verify and decrypt a callback. Pass a sync ``client`` (its keys, APIv3 key and certificate
    refresh are used), or ``keys`` (a ``KeySet``) and ``apiv3_key``."""
    if client is not None:
        parse: Callable[[Any, bytes | str], Notification] = client.parse_notification
        if inspect.iscoroutinefunction(parse):  # it would hand back an un-awaited coroutine
            raise ConfigurationError(
                "parse_notification(client=...) takes a sync Client; with an AsyncClient, "
                "await client.parse_notification(headers, raw_body)"
            )
        return parse(headers, raw_body)
    if keys is None or apiv3_key is None:
        raise ConfigurationError("parse_notification needs client=..., or keys=... and apiv3_key=...")
    check_apiv3_key(apiv3_key)
    return decode_notification(keys, apiv3_key, headers, raw_body)
