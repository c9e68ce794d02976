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
from ..protocol import keys as k
from ..protocol.notification import decrypt_resource
from ._apiv3 import PublicKeys, check_signature, platform_keys
from ._http import Target, target_options
from ._output import console, emit, print_json, verdict


def read_headers(path: Path) -> dict[str, str]:
    """A JSON object, or 'Name: value' lines (as copied from a capture)."""
    text = path.read_text()
    if text.lstrip().startswith("{"):
        return {str(key): str(v) for key, v in json.loads(text).items()}
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


def _public_keys(t: Target, files: tuple[str, ...]) -> PublicKeys:
    """The PEM files given, else the server's keys (when there is a token or a connection.json)."""
    keys: PublicKeys = {}
    for p in files:
        pem = Path(p).read_bytes()
        key_id = k.certificate_serial(k.load_certificate(pem)) if b"CERTIFICATE" in pem else Path(p).stem
        keys[key_id] = k.load_public_key(pem)
    if not keys:
        keys = platform_keys(t) if (t.token or t.info) else {}
    return keys


def _decrypt_into(result: dict[str, Any], notification: dict[str, Any], apiv3_key: str | None) -> None:
    result["event_type"] = notification.get("event_type")
    result["id"] = notification.get("id")
    resource = notification.get("resource")
    if isinstance(resource, dict) and apiv3_key:
        try:
            result["resource"] = decrypt_resource(apiv3_key, resource)
        except Exception as exc:  # wrong key or tampered ciphertext: say which
            result["decrypt_error"] = f"{type(exc).__name__}: cannot decrypt with this APIv3 key"
    elif isinstance(resource, dict):
        result["decrypt_error"] = "no APIv3 key: pass --apiv3-key"


def _print_result(result: dict[str, Any]) -> None:
    verdict(result["signature_valid"], result["signature"])
    age = result["timestamp_age_seconds"]
    if age is not None:
        console.print(
            f"timestamp: {age}s ago" + (" [yellow](older than 5 minutes)[/]" if abs(age) > 300 else "")
        )
    for name in ("event_type", "id", "error", "decrypt_error"):
        if result.get(name):
            console.print(f"[bold]{name}[/]: {result[name]}")
    if "resource" in result:
        console.print("[bold]decrypted resource[/]:")
        print_json(result["resource"])


@click.command("verify-callback")
@click.option("--headers", "headers_file", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--body",
    "body_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="exact body bytes",
)
@click.option("--apiv3-key", default=None, help="default: connection.json")
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
    public_keys: tuple[str, ...],
    as_json: bool,
) -> None:
    """Check a captured callback offline (signature, timestamp) and decrypt its resource.

    Exit status: 0 when the signature verifies, 1 otherwise."""
    headers = _Headers(read_headers(Path(headers_file)))
    body = Path(body_file).read_bytes()
    ok, why = check_signature(headers, body, _public_keys(t, public_keys))
    ts = headers.get(c.H_TIMESTAMP) or ""
    age = int(time.time()) - int(ts) if ts.isdigit() else None
    result: dict[str, Any] = {"signature_valid": ok, "signature": why, "timestamp_age_seconds": age}
    try:
        notification = json.loads(body)
    except ValueError:
        notification = None
        result["error"] = "body is not JSON"
    if isinstance(notification, dict):
        _decrypt_into(result, notification, apiv3_key or t.info.get("apiv3_key"))
    emit(result, as_json, _print_result)
    sys.exit(0 if ok else 1)
