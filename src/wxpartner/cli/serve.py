"""``wxpartner serve``: bootstrap the data dir, print how to connect, run uvicorn."""

from __future__ import annotations

import errno
import json
import math
import os
import signal
import socket
import ssl
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import click
from sqlalchemy.exc import SQLAlchemyError

# Neither ._http (httpx) nor ._output (rich), nor the callbacks command that imports both: serve prints
# its settings with click, and imports httpx only when a callback is first sent (issue 9).
from ._text import sendable_token, visible


def checked_notify_ca_file(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str:
    """``serve --notify-ca-file``: refused in one line before anything starts unless it is a PEM file
    with a certificate; made absolute (the workers read it). A SSL_CERT_FILE / SSL_CERT_DIR that cannot
    be used is said on stderr and skipped (server/callbacks.py: env_trust)."""
    from ..server.callbacks import TrustError, check_ca_file, env_trust_problems

    for problem in env_trust_problems(os.environ):
        click.echo(f"warning: not trusted for https:// notify URLs: {problem}", err=True)
    if not value:
        return ""
    path = str(Path(value).expanduser().resolve())
    try:
        check_ca_file(path)
    except TrustError as exc:
        raise click.BadParameter(str(exc)) from None
    return path


def checked_retention_days(_ctx: click.Context, _param: click.Parameter, value: float) -> float:
    """``serve --callback-retention-days``: click's range lets "nan" through."""
    if math.isnan(value):
        raise click.BadParameter("a number of days, 0 or more (0 keeps them for ever)")
    return value


@click.command()
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="listen address (0.0.0.0: every interface)"
)
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="listen port (0: a free one the system picks, printed and written to connection.json)",
)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1), help="worker processes")
@click.option(
    "--graceful-timeout",
    default=5,
    show_default=True,
    type=click.IntRange(0, 3600),
    metavar="SECONDS",
    help="at a stop, how long running requests may take to finish before they are cut off",
)
@click.option(
    "--data-dir",
    envvar="WXPARTNER_DATA_DIR",  # where the operations commands look for connection.json
    show_envvar=True,
    default=".wxpartner",
    show_default=True,
    type=click.Path(file_okay=False),
    help="keys, connection.json (read by the other commands) and the SQLite database",
)
@click.option(
    "--database-url",
    envvar="WXPARTNER_DATABASE_URL",
    show_envvar=True,
    default="",
    help="default: SQLite in the data dir",
)
@click.option(
    "--scenario", type=click.Path(exists=True, dir_okay=False), help="load a scenario file at start"
)
@click.option(
    "--token",
    envvar="WXPARTNER_SANDBOX_TOKEN",
    show_envvar=True,
    default="",
    help="sandbox control API token (default: generated once, kept in the database)",
)
@click.option(
    "--time-window",
    default=300,
    show_default=True,
    type=click.IntRange(min=1),
    help="± seconds for request timestamps",
)
@click.option("--no-demo", is_flag=True, help="do not create the demo merchant")
@click.option("--no-explain", is_flag=True, help="do not explain SIGN_ERRORs with the expected message")
@click.option("--no-rate-limits", is_flag=True, help="switch rate limits off (load tests)")
@click.option(
    "--pipeline",
    type=click.Choice(["auto", "loop", "threads"]),
    default="auto",
    show_default=True,
    help="where /v3 requests run: the event loop, worker threads, or auto (loop for SQLite)",
)
@click.option(
    "--pipeline-threads",
    default=4,
    show_default=True,
    type=click.IntRange(1, 256),
    help="with --pipeline threads: requests at once per worker",
)
@click.option("--public-base-url", default="", help="base URL put in links (authorization/payment pages)")
@click.option(
    "--tls",
    is_flag=True,
    help="serve HTTPS with a certificate for WeChat Pay's API hosts and loopback, signed by the data "
    "dir's own authority (<data-dir>/tls/ca.pem: what clients trust)",
)
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False),
    help="serve HTTPS with this certificate chain (PEM) instead; needs --tls-key",
)
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="the private key of --tls-cert")
@click.option(
    "--notify-ca-file",
    envvar="WXPARTNER_NOTIFY_CA_FILE",
    show_envvar=True,
    type=click.Path(dir_okay=False),
    callback=checked_notify_ca_file,
    help="PEM authorities trusted for https:// notify URLs besides the public roots (and SSL_CERT_FILE)",
)
@click.option(
    "--callback-retention-days",
    default=7.0,
    show_default=True,
    type=click.FloatRange(0, 36500),
    callback=checked_retention_days,
    metavar="DAYS",
    help="delete delivered and failed callbacks this long (real time) after they finished; 0: keep",
)
@click.option("--json", "as_json", is_flag=True, help="print connection settings as one JSON object")
@click.option(
    "--log-level",
    default="warning",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug", "trace"], case_sensitive=False),
    help="uvicorn log level",
)
def serve(
    host: str,
    port: int,
    workers: int,
    graceful_timeout: int,
    data_dir: str,
    database_url: str,
    scenario: str | None,
    token: str,
    time_window: int,
    no_demo: bool,
    no_explain: bool,
    no_rate_limits: bool,
    pipeline: str,
    pipeline_threads: int,
    public_base_url: str,
    tls: bool,
    tls_cert: str | None,
    tls_key: str | None,
    notify_ca_file: str,
    callback_retention_days: float,
    as_json: bool,
    log_level: str,
) -> None:
    """Start the server (SQLite in --data-dir unless --database-url is given)."""
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    held = _check_before_start(host, port, workers, token, public_base_url, tls_cert, tls_key)
    if held is not None:  # --port 0: the port the system picked, served, printed and written
        port = int(held.getsockname()[1])

    from ..sandbox.bootstrap import bootstrap, connection_info, control_connection_info
    from ..sandbox.scenario import ScenarioError
    from ..server.settings import ENV_VAR, Settings
    from ..store.db import Database, finish_wal

    settings = Settings(
        data_dir=str(Path(data_dir).expanduser().resolve()),  # '~' as the ops commands read it
        database_url=database_url,
        host=host,
        port=port,
        workers=workers,
        time_window=time_window,
        explain=not no_explain,
        rate_limits=not no_rate_limits,
        pipeline_on_loop=None if pipeline == "auto" else pipeline == "loop",
        pipeline_threads=pipeline_threads,
        public_base_url=public_base_url,
        tls=tls or tls_cert is not None,
        notify_ca_file=notify_ca_file,
        callback_retention_days=callback_retention_days,
        journal_process=os.name == "posix",  # a writer process per worker (socket pairs, pass_fds)
    )
    ssl_files: dict[str, str] = {}
    ca_path: Path | None = None
    if tls_cert is not None and tls_key is not None:  # the caller's own: clients trust it their way
        ssl_files = {"ssl_certfile": tls_cert, "ssl_keyfile": tls_key}
    elif tls:
        from ..sandbox.tls import ensure_tls

        try:
            made = ensure_tls(settings.data_path, host)
        except OSError as exc:
            raise click.ClickException(f"cannot write to the data dir: {_why(exc)}") from None
        ssl_files = {"ssl_certfile": str(made.certificate_path), "ssl_keyfile": str(made.key_path)}
        ca_path = made.ca_path
    url = settings.resolved_database_url()
    try:
        db = Database(url, pool_size=2)
    except (OSError, SQLAlchemyError, ImportError, ValueError) as exc:  # ValueError: a port "abc"
        raise click.ClickException(f"cannot use the database {_shown_url(url)}: {_reason(exc)}") from None
    try:
        settings.sandbox_token = bootstrap(
            db,
            settings.data_path,
            token=token,
            demo=not no_demo,
            scenario=Path(scenario) if scenario else None,
        )
        info = (
            connection_info(
                db, settings.data_path, settings.base_url(), settings.sandbox_token, tls_ca_path=ca_path
            )
            if not no_demo
            else control_connection_info(
                settings.data_path, settings.base_url(), settings.sandbox_token, tls_ca_path=ca_path
            )
        )
    except ScenarioError as exc:
        raise click.ClickException(f"scenario {scenario}: {exc}") from exc
    except (SQLAlchemyError, ImportError) as exc:
        # unreachable, refused, not ours to create tables in, or a URL no installed driver serves
        raise click.ClickException(f"cannot use the database {_shown_url(url)}: {_reason(exc)}") from None
    except OSError as exc:  # the data dir cannot be created or written
        raise click.ClickException(f"cannot write to the data dir: {_why(exc)}") from None
    finally:
        db.dispose()
    if as_json:
        click.echo(json.dumps(info, ensure_ascii=False), nl=True)
    else:
        _print_connection(info, settings.data_path / "connection.json", token_given=bool(token))
    sys.stdout.flush()
    os.environ[ENV_VAR] = settings.to_env()
    from ..server import workers as serving

    config = serving.config_for(
        "wxpartner.server.app:app_from_env",
        host=host,
        port=port,
        log_level=log_level,
        factory=True,
        graceful_timeout=graceful_timeout,
    )
    config.update(ssl_files)
    status = serving.run(workers, config, held)
    # Stopped: a second Ctrl-C (the impatient operator's) arriving now would end the process by the
    # signal, status -2, after a clean stop.
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, signal.SIG_IGN)
    # Workers that stop together may each close while another still has the file open, and then none
    # folds the WAL into it: the database file alone (a copy taken after the stop) missed the last writes.
    finish_wal(url)
    sys.exit(status)


class _BadSetting(click.ClickException):
    exit_code = 2  # as a setting out of range (README: CLI reference), in one line without the usage


class _CannotListen(click.ClickException):
    exit_code = 3  # as the worker supervisor's start-up failure (README: a port in use is exit code 3)


def _check_before_start(
    host: str,
    port: int,
    workers: int,
    token: str,
    public_base_url: str,
    tls_cert: str | None,
    tls_key: str | None,
) -> socket.socket | None:
    """What would fail only once uvicorn starts, refused before anything is written or printed: the
    connection settings were printed as "serving" (and connection.json rewritten) for a port in use or
    an unknown host, and a certificate that is no PEM was an ssl.SSLError traceback. Port 0: returns
    the socket holding the free port the system picked (served on, or kept by the supervisor of
    several workers, until the server stops)."""
    from ..server import logs

    try:  # read by every worker as it starts
        if logs.format_from_env() == "json":
            logs.level_from_env()
    except ValueError as exc:
        raise _BadSetting(str(exc)) from None
    if token and not sendable_token(token):
        raise click.BadParameter(
            "printable ASCII without spaces: it travels in an Authorization header", param_hint="'--token'"
        )
    if public_base_url:
        try:
            parts = urlsplit(public_base_url)
        except ValueError:
            parts = urlsplit("")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise click.BadParameter(
                f"{public_base_url!r}: an http:// or https:// URL, such as https://sandbox.example.com",
                param_hint="'--public-base-url'",
            )
    if tls_cert is not None and tls_key is not None:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(tls_cert, tls_key)
        except (ssl.SSLError, OSError) as exc:
            raise click.ClickException(
                f"--tls-cert {tls_cert} / --tls-key {tls_key}: not a PEM certificate chain and its "
                f"unencrypted private key ({exc})"
            ) from None
    from ..server.workers import free_port_for, hold_free_port

    try:
        if port == 0:
            return hold_free_port(host, workers)
        free_port_for(host, port)
        return None
    except OSError as exc:  # a socket.gaierror too: an unknown host name
        if exc.errno == errno.EADDRINUSE:
            hint = " (another server there? pass another --port)"
        elif isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
            hint = " (--host must be an address of this machine, or 0.0.0.0 for all)"
        else:
            hint = ""
        raise _CannotListen(f"cannot listen on {host}:{port}: {_why(exc)}{hint}") from None


def _why(exc: BaseException) -> str:
    """The first line of the reason (a driver error's first line names the host and the refusal)."""
    orig = getattr(exc, "orig", None) or exc
    text = getattr(orig, "strerror", None) or str(orig) or type(orig).__name__
    path = getattr(orig, "filename", None)
    return (f"{path}: " if path else "") + str(text).strip().splitlines()[0]


def _print_connection(info: Mapping[str, object], written: Path, *, token_given: bool) -> None:
    """The settings for people. A sandbox token the operator gave (``--token``, the environment) is not
    printed back: they know it, and a service's stdout is its log (systemd, docker), where the token
    would open the control API to whoever reads it. A generated one is printed: nobody knows it yet.
    ``--json`` (asked for by a script) and connection.json (owner-only) carry it either way.
    ``merchants`` is named, not dumped (it was a Python dict's repr, a screen wide): its values are the
    file's."""
    width = max(len(key) for key in info)
    click.echo("wxpartner is serving. Connect with:")
    for key, value in info.items():
        shown = ", ".join(map(str, value)) if isinstance(value, list) else value
        if isinstance(value, Mapping):
            names = ", ".join(
                f"{name} ({entry.get('mchid')})" if isinstance(entry, Mapping) else str(name)
                for name, entry in value.items()
            )
            shown = f"{names}: each one's own keys in connection.json (CLI: --merchant NAME)"
        if key == "sandbox_token" and token_given:
            shown = "(the one given by --token / WXPARTNER_SANDBOX_TOKEN)"
        click.echo(f"  {key.ljust(width)}  {visible(str(shown))}")  # a scenario's or a flag's text
    click.echo(visible(f"(also written to {written}; --json prints it as one object)"))


def _shown_url(url: str) -> str:
    """The database URL without its password (it goes to a terminal or a log)."""
    from ..store.db import shown_url

    return shown_url(url) or "(unreadable URL)"


_POSTGRES_DRIVERS = {"psycopg", "psycopg_c", "psycopg_binary"}


def _reason(exc: BaseException) -> str:
    """The driver's own words on one line (psycopg's span several), without SQLAlchemy's boilerplate."""
    import sqlalchemy as sa

    inner = exc.orig if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None else exc
    text = " ".join(line.strip() for line in str(inner).splitlines() if line.strip())
    if isinstance(exc, ImportError) and (exc.name or "").split(".")[0] in _POSTGRES_DRIVERS:
        # PostgreSQL's driver is the optional extra: say how to get it, not which module failed
        text = f"the PostgreSQL driver is not installed: pip install 'wxpartner[postgres]' ({text})"
    elif isinstance(exc, ImportError):
        text += " (this build serves sqlite:///FILE and postgresql://...)"
    return text or type(inner).__name__
