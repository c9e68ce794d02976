"""``wxpartner call``: sign and send any APIv3 request as a merchant, check the answer's signature."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from ..client.http11 import is_token
from ..domain.faults import FAULT_HEADER
from ..protocol import constants as c
from ._apiv3 import (
    MAX_RETRY_AFTER,
    Signer,
    acting_as,
    check_signature,
    merchant_key_options,
    platform_keys,
    retry_after,
    send_patiently,
)
from ._files import at_file
from ._http import Target, target_options
from ._output import console, emit, err_console, print_json, safe, say, verdict

FAIL_STATUS = 22  # curl --fail's: an HTTP error answer


def _body(data: str | None) -> bytes:
    """--data as sent: JSON text, or @FILE (its exact bytes); checked to be JSON first."""
    if data is None:
        return b""
    raw = at_file(data, "--data")
    try:
        json.loads(raw)
    except ValueError as exc:
        raise click.BadParameter(f"--data is not JSON: {exc}") from None
    return raw


def _header(text: str, hint: str = "'--header' / '-H'") -> tuple[str, str]:
    """-H 'Name: value': a token name and a value of printable ASCII (what HTTP/1.1 carries)."""
    name, sep, val = text.partition(":")
    name, val = name.strip(), val.strip()
    if not sep or not is_token(name):
        raise click.BadParameter(f"{text!r}: expected 'Name: value'", param_hint=hint)
    if not all(" " <= ch <= "~" for ch in val):
        raise click.BadParameter(f"{name}: a header value is printable ASCII", param_hint=hint)
    return name, val


@click.command()
@click.argument("method")
@click.argument("path")
@click.option("--data", "-d", default=None, help="JSON body text; @FILE reads a file")
@click.option(
    "--mchid", default=None, help="the merchant signing (default: --merchant's, else connection.json's)"
)
@merchant_key_options
@click.option("--fault", default=None, help="ask for a sandbox fault (Wechatpay-Sandbox-Fault header)")
@click.option("--header", "-H", "extra_headers", multiple=True, help="extra 'Name: value' header")
@click.option(
    "--retries",
    default=0,
    show_default=True,
    type=click.IntRange(0, 10),
    help="repeat a 429/503 that says how long to wait (Retry-After, up to 60 s) after waiting it",
)
@click.option(
    "--fail",
    "fail",
    is_flag=True,
    help="exit status 22 (as curl --fail) when the answer is an error (HTTP status 400 or more) whose "
    "signature verifies: a script's `&&` stops there",
)
@target_options
def call(
    t: Target,
    method: str,
    path: str,
    data: str | None,
    mchid: str | None,
    merchant: str | None,
    serial_no: str | None,
    key_path: str | None,
    fault: str | None,
    extra_headers: tuple[str, ...],
    retries: int,
    fail: bool,
    as_json: bool,
) -> None:
    """Sign and send any APIv3 request, verify the response signature, print the answer.

    Signed as connection.json's service provider unless told otherwise: --merchant channel (or its
    mchid) for the applyment (apply4subject) family, --mchid --serial --key for any other merchant.

    A 429 or 503 that names its wait (Retry-After) says it; --retries N waits and repeats it.

    Exit status: 0 when the response signature verifies, 1 when it does not (or there is none); with
    --fail, 22 for a verified error answer (HTTP status 400 or more)."""
    if not is_token(method):  # was httpx's "LocalProtocolError: Illegal method characters"
        raise click.BadParameter(f"{method!r} is not an HTTP method (GET, POST, ...)", param_hint="'METHOD'")
    settings = acting_as(t, merchant, mchid)
    signer = Signer.of(t, mchid, serial_no, key_path, settings)
    body = _body(data)
    headers: dict[str, str] = {}
    if fault:  # checked as -H is: a non-ASCII value was a UnicodeEncodeError traceback
        name, val = _header(f"{FAULT_HEADER}: {fault}", "'--fault'")
        headers[name] = val
    for h in extra_headers:
        name, val = _header(h)
        headers[name] = val
    target, resp = send_patiently(
        signer,
        method,
        path,
        body,
        headers,
        retries=retries,
        note=lambda text: err_console.print(safe(text)),
    )
    wait = retry_after(resp)
    ok, why = check_signature(resp.headers, resp.content, platform_keys(t, settings))
    is_json = True
    try:
        payload: Any = resp.json() if resp.content else None
    except ValueError:
        payload, is_json = resp.text, False
    result = {
        "status": resp.status_code,
        "request_id": resp.headers.get(c.H_REQUEST_ID),
        "signature_valid": ok,
        "signature": why,
        "retry_after": wait,
        "body": payload,
    }

    def pretty(_result: dict[str, Any]) -> None:
        tone = "green" if resp.status_code < 400 else "red"
        console.print(
            f"[bold {tone}]{resp.status_code}[/] "
            + safe(f"{method.upper()} {target}  Request-ID {result['request_id']}")
        )
        verdict(ok, why)
        if wait is not None:
            how = (
                "--retries N waits and repeats" if wait <= MAX_RETRY_AFTER else "longer than --retries waits"
            )
            say(f"Retry-After: {wait:g} s (the server's wait before repeating the call; {how})", "yellow")
        if not resp.content:
            return
        if is_json:
            print_json(payload)
        else:  # a bill file (CSV), an HTML error page of a proxy: the text as received, not a JSON string
            say(resp.text, lines=True)

    emit(result, as_json, pretty)
    sys.exit(1 if not ok else FAIL_STATUS if fail and resp.status_code >= 400 else 0)
