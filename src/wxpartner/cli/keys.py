"""``wxpartner keys``: a merchant API key pair and certificate, as files."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command()
@click.option("--mchid", required=True, help="merchant number the certificate is for")
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="directory for the PEM files"
)
@click.option("--pkcs1", is_flag=True, help="write the private key as PKCS#1 instead of PKCS#8")
@click.option("--json", "as_json", is_flag=True)
def keys(mchid: str, out_dir: str, pkcs1: bool, as_json: bool) -> None:
    """Make a merchant API key pair and certificate (apiclient_key.pem, apiclient_cert.pem)."""
    from ..sandbox.material import make_merchant_keys

    files = make_merchant_keys(mchid, Path(out_dir), pkcs1=pkcs1)
    info = {
        "mchid": mchid,
        "serial_no": files.serial_no,
        "private_key": str(files.private_key_path),
        "certificate": str(files.certificate_path),
    }
    if as_json:
        click.echo(json.dumps(info))
        return
    for key, value in info.items():
        click.echo(f"{key}: {value}")
    click.echo(
        "\nscenario entry:\n"
        f'  - mchid: "{mchid}"\n    certificates:\n      - certificate: {files.certificate_path}'
    )
