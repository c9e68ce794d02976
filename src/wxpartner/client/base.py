"""Configuration shared by ``Client`` and ``AsyncClient`` (one client per merchant; no global state,
so any number of merchants live side by side in one process)."""

from __future__ import annotations

import difflib
import json
import os
import ssl
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypedDict, TypeVar, Unpack

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa

from ..protocol import constants as c
from ..protocol.keys import PemSource
from .core import (
    UNKNOWN_SERIAL_BACKOFF,
    Call,
    Config,
    Engine,
    Response,
    make_config,
    query_text,
    raw_response,
    unreadable,
)
from .errors import ConfigurationError
from .keys import KeySet
from .policy import RetryPolicy, TimeoutLike, as_timeout

Self = TypeVar("Self", bound="BaseClient")


class ClientOptions(TypedDict, total=False):
    """The keyword options of both clients (see ``BaseClient``)."""

    wechatpay_public_key: PemSource | rsa.RSAPublicKey | None
    wechatpay_public_key_id: str | None
    platform_certificates: Sequence[PemSource] | None
    apiv3_key: str | None
    download_certificates: bool | None
    base_url: str
    backup_url: str | None
    failover: bool
    retry: RetryPolicy | None
    timeout: TimeoutLike | None
    time_window: int
    clock: Callable[[], float]
    refresh_backoff: float
    tls_context: ssl.SSLContext | None


class ConnectionOverrides(ClientOptions, total=False):
    """What ``from_connection_info`` lets the caller set beside the file (checked by mypy as the
    constructor's options are; it took ``**Any``, so ``timeout="5"`` passed the type checker)."""

    http_client: object  # the client's own kind (httpx.Client / AsyncClient); its constructor checks it
    transport: object


OPTION_NAMES = frozenset(ClientOptions.__annotations__)


def unexpected_option(kind: str, given: Mapping[str, object]) -> str:
    """Python's own words for a misspelt keyword, with the closest option. The options were read with
    ``.get()``, so ``retyr=NO_RETRIES`` or ``timout=2`` was silently dropped: the client kept its
    retries and its 30 s read timeout, and nothing said so (mypy does; a script without it did not)."""
    name = next(key for key in given if key not in OPTION_NAMES)  # the first, as Python names it
    known = sorted(OPTION_NAMES | {"http_client", "transport"})
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; the options are {', '.join(known)}"
    return f"{kind}() got an unexpected keyword argument {name!r}{hint}"


# Which of connection.json's demo merchants ``from_connection_info`` acts as.
ConnectionMerchant = Literal["service_provider", "channel"]


class BaseClient:
    """Arguments (keyword-only after the first three):

    - ``mchid``, ``serial_no`` (merchant API certificate serial), ``private_key`` (PKCS#1 or PKCS#8 PEM as
      text/bytes, a file path, or a loaded key).
    - WeChat Pay keys, at least one way: ``wechatpay_public_key`` + ``wechatpay_public_key_id``
      (public-key mode), and/or ``apiv3_key`` so platform certificates are downloaded from
      ``/v3/certificates`` lazily (only when an unknown serial appears or a field must be encrypted),
      and/or ``platform_certificates`` (PEM list) already at hand. Give both during a migration.
    - ``base_url`` (default ``https://api.mch.weixin.qq.com``; a wxpartner server is just its URL; an
      origin, ``scheme://host[:port]`` without a path, else ``ConfigurationError``),
      ``failover`` + ``backup_url`` (``https://api2.mch.weixin.qq.com`` by default; used only when the
      primary host cannot be reached), ``retry`` (``RetryPolicy``), ``timeout`` (seconds or
      ``httpx.Timeout``), ``time_window`` (answer timestamp tolerance, 300 s), ``clock``,
      ``refresh_backoff`` (seconds before an unknown serial may trigger another certificate download).
    - ``tls_context`` (``ssl.SSLContext``): whom to trust over https; default httpx's (certifi, or
      ``SSL_CERT_FILE``). ``from_connection_info`` makes one that also trusts a ``serve --tls``
      authority. Refused beside an ``http_client`` or ``transport`` of your own, which trust as they
      were made to (httpx would silently ignore it).
    """

    def __init__(
        self,
        mchid: str,
        serial_no: str,
        private_key: PemSource | rsa.RSAPrivateKey,
        **options: Unpack[ClientOptions],
    ) -> None:
        o = options
        if not OPTION_NAMES.issuperset(o):
            raise TypeError(unexpected_option(type(self).__name__, o))
        self.config: Config = make_config(
            mchid=mchid,
            serial_no=serial_no,
            private_key=private_key,
            wechatpay_public_key=o.get("wechatpay_public_key"),
            wechatpay_public_key_id=o.get("wechatpay_public_key_id"),
            platform_certificates=o.get("platform_certificates"),
            apiv3_key=o.get("apiv3_key"),
            download_certificates=o.get("download_certificates"),
            base_url=o.get("base_url", c.PRIMARY_HOST),
            backup_url=o.get("backup_url"),
            failover=o.get("failover", False),
            retry=o.get("retry"),
            timeout=o.get("timeout"),
            time_window=o.get("time_window", c.DEFAULT_TIME_WINDOW_SECONDS),
            clock=o.get("clock", time.time),
            refresh_backoff=o.get("refresh_backoff", UNKNOWN_SERIAL_BACKOFF),
        )
        self._engine = Engine(self.config)
        self.tls_context: ssl.SSLContext | None = o.get("tls_context")

    @property
    def mchid(self) -> str:
        return self.config.mchid

    @property
    def keys(self) -> KeySet:
        """The trusted WeChat Pay keys."""
        return self.config.keys

    def __repr__(self) -> str:  # never shows key material
        return f"{type(self).__name__}(mchid={self.config.mchid!r}, base_url={self.config.base_url!r})"

    @classmethod
    def from_connection_info(
        cls: type[Self],
        info: Mapping[str, Any] | str | Path | None = None,
        *,
        merchant: ConnectionMerchant = "service_provider",
        **overrides: Unpack[ConnectionOverrides],
    ) -> Self:
        """A client from the ``connection.json`` that ``wxpartner serve`` writes (or that dict), acting as
        one of its demo merchants (a path may also be the data dir that holds the file; none: the data
        dir the CLI commands use, ``$WXPARTNER_DATA_DIR``, else ``.wxpartner``):
        ``merchant="service_provider"`` (the default: webizpay, and recharge
        employees as the platform) or ``"channel"`` (the caller apply4subject answers). ``overrides``
        are the constructor's options (``retry=``, ``timeout=``, ``http_client=`` …), which win over
        the file's."""
        if info is None:  # where `wxpartner call` looks: a script run beside it finds the same server
            info = Path(os.environ.get("WXPARTNER_DATA_DIR") or ".wxpartner").expanduser() / "connection.json"
        data = read_connection_info(info) if isinstance(info, str | Path) else info
        if merchant not in ("service_provider", "channel"):
            raise ConfigurationError(f"merchant must be 'service_provider' or 'channel', got {merchant!r}")
        try:
            entries = connection_merchants(data)
        except ConfigurationError as exc:
            raise ConfigurationError(f"connection info: {exc}") from None
        mchid, serial_no, private_key, kwargs = merchant_settings(cls.__name__, entries, merchant)
        kwargs["base_url"] = data["base_url"]
        own_http = overrides.get("http_client") is not None or overrides.get("transport") is not None
        if data.get("tls_ca_path") and not own_http:  # serve --tls: its authority, besides httpx's
            kwargs["tls_context"] = httpx.create_ssl_context()
            kwargs["tls_context"].load_verify_locations(cafile=data["tls_ca_path"])
        kwargs.update(overrides)
        return cls(mchid, serial_no, private_key, **kwargs)


def no_demo_merchant(kind: str, merchant: str, fields: str) -> ConfigurationError:
    what = "demo channel merchant" if merchant == "channel" else "demo merchant"
    return ConfigurationError(
        f"the connection info names no {what} ({fields}): a server started with --no-demo has none; "
        f"pass mchid, serial_no and private_key to {kind}(...)"
        + (" for a channel merchant of your own" if merchant == "channel" else "")
    )


def read_connection_info(where: str | Path) -> Mapping[str, Any]:
    """The object in ``connection.json``, or in ``<where>/connection.json`` for a data dir. A file that is
    missing, unreadable or no JSON object is a ``ConfigurationError`` saying which (it was a bare
    FileNotFoundError, IsADirectoryError or JSONDecodeError)."""
    path = Path(where)
    if path.is_dir():
        path = path / "connection.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        hint = (
            " (wxpartner serve writes it into its --data-dir)" if isinstance(exc, FileNotFoundError) else ""
        )
        raise ConfigurationError(f"connection info: {unreadable(exc)}{hint}") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise ConfigurationError(f"connection info: {str(path)!r} is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"connection info: {str(path)!r} holds no JSON object")
    return data


IDENTITY = ("mchid", "serial_no", "private_key_path")
# A merchant's settings in connection.json: its identity, its APIv3 key, the WeChat Pay keys that sign
# its answers (each ``merchants`` entry; the top level is the service provider's).
WECHATPAY_KEY_SETTINGS = (
    "wechatpay_public_key_id",
    "wechatpay_public_key_path",
    "platform_certificate_serial",
    "platform_certificate_path",
)
MERCHANT_SETTINGS = (*IDENTITY, "apiv3_key", *WECHATPAY_KEY_SETTINGS)


def edited_top_level(data: Mapping[str, Any], entries: Mapping[str, Any]) -> bool:
    """The top-level merchant differs from ``merchants.service_provider``: a copy of the file edited to
    act as another merchant the way older files allowed (``{**info, "mchid": ...}``); its top-level
    fields are then read as an older file's, as they were before ``merchants`` existed."""
    sp = entries.get("service_provider")
    if not isinstance(sp, Mapping) or not data.get("mchid"):
        return False
    return any(data.get(name) != sp.get(name) for name in IDENTITY)


def connection_merchants(data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """connection.json's demo merchants by name (``service_provider``, ``channel``), each with its
    ``MERCHANT_SETTINGS``: the one reading of both layouts, used by ``from_connection_info`` and by the
    CLI's ``--merchant`` (they read older files differently: the CLI gave the channel no WeChat Pay key).

    - This version's files: each ``merchants`` entry, its own serial, key, APIv3 key and WeChat Pay keys.
    - A file written before ``merchants`` existed: the top level is the service provider; the channel is
      ``channel_mchid``, ``channel_serial_no`` and ``channel_private_key_path`` with the file's WeChat Pay
      keys (the server's, then one set for every merchant) and no APIv3 key (the file's is the
      provider's).
    - A copy whose top level was edited to act as another merchant (``edited_top_level``): the top level
      is the service provider, read as an older file's; the other entries as written.

    A ``merchants`` that is no object of objects, or a setting that is no string (a hand edit), is a
    ``ConfigurationError`` naming it."""
    entries = data.get("merchants")
    if entries is not None and (
        not isinstance(entries, Mapping) or not all(isinstance(e, Mapping) for e in entries.values())
    ):
        raise ConfigurationError("merchants is not an object of merchant entries")
    found: dict[str, dict[str, Any]] = {str(name): dict(entry) for name, entry in (entries or {}).items()}
    if entries is None or edited_top_level(data, entries):
        if data.get("mchid"):
            found["service_provider"] = {name: data.get(name) for name in MERCHANT_SETTINGS}
        if entries is None and data.get("channel_mchid"):
            found["channel"] = {
                "mchid": data.get("channel_mchid"),
                "serial_no": data.get("channel_serial_no"),
                "private_key_path": data.get("channel_private_key_path"),
                "apiv3_key": None,
                **{name: data.get(name) for name in WECHATPAY_KEY_SETTINGS},
            }
    for name, entry in found.items():
        for setting in MERCHANT_SETTINGS:
            if entry.get(setting) is not None and not isinstance(entry[setting], str):
                raise ConfigurationError(f"merchants.{name}.{setting} is not a string")
    return found


def merchant_settings(
    kind: str, entries: Mapping[str, Mapping[str, Any]], merchant: str
) -> tuple[str, str, Path, dict[str, Any]]:
    """The constructor's arguments for ``entries[merchant]`` (``connection_merchants``): this merchant's
    own serial, key, APIv3 key and the WeChat Pay keys that sign its answers (a public key, a platform
    certificate, or both while migrating)."""
    entry = entries.get(merchant)
    if not isinstance(entry, Mapping) or not entry.get("mchid") or not entry.get("serial_no"):
        raise no_demo_merchant(kind, merchant, f"merchants.{merchant} with mchid and serial_no")
    if not entry.get("private_key_path"):
        raise no_demo_merchant(kind, merchant, f"merchants.{merchant}.private_key_path")
    kwargs: dict[str, Any] = {"apiv3_key": entry.get("apiv3_key")}
    if entry.get("wechatpay_public_key_id") and entry.get("wechatpay_public_key_path"):
        kwargs["wechatpay_public_key"] = Path(entry["wechatpay_public_key_path"])
        kwargs["wechatpay_public_key_id"] = entry["wechatpay_public_key_id"]
    if entry.get("platform_certificate_path"):
        kwargs["platform_certificates"] = [Path(entry["platform_certificate_path"])]
    return entry["mchid"], entry["serial_no"], Path(entry["private_key_path"]), kwargs


def check_tls_context(tls_context: ssl.SSLContext | None, http_client: object, transport: object) -> None:
    """A ``tls_context`` beside the caller's own HTTP would be ignored (httpx drops ``verify`` when a
    transport is given): refused, so no one believes a trust setting that is not in force."""
    if tls_context is None:
        return
    given = "http_client" if http_client is not None else "transport" if transport is not None else None
    if given is not None:
        raise ConfigurationError(
            f"tls_context has no effect with {given}=: configure TLS on your own {given} instead"
        )


def generic_call(
    method: str,
    path: str,
    *,
    query: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
    json_body: Any = None,
    content: bytes | None = None,
    idempotent: bool | None = None,
    headers: Mapping[str, str] | None = None,
    sensitive: Sequence[str] = (),
    unsigned_ok: bool = False,
    timeout: TimeoutLike | None = None,
) -> Call[Response]:
    """A signed call to any APIv3 path; GET/HEAD count as idempotent unless told otherwise.
    ``unsigned_ok``: accept an answer without signature headers (a file download); a signed one is
    still verified."""
    # "v3/..." went out as "GET v3/... HTTP/1.1" (no valid request target) on the SDK's own HTTP, and
    # failed in httpx as InvalidURL "Invalid port: '8080v3'", glued to the host.
    if not path.startswith("/"):
        raise ValueError(
            f"path is the API path alone, starting with /v3/ (the host comes from base_url); got {path!r}"
        )
    items = query.items() if isinstance(query, Mapping) else (query or ())
    pairs = tuple((str(k), query_text(v)) for k, v in items if v is not None)
    if pairs and "?" in path:
        # As httpx does, the query= pairs replaced the path's own query: its parameters were dropped
        # without a word (request("GET", "/v3/x?sp_mchid=1", query={"offset": 0}) lost sp_mchid).
        raise ValueError(
            f"path {path!r} has a query and query= is given too, which would replace it: give every "
            "parameter in query= (or all of them in the path)"
        )
    body: Any = content if content is not None else json_body
    return Call(
        method.upper(),
        path,
        raw_response,
        query=pairs,
        body=body,
        idempotent=method.upper() in ("GET", "HEAD") if idempotent is None else idempotent,
        op_id="request",
        headers=dict(headers or {}),
        sensitive=tuple(sensitive),
        expects_json=not unsigned_ok,
        unsigned_ok=unsigned_ok,
        timeout=None if timeout is None else as_timeout(timeout),
    )
