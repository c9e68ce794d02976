"""``wxpartner``: serve the sandbox, make keys, explain signatures."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import click

from .protocol import keys as k
from .protocol.authorization import Authorization
from .protocol.messages import canonical_url, request_message
from .protocol.signing import new_nonce, sign


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="wxpartner")
def main() -> None:
    """wxpartner: a local, stateful WeChat Pay APIv3 partner server, SDK and sandbox."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="worker processes")
@click.option("--data-dir", default=".wxpartner", show_default=True, type=click.Path(file_okay=False))
@click.option(
    "--database-url", envvar="WXPARTNER_DATABASE_URL", default="", help="default: SQLite in the data dir"
)
@click.option(
    "--scenario", type=click.Path(exists=True, dir_okay=False), help="load a scenario file at start"
)
@click.option("--token", envvar="WXPARTNER_SANDBOX_TOKEN", default="", help="sandbox control API token")
@click.option(
    "--time-window", default=300, show_default=True, type=int, help="± seconds for request timestamps"
)
@click.option("--no-demo", is_flag=True, help="do not create the demo merchant")
@click.option("--no-explain", is_flag=True, help="do not explain SIGN_ERRORs with the expected message")
@click.option("--no-rate-limits", is_flag=True, help="switch rate limits off (load tests)")
@click.option("--public-base-url", default="", help="base URL put in links (authorization/payment pages)")
@click.option("--json", "as_json", is_flag=True, help="print connection settings as one JSON object")
@click.option("--log-level", default="warning", show_default=True)
def serve(
    host: str,
    port: int,
    workers: int,
    data_dir: str,
    database_url: str,
    scenario: str | None,
    token: str,
    time_window: int,
    no_demo: bool,
    no_explain: bool,
    no_rate_limits: bool,
    public_base_url: str,
    as_json: bool,
    log_level: str,
) -> None:
    """Start the server (SQLite in --data-dir unless --database-url is given)."""
    import uvicorn

    from .sandbox.bootstrap import bootstrap, connection_info
    from .sandbox.scenario import ScenarioError
    from .server.settings import ENV_VAR, Settings
    from .store.db import Database

    settings = Settings(
        data_dir=str(Path(data_dir).resolve()),
        database_url=database_url,
        host=host,
        port=port,
        workers=workers,
        time_window=time_window,
        explain=not no_explain,
        rate_limits=not no_rate_limits,
        public_base_url=public_base_url,
    )
    db = Database(settings.resolved_database_url(), pool_size=2)
    try:
        settings.sandbox_token = bootstrap(
            db,
            settings.data_path,
            token=token,
            demo=not no_demo,
            scenario=Path(scenario) if scenario else None,
        )
    except ScenarioError as exc:
        raise click.ClickException(f"scenario {scenario}: {exc}") from exc
    info = (
        connection_info(db, settings.data_path, settings.base_url(), settings.sandbox_token)
        if not no_demo
        else {
            "base_url": settings.base_url(),
            "sandbox_token": settings.sandbox_token,
        }
    )
    db.dispose()
    if as_json:
        click.echo(json.dumps(info, ensure_ascii=False), nl=True)
    else:
        _print_connection(info)
    sys.stdout.flush()
    os.environ[ENV_VAR] = settings.to_env()
    from .server.http_protocol import BoundedHttpToolsProtocol

    uvicorn.run(
        "wxpartner.server.app:app_from_env",
        factory=True,
        http=BoundedHttpToolsProtocol,  # bounds the request head before the app sees it
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=5,
    )


def _print_connection(info: Mapping[str, object]) -> None:
    width = max(len(key) for key in info)
    click.echo("wxpartner is serving. Connect with:")
    for key, value in info.items():
        shown = ", ".join(map(str, value)) if isinstance(value, list) else value
        click.echo(f"  {key.ljust(width)}  {shown}")
    click.echo("(also written to <data-dir>/connection.json; --json prints it as one object)")


@main.command()
@click.option("--mchid", required=True, help="merchant number the certificate is for")
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="directory for the PEM files"
)
@click.option("--pkcs1", is_flag=True, help="write the private key as PKCS#1 instead of PKCS#8")
@click.option("--json", "as_json", is_flag=True)
def keys(mchid: str, out_dir: str, pkcs1: bool, as_json: bool) -> None:
    """Make a merchant API key pair and certificate (apiclient_key.pem, apiclient_cert.pem)."""
    from .sandbox.material import make_merchant_keys

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


@main.command(name="sign")
@click.option("--method", "-X", default="GET", show_default=True)
@click.option("--url", required=True, help="path and query as sent (a full URL is fine: the host is dropped)")
@click.option("--body", default="", help="exact body text; @FILE reads a file")
@click.option("--mchid", required=True)
@click.option("--serial", "serial_no", required=True, help="merchant API certificate serial")
@click.option(
    "--key", "key_path", required=True, type=click.Path(exists=True, dir_okay=False), help="private key PEM"
)
@click.option("--timestamp", default=None, help="default: now")
@click.option("--nonce", default=None, help="default: 32 random characters")
@click.option("--json", "as_json", is_flag=True)
def sign_cmd(
    method: str,
    url: str,
    body: str,
    mchid: str,
    serial_no: str,
    key_path: str,
    timestamp: str | None,
    nonce: str | None,
    as_json: bool,
) -> None:
    """Print the exact string-to-sign, its SHA-256 and the Authorization header for a request."""
    body_bytes = Path(body[1:]).read_bytes() if body.startswith("@") else body.encode("utf-8")
    parts = urlsplit(url)
    target = canonical_url(parts.path or "/", parts.query) if parts.scheme else url
    ts = timestamp or str(int(time.time()))
    nonce_str = nonce or new_nonce()
    message = request_message(method.upper(), target, ts, nonce_str, body_bytes)
    signature = sign(k.load_private_key(Path(key_path)), message)
    header = Authorization(mchid, nonce_str, ts, serial_no, signature).header_value()
    result = {
        "message": message.decode("utf-8"),
        "message_escaped": message.decode("utf-8").replace("\n", "\\n"),
        "message_length": len(message),
        "sha256": hashlib.sha256(message).hexdigest(),
        "authorization": header,
    }
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False))
        return
    click.echo("string to sign (\\n = LF, every line ends with one):")
    click.echo("  " + result["message_escaped"])  # type: ignore[operator]
    click.echo(f"length: {len(message)} bytes   sha256: {result['sha256']}")
    click.echo(f"Authorization: {header}")


from . import cli_ops  # noqa: E402, F401  (sandbox operations commands register on main)

if __name__ == "__main__":  # pragma: no cover
    main()
