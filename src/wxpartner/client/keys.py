"""The WeChat Pay keys a client trusts (public key + ``PUB_KEY_ID``, platform certificates, or both),
and the checks every signed answer or callback must pass (protocol.md §5.4, §9.1)."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from ..protocol import constants as c
from ..protocol.crypto import APIV3_KEY_RULE, DecryptionError, aes_gcm_decrypt, is_apiv3_key
from ..protocol.keys import (
    KeyLoadError,
    PemSource,
    certificate_public_key,
    certificate_serial,
    load_certificate,
    load_public_key,
)
from ..protocol.messages import response_message
from ..protocol.signing import verify
from .errors import ConfigurationError, KeyConfigurationError, VerificationError

SIGNED_HEADERS = (c.H_SERIAL, c.H_SIGNATURE, c.H_TIMESTAMP, c.H_NONCE)


@dataclass(frozen=True)
class TrustedKey:
    key_id: str  # PUB_KEY_ID_... or an upper-case certificate serial
    public_key: rsa.RSAPublicKey
    kind: str  # "public_key" | "certificate"
    not_after: float | None = None

    def describe(self) -> str:
        return f"{'WeChat Pay public key' if self.kind == 'public_key' else 'platform certificate'} {self.key_id}"


class UnknownSerial(Exception):
    """Internal signal: no trusted key has this id (a certificate refresh may find it)."""

    def __init__(self, serial: str) -> None:
        super().__init__(serial)
        self.serial = serial


def check_apiv3_key(apiv3_key: object) -> None:
    """Raise ``ConfigurationError`` unless ``apiv3_key`` can be an APIv3 key: its 32 ASCII characters
    are the AES-256 key's 32 bytes (protocol §9.3). 16 two-byte characters make 32 UTF-8 bytes but
    no key: every callback then failed to decrypt, as if it were not a notification."""
    if not is_apiv3_key(apiv3_key):
        raise ConfigurationError(f"apiv3_key must be {APIV3_KEY_RULE}")


class HasItems(Protocol):
    """Anything with ``items()`` giving (name, value) pairs: werkzeug's ``Headers``, Django's
    ``HttpHeaders``, ``http.server``'s ``email.message.Message`` (which is no Mapping)."""

    def items(self) -> Iterable[tuple[str, str]]: ...


# How web frameworks hand over request headers: a mapping or an object with ``items()`` (Starlette,
# Flask, Django, aiohttp, Tornado, http.server) or (name, value) pairs, as bytes in raw ASGI
# (``scope["headers"]``).
HeadersLike = Mapping[str, str] | HasItems | Iterable[tuple[str | bytes, str | bytes]]


def _text(value: str | bytes) -> str:
    # ASGI gives bytes; Latin-1 maps every byte (the signed headers are ASCII anyway).
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


def norm_headers(headers: HeadersLike) -> dict[str, str]:
    items: Iterable[Any] = headers.items() if hasattr(headers, "items") else headers
    out: dict[str, str] = {}
    for pair in items:
        if isinstance(pair, str | bytes) or not isinstance(pair, tuple | list) or len(pair) != 2:
            raise TypeError(
                "headers must be a mapping, an object with items(), or (name, value) pairs; got "
                f"{type(headers).__name__} yielding {type(pair).__name__}"
            )
        out[_text(pair[0]).lower()] = _text(pair[1])
    return out


def _environ_hint(h: Mapping[str, str]) -> str:
    """A WSGI environ or Django ``request.META`` names headers HTTP_WECHATPAY_...: say what to pass."""
    if any(k.startswith("http_wechatpay_") for k in h):
        return (
            "; these look like a WSGI environ or Django request.META (HTTP_WECHATPAY_...): "
            "pass the request's headers (request.headers) instead"
        )
    return ""


class KeySet:
    """Thread-safe: the certificate part can be replaced by a refresh while other threads verify."""

    def __init__(
        self,
        *,
        public_key: PemSource | rsa.RSAPublicKey | None = None,
        public_key_id: str | None = None,
        certificates: Iterable[PemSource | x509.Certificate] = (),
        time_window: int = c.DEFAULT_TIME_WINDOW_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if (public_key is None) != (public_key_id is None):
            raise ConfigurationError(
                "a WeChat Pay public key needs its ID (PUB_KEY_ID_...) and the ID needs the key: "
                "pass both wechatpay_public_key and wechatpay_public_key_id"
            )
        self.public: TrustedKey | None = None
        if public_key is not None and public_key_id is not None:
            key = public_key if isinstance(public_key, rsa.RSAPublicKey) else load_public_key(public_key)
            self.public = TrustedKey(public_key_id, key, "public_key")
        # Public keys held before the current one (add_public_key): still accepted until dropped.
        self._earlier: dict[str, TrustedKey] = {}
        self._certs: dict[str, TrustedKey] = {}
        # Appended to an unknown-serial refusal: set by the client when base_url is not WeChat Pay's.
        self.unknown_hint = ""
        self._lock = threading.Lock()
        self.time_window = time_window
        self.clock = clock
        self.add_certificates(certificates)

    def __repr__(self) -> str:  # key ids only: which keys verify, never key material
        public = self.public.key_id if self.public is not None else None
        earlier = f"earlier_public_key_ids={list(self._earlier)!r}, " if self._earlier else ""
        return (
            f"KeySet(public_key_id={public!r}, {earlier}certificate_serials={self.certificate_serials!r}, "
            f"time_window={self.time_window})"
        )

    # -- a rotation of the WeChat Pay public key ------------------------------------------------
    def add_public_key(self, public_key: PemSource | rsa.RSAPublicKey, public_key_id: str) -> None:
        """Take a new WeChat Pay public key (a rotation): from now on it is the one requests name in
        ``Wechatpay-Serial`` (so answers come signed with it) and sensitive fields are encrypted with;
        the key held before stays accepted in answers and callbacks (which WeChat Pay may still sign
        with it during the overlap) until ``drop_public_key``."""
        if not isinstance(public_key_id, str) or not public_key_id:
            raise ConfigurationError(
                f"public_key_id must be the key's id (PUB_KEY_ID_...), got {public_key_id!r}"
            )
        try:
            key = public_key if isinstance(public_key, rsa.RSAPublicKey) else load_public_key(public_key)
        except (KeyLoadError, OSError) as exc:
            raise KeyConfigurationError(f"public_key: {exc}") from exc
        with self._lock:
            earlier = dict(self._earlier)
            if self.public is not None and self.public.key_id != public_key_id:
                earlier[self.public.key_id] = self.public
            earlier.pop(public_key_id, None)
            self._earlier = earlier
            self.public = TrustedKey(public_key_id, key, "public_key")

    def drop_public_key(self, public_key_id: str) -> bool:
        """Stop accepting an earlier public key (once WeChat Pay no longer signs with it); the current
        one cannot be dropped, only replaced by ``add_public_key``. Returns whether it was held."""
        with self._lock:
            if public_key_id not in self._earlier:
                return False
            self._earlier = {k: v for k, v in self._earlier.items() if k != public_key_id}
            return True

    @property
    def public_key_ids(self) -> list[str]:
        """The public key ids accepted: the current one first, then the earlier ones still held."""
        current = [self.public.key_id] if self.public is not None else []
        return current + list(self._earlier)

    # -- key management -------------------------------------------------------------------------
    def add_certificates(self, certificates: Iterable[PemSource | x509.Certificate]) -> list[str]:
        added = []
        with self._lock:
            fresh = dict(self._certs)
            for item in certificates:
                cert = item if isinstance(item, x509.Certificate) else load_certificate(item)
                key = TrustedKey(
                    certificate_serial(cert),
                    certificate_public_key(cert),
                    "certificate",
                    cert.not_valid_after_utc.timestamp(),
                )
                fresh[key.key_id] = key
                added.append(key.key_id)
            self._certs = fresh
        return added

    @property
    def certificate_serials(self) -> list[str]:
        return list(self._certs)

    def knows(self, serial: str) -> bool:
        return self.lookup(serial) is not None

    def lookup(self, serial: str) -> TrustedKey | None:
        public = self.public
        if public is not None and serial == public.key_id:
            return public
        if serial in self._earlier:
            return self._earlier[serial]
        # Serials are hex: compare case-insensitively (some tools print lower case).
        return self._certs.get(serial) or self._certs.get(serial.upper())

    def encryption_key(self) -> TrustedKey | None:
        """The key for sensitive fields: the public key if configured, else the newest valid certificate."""
        if self.public is not None:
            return self.public
        now = self.clock()
        certs = [k for k in self._certs.values() if k.not_after is None or k.not_after > now]
        return max(certs, key=lambda k: k.not_after or 0.0) if certs else None

    @property
    def empty(self) -> bool:
        return self.public is None and not self._certs

    # -- verification ---------------------------------------------------------------------------
    def verify_signed(
        self,
        headers: HeadersLike,
        body: bytes,
        *,
        what: str = "response",
        check_timestamp: bool = True,
    ) -> TrustedKey:
        """Check headers, timestamp window, probe marker and signature over ``ts\\nnonce\\nbody\\n``.

        Raises ``UnknownSerial`` when no trusted key has the serial (the caller may refresh
        certificates and retry) and ``VerificationError`` for everything else."""
        h = norm_headers(headers)
        request_id = h.get(c.H_REQUEST_ID.lower())
        missing = [name for name in SIGNED_HEADERS if not h.get(name.lower())]
        if missing:
            raise VerificationError(
                "missing_header",
                f"the {what} lacks {', '.join(missing)}; a genuine WeChat Pay {what} is always signed, "
                "so this one must be treated as forged" + _environ_hint(h),
                request_id=request_id,
            )
        sig_type = h.get(c.H_SIGNATURE_TYPE.lower())
        if sig_type and sig_type != c.SIGNATURE_TYPE:
            raise VerificationError(
                "bad_signature_type",
                f"Wechatpay-Signature-Type {sig_type!r} is not supported (expected {c.SIGNATURE_TYPE})",
                request_id=request_id,
            )
        serial = h[c.H_SERIAL.lower()]
        ts_text = h[c.H_TIMESTAMP.lower()]
        nonce = h[c.H_NONCE.lower()]
        signature = h[c.H_SIGNATURE.lower()]
        message = response_message(ts_text, nonce, body)
        if signature.startswith(c.SIGNATURE_PROBE_PREFIX):
            raise VerificationError(
                "probe",
                f"the signature starts with {c.SIGNATURE_PROBE_PREFIX}: WeChat Pay is probing whether "
                f"this {what} is verified; it must be rejected",
                serial=serial,
                request_id=request_id,
            )
        if check_timestamp:
            try:
                ts = int(ts_text)
            except ValueError:
                raise VerificationError(
                    "stale_timestamp",
                    f"Wechatpay-Timestamp {ts_text[:20]!r} is not Unix seconds",
                    serial=serial,
                    request_id=request_id,
                ) from None
            skew = self.clock() - ts
            if abs(skew) >= self.time_window:
                raise VerificationError(
                    "stale_timestamp",
                    f"Wechatpay-Timestamp {ts} is {abs(int(skew))} s "
                    f"{'behind' if skew > 0 else 'ahead of'} local time (allowed: < {self.time_window} s); "
                    "a replayed answer or a wrong local clock",
                    serial=serial,
                    request_id=request_id,
                )
        key = self.lookup(serial)
        if key is None:
            raise UnknownSerial(serial)
        if not verify(key.public_key, message, signature):
            raise VerificationError(
                "bad_signature",
                f"the signature does not match the {what} under the {key.describe()} "
                "(the body was changed, or signed by another key)",
                serial=serial,
                key=key.describe(),
                message=message,
                request_id=request_id,
            )
        return key

    def unknown_serial_error(
        self, serial: str, note: str = "", request_id: str | None = None
    ) -> VerificationError:
        if serial.startswith(c.PUBLIC_KEY_ID_PREFIX):  # no certificate download can find a public key
            note = (
                "it is a WeChat Pay public key id: download that public key from the merchant platform "
                "and pass it as wechatpay_public_key + wechatpay_public_key_id (to keep the one you hold "
                "while WeChat Pay may still sign with it: client.keys.add_public_key(pem, key_id))"
            )
        known = [f"public key {key_id}" for key_id in self.public_key_ids]
        known += [f"certificate {s}" for s in self._certs]
        return VerificationError(
            "unknown_serial",
            f"no trusted WeChat Pay key has the id {serial!r} (trusted: {', '.join(known) or 'none'})"
            + (f"; {note}" if note else "")
            + (f"; {self.unknown_hint}" if self.unknown_hint else ""),
            serial=serial,
            request_id=request_id,
        )


def downloadable(serial: str) -> bool:
    """Whether ``/v3/certificates`` could know this serial (public key ids are never listed there)."""
    return not serial.startswith(c.PUBLIC_KEY_ID_PREFIX)


def decrypt_certificates(apiv3_key: str, body: bytes) -> list[x509.Certificate]:
    """The certificates of a ``GET /v3/certificates`` answer, decrypted with the APIv3 key."""
    try:
        data = json.loads(body)
        entries = data["data"]
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise TypeError("'data' is not a list of certificate objects")
    except (ValueError, KeyError, TypeError) as exc:
        raise VerificationError(
            "bad_certificates", f"/v3/certificates answer is not understood: {exc}"
        ) from exc
    certs = []
    for entry in entries:
        enc = entry.get("encrypt_certificate") or {}
        try:
            pem = aes_gcm_decrypt(
                apiv3_key, str(enc["nonce"]), enc.get("associated_data"), str(enc["ciphertext"])
            )
        except (DecryptionError, KeyError) as exc:
            raise VerificationError(
                "bad_certificates",
                f"platform certificate {entry.get('serial_no')} does not decrypt under the configured APIv3 key "
                "(wrong apiv3_key?)",
                serial=entry.get("serial_no"),
            ) from exc
        cert = load_certificate(pem)
        if certificate_serial(cert) != str(entry.get("serial_no", "")).upper():
            raise VerificationError(
                "bad_certificates",
                f"certificate serial {certificate_serial(cert)} differs from the listed {entry.get('serial_no')}",
            )
        if cert.not_valid_after_utc < dt.datetime.now(dt.UTC):
            continue
        certs.append(cert)
    return certs
