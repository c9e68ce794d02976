"""``wxpartner faults add|list|clear``: fault injection rules of a running server."""

from __future__ import annotations

import math
from typing import Any

import click

from ..domain.faults import FaultKind
from ._http import Target, present, segment, target_options
from ._output import console, counted, emit, safe, say, table

KINDS = ", ".join(FaultKind)  # the server's own list: SERVICE_UNAVAILABLE was missing from a copy here


@click.group(help=f"Fault injection rules ({KINDS}).")
def faults() -> None:
    pass


def _finite(value: float) -> float:
    """'nan' passes FloatRange (every comparison with it is false) and was a JSON-encoding traceback."""
    if not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a number in (0, 1]")
    return value


FAULT_COLUMNS = [
    "id", "kind", "operation", "path", "mchid", "remaining", "probability", "latency_ms", "hits", "note",
]  # fmt: skip
UNSET = {"remaining": "∞", "note": ""}  # else "any"


def _fault_rows(rules: list[dict[str, Any]]) -> list[list[Any]]:
    """The note too: `faults add --note` says it is "shown with the rule", and no list showed it."""
    return [
        [r.get(col) if r.get(col) is not None else UNSET.get(col, "any") for col in FAULT_COLUMNS]
        for r in rules
    ]


@faults.command(
    "add", help=f"Add a rule: KIND ({KINDS}) for matching requests (after their signature was verified)."
)
@click.argument("kind")
@click.option("--operation", default=None, help="operation id or glob (webizpay.*)")
@click.option("--path", default=None, help="request path glob (/v3/webizpay/*)")
@click.option("--mchid", default=None, help="only requests of this merchant (default: any)")
@click.option("--count", type=int, default=None, help="fire this many times (default: until cleared)")
@click.option(
    "--probability",
    type=click.FloatRange(0, 1, min_open=True),
    default=1.0,
    show_default=True,
    callback=lambda _ctx, _param, v: _finite(v),
    help="chance that a matching request gets the fault",
)
@click.option("--latency-ms", type=int, default=None, help="for LATENCY")
@click.option("--note", default="", help="a note shown with the rule")
@target_options
def faults_add(
    t: Target,
    kind: str,
    operation: str | None,
    path: str | None,
    mchid: str | None,
    count: int | None,
    probability: float,
    latency_ms: int | None,
    note: str,
    as_json: bool,
) -> None:
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
    data = t.control("POST", "/faults", json=present(body))
    emit(data, as_json, lambda d: console.print(f"added {safe(d['kind'])} rule [bold]{safe(d['id'])}[/]"))


@faults.command("list")
@target_options
def faults_list(t: Target, as_json: bool) -> None:
    """List fault rules."""
    data = t.control("GET", "/faults")
    emit(
        data,
        as_json,
        lambda d: (
            table("fault rules", FAULT_COLUMNS, _fault_rows(d["data"]))
            if d["data"]
            else console.print("no fault rules")
        ),
    )


@faults.command("clear")
@click.argument("rule_id", required=False)
@target_options
def faults_clear(t: Target, rule_id: str | None, as_json: bool) -> None:
    """Delete one rule, or all of them."""
    # `faults clear "$ID"` with an empty $ID is refused, not every rule deleted
    data = (
        t.control("DELETE", f"/faults/{segment(rule_id, 'a rule id')}")
        if rule_id is not None
        else t.control("DELETE", "/faults")
    )
    emit(
        data,
        as_json,
        lambda d: say(
            f"deleted {rule_id}" if rule_id is not None else f"deleted {counted(d['deleted'], 'rule')}"
        ),
    )
