"""``wxpartner journal``: the request journal of a running server, or one request with its signature
explanation."""

from __future__ import annotations

import time
from typing import Any

import click

from ..protocol.messages import visible_controls
from ._http import Target, present, segment, target_options
from ._output import console, emit, kv, say, table


@click.command()
@click.argument("request_id", required=False)
@click.option("--mchid", default=None, help="only requests of this merchant")
@click.option("--operation", default=None, help="operation id, or a prefix ending in *")
@click.option("--status", type=click.IntRange(0, 999), default=None, help="HTTP status (0: dropped)")
@click.option("--code", default=None, help="only answers with this WeChat error code (SIGN_ERROR, …)")
@click.option("--failed", is_flag=True, help="only failures (>= 400 or dropped)")
@click.option(
    "--limit", type=click.IntRange(1, 1000), default=30, show_default=True, help="newest N requests"
)
@target_options
def journal(
    t: Target,
    request_id: str | None,
    mchid: str | None,
    operation: str | None,
    status: int | None,
    code: str | None,
    failed: bool,
    limit: int,
    as_json: bool,
) -> None:
    """The request journal (newest first), or one request with its signature explanation."""
    if request_id is not None:  # an empty one is refused, not the whole journal listed
        row = t.control("GET", f"/journal/{segment(request_id, 'a Request-ID')}")
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
    data = t.control("GET", "/journal", params=present(params))
    emit(data, as_json, _print_journal)


def _print_journal(data: dict[str, Any]) -> None:
    rows = []
    for r in data["data"]:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["at"]))  # a journal spans days
        status = "dropped" if r["status"] == 0 else str(r["status"])
        verified = r["verification"] + (f" ({r['verify_field']})" if r["verify_field"] else "")
        request = f"{r['method']} {r['path']}"
        rows.append([r["id"], when, r["mchid"], request, f"{status} {r['code'] or ''}", verified, r["fault"]])
    if not rows:
        console.print("no matching requests")
        return
    columns = ["id", "time", "mchid", "request", "status", "verification", "fault"]
    table("request journal (UTC; details: wxpartner journal ID)", columns, rows)


def _print_entry(row: dict[str, Any]) -> None:
    skipped = ("expected_message", "merchant_certificates")
    shown = {key: v for key, v in row.items() if not key.startswith(skipped) and v is not None}
    if isinstance(row.get("at"), int | float):  # was Unix seconds with seven decimals
        shown["at"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(row["at"]))
    kv(shown)
    certificates = row.get("merchant_certificates")
    if certificates is not None:
        listed = ", ".join(c["serial_no"] + (" (revoked)" if c["revoked"] else "") for c in certificates)
        say(
            f"certificates of {row['mchid']} (what serial_no may name): {listed or 'none registered'}",
            "yellow",
        )
    message = row.get("expected_message")
    if not message:
        return
    length = row.get("expected_message_length")
    size = f"{length} bytes" if length is not None else "length unknown"
    console.print(
        f"[bold]expected string-to-sign[/] ({size}; each line ends with \\n; ␍ is a carriage return, "
        "␉ a tab, � a byte that is not UTF-8):"
    )
    lines = visible_controls(message).split("\n")
    for line in lines[:-1]:
        say(f"  {line}\\n", "cyan")
    if lines[-1]:  # only when the journal kept the start of a long message: the cut line
        say(f"  {lines[-1]}…", "cyan")
    if row.get("expected_message_truncated"):
        console.print(f"[yellow](only the first {len(message)} characters are kept)[/]")
