"""``wxpartner verify-callback``: check a captured callback offline (signature, timestamp) and decrypt
its resource."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from ..protocol import constants as c
from ..protocol.crypto import APIV3_KEY_RULE, DecryptionError, is_apiv3_key
from ..protocol.notification import decrypt_resource
from ._apiv3 import (
    PublicKeys,
    acting_as,
    check_signature,
    merchant_option,
    other_merchants,
    platform_keys,
    wechatpay_key_file,
)
from ._files import read_bytes, read_text
from ._http import Target, target_options
from ._output import console, emit, print_json, safe, verdict


def read_headers(path: Path) -> dict[str, str]:
    """A JSON object, or 'Name: value' lines (as copied from a capture)."""
    text = read_text(path, "--headers")
    if text.lstrip().startswith(("{", "[")):
        try:
            found = json.loads(text)
        except ValueError as exc:
            raise click.ClickException(
                f"--headers {path}: not valid JSON, so it is not a JSON object ({exc}); "
                "give a JSON object or 'Name: value' lines"
            ) from None
        if not isinstance(found, dict):
            raise click.ClickException(f"--headers {path}: a JSON object of header names and values")
        return {str(key): str(v) for key, v in found.items()}
    out: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, val = line.partition(":")
        if sep and name.strip() and " " not in name.strip():
            out[name.strip()] = val.strip()
    return out


class _Headers(dict[str, str]):
    """Header names are case-insensitive, as in any HTTP capture."""

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        for name, val in self.items():
            if name.lower() == key.lower():
                return val
        return default


def _public_keys(t: Target, files: tuple[str, ...], settings: dict[str, Any]) -> PublicKeys:
    """The PEM files given, else the server's keys (when there is a token or a connection.json)."""
    keys = PublicKeys()
    for p in files:
        key_id, key = wechatpay_key_file(p)
        keys[key_id] = key
    if keys:
        keys.note = "not among the --public-key files"
        return keys
    if t.token or t.info:
        return platform_keys(t, settings)
    keys.note = f"no --public-key, and no {t.connection_path} to find the server's keys: pass --public-key"
    return keys


def _decrypt_into(
    result: dict[str, Any], notification: dict[str, Any], apiv3_key: str | None, others: dict[str, str]
) -> None:
    """Decrypt ``resource``; when it does not decrypt, say whether another merchant's APIv3 key of
    connection.json (``others``: --merchant value → key) does (a callback to the channel merchant)."""
    result["event_type"] = notification.get("event_type")
    result["id"] = notification.get("id")
    resource = notification.get("resource")
    if isinstance(resource, dict) and apiv3_key:
        try:
            result["resource"] = decrypt_resource(apiv3_key, resource)
        except DecryptionError:
            result["decrypt_error"] = (
                "cannot decrypt with this APIv3 key (a wrong key, or the resource was altered)"
            )
            for name, key in others.items():
                try:
                    decrypt_resource(key, resource)
                except (DecryptionError, KeyError, ValueError, TypeError, AttributeError):
                    continue
                result["decrypt_error"] += (
                    f"; it decrypts with the APIv3 key of merchant {name} in connection.json: "
                    f"pass --merchant {name}"
                )
                break
        except KeyError as exc:
            result["decrypt_error"] = f"resource lacks {exc}: not an encrypted WeChat Pay resource"
        except (ValueError, TypeError, AttributeError) as exc:
            result["decrypt_error"] = f"resource is not an encrypted WeChat Pay resource: {exc}"
    elif isinstance(resource, dict):
        result["decrypt_error"] = "no APIv3 key: pass --apiv3-key"


def _print_result(result: dict[str, Any]) -> None:
    verdict(result["signature_valid"], result["signature"])
    age = result["timestamp_age_seconds"]
    if age is not None:
        when = f"{age}s ago" if age >= 0 else f"{-age}s in the future"
        console.print(
            f"timestamp: {when}" + (" [yellow](more than 5 minutes off)[/]" if abs(age) > 300 else "")
        )
    for name in ("event_type", "id", "error", "decrypt_error"):
        if result.get(name):
            console.print(f"[bold]{name}[/]: {safe(result[name])}")
    if "resource" in result:
        console.print("[bold]decrypted resource[/]:")
        print_json(result["resource"])


@click.command("verify-callback")
@click.option(
    "--headers",
    "headers_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="the callback's headers: a JSON object or 'Name: value' lines",
)
@click.option(
    "--body",
    "body_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="exact body bytes",
)
@click.option("--apiv3-key", default=None, help="default: the merchant's in connection.json")
@merchant_option
@click.option(
    "--public-key",
    "public_keys",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="WeChat Pay public key or platform certificate PEM (named PUB_KEY_ID_….pem for public keys)",
)
@target_options
def verify_callback(
    t: Target,
    headers_file: str,
    body_file: str,
    apiv3_key: str | None,
    merchant: str | None,
    public_keys: tuple[str, ...],
    as_json: bool,
) -> None:
    """Check a captured callback offline (signature, timestamp) and decrypt its resource.

    The APIv3 key and WeChat Pay keys are connection.json's service provider's unless told otherwise:
    --merchant channel for a callback to the channel merchant, or --apiv3-key and --public-key.

    Exit status: 0 when the signature verifies, 1 otherwise."""
    settings = acting_as(t, merchant, None)
    key = apiv3_key or settings.get("apiv3_key")
    if key is not None and not is_apiv3_key(key):
        raise click.ClickException(f"the APIv3 key must be {APIV3_KEY_RULE}")
    headers = _Headers(read_headers(Path(headers_file)))
    body = read_bytes(body_file, "--body")
    ok, why = check_signature(headers, body, _public_keys(t, public_keys, settings))
    ts = headers.get(c.H_TIMESTAMP) or ""
    # ASCII digits only: int() refuses '²', which isdigit() accepts; 19 digits is any real timestamp
    age = int(time.time()) - int(ts) if ts.isascii() and ts.isdigit() and len(ts) <= 19 else None
    result: dict[str, Any] = {"signature_valid": ok, "signature": why, "timestamp_age_seconds": age}
    try:
        notification = json.loads(body)
    except ValueError:
        notification = None
        result["error"] = "body is not JSON"
    if isinstance(notification, dict):
        others = {} if apiv3_key else other_merchants(t, settings)
        _decrypt_into(result, notification, key, others)
    emit(result, as_json, _print_result)
    sys.exit(0 if ok else 1)
