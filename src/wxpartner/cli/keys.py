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
@click.option("--force", is_flag=True, help="replace a key pair already in --out")
@click.option("--json", "as_json", is_flag=True, help="print one JSON document")
def keys(mchid: str, out_dir: str, pkcs1: bool, force: bool, as_json: bool) -> None:
    """Make a merchant API key pair and certificate (apiclient_key.pem, apiclient_cert.pem).

    An existing pair in --out is kept (exit status 1) unless --force: it may be a registered key."""
    from ..sandbox.material import new_merchant_keys, write_merchant_keys

    if not (mchid.isascii() and mchid.isdigit() and len(mchid) <= 32):
        raise click.BadParameter(f"{mchid!r}: a merchant number is 1 to 32 digits", param_hint="'--mchid'")
    if not out_dir.strip():  # `--out "$DIR"` with an empty $DIR wrote the key pair into the current directory
        raise click.BadParameter(
            "an empty directory name; pass --out . for the current directory", param_hint="'--out'"
        )
    out = Path(out_dir).expanduser()
    existing = [p.name for p in (out / "apiclient_key.pem", out / "apiclient_cert.pem") if p.exists()]
    if existing and not force:
        raise click.ClickException(
            f"{out_dir} already holds {' and '.join(existing)}: pass --force to replace"
        )
    files = new_merchant_keys(mchid, out, pkcs1=pkcs1)
    try:
        write_merchant_keys(files)
    except OSError as exc:
        raise click.ClickException(
            f"--out {out_dir}: cannot write the key files: {exc.strerror or exc}"
        ) from None
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
        f'  - mchid: "{mchid}"\n    certificates:\n      - certificate: {files.certificate_path.resolve()}'
    )
    # once the scenario is loaded, the flags that sign as this merchant (the key is in no data dir)
    click.echo(
        f"\nsign as it, once loaded:\n  wxpartner call METHOD PATH --mchid {mchid} --serial {files.serial_no} "
        f"--key {files.private_key_path.resolve()}"
    )
