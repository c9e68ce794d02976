"""``wxpartner sign``: the exact string-to-sign and Authorization header of a request, to compare with
what a client library produces."""

from __future__ import annotations

import hashlib
import json
import time
from urllib.parse import urlsplit

import click

from ..client.http11 import is_token
from ..protocol.authorization import Authorization, AuthorizationFormatError, parse_authorization
from ..protocol.messages import canonical_url, request_message, visible_controls
from ..protocol.signing import new_nonce, sign
from ._apiv3 import Signer, acting_as, merchant_option
from ._files import at_file
from ._http import Target, data_dir_option
from ._output import visible


def _problem(method: str, header: str, target: str) -> str | None:
    """What the server's Authorization check (or its path rule) would refuse, before any signature
    check: the values given with --method, --timestamp, --nonce, --mchid are printed as asked, but say so."""
    if not is_token(method):
        return f"{method!r} is not an HTTP method: a request line never carries that"
    if not target.startswith("/"):
        return f"the URL {target!r} does not start with '/': a request line never carries that"
    try:
        parse_authorization(header)
    except AuthorizationFormatError as exc:
        return f"malformed Authorization: {exc}"
    return None


@click.command(name="sign")
@click.option("--method", "-X", default="GET", show_default=True, help="HTTP method of the request")
@click.option("--url", required=True, help="path and query as sent (a full URL is fine: the host is dropped)")
@click.option("--body", default="", help="exact body text; @FILE reads a file")
@click.option(
    "--mchid", default=None, help="the merchant signing (default: --merchant's, else connection.json's)"
)
@merchant_option
@click.option(
    "--serial",
    "serial_no",
    default=None,
    help="merchant API certificate serial (default: the merchant's in connection.json)",
)
@click.option(
    "--key",
    "key_path",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="private key PEM (default: the merchant's in connection.json)",
)
@click.option("--timestamp", default=None, help="default: now")
@click.option("--nonce", default=None, help="default: 32 random characters")
@click.option("--json", "as_json", is_flag=True, help="print one JSON document")
@data_dir_option("its connection.json gives what --mchid, --serial, --key leave out")
def sign_cmd(
    method: str,
    url: str,
    body: str,
    mchid: str | None,
    merchant: str | None,
    serial_no: str | None,
    key_path: str | None,
    timestamp: str | None,
    nonce: str | None,
    as_json: bool,
    data_dir: str,
) -> None:
    """Print the exact string-to-sign, its SHA-256 and the Authorization header for a request.

    Signed as connection.json's service provider unless told otherwise (--merchant channel, or
    --mchid --serial --key); nothing is sent."""
    t = Target(None, data_dir, "", "")
    # every value given: connection.json is not read (a broken or foreign one in the data dir is no concern)
    given = merchant is None and mchid and serial_no and key_path
    signer = Signer.of(t, mchid, serial_no, key_path, {} if given else acting_as(t, merchant, mchid))
    body_bytes = at_file(body, "--body")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # 'http://[::1': was a traceback
        raise click.BadParameter(f"{url!r} is not a URL: {exc}", param_hint="'--url'") from None
    target = canonical_url(parts.path or "/", parts.query) if parts.scheme else url
    # only an absent option takes the default: an empty one is printed as asked, and warned about
    ts = str(int(time.time())) if timestamp is None else timestamp
    nonce_str = new_nonce() if nonce is None else nonce
    message = request_message(method.upper(), target, ts, nonce_str, body_bytes)
    signature = sign(signer.key, message)
    header = Authorization(signer.mchid, nonce_str, ts, signer.serial_no, signature).header_value()
    text = message.decode("utf-8", errors="backslashreplace")  # a byte that is not UTF-8 as \xNN
    escaped = visible_controls(text).replace("\n", "\\n")
    result = {
        "message": text,
        "message_escaped": escaped,
        "message_length": len(message),
        "sha256": hashlib.sha256(message).hexdigest(),
        "authorization": header,
        "authorization_problem": _problem(method.upper(), header, target),
    }
    if result["authorization_problem"]:  # on stderr: stdout stays the document asked for
        click.echo(
            f"warning: the server would refuse this request: {result['authorization_problem']}", err=True
        )
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False))
        return
    click.echo(
        "string to sign (\\n = LF, every line ends with one; ␍ = CR, ␉ = tab; \\xNN a byte that is not "
        "UTF-8; a backslash of the text is doubled):"
    )
    # one escaping for all of it (visible): the \n that ends a line, a byte that is not UTF-8 and a C1
    # control or U+202E of a body as their escapes, and a backslash of the body doubled, so a JSON
    # body's own "\n" or "\xff" is not read as a line end or a byte
    raw = message.decode("utf-8", errors="surrogateescape")
    click.echo("  " + visible(visible_controls(raw), undecodable=True))
    click.echo(f"length: {len(message)} bytes   sha256: {result['sha256']}")
    click.echo(f"Authorization: {visible(header)}")
