"""``wxpartner clock``: show or move the sandbox business clock."""

from __future__ import annotations

from typing import Any

import click

from ..domain.clock import DURATION_SPELLINGS, parse_duration
from ._http import Target, target_options
from ._output import console, counted, emit, safe, say


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError:
        # named: raised outside click's own conversion, it said "Invalid value: 'abc'" of no option
        raise click.BadParameter(f"{text!r}: {DURATION_SPELLINGS}", param_hint="'--advance'") from None


@click.command()
@click.option("--real", is_flag=True, help="back to real time (no offset, running); applied first")
@click.option("--set", "set_to", default=None, help="RFC 3339 date-time or Unix seconds")
@click.option("--freeze", is_flag=True, help="stop business time")
@click.option("--thaw", is_flag=True, help="let business time run again")
@click.option(
    "--advance", default=None, help="move forward: seconds or 90s, 15m, 2h, 30d (negative goes back)"
)
@target_options
def clock(
    t: Target, real: bool, set_to: str | None, freeze: bool, thaw: bool, advance: str | None, as_json: bool
) -> None:
    """Show or move the sandbox business clock."""
    body: dict[str, Any] = {}
    if real:
        body["real"] = True
    if set_to is not None:
        # ASCII decimal seconds as a number ('²' passed isdigit() and was a float() traceback); any
        # other text goes to the server as a date-time, which names what it expected
        unix = set_to.isascii() and set_to.replace(".", "", 1).isdigit()
        body["set"] = float(set_to) if unix else set_to
    if freeze:
        body["freeze"] = True
    if thaw:
        body["thaw"] = True
    if advance is not None:
        body["advance"] = _duration(advance)
    data = t.control("POST", "/clock", json=body) if body else t.control("GET", "/clock")
    emit(data, as_json, _show)


def _show(d: dict[str, Any]) -> None:
    console.print(
        f"{safe(d['now'])}  "
        + ("[yellow]frozen[/]" if d["frozen"] else "running")
        + f"  (offset {d['offset_seconds']:+.0f}s)"
    )
    made = [_settled_text(label, n) for label, n in (d.get("settled") or {}).items() if n]
    if made:  # a move (the answer of GET has no "settled")
        say("settled: " + ", ".join(made))
    if d.get("settled_all") is False and made:
        console.print("more are owed than one move settles: the server's background sweep makes the rest")


# what a clock move settled, by the answer's key: the noun counted and what happened to it
_SETTLED = {
    "quota_cards_expired": ("quota card", "expired"),
    "applyments_advanced": ("applyment", "advanced"),
}


def _settled_text(label: str, n: int) -> str:
    """``1 quota card expired``, ``3 applyments advanced``; a key this CLI does not know yet (a newer
    server's) as its words, ``2 cards_moved`` -> ``2 cards moved``."""
    if label in _SETTLED:
        noun, verb = _SETTLED[label]
        return f"{counted(n, noun)} {verb}"
    return f"{n} {label.replace('_', ' ')}"
