"""``wxpartner encrypt``: a sensitive field's ciphertext (RSA-OAEP under the WeChat Pay key of the merchant
acted as), to send with ``call`` and the ``Wechatpay-Serial`` it names (apply4subject's A1)."""

from __future__ import annotations

import json

import click

from ..protocol.crypto import oaep_encrypt, oaep_room
from ._apiv3 import acting_as, merchant_option, wechatpay_key_file
from ._files import public_key, read_bytes
from ._http import Target, data_dir_option


def _key_of(t: Target, settings: dict[str, object]) -> tuple[str, str]:
    """(key id, PEM file) of the WeChat Pay key the merchant's answers are signed with, which its
    encrypted fields are to be under: the public key when it has one (public-key mode, migrating), else
    the platform certificate."""
    for key_id_name, path_name in (
        ("wechatpay_public_key_id", "wechatpay_public_key_path"),
        ("platform_certificate_serial", "platform_certificate_path"),
    ):
        key_id, path = settings.get(key_id_name), settings.get(path_name)
        if isinstance(key_id, str) and key_id and isinstance(path, str) and path:
            return key_id, path
    where = t.connection_path if t.info else f"{t.connection_path} (it does not exist)"
    raise click.ClickException(
        f"{where} names no WeChat Pay key for merchant {settings.get('mchid') or '?'}; pass --data-dir "
        "with the data dir `wxpartner serve` uses, --merchant NAME, or the key with --public-key (from "
        "`GET /sandbox/platform-keys`, or <data-dir>/platform/)"
    )


@click.command()
@click.argument("plaintexts", metavar="TEXT...", nargs=-1, required=True)
@merchant_option
@click.option(
    "--mchid",
    default=None,
    help="the merchant whose WeChat Pay key to use (default: --merchant's, else connection.json's)",
)
@data_dir_option("its connection.json names the WeChat Pay keys")
@click.option(
    "--public-key",
    "key_file",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="this WeChat Pay public key (named PUB_KEY_ID_….pem) or platform certificate PEM instead",
)
@click.option("--json", "as_json", is_flag=True, help="print one JSON document")
def encrypt(
    plaintexts: tuple[str, ...],
    merchant: str | None,
    mchid: str | None,
    data_dir: str,
    key_file: str | None,
    as_json: bool,
) -> None:
    """Encrypt sensitive field values (RSA-OAEP, SHA-1) for a request body: one Base64 ciphertext a line.

    Under the WeChat Pay key of connection.json's service provider, or of --merchant channel (the caller
    of apply4subject, whose A1 takes such fields). Send the key id it names with the request:
    wxpartner call ... -H 'Wechatpay-Serial: <key id>'. The key id goes to stderr (stdout stays the
    ciphertexts); --json prints both."""
    if key_file is not None:
        key_id, key = wechatpay_key_file(key_file)
    else:
        t = Target(None, data_dir, "", "")
        key_id, path = _key_of(t, acting_as(t, merchant, mchid))
        key = public_key(read_bytes(path, "WeChat Pay key"), path)
    room = oaep_room(key)
    for i, text in enumerate(plaintexts, 1):
        if len(text.encode("utf-8")) > room:
            raise click.BadParameter(
                f"value {i} is {len(text.encode('utf-8'))} bytes (UTF-8); this {key.key_size}-bit key encrypts "
                f"at most {room}",
                param_hint="'TEXT'",
            )
    ciphertexts = [oaep_encrypt(key, text) for text in plaintexts]
    if as_json:
        click.echo(json.dumps({"wechatpay_serial": key_id, "ciphertexts": ciphertexts}))
        return
    click.echo(f"Wechatpay-Serial: {key_id}  (send it: -H 'Wechatpay-Serial: {key_id}')", err=True)
    for ciphertext in ciphertexts:
        click.echo(ciphertext)
