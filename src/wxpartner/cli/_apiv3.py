"""APIv3 as a merchant: sign and send requests (flags, else connection.json), and check WeChat Pay's
signatures on what comes back (``call``, ``bills``, ``verify-callback``)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import click
import httpx
from cryptography.hazmat.primitives.asymmetric import rsa

from ..client.base import connection_merchants
from ..client.errors import ConfigurationError
from ..protocol import constants as c
from ..protocol import keys as k
from ..protocol.authorization import Authorization
from ..protocol.messages import canonical_url, request_message, response_message
from ..protocol.signing import new_nonce, sign, verify
from ._files import private_key, public_key, read_bytes
from ._http import Target


class PublicKeys(dict[str, rsa.RSAPublicKey]):
    """WeChat Pay keys by key id; ``note`` says why the server's own list is not among them (an unknown
    key's verdict gives it: after a rotation, only the control API knows the new key)."""

    note: str = ""


MAX_RETRY_AFTER = 60.0  # a longer Retry-After is said, not waited for
F = TypeVar("F", bound=Callable[..., Any])


def merchant_key_options(fn: F) -> F:
    """``--merchant``, ``--serial`` and ``--key``: the merchant a command signs as (else connection.json's
    service provider)."""
    fn = click.option(
        "--key",
        "key_path",
        default=None,
        type=click.Path(dir_okay=False),
        help="merchant private key PEM (default: the merchant's in connection.json)",
    )(fn)
    fn = click.option(
        "--serial",
        "serial_no",
        default=None,
        help="merchant certificate serial (default: the merchant's in connection.json)",
    )(fn)
    return merchant_option(fn)


def merchant_option(fn: F) -> F:
    return click.option(
        "--merchant",
        "merchant",
        default=None,
        metavar="NAME|MCHID",
        help="act as this demo merchant of connection.json's `merchants`: service_provider (the default) "
        "or channel (apply4subject's caller), by name or mchid; its serial, key, APIv3 key and WeChat Pay "
        "keys are used (--mchid, --serial, --key, --apiv3-key override one value each)",
    )(fn)


def _entries(t: Target) -> dict[str, dict[str, Any]]:
    """connection.json's demo merchants by name, read as the SDK's ``from_connection_info`` reads them
    (``connection_merchants``: this version's ``merchants`` and older files' top-level and ``channel_*``
    fields alike), each entry's settings checked to be text (a hand-edited number was a TypeError
    traceback)."""
    try:
        return connection_merchants(t.info)
    except ConfigurationError as exc:
        raise click.ClickException(
            f"connection settings {t.connection_path}: {exc}; restart `wxpartner serve` to write the file again"
        ) from None


def _choices(entries: dict[str, dict[str, Any]]) -> str:
    return ", ".join(f"{name} ({entry.get('mchid')})" for name, entry in entries.items())


def acting_as(t: Target, merchant: str | None, mchid: str | None) -> dict[str, Any]:
    """connection.json's settings of the merchant a command acts as: ``--merchant`` names a
    ``merchants`` entry by name or mchid; else an ``--mchid`` that is one of them takes that entry (its
    serial and key, not the service provider's); a merchant number whose pair is in the data dir's
    ``keys/<mchid>/`` takes that pair; else the top-level fields (the service provider's). An ``--mchid``
    with no keys there gets only itself (``--serial`` and ``--key`` must follow)."""
    entries = _entries(t)
    if merchant is not None:
        for name, entry in entries.items():
            if merchant in (name, entry.get("mchid")):
                return {**entry, "merchant": name}
        found = data_dir_keys(t, merchant)
        if found is not None:
            return found
        if not entries:
            raise click.ClickException(
                f"--merchant {merchant}: {t.connection_path} does not exist; pass --data-dir with the data dir "
                "`wxpartner serve` uses"
                if not t.info
                else f"--merchant {merchant}: {t.connection_path} names no merchants (a server started with "
                "--no-demo has none); pass --mchid, --serial and --key"
            )
        raise click.ClickException(
            f"--merchant {merchant}: not a merchant of {t.connection_path}; choose one of {_choices(entries)}, "
            "or pass --mchid, --serial and --key for another merchant"
        )
    if mchid is None or mchid == t.info.get("mchid"):
        # the service provider as from_connection_info reads it (older files and edited copies alike)
        sp = entries.get("service_provider")
        return {**sp, "merchant": "service_provider"} if sp else dict(t.info)
    for name, entry in entries.items():
        if entry.get("mchid") == mchid:
            return {**entry, "merchant": name}
    return data_dir_keys(t, mchid) or {"mchid": mchid}


def data_dir_keys(t: Target, mchid: str) -> dict[str, Any] | None:
    """A merchant's pair in ``<data-dir>/keys/<mchid>/`` (a scenario's ``generate: true`` writes it there,
    as ``serve`` does the demo merchants'): its serial read from the certificate."""
    if not (mchid.isascii() and mchid.isdigit()):  # a merchant number names the directory: never '../x'
        return None
    folder = t.connection_path.parent / "keys" / mchid
    cert, key = folder / "apiclient_cert.pem", folder / "apiclient_key.pem"
    if not (cert.is_file() and key.is_file()):
        return None
    try:
        serial = k.certificate_serial(k.load_certificate(read_bytes(cert, "certificate")))
    except (k.KeyLoadError, ValueError) as exc:
        raise click.ClickException(f"certificate {cert}: {exc}") from None
    return {"mchid": mchid, "serial_no": serial, "private_key_path": str(key)}


def wechatpay_key_file(path: str) -> tuple[str, rsa.RSAPublicKey]:
    """(key id, key) of a WeChat Pay key file: a platform certificate's serial, else the file's name
    (``PUB_KEY_ID_….pem``, as ``<data-dir>/platform/`` names them)."""
    pem = read_bytes(path, "--public-key")
    try:
        key_id = k.certificate_serial(k.load_certificate(pem)) if b"CERTIFICATE" in pem else Path(path).stem
        return key_id, k.load_public_key(pem)
    except (k.KeyLoadError, ValueError) as exc:
        raise click.ClickException(
            f"--public-key {path}: not a WeChat Pay public key or platform certificate PEM ({exc})"
        ) from None


def other_merchants(t: Target, settings: dict[str, Any]) -> dict[str, str]:
    """The APIv3 keys of connection.json's other merchants, by ``--merchant`` name: a callback that does
    not decrypt with one merchant's key may be another's."""
    return {
        name: entry["apiv3_key"]
        for name, entry in _entries(t).items()
        if entry.get("apiv3_key") and entry.get("mchid") != settings.get("mchid")
    }


def platform_keys(t: Target, settings: dict[str, Any] | None = None) -> PublicKeys:
    """WeChat Pay keys to check answers' and callbacks' signatures: from the control API, else the key
    files of the merchant acted as (``settings``; default connection.json's top level)."""
    found = PublicKeys()
    if t.token:
        try:
            for row in t.control("GET", "/platform-keys")["data"]:
                pem = row.get("certificate") or row["public_key"]
                found[row["key_id"]] = k.load_public_key(pem.encode())
        except click.ClickException as exc:
            found.note = (
                f"the control API did not list the server's keys ({exc.message}); the key files named in "
                "connection.json are those of the server's start"
            )
    else:
        found.note = (
            "no sandbox token to ask the control API for the server's keys; the key files named in "
            f"{t.connection_path} are those of the server's start (after a rotation: --token, or restart serve)"
        )
    settings = t.info if settings is None else settings
    for key_id_name, path_name in (
        ("wechatpay_public_key_id", "wechatpay_public_key_path"),
        ("platform_certificate_serial", "platform_certificate_path"),
    ):
        key_id, path = settings.get(key_id_name), settings.get(path_name)
        if key_id and path and key_id not in found and Path(path).is_file():
            found[key_id] = public_key(read_bytes(path, "WeChat Pay key"), path)
    return found


def check_signature(headers: Any, body: bytes, keys: PublicKeys) -> tuple[bool, str]:
    """(verified, why) for an answer or a callback: ``headers`` needs a case-insensitive ``get``."""
    signature = headers.get(c.H_SIGNATURE)
    if not signature:
        return False, "no Wechatpay-Signature header"
    if signature.startswith(c.SIGNATURE_PROBE_PREFIX):
        return False, "signature probe (WECHATPAY/SIGNTEST/...): a client must reject it"
    serial = headers.get(c.H_SERIAL) or ""
    key = keys.get(serial)
    if key is None:
        note = getattr(keys, "note", "")
        return False, f"unknown WeChat Pay key {serial!r}" + (f" ({note})" if note else "")
    message = response_message(headers.get(c.H_TIMESTAMP) or "", headers.get(c.H_NONCE) or "", body)
    if not verify(key, message, signature):
        return False, f"signature does not verify with {serial}"
    return True, f"verified with {serial}"


def request_target(path: str) -> str:
    """The path and query to request: a full URL loses its scheme and host, a missing leading '/' is
    added, and what httpx percent-encodes (a space, non-ASCII) is encoded. Signer.send signs what
    httpx then sends (dot segments resolved)."""
    try:
        parts = urlsplit(path)
    except ValueError as exc:  # 'http://[::1/x': was a traceback
        raise click.BadParameter(f"{path!r} is not a request path: {exc}") from None
    raw = parts.path if parts.path.startswith("/") else "/" + parts.path
    try:
        url = httpx.URL(canonical_url(raw, parts.query))
    except httpx.InvalidURL as exc:
        shown = path if len(path) <= 80 else path[:80] + "…"
        raise click.BadParameter(f"{shown!r} is not a request path: {exc}") from None
    return url.raw_path.decode("ascii")


class Signer:
    """Signs APIv3 requests as one merchant (flags, else connection.json) and sends them."""

    def __init__(self, t: Target, mchid: str, serial_no: str, key_path: str) -> None:
        self.t, self.mchid, self.serial_no = t, mchid, serial_no
        self.key = private_key(key_path)

    @classmethod
    def of(
        cls,
        t: Target,
        mchid: str | None,
        serial_no: str | None,
        key_path: str | None,
        settings: dict[str, Any] | None = None,
    ) -> Signer:
        """Flags, else ``settings`` (``acting_as``: the merchant's own values in connection.json)."""
        settings = t.info if settings is None else settings
        mchid = mchid or settings.get("mchid")
        serial_no = serial_no or settings.get("serial_no")
        key_path = key_path or settings.get("private_key_path")
        missing = [
            flag
            for flag, value in (("--mchid", mchid), ("--serial", serial_no), ("--key", key_path))
            if not value
        ]
        if missing:
            raise click.ClickException(missing_identity(t, missing, mchid))
        assert mchid and serial_no and key_path
        return cls(t, mchid, serial_no, key_path)

    def send(
        self, method: str, path: str, body: bytes = b"", extra: dict[str, str] | None = None
    ) -> tuple[str, httpx.Response]:
        """(the URL as signed, the response). A full URL is fine: only its path and query are used."""
        method = method.upper()
        headers = {"Accept": "application/json", "User-Agent": "wxpartner-cli/1.0"}
        if body:
            headers["Content-Type"] = "application/json"
        headers.update(extra or {})
        with self.t.client() as http:
            # Built first, then signed: the target signed is the one httpx sends (it also resolves
            # '.' and '..' segments, which signing the text as typed missed: SIGN_ERROR).
            request = http.build_request(method, request_target(path), content=body or None, headers=headers)
            target = request.url.raw_path.decode("ascii")
            ts, nonce = str(int(time.time())), new_nonce()
            signature = sign(self.key, request_message(method, target, ts, nonce, body))
            auth = Authorization(self.mchid, nonce, ts, self.serial_no, signature)
            if not any(name.lower() == "authorization" for name in extra or {}):  # -H Authorization wins
                request.headers["Authorization"] = auth.header_value()
            try:
                return target, http.send(request)
            except httpx.HTTPError as exc:
                raise self.t.unreachable(f"{method} {target}: {type(exc).__name__}", exc) from None


def missing_identity(t: Target, missing: list[str], mchid: str | None) -> str:
    """Why a command cannot sign: which flags are missing, and what connection.json could give."""
    need = ", ".join(missing[:-1]) + " and " + missing[-1] if len(missing) > 1 else missing[0]
    if not t.info:
        return (
            f"need {need}: {t.connection_path} does not exist (pass --data-dir with the data dir "
            "`wxpartner serve` uses, or give the merchant's --mchid, --serial and --key)"
        )
    entries = _entries(t)
    if mchid and entries and all(entry.get("mchid") != mchid for entry in entries.values()):
        return (
            f"need {need}: {t.connection_path} has no keys for merchant {mchid} (it has "
            f"{_choices(entries)}: --merchant NAME), nor has {t.connection_path.parent / 'keys' / mchid}; "
            "give this merchant's certificate serial and private key"
        )
    return f"need {need}: {t.connection_path} names no merchant to sign as (a server started with --no-demo)"


def retry_after(resp: httpx.Response) -> float | None:
    """The seconds a 429 or 503 asks to wait (``Retry-After`` in seconds), None when it names none
    (an injected fault: the wait is unknown) or something else (an HTTP date, text, a negative)."""
    if resp.status_code not in (429, 503):
        return None
    try:
        wait = float(resp.headers.get("Retry-After", ""))
    except ValueError:
        return None
    return wait if math.isfinite(wait) and wait >= 0 else None


def send_patiently(
    signer: Signer,
    method: str,
    path: str,
    body: bytes = b"",
    extra: dict[str, str] | None = None,
    *,
    retries: int,
    note: Callable[[str], None],
) -> tuple[str, httpx.Response]:
    """``signer.send``, repeated up to ``retries`` times (signed afresh) while the answer is a 429 or
    503 with a ``Retry-After`` of at most MAX_RETRY_AFTER seconds, after waiting that long; ``note``
    says each wait (on stderr: stdout stays the answer)."""
    for attempt in range(retries + 1):
        target, resp = signer.send(method, path, body, extra)
        wait = retry_after(resp)
        if wait is None or attempt == retries or wait > MAX_RETRY_AFTER:
            return target, resp
        note(
            f"{resp.status_code} {_code(resp)}: waiting {wait:g} s as its Retry-After asks, then repeating "
            f"({attempt + 1} of {retries})"
        )
        time.sleep(wait)
    raise AssertionError("unreachable")  # the loop returns on its last attempt


def _code(resp: httpx.Response) -> str:
    try:
        found = resp.json().get("code", "")
    except (ValueError, AttributeError):
        return ""
    return str(found)
