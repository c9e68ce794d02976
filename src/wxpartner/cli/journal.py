"""``wxpartner journal``: the request journal of a running server, or one request with its signature
explanation."""

from __future__ import annotations

import time
from typing import Any

import click
from rich.text import Text

from ..protocol.messages import visible_controls
from ._http import Target, present, segment, target_options
from ._output import console, emit, kv, say, table, visible

VERIFICATIONS = ("ok", "refused", "error", "not_routed")  # the control API's (server/control_ops.py)
SKIPPED_NOTE = "journal.unverified_skipped"  # the journal's own note of unverified rows left out
CLAIMED = "(claimed)"
CLAIMED_NOTE = (
    f"{CLAIMED}: the mchid the request's Authorization header claims; its signature was not verified, "
    "and anyone can send a request claiming any merchant (--verification ok lists verified requests only)"
)


@click.command()
@click.argument("request_id", required=False)
@click.option("--mchid", default=None, help="only requests of this merchant")
@click.option("--operation", default=None, help="operation id, or a prefix ending in *")
@click.option("--status", type=click.IntRange(0, 999), default=None, help="HTTP status (0: dropped)")
@click.option("--code", default=None, help="only answers with this WeChat error code (SIGN_ERROR, …)")
@click.option("--failed", is_flag=True, help="only failures (>= 400 or dropped)")
@click.option(
    "--verification",
    type=click.Choice(VERIFICATIONS),
    default=None,
    help="only this outcome of the signature check (ok: verified requests, whose mchid is no claim)",
)
@click.option(
    "--limit", type=click.IntRange(1, 1000), default=30, show_default=True, help="newest N requests"
)
@click.option(
    "--before",
    "before_id",
    type=click.IntRange(min=1),
    default=None,
    help="only entries older than this id (a full page ends with the --before that shows the next)",
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
    verification: str | None,
    limit: int,
    before_id: int | None,
    as_json: bool,
) -> None:
    """The request journal (newest first), or one request with its signature explanation.

    A request whose signature was not verified is listed under the mchid it claims, marked
    (claimed): anyone can send one claiming any merchant."""
    if request_id is not None:  # an empty one is refused, not the whole journal listed
        row = t.control("GET", f"/journal/{segment(request_id, 'a Request-ID')}")
        emit(row, as_json, _print_entry)
        return
    params = {
        "mchid": mchid,
        "operation": operation,
        "status": status,
        "code": code,
        "verification": verification,
        "limit": limit,
        "before_id": before_id,
        "failed": "1" if failed else None,
    }
    data = t.control("GET", "/journal", params=present(params))
    emit(data, as_json, _print_journal)


def _mchid_cell(r: dict[str, Any]) -> Text:
    """The mchid; a claimed one (its request's signature was not verified) marked in words, which a
    copy, a log or a terminal without colours keeps too."""
    if not r["mchid"]:
        return Text("")
    if r.get("mchid_verified"):
        return Text(visible(r["mchid"]))
    return Text.assemble(visible(r["mchid"]), " ", (CLAIMED, "bold yellow"))


def _print_journal(data: dict[str, Any]) -> None:
    rows = []
    claimed = False
    for r in data["data"]:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["at"]))  # a journal spans days
        verified = r["verification"] + (f" ({r['verify_field']})" if r["verify_field"] else "")
        if r["operation"] == SKIPPED_NOTE:  # no request: how many were left out (its message)
            head, sep, _why = str(r["message"] or "").partition("): ")
            status, request = f"note {r['code'] or ''}", head + ")" if sep else head
        else:
            status = ("dropped" if r["status"] == 0 else str(r["status"])) + f" {r['code'] or ''}"
            request = f"{r['method']} {r['path']}"
        claimed = claimed or bool(r["mchid"] and not r.get("mchid_verified"))
        rows.append([r["id"], when, _mchid_cell(r), request, status, verified, r["fault"]])
    if not rows:
        console.print("no matching requests")
        return
    columns = ["id", "time", "mchid", "request", "status", "verification", "fault"]
    table("request journal (UTC; details: wxpartner journal ID)", columns, rows)
    if claimed:
        say(CLAIMED_NOTE, "yellow")
    if data.get("next_before_id"):  # a full page: the next one, however deep
        say(f"older entries: --before {data['next_before_id']}")


def _print_entry(row: dict[str, Any]) -> None:
    skipped = ("expected_message", "merchant_certificates")
    shown = {key: v for key, v in row.items() if not key.startswith(skipped) and v is not None}
    if isinstance(row.get("at"), int | float):  # was Unix seconds with seven decimals
        shown["at"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(row["at"]))
    if shown.get("mchid") and not row.get("mchid_verified"):
        shown["mchid"] = f"{row['mchid']} {CLAIMED}: its signature was not verified"
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
        "␉ a tab, � a byte that is not UTF-8, \\x9b or \\u202e another character a terminal would act on, "
        "a backslash of the text doubled):"
    )
    lines = visible_controls(message).split("\n")
    for line in lines[:-1]:  # the line's text escaped (visible), then the \n that ends it, as written
        console.print(Text(f"  {visible(line)}\\n", style="cyan"))
    if lines[-1]:  # only when the journal kept the start of a long message: the cut line
        say(f"  {lines[-1]}…", "cyan")
    if row.get("expected_message_truncated"):
        console.print(f"[yellow](only the first {len(message)} characters are kept)[/]")
