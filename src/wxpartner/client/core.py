"""The request pipeline shared by ``Client`` and ``AsyncClient``: sign -> send -> verify -> decode ->
typed error, with retries, failover and platform-certificate refresh.

It is written once, as generators that *yield* what they need done (send this request, sleep, refresh
certificates) and receive the outcome. The sync and async clients only drive these generators: they
differ in nothing but how a request is sent, how they sleep and how they lock (sans-IO).
"""

from __future__ import annotations

import json
import logging
import platform
import time
import urllib.parse
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import BaseModel, ValidationError

from .. import __version__
from ..protocol import constants as c
from ..protocol.authorization import Authorization
from ..protocol.keys import KeyLoadError, PemSource, load_private_key
from ..protocol.messages import request_message
from ..protocol.signing import new_nonce, sign
from .errors import (
    ApiError,
    ConfigurationError,
    DecodeError,
    KeyConfigurationError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    TransportError,
    VerificationError,
    api_error_from,
)
from .http11 import timed_out
from .keys import (
    SIGNED_HEADERS,
    KeySet,
    UnknownSerial,
    check_apiv3_key,
    decrypt_certificates,
    downloadable,
)
from .outgoing import Outgoing, outgoing
from .policy import (
    DEFAULT_TIMEOUT,
    NOT_SENT_ERRORS,
    RetryPolicy,
    TimeoutLike,
    as_timeout,
    retry_after_seconds,
)
from .sensitive import encrypt_at, json_key, sensitive_pointers

T = TypeVar("T")
# A Call only hands out its result: Call[IdentifierPage] is a Call[Page[str]] (operations.paged).
T_co = TypeVar("T_co", covariant=True)

# Method, path, status, attempt and Request-ID only: never bodies, headers or key material.
log = logging.getLogger("wxpartner.client")

# WeChat Pay's own API origins (protocol.md §1); any other base_url is likely a wxpartner server.
WECHATPAY_ORIGINS = frozenset({c.PRIMARY_HOST, c.BACKUP_HOST, "https://api2.wechatpay.cn"})
SANDBOX_KEYS_HINT = (
    "base_url is not WeChat Pay's: if it is a wxpartner server, GET /sandbox/platform-keys lists the keys "
    "it signs with, and a restart of wxpartner serve writes them into connection.json (the pytest "
    "plugin's rotate_platform_key updates its info)"
)

# A refresh for a serial that a previous refresh did not find waits this long (a forged serial in a
# callback cannot make us hammer /v3/certificates); any two refreshes are at least MIN_GAP apart.
UNKNOWN_SERIAL_BACKOFF = 60.0
MIN_REFRESH_GAP = 1.0


# -- what the generators ask their driver to do --------------------------------------------------------
@dataclass(frozen=True)
class Send:
    request: Outgoing
    timeout: httpx.Timeout  # the call's own ``timeout=``, else the client's


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Refresh:
    """Download platform certificates unless another caller just did (the driver serializes these)."""

    serial: str | None


Action = Send | Sleep | Refresh
Flow = Generator[Action, Any, T]


@dataclass
class Response:
    """A verified 2xx answer: status, lower-cased headers, exact body bytes, and the key that signed it."""

    status: int
    headers: dict[str, str]
    content: bytes
    verified_by: str | None = None

    @property
    def request_id(self) -> str | None:
        return self.headers.get("request-id")

    def json(self) -> Any:
        return json.loads(self.content) if self.content else None


@dataclass(frozen=True)
class Call(Generic[T_co]):
    """One API operation, ready to run: resources build these, and so does ``request()``."""

    method: str
    path: str  # percent-encoded, starting with /v3/
    decode: Callable[[Response], T_co]
    query: Sequence[tuple[str, str]] = ()
    body: BaseModel | Mapping[str, Any] | bytes | None = None
    # Safe to repeat after a timeout or dropped connection (queries, and writes keyed by the caller's
    # own unique number: out_card_no, business_code, ...). See the README's SDK section.
    idempotent: bool = False
    op_id: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    sensitive: Sequence[str] = ()  # JSON pointers to encrypt when the model has no marker
    expects_json: bool = True  # False for file downloads (CSV)
    # The answer may come without any of WeChat Pay's signature headers: the bill file, which WeChat Pay
    # does not sign (its download page says to skip verification). A signed answer is still verified.
    unsigned_ok: bool = False
    shape: BaseModel | None = None  # the validated model of a dict body: its sensitive-field markers
    timeout: httpx.Timeout | None = None  # this call's bounds per attempt (None: the client's)
    # A delete by value (W17): when a repeat, after an attempt that ended ambiguously, is answered 404
    # RESOURCE_NOT_EXISTS naming ``gone_field`` (its detail.field), what the call deletes is not there:
    # the earlier attempt took effect (or it was never there), and ``gone()`` is the call's result.
    gone_field: str = ""
    gone: Callable[[], T_co] | None = None


def without_nulls(value: Any) -> Any:
    """A caller's JSON value without its ``None`` members (WeChat Pay's basic rules forbid ``null``;
    a model body drops them the same way, ``exclude_none``). The value itself when it has none, else
    a copy of the parts that change: the caller's object is never modified. A key that is not a
    string is written as JSON writes it (7 as "7"), so the sensitive-field walk finds what it holds."""
    if isinstance(value, Mapping):
        pruned = {json_key(k): without_nulls(v) for k, v in value.items() if v is not None}
        same = len(pruned) == len(value) and all(k in value and pruned[k] is value[k] for k in pruned)
        return value if same else pruned
    if isinstance(value, list):
        items = [without_nulls(v) for v in value]  # a None in a list is kept: it is a position
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value


def unsigned(resp: Response) -> bool:
    """No signature header at all (a partly signed answer is verified, and refused)."""
    return not any(resp.headers.get(name.lower()) for name in SIGNED_HEADERS)


def model_decoder(model: type[BaseModel]) -> Callable[[Response], Any]:
    def decode(resp: Response) -> Any:
        try:
            return model.model_validate_json(resp.content or b"{}")
        except ValidationError as exc:
            raise DecodeError(
                f"the answer does not fit {model.__name__}: {exc}",
                body=resp.content,
                request_id=resp.request_id,
            ) from exc

    return decode


def no_content(resp: Response) -> None:
    return None


def query_text(value: Any) -> str:
    """A query value as text: booleans as JSON writes them (``true``), as WeChat's APIs take them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def raw_response(resp: Response) -> Response:
    return resp


@dataclass
class Config:
    mchid: str
    serial_no: str
    private_key: rsa.RSAPrivateKey = field(repr=False)
    keys: KeySet
    apiv3_key: str | None = field(default=None, repr=False)
    download_certificates: bool = False
    base_url: str = c.PRIMARY_HOST
    backup_url: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: httpx.Timeout = field(default_factory=lambda: DEFAULT_TIMEOUT)
    user_agent: str = ""
    clock: Callable[[], float] = time.time
    refresh_backoff: float = UNKNOWN_SERIAL_BACKOFF


def unreadable(exc: OSError) -> str:
    return f"cannot read {exc.filename!r}: {exc.strerror or exc}"


def checked_origin(name: str, url: str) -> str:
    """``url`` as the origin requests go to (no trailing slash), or a ConfigurationError now. Before, a
    URL without a scheme failed at every call as a TransportError saying the request had been sent,
    and a path was dropped by the SDK's own HTTP but kept by httpx (where the signature, over the API
    path alone, then did not match)."""
    parts = urllib.parse.urlsplit(url)
    try:
        parts.port  # noqa: B018 (a port that is no number raises here)
    except ValueError:
        parts = parts._replace(netloc="")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"{name} must be http:// or https:// and a host (and port), e.g. https://api.mch.weixin.qq.com "
            f"or http://127.0.0.1:8080; got {url!r}"
        )
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise ConfigurationError(
            f"{name} is an origin, scheme://host[:port], without a path: WeChat Pay signs each API path "
            f"(/v3/...) as it is sent; got {url!r}"
        )
    return f"{parts.scheme}://{parts.netloc}"


def make_config(
    *,
    mchid: str,
    serial_no: str,
    private_key: PemSource | rsa.RSAPrivateKey,
    wechatpay_public_key: PemSource | rsa.RSAPublicKey | None,
    wechatpay_public_key_id: str | None,
    platform_certificates: Sequence[PemSource] | None,
    apiv3_key: str | None,
    download_certificates: bool | None,
    base_url: str,
    backup_url: str | None,
    failover: bool,
    retry: RetryPolicy | None,
    timeout: TimeoutLike | None,
    time_window: int,
    clock: Callable[[], float],
    refresh_backoff: float,
) -> Config:
    if not mchid or not serial_no:
        raise ConfigurationError("mchid and serial_no (the merchant API certificate serial) are required")
    try:
        key = private_key if isinstance(private_key, rsa.RSAPrivateKey) else load_private_key(private_key)
    except KeyLoadError as exc:
        raise KeyConfigurationError(f"private_key: {exc}") from exc
    except OSError as exc:  # a path that cannot be read was a bare FileNotFoundError
        raise KeyConfigurationError(f"private_key: {unreadable(exc)}") from exc
    if apiv3_key is not None:
        check_apiv3_key(apiv3_key)
    try:
        keys = KeySet(
            public_key=wechatpay_public_key,
            public_key_id=wechatpay_public_key_id,
            certificates=platform_certificates or (),
            time_window=time_window,
            clock=clock,
        )
    except KeyLoadError as exc:
        raise KeyConfigurationError(str(exc)) from exc
    except OSError as exc:
        raise KeyConfigurationError(
            f"wechatpay_public_key / platform_certificates: {unreadable(exc)}"
        ) from exc
    download = apiv3_key is not None if download_certificates is None else download_certificates
    if download and apiv3_key is None:
        raise ConfigurationError(
            "download_certificates needs apiv3_key (certificates arrive encrypted with it)"
        )
    if keys.empty and not download and apiv3_key is not None:  # it said "or apiv3_key", which was given
        raise ConfigurationError(
            "download_certificates=False leaves no WeChat Pay key to verify answers with: pass "
            "wechatpay_public_key + wechatpay_public_key_id or platform_certificates, or let the "
            "apiv3_key download the platform certificates"
        )
    if keys.empty and not download:
        raise ConfigurationError(
            "no way to verify WeChat Pay: pass wechatpay_public_key + wechatpay_public_key_id "
            "(public-key mode), or apiv3_key (platform certificates are downloaded), or both"
        )
    base = checked_origin("base_url", base_url)
    backup = checked_origin("backup_url", backup_url) if backup_url else None
    if base not in WECHATPAY_ORIGINS:  # a key the sandbox rotated: say where its keys are
        keys.unknown_hint = SANDBOX_KEYS_HINT
    if failover and backup is None:
        if base != c.PRIMARY_HOST:
            raise ConfigurationError("failover=True with a custom base_url needs backup_url")
        backup = c.BACKUP_HOST
    try:
        bounds = DEFAULT_TIMEOUT if timeout is None else as_timeout(timeout)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    return Config(
        mchid=mchid,
        serial_no=serial_no,
        private_key=key,
        keys=keys,
        apiv3_key=apiv3_key,
        download_certificates=download,
        base_url=base,
        backup_url=backup if (failover or backup_url) else None,
        retry=retry or RetryPolicy(),
        timeout=bounds,
        user_agent=f"wxpartner/{__version__} ({platform.system().lower()}) Python/{platform.python_version()}",
        clock=clock,
        refresh_backoff=refresh_backoff,
    )


class Engine:
    """Transport-independent request logic for one merchant (no global state: one per client)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.keys = config.keys
        self._last_refresh: float | None = None
        self._missing: dict[str, float] = {}  # serial -> when a refresh last failed to find it
        self.certificates_note = ""  # why certificates could not be downloaded, for error messages

    # -- signing ----------------------------------------------------------------------------------
    def sign(self, request: Outgoing, *, timestamp: int | None = None, nonce: str | None = None) -> None:
        """Sign the request exactly as it goes on the wire: encoded path + raw query, body bytes. Every
        attempt gets a fresh nonce and timestamp (WeChat Pay refuses a replayed nonce)."""
        ts = str(int(self.config.clock()) if timestamp is None else timestamp)
        nonce_str = nonce or new_nonce()
        message = request_message(request.method, request.target, ts, nonce_str, request.body)
        signature = sign(self.config.private_key, message)
        auth = Authorization(self.config.mchid, nonce_str, ts, self.config.serial_no, signature)
        request.headers.append((c.H_AUTHORIZATION, auth.header_value()))

    def build(
        self, host: str, call: Call[Any], body: bytes, headers: Mapping[str, str], *, retried: bool = False
    ) -> Outgoing:
        ua = self.config.user_agent + (" (Retried)" if retried else "")
        h = {c.H_ACCEPT: "application/json", c.H_USER_AGENT: ua, **headers, **call.headers}
        if body:
            h[c.H_CONTENT_TYPE] = "application/json"
        request = outgoing(call.method, host, call.path, call.query, h, body)
        self.sign(request)
        return request

    # -- body -------------------------------------------------------------------------------------
    def encode_body(self, call: Call[Any]) -> Flow[tuple[bytes, dict[str, str]]]:
        headers: dict[str, str] = {}
        body = call.body
        if isinstance(body, bytes):
            return body, self._serial_header(headers)
        if body is None:
            data: Any = None
        elif isinstance(body, BaseModel):
            data = body.model_dump(mode="json", exclude_none=True, by_alias=True)
        else:
            data = without_nulls(body if type(body) is dict else dict(body))
        pointers = sensitive_pointers(call.shape or body, data, call.sensitive) if data is not None else []
        if pointers:
            if not isinstance(body, BaseModel):  # the caller's mapping, nested values and all
                data = json.loads(json.dumps(data))  # a private copy to encrypt: theirs stays plain
            key = self.keys.encryption_key()
            if key is None and self.config.download_certificates:
                yield Refresh(None)
                key = self.keys.encryption_key()
            if key is None:
                raise ConfigurationError(
                    f"{call.op_id or call.path} has sensitive fields to encrypt but no WeChat Pay key is "
                    "available: configure wechatpay_public_key(+_id) or apiv3_key (certificates)"
                    + (f"; {self.certificates_note}" if self.certificates_note else "")
                )
            encrypt_at(data, pointers, key.public_key)
            headers[c.H_WECHATPAY_SERIAL] = key.key_id  # names the key that encrypted the fields
        raw = b"" if data is None else json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
        return raw, self._serial_header(headers)

    def _serial_header(self, headers: dict[str, str]) -> dict[str, str]:
        """Name our preferred WeChat Pay key so a migrating merchant's answers come signed with it."""
        if c.H_WECHATPAY_SERIAL not in headers and self.keys.public is not None:
            headers[c.H_WECHATPAY_SERIAL] = self.keys.public.key_id
        return headers

    # -- the exchange -----------------------------------------------------------------------------
    def run(self, call: Call[T]) -> Flow[T]:
        body, headers = yield from self.encode_body(call)
        try:
            resp = yield from self.exchange(call, body, headers)
        except NotFoundError as err:
            if call.gone is None or not gone_on_repeat(call, err):
                raise
            refusal = Response(err.status, err.headers, err.body)
            try:  # taken as a success only when WeChat Pay signed it
                yield from self.verify(refusal)
            except VerificationError:
                raise err from None
            log.info(
                "%s %s: 404 answering a repeat (%s): already done",
                call.method,
                call.path,
                err.after_ambiguous,
            )
            return call.gone()
        if not (call.unsigned_ok and unsigned(resp)):
            try:
                yield from self.verify(resp, expects_json=call.expects_json)
            except VerificationError as err:
                err.status = resp.status
                raise
        return call.decode(resp)

    def exchange(self, call: Call[Any], body: bytes, headers: Mapping[str, str]) -> Flow[Response]:
        """Send with retries and failover; returns the 2xx answer unverified, raises ApiError otherwise.

        Never repeats a request that may have taken effect unless the call is idempotent: a failure
        after the bytes left (read timeout, dropped connection, a proxy's 502) is ambiguous."""
        cfg = self.config
        hosts = [cfg.base_url] + ([cfg.backup_url] if cfg.backup_url else [])
        timeout = call.timeout or cfg.timeout
        host = 0
        attempt = 0
        ambiguous: str | None = None  # the first attempt that may have taken effect, and how it ended
        while True:
            attempt += 1
            outcome = yield Send(self.build(hosts[host], call, body, headers, retried=attempt > 1), timeout)
            if isinstance(outcome, httpx.LocalProtocolError):
                # The request cannot be written as given (a header value h11 refuses...): refused before
                # anything left, on every host and every attempt alike, as a bad framing is refused
                # while the request is built.
                raise outcome
            if isinstance(outcome, BaseException):
                sent = not isinstance(outcome, NOT_SENT_ERRORS)
                may_repeat = not sent or call.idempotent
                log.info(
                    "%s %s: %s (%s)",
                    call.method,
                    call.path,
                    type(outcome).__name__,
                    "sent" if sent else "not sent",
                )
                if sent and call.idempotent and ambiguous is None:
                    ambiguous = f"attempt {attempt}: {type(outcome).__name__} after the request was sent"
                if may_repeat and host + 1 < len(hosts):
                    host += 1  # fail over once: the primary host could not be reached
                    attempt -= 1
                    continue
                if may_repeat and attempt < cfg.retry.max_attempts:
                    yield Sleep(cfg.retry.delay(attempt))
                    continue
                where = "after the request was sent" if sent else "before the request was sent"
                raise TransportError(
                    f"{call_name(call)}{call.method} {hosts[host]}{call.path} failed {where}: "
                    f"{type(outcome).__name__}: {failure_text(outcome, timeout, call.timeout is not None)}"
                    + (f" ({attempt} attempts)" if attempt > 1 else "")
                    + ("" if may_repeat else " (not retried: the call may have taken effect)"),
                    sent=sent,
                    cause=outcome,
                )
            resp: Response = outcome
            log.debug(
                "%s %s -> %s (attempt %d, Request-ID %s)",
                call.method,
                call.path,
                resp.status,
                attempt,
                resp.request_id,
            )
            if 200 <= resp.status < 300:
                return resp
            err = api_error_from(resp.status, resp.content, resp.headers)
            # 429 and SERVICE_UNAVAILABLE turn the request away unhandled: any call may be repeated. A
            # 500 SYSTEM_ERROR asks for a repeat "with the same parameters", which is one effect only
            # where the server knows the call by them (out_card_no, business_code, ...): W13 has no
            # such key, and a 500 may follow a commit (our own server answers 500 when a commit's
            # acknowledgement is lost), so a non-idempotent call is not repeated on any 5xx.
            repeat = (call.idempotent and resp.status >= 500) or (
                err.retryable and not isinstance(err, ServerError)
            )
            if not call.idempotent and err.retryable and isinstance(err, ServerError):
                err.args = (f"{err.args[0]} ({not_repeated(call)})",)
            wait = retry_after_seconds(resp.headers.get("retry-after"))
            if wait is not None and wait > cfg.retry.max_retry_after:
                repeat = False
            if ambiguous is not None and resp.status < 500 and resp.status != 429:
                # A refusal of a repeat: the first may have done what was asked (WeChat Pay does not
                # document what a repeated revoke or add answers), so the refusal may describe that.
                err.after_ambiguous = ambiguous
                err.args = (f"{err.args[0]} ({after_ambiguous_note(call, ambiguous)})",)
            elif ambiguous is None and repeat and resp.status >= 500 and err.code != "SERVICE_UNAVAILABLE":
                ambiguous = f"attempt {attempt}: {resp.status} {err.code}"
            if repeat and attempt < cfg.retry.max_attempts:
                log.info(
                    "%s %s: %s %s, retrying (Request-ID %s)",
                    call.method,
                    call.path,
                    err.status,
                    err.code,
                    err.request_id,
                )
                yield Sleep(cfg.retry.delay(attempt, wait, rate_limited=isinstance(err, RateLimitedError)))
                continue
            raise err

    def verify(self, resp: Response, *, expects_json: bool = True) -> Flow[None]:
        try:
            key = self.keys.verify_signed(resp.headers, resp.content)
        except UnknownSerial as unknown:
            if not self.config.download_certificates or not downloadable(unknown.serial):
                raise self.keys.unknown_serial_error(
                    unknown.serial,
                    "certificate download is off (pass apiv3_key to download platform certificates)",
                    resp.request_id,
                ) from None
            yield Refresh(unknown.serial)
            try:
                key = self.keys.verify_signed(resp.headers, resp.content)
            except UnknownSerial as still:
                note = self.certificates_note or "it is not among the certificates /v3/certificates lists"
                raise self.keys.unknown_serial_error(still.serial, note, resp.request_id) from None
        resp.verified_by = key.key_id
        content_type = resp.headers.get("content-type", "")
        if expects_json and resp.content and not content_type.lower().startswith("application/json"):
            raise VerificationError(
                "bad_content_type",
                f"a 2xx answer with a body must be application/json, got {content_type!r}",
                request_id=resp.request_id,
            )

    # -- platform certificates ----------------------------------------------------------------------
    def refresh_needed(self, serial: str | None) -> bool:
        """Asked by the driver under its refresh lock: False if another caller already did the work or
        the refresh is throttled (a serial we just failed to find, or a refresh a moment ago)."""
        if serial is not None and self.keys.knows(serial):
            return False
        if serial is None and self.keys.encryption_key() is not None:
            return False
        now = self.config.clock()
        if serial is not None and now - self._missing.get(serial, -1e18) < self.config.refresh_backoff:
            return False
        last = self._last_refresh
        return last is None or now - last >= min(MIN_REFRESH_GAP, self.config.refresh_backoff)

    def after_refresh(self, serial: str | None) -> None:
        if serial is not None and not self.keys.knows(serial):
            self._missing[serial] = self.config.clock()
            if len(self._missing) > 256:  # forged serials must not grow this without bound
                self._missing.pop(next(iter(self._missing)))

    def refresh_certificates(self) -> Flow[list[str]]:
        """GET /v3/certificates, decrypt with the APIv3 key, check the answer is signed by one of the
        certificates it carries (or a key we already trust), then trust the new certificates. A
        public-key-only merchant gets 404 here: that is noted for error messages, never fatal."""
        if self.config.apiv3_key is None:
            raise ConfigurationError("downloading platform certificates needs apiv3_key")
        self._last_refresh = self.config.clock()
        call: Call[Response] = Call(
            "GET", "/v3/certificates", raw_response, idempotent=True, op_id="certificates"
        )
        body, headers = yield from self.encode_body(call)
        try:
            resp = yield from self.exchange(call, body, headers)
        except ApiError as err:
            self.certificates_note = (
                f"GET /v3/certificates answered {err.status} {err.code} ({err.message}); a merchant in "
                "public-key mode has no platform certificates: configure wechatpay_public_key and "
                "wechatpay_public_key_id"
            )
            return []
        certs = decrypt_certificates(self.config.apiv3_key, resp.content)
        candidate = KeySet(certificates=certs, time_window=self.keys.time_window, clock=self.keys.clock)
        try:
            candidate.verify_signed(resp.headers, resp.content)
        except UnknownSerial:
            try:
                self.keys.verify_signed(resp.headers, resp.content)  # signed by a key we already trust?
            except UnknownSerial as unknown:
                raise self.keys.unknown_serial_error(
                    unknown.serial,
                    "the certificate download itself is signed by an unknown key",
                    resp.request_id,
                ) from None
        self.certificates_note = ""
        return self.keys.add_certificates(certs)


def gone_on_repeat(call: Call[Any], err: ApiError) -> bool:
    """``err`` answers a repeat of a delete by value after an ambiguous attempt, and says that what it
    deletes is not there (404 naming ``call.gone_field``, not another of the path's resources)."""
    detail = err.detail if isinstance(err.detail, Mapping) else {}
    return (
        err.after_ambiguous is not None
        and err.status == 404
        and err.code == "RESOURCE_NOT_EXISTS"
        and bool(call.gone_field)
        and detail.get("field") == call.gone_field
    )


def not_repeated(call: Call[Any]) -> str:
    """Why a non-idempotent call's SYSTEM_ERROR is raised instead of retried, and what to do."""
    if call.op_id and call.op_id != "request":
        return (
            f"not retried: {call.op_id} is not idempotent and a 500 does not say it had no effect; "
            "check before repeating it (see the SDK README: which calls are safe to repeat)"
        )
    return (
        f"not retried: {call.method} {call.path} is not idempotent and a 500 does not say it had no "
        "effect; pass idempotent=True if repeating it is harmless"
    )


def after_ambiguous_note(call: Call[Any], ambiguous: str) -> str:
    """What a refusal of a repeat says: the earlier attempt may have taken effect."""
    what = call.op_id if call.op_id and call.op_id != "request" else f"{call.method} {call.path}"
    return (
        f"this answers a repeat of {what}; {ambiguous} and may have taken effect, so this refusal may "
        "describe the state it left: look before acting on it"
    )


def call_name(call: Call[Any]) -> str:
    """``webizpay.get_quota_card: `` for a typed operation (the server's journal names it so too)."""
    return f"{call.op_id}: " if call.op_id and call.op_id != "request" else ""


# httpx's timeout classes (raised by the SDK's own HTTP too) and the phase each names.
_TIMEOUT_PHASES: tuple[tuple[type[httpx.TimeoutException], str], ...] = (
    (httpx.ConnectTimeout, "connect"),
    (httpx.ReadTimeout, "read"),
    (httpx.WriteTimeout, "write"),
    (httpx.PoolTimeout, "pool"),
)


def failure_text(outcome: BaseException, timeout: httpx.Timeout, per_call: bool) -> str:
    """What a transport failure says; a timeout names its phase and the seconds in force, whichever
    HTTP raised it (httpx's own said only "timed out") and whether the call or the client set them."""
    for kind, phase in _TIMEOUT_PHASES:
        if isinstance(outcome, kind):
            return timed_out(timeout, phase, "this call's timeout=" if per_call else "the client's timeout=")
    return str(outcome)


def answer(status: int, headers: httpx.Headers, content: bytes) -> Response:
    return Response(status, decode_headers(headers.raw), content)


def decode_headers(raw: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
    """Lower-cased names, a repeated header's values joined with ", " in their order; decoded as httpx
    decodes them (ASCII, else UTF-8, else Latin-1: one choice for the whole set), once for all pairs
    (httpx's ``multi_items()`` re-reads the encoding per header)."""
    encoding = "ascii"
    if not all(k.isascii() and v.isascii() for k, v in raw):
        try:
            for k, v in raw:
                k.decode("utf-8")
                v.decode("utf-8")
            encoding = "utf-8"
        except UnicodeDecodeError:
            encoding = "iso-8859-1"
    merged: dict[str, str] = {}
    for k, v in raw:
        name = k.decode(encoding).lower()
        value = v.decode(encoding)
        merged[name] = f"{merged[name]}, {value}" if name in merged else value
    return merged
