"""Sandbox operations commands of ``wxpartner``: clock, reset, scenario, faults, journal, call, bills,
verify-callback. They talk to a running server's control API (token from connection.json or flags);
``--json`` prints one JSON document for scripts on stdout; progress bars go to stderr."""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import click
import httpx
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from .cli import main
from .protocol import constants as c
from .protocol import keys as k
from .protocol.authorization import Authorization
from .protocol.messages import canonical_url, request_message, response_message
from .protocol.notification import decrypt_resource
from .protocol.signing import new_nonce, sign, verify

F = TypeVar("F", bound=Callable[..., Any])
# Piped or captured output is not squeezed into 80 columns: tables stay readable in logs and files.
console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, highlight=False)  # progress and status: never on stdout


class Target:
    """Where the server is and how to reach it: flags, else <data-dir>/connection.json."""

    def __init__(self, obj: dict[str, Any] | None, data_dir: str, url: str, token: str) -> None:
        path = Path(data_dir) / "connection.json"
        self.info: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
        self.base_url = (url or self.info.get("base_url") or "http://127.0.0.1:8080").rstrip("/")
        self.token = token or self.info.get("sandbox_token") or ""
        self._http: httpx.Client | None = (obj or {}).get("http")

    @contextmanager
    def client(self) -> Iterator[httpx.Client]:
        if self._http is not None:  # tests hand in an in-process client
            yield self._http
            return
        with httpx.Client(base_url=self.base_url, timeout=60) as http:
            yield http

    def control(self, method: str, path: str, **kw: Any) -> Any:
        if not self.token:
            raise click.ClickException("no sandbox token: pass --token or --data-dir with a connection.json")
        headers = {"Authorization": f"Bearer {self.token}", **kw.pop("headers", {})}
        try:
            with self.client() as http:
                resp = http.request(method, "/sandbox" + path, headers=headers, **kw)
        except httpx.HTTPError as exc:
            raise click.ClickException(f"cannot reach {self.base_url}: {exc}") from exc
        try:
            data = resp.json()
        except ValueError:
            data = {"raw": resp.text}
        if resp.status_code >= 400:
            raise click.ClickException(
                f"{resp.status_code} {data.get('code', '')}: {data.get('message', data)}"
            )
        return data


def target_options(fn: F) -> F:
    fn = click.option("--json", "as_json", is_flag=True, help="print one JSON document")(fn)
    fn = click.option("--token", envvar="WXPARTNER_SANDBOX_TOKEN", default="", help="sandbox token")(fn)
    fn = click.option("--url", envvar="WXPARTNER_URL", default="", help="server base URL")(fn)
    fn = click.option(
        "--data-dir",
        envvar="WXPARTNER_DATA_DIR",
        default=".wxpartner",
        show_default=True,
        help="holds connection.json",
    )(fn)
    return click.pass_context(fn)  # type: ignore[return-value]


def _target(ctx: click.Context, data_dir: str, url: str, token: str) -> Target:
    return Target(ctx.obj, data_dir, url, token)


def emit(data: Any, as_json: bool, pretty: Callable[[Any], None]) -> None:
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False))
    else:
        pretty(data)


def _kv(data: dict[str, Any]) -> None:
    for key, val in data.items():
        console.print(f"[bold]{key}[/]: {val}")


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    t = Table(title=title, show_lines=False, header_style="bold")
    for i, col in enumerate(columns):
        ident = i == 0 or col in ("id", "request_id")  # ids must stay copyable: never folded
        t.add_column(col, overflow="fold", no_wrap=ident, min_width=18 if col == "request_id" else None)
    for row in rows:
        t.add_row(*["" if v is None else str(v) for v in row])
    console.print(t)


def parse_duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    t = text.strip().lower()
    try:
        return float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        raise click.BadParameter(f"{text!r}: use seconds or 90s, 15m, 2h, 30d") from None


def progress_option(fn: F) -> F:
    return click.option(
        "--progress/--no-progress",
        "show_progress",
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal); never mixed into stdout",
    )(fn)


@contextmanager
def progress(show: bool | None, description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr, so stdout (``--json``) stays one clean document. Yields
    ``advance(n)``."""
    enabled = err_console.is_terminal if show is None else show
    if not enabled:
        yield lambda _n: None
        return
    columns = (
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


# ---- clock, reset, scenario ----------------------------------------------------------------------


@main.command()
@click.option("--set", "set_to", default=None, help="RFC 3339 date-time or Unix seconds")
@click.option("--freeze", is_flag=True, help="stop business time")
@click.option("--thaw", is_flag=True, help="let business time run again")
@click.option(
    "--advance", default=None, help="move forward: seconds or 90s, 15m, 2h, 30d (negative goes back)"
)
@target_options
def clock(
    ctx: click.Context,
    set_to: str | None,
    freeze: bool,
    thaw: bool,
    advance: str | None,
    data_dir: str,
    url: str,
    token: str,
    as_json: bool,
) -> None:
    """Show or move the sandbox business clock."""
    t = _target(ctx, data_dir, url, token)
    body: dict[str, Any] = {}
    if set_to is not None:
        body["set"] = float(set_to) if set_to.replace(".", "", 1).isdigit() else set_to
    if freeze:
        body["freeze"] = True
    if thaw:
        body["thaw"] = True
    if advance is not None:
        body["advance"] = parse_duration(advance)
    data = t.control("POST", "/clock", json=body) if body else t.control("GET", "/clock")
    emit(
        data,
        as_json,
        lambda d: console.print(
            f"{d['now']}  "
            + ("[yellow]frozen[/]" if d["frozen"] else "running")
            + f"  (offset {d['offset_seconds']:+.0f}s)"
        ),
    )


@main.command()
@click.option("--mchid", default=None, help="only this merchant's data")
@click.option("--yes", is_flag=True, help="do not ask")
@target_options
def reset(
    ctx: click.Context, mchid: str | None, yes: bool, data_dir: str, url: str, token: str, as_json: bool
) -> None:
    """Delete business data (every family's), keeping merchants and keys."""
    if not yes and not as_json:
        click.confirm(f"Delete the business data of {mchid or 'every merchant'}?", abort=True)
    data = _target(ctx, data_dir, url, token).control(
        "POST", "/reset", json={"mchid": mchid} if mchid else {}
    )
    emit(data, as_json, lambda d: console.print(f"reset: {d['reset']}"))


@main.group()
def scenario() -> None:
    """Load or export scenario files (merchants, keys, family data)."""


def scenario_batches(data: dict[str, Any], size: int) -> list[tuple[int, dict[str, Any]]]:
    """Split a scenario into loadable pieces of at most ``size`` entries, in the file's order (platform
    keys and merchants first, as the server loads them): each list is cut into chunks; a section that
    is a mapping of lists (``webizpay: {employees: [...], cards: [...]}``) is cut list by list.
    Returns (entries in the piece, piece)."""
    scalars = {key: v for key, v in data.items() if not isinstance(v, list | dict)}
    first = [key for key in ("platform_keys", "merchants") if key in data]
    order = first + [key for key in data if key not in scalars and key not in first]
    out: list[tuple[int, dict[str, Any]]] = []

    def chunks(items: list[Any]) -> list[list[Any]]:
        return [items[i : i + size] for i in range(0, len(items), size)] or [[]]

    for key in order:
        value = data[key]
        if isinstance(value, list):
            out += [(len(c), {**scalars, key: c}) for c in chunks(value)]
        elif isinstance(value, dict):
            plain = {k2: v for k2, v in value.items() if not isinstance(v, list)}
            if plain:
                out.append((1, {**scalars, key: plain}))
            for inner, items in value.items():
                if isinstance(items, list):
                    out += [(len(c), {**scalars, key: {inner: c}}) for c in chunks(items)]
    return out


def _merge_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for report in reports:
        for key, v in report.items():
            if isinstance(v, int) and not isinstance(v, bool) and isinstance(merged.get(key), int):
                merged[key] += v
            else:
                merged[key] = v
    return merged


@scenario.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=None,
    help="load N entries per request, with a progress bar (for big files; each batch is its own "
    "transaction). Default: the whole file in one request, all or nothing.",
)
@progress_option
@target_options
def scenario_load(
    ctx: click.Context,
    file: str,
    batch: int | None,
    show_progress: bool | None,
    data_dir: str,
    url: str,
    token: str,
    as_json: bool,
) -> None:
    """Load a YAML/JSON scenario into the running server (all or nothing, unless --batch)."""
    text = Path(file).read_text()
    t = _target(ctx, data_dir, url, token)
    if batch is None:
        with progress(show_progress, f"loading {Path(file).name}", 1) as advance:
            data = t.control("POST", "/scenario", content=text.encode())
            advance(1)
    else:
        try:
            parsed = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise click.ClickException(f"{file}: not valid YAML/JSON: {exc}") from exc
        if not isinstance(parsed, dict):
            raise click.ClickException(f"{file}: a scenario is a mapping with sections such as 'merchants'")
        pieces = scenario_batches(parsed, batch)
        reports = []
        with progress(show_progress, f"loading {Path(file).name}", sum(n for n, _ in pieces)) as advance:
            for i, (n, piece) in enumerate(pieces, 1):
                try:
                    body = json.dumps(piece, ensure_ascii=False).encode()
                    reports.append(t.control("POST", "/scenario", content=body))
                except click.ClickException as exc:
                    raise click.ClickException(
                        f"batch {i} of {len(pieces)} failed ({exc.message}); batches 1-{i - 1} are loaded"
                    ) from exc
                advance(n)
        data = {**_merge_reports(reports), "batches": len(pieces)}
    emit(data, as_json, lambda d: _kv({"loaded": file, **{k2: v for k2, v in d.items() if k2 != "loaded"}}))


@scenario.command("export")
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="write here instead of stdout")
@target_options
def scenario_export(
    ctx: click.Context, out: str | None, data_dir: str, url: str, token: str, as_json: bool
) -> None:
    """Export the server's merchants, keys and family data as a scenario (YAML; JSON with --json)."""
    data = _target(ctx, data_dir, url, token).control("GET", "/scenario")
    text = (
        json.dumps(data, ensure_ascii=False, indent=2)
        if as_json
        else yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    )
    if out:
        Path(out).write_text(text)
        if not as_json:
            console.print(f"wrote {out}")
    else:
        click.echo(text)


# ---- faults --------------------------------------------------------------------------------------


@main.group()
def faults() -> None:
    """Fault injection rules (SYSTEM_ERROR, FREQUENCY_LIMITED, PARAM_ERROR, RESOURCE_NOT_EXISTS, LATENCY,
    DROP_CONNECTION, SIGNATURE_PROBE, BAD_SIGNATURE)."""


FAULT_COLUMNS = ["id", "kind", "operation", "path", "mchid", "remaining", "probability", "latency_ms", "hits"]


def _fault_rows(rules: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [r[col] if r[col] is not None else ("∞" if col == "remaining" else "any") for col in FAULT_COLUMNS]
        for r in rules
    ]


@faults.command("add")
@click.argument("kind")
@click.option("--operation", default=None, help="operation id or glob (webizpay.*)")
@click.option("--path", default=None, help="request path glob (/v3/webizpay/*)")
@click.option("--mchid", default=None)
@click.option("--count", type=int, default=None, help="fire this many times (default: until cleared)")
@click.option("--probability", type=float, default=1.0, show_default=True)
@click.option("--latency-ms", type=int, default=None, help="for LATENCY")
@click.option("--note", default="")
@target_options
def faults_add(
    ctx: click.Context,
    kind: str,
    operation: str | None,
    path: str | None,
    mchid: str | None,
    count: int | None,
    probability: float,
    latency_ms: int | None,
    note: str,
    data_dir: str,
    url: str,
    token: str,
    as_json: bool,
) -> None:
    """Add a rule: KIND for matching requests (after their signature was verified)."""
    body = {
        "kind": kind,
        "operation": operation,
        "path": path,
        "mchid": mchid,
        "count": count,
        "probability": probability,
        "latency_ms": latency_ms,
        "note": note,
    }
    data = _target(ctx, data_dir, url, token).control(
        "POST", "/faults", json={k2: v for k2, v in body.items() if v is not None}
    )
    emit(data, as_json, lambda d: console.print(f"added {d['kind']} rule [bold]{d['id']}[/]"))


@faults.command("list")
@target_options
def faults_list(ctx: click.Context, data_dir: str, url: str, token: str, as_json: bool) -> None:
    """List fault rules."""
    data = _target(ctx, data_dir, url, token).control("GET", "/faults")
    emit(
        data,
        as_json,
        lambda d: (
            _table("fault rules", FAULT_COLUMNS, _fault_rows(d["data"]))
            if d["data"]
            else console.print("no fault rules")
        ),
    )


@faults.command("clear")
@click.argument("rule_id", required=False)
@target_options
def faults_clear(
    ctx: click.Context, rule_id: str | None, data_dir: str, url: str, token: str, as_json: bool
) -> None:
    """Delete one rule, or all of them."""
    t = _target(ctx, data_dir, url, token)
    data = t.control("DELETE", f"/faults/{rule_id}") if rule_id else t.control("DELETE", "/faults")
    emit(
        data,
        as_json,
        lambda d: console.print(f"deleted {rule_id}" if rule_id else f"deleted {d['deleted']} rule(s)"),
    )


# ---- journal -------------------------------------------------------------------------------------


@main.command()
@click.argument("request_id", required=False)
@click.option("--mchid", default=None)
@click.option("--operation", default=None, help="operation id, or a prefix ending in *")
@click.option("--status", type=int, default=None)
@click.option("--code", default=None)
@click.option("--failed", is_flag=True, help="only failures (>= 400 or dropped)")
@click.option("--limit", type=int, default=30, show_default=True)
@target_options
def journal(
    ctx: click.Context,
    request_id: str | None,
    mchid: str | None,
    operation: str | None,
    status: int | None,
    code: str | None,
    failed: bool,
    limit: int,
    data_dir: str,
    url: str,
    token: str,
    as_json: bool,
) -> None:
    """The request journal (newest first), or one request with its signature explanation."""
    t = _target(ctx, data_dir, url, token)
    if request_id:
        row = t.control("GET", f"/journal/{request_id}")
        emit(row, as_json, _print_entry)
        return
    params = {
        "mchid": mchid,
        "operation": operation,
        "status": status,
        "code": code,
        "limit": limit,
        "failed": "1" if failed else None,
    }
    data = t.control("GET", "/journal", params={k2: v for k2, v in params.items() if v is not None})
    emit(data, as_json, _print_journal)


def _print_journal(data: dict[str, Any]) -> None:
    rows = []
    for r in data["data"]:
        when = time.strftime("%H:%M:%S", time.gmtime(r["at"]))
        status = "dropped" if r["status"] == 0 else str(r["status"])
        verified = r["verification"] + (f" ({r['verify_field']})" if r["verify_field"] else "")
        request = f"{r['method']} {r['path']}"
        rows.append([r["id"], when, r["mchid"], request, f"{status} {r['code'] or ''}", verified, r["fault"]])
    if not rows:
        console.print("no matching requests")
        return
    columns = ["id", "time", "mchid", "request", "status", "verification", "fault"]
    _table("request journal (UTC; details: wxpartner journal ID)", columns, rows)


def _print_entry(row: dict[str, Any]) -> None:
    _kv({key: v for key, v in row.items() if key != "expected_message" and v is not None})
    if row.get("expected_message"):
        console.print("[bold]expected string-to-sign[/] (each line ends with \\n):")
        for line in row["expected_message"].split("\n")[:-1]:
            console.print(f"  [cyan]{line}[/]\\n", markup=True)


# ---- call ----------------------------------------------------------------------------------------


def _platform_keys(t: Target) -> dict[str, rsa.RSAPublicKey]:
    """WeChat Pay keys to check response signatures: from the control API, else connection.json files."""
    found: dict[str, rsa.RSAPublicKey] = {}
    if t.token:
        try:
            for row in t.control("GET", "/platform-keys")["data"]:
                pem = row.get("certificate") or row["public_key"]
                found[row["key_id"]] = k.load_public_key(pem.encode())
        except click.ClickException:
            pass
    for key_id_name, path_name in (
        ("wechatpay_public_key_id", "wechatpay_public_key_path"),
        ("platform_certificate_serial", "platform_certificate_path"),
    ):
        key_id, path = t.info.get(key_id_name), t.info.get(path_name)
        if key_id and path and key_id not in found and Path(path).is_file():
            found[key_id] = k.load_public_key(Path(path))
    return found


def check_signature(headers: Any, body: bytes, keys: dict[str, rsa.RSAPublicKey]) -> tuple[bool, str]:
    signature = headers.get(c.H_SIGNATURE)
    if not signature:
        return False, "no Wechatpay-Signature header"
    if signature.startswith(c.SIGNATURE_PROBE_PREFIX):
        return False, "signature probe (WECHATPAY/SIGNTEST/...): a client must reject it"
    serial = headers.get(c.H_SERIAL) or ""
    key = keys.get(serial)
    if key is None:
        return False, f"unknown WeChat Pay key {serial!r}"
    message = response_message(headers.get(c.H_TIMESTAMP) or "", headers.get(c.H_NONCE) or "", body)
    if not verify(key, message, signature):
        return False, f"signature does not verify with {serial}"
    return True, f"verified with {serial}"


class Signer:
    """Signs APIv3 requests as one merchant (flags, else connection.json) and sends them."""

    def __init__(self, t: Target, mchid: str, serial_no: str, key_path: str) -> None:
        self.t, self.mchid, self.serial_no = t, mchid, serial_no
        self.key = k.load_private_key(Path(key_path))

    @classmethod
    def of(cls, t: Target, mchid: str | None, serial_no: str | None, key_path: str | None) -> Signer:
        mchid = mchid or t.info.get("mchid")
        serial_no = serial_no or t.info.get("serial_no")
        key_path = key_path or t.info.get("private_key_path")
        if not (mchid and serial_no and key_path):
            raise click.ClickException(
                "need --mchid, --serial and --key (or a connection.json in --data-dir)"
            )
        return cls(t, mchid, serial_no, key_path)

    def send(
        self, method: str, path: str, body: bytes = b"", extra: dict[str, str] | None = None
    ) -> tuple[str, httpx.Response]:
        """(the URL as signed, the response). A full URL is fine: only its path and query are used."""
        method = method.upper()
        parts = urlsplit(path)
        target = canonical_url(parts.path, parts.query)
        ts, nonce = str(int(time.time())), new_nonce()
        signature = sign(self.key, request_message(method, target, ts, nonce, body))
        headers = {
            "Authorization": Authorization(self.mchid, nonce, ts, self.serial_no, signature).header_value(),
            "Accept": "application/json",
            "User-Agent": "wxpartner-cli/1.0",
        }
        if body:
            headers["Content-Type"] = "application/json"
        headers.update(extra or {})
        try:
            with self.t.client() as http:
                return target, http.request(method, target, content=body or None, headers=headers)
        except httpx.HTTPError as exc:
            raise click.ClickException(f"{method} {target}: {type(exc).__name__}: {exc}") from exc


@main.command()
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
    ctx: click.Context,
    method: str,
    path: str,
    data: str | None,
    mchid: str | None,
    serial_no: str | None,
    key_path: str | None,
    fault: str | None,
    extra_headers: tuple[str, ...],
    data_dir: str,
    url: str,
    token: str,
    as_json: bool,
) -> None:
    """Sign and send any APIv3 request, verify the response signature, print the answer.

    Exit status: 0 when the response signature verifies, 1 when it does not (or there is none)."""
    t = _target(ctx, data_dir, url, token)
    signer = Signer.of(t, mchid, serial_no, key_path)
    body = b""
    if data is not None:
        text = Path(data[1:]).read_text() if data.startswith("@") else data
        try:
            json.loads(text)
        except ValueError as exc:
            raise click.BadParameter(f"--data is not JSON: {exc}") from None
        body = text.encode("utf-8")
    headers: dict[str, str] = {}
    if fault:
        headers["Wechatpay-Sandbox-Fault"] = fault
    for h in extra_headers:
        name, _, val = h.partition(":")
        headers[name.strip()] = val.strip()
    target, resp = signer.send(method, path, body, headers)
    ok, why = check_signature(resp.headers, resp.content, _platform_keys(t))
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
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False))
    else:
        tone = "green" if resp.status_code < 400 else "red"
        console.print(
            f"[bold {tone}]{resp.status_code}[/] {method.upper()} {target}  Request-ID {result['request_id']}"
        )
        console.print(("[green]✓ " if ok else "[red]✗ ") + why + "[/]")
        if payload is not None:
            console.print_json(json.dumps(payload, ensure_ascii=False))
    sys.exit(0 if ok else 1)


# ---- bills ---------------------------------------------------------------------------------------


def _days(start: str, end: str) -> list[dt.date]:
    try:
        lo, hi = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    except ValueError as exc:
        raise click.BadParameter(f"dates are YYYY-MM-DD: {exc}") from None
    if hi < lo:
        raise click.BadParameter("--to is before --from")
    if (hi - lo).days >= 366:
        raise click.BadParameter("at most 366 days at a time")
    return [lo + dt.timedelta(days=i) for i in range((hi - lo).days + 1)]


def _one_bill(
    signer: Signer, keys: dict[str, rsa.RSAPublicKey], body: dict[str, str], out: Path
) -> dict[str, Any]:
    """Apply for one day's trade bill (W11), download it, verify both signatures, write the CSV."""
    row: dict[str, Any] = {"date": body["date"]}
    _target_url, applied = signer.send("POST", "/v3/webizpay/bill/trade-bill", json.dumps(body).encode())
    ok, why = check_signature(applied.headers, applied.content, keys)
    if applied.status_code != 200 or not ok:
        detail = applied.json() if applied.content.startswith(b"{") else {}
        row["error"] = f"{applied.status_code} {detail.get('code', '')}: {detail.get('message', why)}"
        return row
    _target_url, file = signer.send("GET", applied.json()["download_url"])
    ok, why = check_signature(file.headers, file.content, keys)
    if file.status_code != 200 or not ok:
        row["error"] = f"download {file.status_code}: {why}"
        return row
    path = out / f"{body['type']}_{body['sub_mchid']}_{body['date']}.csv"
    path.write_bytes(file.content)
    lines = file.content.decode("utf-8", errors="replace").strip().splitlines()
    row.update(path=str(path), bytes=len(file.content), lines=len(lines), signature=why)
    return row


@main.command()
@click.option("--sub-mchid", required=True, help="the enterprise (sub-merchant) whose bills to fetch")
@click.option("--from", "start", required=True, help="first day, YYYY-MM-DD (China time)")
@click.option("--to", "end", default=None, help="last day (default: --from)")
@click.option("--out", "out_dir", default=".", show_default=True, type=click.Path(file_okay=False))
@click.option("--mchid", default=None, help="service provider (default: connection.json)")
@click.option("--serial", "serial_no", default=None, help="merchant certificate serial")
@click.option("--key", "key_path", default=None, type=click.Path(dir_okay=False), help="private key PEM")
@progress_option
@target_options
def bills(
    ctx: click.Context,
    sub_mchid: str,
    start: str,
    end: str | None,
    out_dir: str,
    mchid: str | None,
    serial_no: str | None,
    key_path: str | None,
    show_progress: bool | None,
    data_dir: str,
    url: str,
    token: str,
    as_json: bool,
) -> None:
    """Generate and download enterprise-payment trade bills (W11 + download), one CSV per day.

    Every answer's signature is verified. Exit status 0 when every day's bill was written, else 1."""
    t = _target(ctx, data_dir, url, token)
    signer = Signer.of(t, mchid, serial_no, key_path)
    days = _days(start, end or start)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    keys = _platform_keys(t)
    rows = []
    with progress(show_progress, f"trade bills of {sub_mchid}", len(days)) as advance:
        for day in days:
            body = {
                "sp_mchid": signer.mchid,
                "sub_mchid": sub_mchid,
                "date": day.isoformat(),
                "type": "QYZFALL",
            }
            rows.append(_one_bill(signer, keys, body, out))
            advance(1)
    failed = sum(1 for r in rows if "error" in r)
    result = {"written": len(rows) - failed, "failed": failed, "bills": rows}
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False))
    else:
        table_rows = [
            [r["date"], r.get("path") or "", r.get("lines", ""), r.get("error", "ok")] for r in rows
        ]
        _table(f"trade bills of {sub_mchid}", ["date", "file", "lines", "result"], table_rows)
    sys.exit(1 if failed else 0)


# ---- callbacks -----------------------------------------------------------------------------------


@main.group()
def callbacks() -> None:
    """Callback notifications WeChat Pay owes merchants, with every delivery attempt."""


def _attempt_text(a: dict[str, Any]) -> str:
    answer = str(a["status"]) if a["status"] is not None else "no answer"
    return f"#{a['attempt_no']} {answer} {float(a['latency_ms']):.0f}ms" + (
        f" {a['error']}" if a["error"] else ""
    )


def _print_callbacks(data: dict[str, Any]) -> None:
    if not data["data"]:
        console.print("no callbacks")
        return
    rows = [
        [
            n["id"],
            n["mchid"],
            n["event_type"],
            n["state"],
            f"{n['sends']}/{n['send_limit']}",
            "; ".join(_attempt_text(a) for a in n["attempts"]) or "no attempt yet",
        ]
        for n in data["data"]
    ]
    title = (
        f"callbacks {data['offset'] + 1}-{data['offset'] + len(rows)} of {data['total_count']}, newest first"
    )
    _table(title, ["id", "mchid", "event", "state", "sends", "attempts"], rows)


@callbacks.command("list")
@click.option("--mchid", default=None)
@click.option("--state", type=click.Choice(["pending", "delivered", "failed"]), default=None)
@click.option("--event-type", default=None)
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0)
@target_options
def callbacks_list(
    ctx: click.Context,
    mchid: str | None,
    state: str | None,
    event_type: str | None,
    limit: int,
    offset: int,
    data_dir: str,
    url: str,
    token: str,
    as_json: bool,
) -> None:
    """List notifications (newest first) with their delivery attempts."""
    params = {"mchid": mchid, "state": state, "event_type": event_type, "limit": limit, "offset": offset}
    data = _target(ctx, data_dir, url, token).control(
        "GET", "/callbacks", params={k2: v for k2, v in params.items() if v is not None}
    )
    emit(data, as_json, _print_callbacks)


@callbacks.command("show")
@click.argument("notification_id")
@target_options
def callbacks_show(
    ctx: click.Context, notification_id: str, data_dir: str, url: str, token: str, as_json: bool
) -> None:
    """One notification: its plaintext resource (sandbox view) and every attempt."""
    data = _target(ctx, data_dir, url, token).control("GET", f"/callbacks/{notification_id}")

    def pretty(d: dict[str, Any]) -> None:
        _kv({key: v for key, v in d.items() if key not in ("attempts", "resource")})
        for a in d.get("attempts", []):
            console.print(f"  attempt {_attempt_text(a)}  {a['url']}")
        if d.get("resource") is not None:
            console.print("[bold]resource[/] (plaintext; sent encrypted):")
            console.print_json(json.dumps(d["resource"], ensure_ascii=False))

    emit(data, as_json, pretty)


def _print_attempts(data: dict[str, Any]) -> None:
    attempts = data.get("attempts", [])
    if not attempts:
        console.print("nothing was due")
    for a in attempts:
        tone = "green" if a["ok"] else "red"
        console.print(f"[{tone}]{a['id']}[/] {a['event_type']} → {a['state']}  {_attempt_text(a)}")


@callbacks.command("deliver")
@target_options
def callbacks_deliver(ctx: click.Context, data_dir: str, url: str, token: str, as_json: bool) -> None:
    """Send every notification that is due now, and wait for the answers."""
    data = _target(ctx, data_dir, url, token).control("POST", "/callbacks/deliver")
    emit(data, as_json, _print_attempts)


@callbacks.command("redeliver")
@click.argument("notification_id")
@target_options
def callbacks_redeliver(
    ctx: click.Context, notification_id: str, data_dir: str, url: str, token: str, as_json: bool
) -> None:
    """Send one notification again now (one more send if all were used)."""
    data = _target(ctx, data_dir, url, token).control("POST", f"/callbacks/{notification_id}/redeliver")
    emit(data, as_json, _print_attempts)


# ---- verify-callback -----------------------------------------------------------------------------


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
    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        for name, val in self.items():
            if name.lower() == key.lower():
                return val
        return default


@main.command("verify-callback")
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
    ctx: click.Context,
    headers_file: str,
    body_file: str,
    apiv3_key: str | None,
    public_keys: tuple[str, ...],
    data_dir: str,
    url: str,
    token: str,
    as_json: bool,
) -> None:
    """Check a captured callback offline (signature, timestamp) and decrypt its resource.

    Exit status: 0 when the signature verifies, 1 otherwise."""
    t = Target(ctx.obj, data_dir, url, token)
    headers = _Headers(read_headers(Path(headers_file)))
    body = Path(body_file).read_bytes()
    keys: dict[str, rsa.RSAPublicKey] = {}
    for p in public_keys:
        pem = Path(p).read_bytes()
        key_id = k.certificate_serial(k.load_certificate(pem)) if b"CERTIFICATE" in pem else Path(p).stem
        keys[key_id] = k.load_public_key(pem)
    if not keys:
        keys = _platform_keys(Target(ctx.obj, data_dir, url, token)) if (t.token or t.info) else {}
    ok, why = check_signature(headers, body, keys)
    ts = headers.get(c.H_TIMESTAMP) or ""
    age = int(time.time()) - int(ts) if ts.isdigit() else None
    result: dict[str, Any] = {"signature_valid": ok, "signature": why, "timestamp_age_seconds": age}
    try:
        notification = json.loads(body)
    except ValueError:
        notification = None
        result["error"] = "body is not JSON"
    key = apiv3_key or t.info.get("apiv3_key")
    if isinstance(notification, dict):
        result["event_type"] = notification.get("event_type")
        result["id"] = notification.get("id")
        resource = notification.get("resource")
        if isinstance(resource, dict) and key:
            try:
                result["resource"] = decrypt_resource(key, resource)
            except Exception as exc:  # wrong key or tampered ciphertext: say which
                result["decrypt_error"] = f"{type(exc).__name__}: cannot decrypt with this APIv3 key"
        elif isinstance(resource, dict):
            result["decrypt_error"] = "no APIv3 key: pass --apiv3-key"
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False))
    else:
        console.print(("[green]✓ " if ok else "[red]✗ ") + why + "[/]")
        if age is not None:
            console.print(
                f"timestamp: {age}s ago" + (" [yellow](older than 5 minutes)[/]" if abs(age) > 300 else "")
            )
        for name in ("event_type", "id", "error", "decrypt_error"):
            if result.get(name):
                console.print(f"[bold]{name}[/]: {result[name]}")
        if "resource" in result:
            console.print("[bold]decrypted resource[/]:")
            console.print_json(json.dumps(result["resource"], ensure_ascii=False))
    sys.exit(0 if ok else 1)
