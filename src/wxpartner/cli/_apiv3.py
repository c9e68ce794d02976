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

from ..protocol import constants as c
from ..protocol import keys as k
from ..protocol.authorization import Authorization
from ..protocol.messages import canonical_url, request_message, response_message
from ..protocol.signing import new_nonce, sign, verify
from ._files import private_key, public_key, read_bytes
from ._http import Target

PublicKeys = dict[str, rsa.RSAPublicKey]
MAX_RETRY_AFTER = 60.0  # a longer Retry-After is said, not waited for
F = TypeVar("F", bound=Callable[..., Any])


def merchant_key_options(fn: F) -> F:
    """``--serial`` and ``--key``: the merchant certificate a command signs with (else connection.json)."""
    fn = click.option(
        "--key",
        "key_path",
        default=None,
        type=click.Path(dir_okay=False),
        help="merchant private key PEM (default: connection.json)",
    )(fn)
    return click.option(
        "--serial", "serial_no", default=None, help="merchant certificate serial (default: connection.json)"
    )(fn)


def platform_keys(t: Target) -> PublicKeys:
    """WeChat Pay keys to check response signatures: from the control API, else connection.json files."""
    found: PublicKeys = {}
    if t.token:
        try:
            for row in t.control("GET", "/platform-keys")["data"]:
                pem = row.get("certificate") or row["public_key"]
                found[row["key_id"]] = k.load_public_key(pem.encode())
        except click.ClickException:
            pass
    for key_id_name, path_name in (
        ("wechatpay_public_key_id", "wechatpay_public_key_path"),
        ("platform_certificate_serial", "platform_certificate_path"),
    ):
        key_id, path = t.info.get(key_id_name), t.info.get(path_name)
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
        return False, f"unknown WeChat Pay key {serial!r}"
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
    def of(cls, t: Target, mchid: str | None, serial_no: str | None, key_path: str | None) -> Signer:
        mchid = mchid or t.info.get("mchid")
        serial_no = serial_no or t.info.get("serial_no")
        key_path = key_path or t.info.get("private_key_path")
        if not (mchid and serial_no and key_path):
            raise click.ClickException(
                "need --mchid, --serial and --key (or a connection.json in --data-dir)"
            )
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
