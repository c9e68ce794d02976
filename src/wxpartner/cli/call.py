"""``wxpartner call``: sign and send any APIv3 request as a merchant, check the answer's signature."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ..domain.faults import FAULT_HEADER
from ..protocol import constants as c
from ._apiv3 import Signer, check_signature, platform_keys
from ._http import Target, target_options
from ._output import console, emit, print_json, verdict


def _body(data: str | None) -> bytes:
    """--data as sent: JSON text, or @FILE; checked to be JSON first."""
    if data is None:
        return b""
    text = Path(data[1:]).read_text() if data.startswith("@") else data
    try:
        json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"--data is not JSON: {exc}") from None
    return text.encode("utf-8")


@click.command()
@click.argument("method")
@click.argument("path")
@click.option("--data", "-d", default=None, help="JSON body text; @FILE reads a file")
@click.option("--mchid", default=None, help="default: connection.json")
@click.option(
    "--serial", "serial_no", default=None, help="merchant certificate serial (default: connection.json)"
)
@click.option(
    "--key", "key_path", default=None, type=click.Path(dir_okay=False), help="merchant private key PEM"
)
@click.option("--fault", default=None, help="ask for a sandbox fault (Wechatpay-Sandbox-Fault header)")
@click.option("--header", "-H", "extra_headers", multiple=True, help="extra 'Name: value' header")
@target_options
def call(
    t: Target,
    method: str,
    path: str,
    data: str | None,
    mchid: str | None,
    serial_no: str | None,
    key_path: str | None,
    fault: str | None,
    extra_headers: tuple[str, ...],
    as_json: bool,
) -> None:
    """Sign and send any APIv3 request, verify the response signature, print the answer.

    Exit status: 0 when the response signature verifies, 1 when it does not (or there is none)."""
    signer = Signer.of(t, mchid, serial_no, key_path)
    body = _body(data)
    headers: dict[str, str] = {}
    if fault:
        headers[FAULT_HEADER] = fault
    for h in extra_headers:
        name, _, val = h.partition(":")
        headers[name.strip()] = val.strip()
    target, resp = signer.send(method, path, body, headers)
    ok, why = check_signature(resp.headers, resp.content, platform_keys(t))
    try:
        payload: Any = resp.json() if resp.content else None
    except ValueError:
        payload = resp.text
    result = {
        "status": resp.status_code,
        "request_id": resp.headers.get(c.H_REQUEST_ID),
        "signature_valid": ok,
        "signature": why,
        "body": payload,
    }

    def pretty(_result: dict[str, Any]) -> None:
        tone = "green" if resp.status_code < 400 else "red"
        console.print(
            f"[bold {tone}]{resp.status_code}[/] {method.upper()} {target}  Request-ID {result['request_id']}"
        )
        verdict(ok, why)
        if payload is not None:
            print_json(payload)

    emit(result, as_json, pretty)
    sys.exit(0 if ok else 1)
