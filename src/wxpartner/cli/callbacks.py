"""``wxpartner callbacks list|show|deliver|redeliver``: the notifications WeChat Pay owes merchants,
with every delivery attempt."""

from __future__ import annotations

import math
import time
from typing import Any

import click

from ._http import Target, present, segment, target_options
from ._output import console, counted, emit, kv, print_json, safe, say, table


@click.group()
def callbacks() -> None:
    """Callback notifications WeChat Pay owes merchants, with every delivery attempt."""


def _attempt_text(a: dict[str, Any]) -> str:
    answer = str(a["status"]) if a["status"] is not None else "no answer"
    return f"#{a['attempt_no']} {answer} {float(a['latency_ms']):.0f}ms" + (
        f" {a['error']}" if a["error"] else ""
    )


def _print_callbacks(data: dict[str, Any], after: str | None = None) -> None:
    if not data["data"]:
        total = data.get("total_count") or 0
        console.print(
            f"no callbacks at offset {data['offset']} ({total} in all)" if total else "no callbacks"
        )
        return
    rows = [
        [
            n["id"],
            n["mchid"],
            n["event_type"],
            n["state"],
            f"{n['sends']}/{n['send_limit']}",
            _last_attempt(n),
        ]
        for n in data["data"]
    ]
    title = (
        f"callbacks {data['offset'] + 1}-{data['offset'] + len(rows)} of {data['total_count']}, newest first"
        if not after
        else f"{counted(len(rows), 'callback')} after the cursor, of {data['total_count']}, newest first"
    )
    table(title, ["id", "mchid", "event", "state", "sends", "last attempt"], rows)
    if data.get("next_after"):  # the page is full: how to ask for the next, whatever its depth
        say(f"next page: --after {data['next_after']}")


def _last_attempt(n: dict[str, Any]) -> str:
    """A list's cell: the newest attempt, and how many there were (every one: ``callbacks show ID``).
    All ten of a failing notification, each with its error, made one row a screen high."""
    attempts = n["attempts"]
    if not attempts:
        return f"waiting: no {n['waiting_for']}" if n.get("waiting_for") else "no attempt yet"
    last = max(attempts, key=lambda a: a["attempt_no"])
    return _attempt_text(last) + (f" (last of {len(attempts)})" if len(attempts) > 1 else "")


TIMES = ("create_time", "next_attempt_at", "lease_until", "delivered_at")


def _shown(key: str, value: Any) -> Any:
    """A time as a date (it was Unix seconds, 1799115309.0), an absent value as '-' (it was None)."""
    if value is None:
        return "-"
    if key in TIMES and isinstance(value, int | float) and math.isfinite(value) and 0 <= value < 253402300800:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(value))
    return value


def _print_notification(d: dict[str, Any]) -> None:
    kv({key: _shown(key, v) for key, v in d.items() if key not in ("attempts", "resource")})
    for a in d.get("attempts", []):
        say(f"  attempt {_attempt_text(a)}  {a['url']}")
    if d.get("resource") is not None:
        console.print("[bold]resource[/] (plaintext; sent encrypted):")
        print_json(d["resource"])


def _print_attempts(data: dict[str, Any]) -> None:
    attempts = data.get("attempts", [])
    if not attempts:
        console.print("nothing was due")
    for a in attempts:
        tone = "green" if a["ok"] else "red"
        console.print(
            f"[{tone}]{safe(a['id'])}[/] " + safe(f"{a['event_type']} → {a['state']}  {_attempt_text(a)}")
        )


@callbacks.command("list")
@click.option("--mchid", default=None, help="only this merchant's notifications")
@click.option(
    "--state", type=click.Choice(["pending", "delivered", "failed"]), default=None, help="only in this state"
)
@click.option("--event-type", default=None, help="only this event (WEBIZPAY.AUTHORIZED, …)")
@click.option(
    "--limit", type=click.IntRange(1, 500), default=20, show_default=True, help="notifications per page"
)
@click.option("--offset", type=click.IntRange(min=0), default=0, help="skip this many (--after pages faster)")
@click.option("--after", default=None, help="the next_after of the page before: the next page, however deep")
@target_options
def callbacks_list(
    t: Target,
    mchid: str | None,
    state: str | None,
    event_type: str | None,
    limit: int,
    offset: int,
    after: str | None,
    as_json: bool,
) -> None:
    """List notifications (newest first) with their delivery attempts."""
    params = {"mchid": mchid, "state": state, "event_type": event_type, "limit": limit, "offset": offset}
    if after:
        params = {**params, "offset": None, "after": after}
    emit(
        t.control("GET", "/callbacks", params=present(params)), as_json, lambda d: _print_callbacks(d, after)
    )


@callbacks.command("show")
@click.argument("notification_id")
@target_options
def callbacks_show(t: Target, notification_id: str, as_json: bool) -> None:
    """One notification: its plaintext resource (sandbox view) and every attempt."""
    emit(
        t.control("GET", f"/callbacks/{segment(notification_id, 'a notification id')}"),
        as_json,
        _print_notification,
    )


@callbacks.command("deliver")
@target_options
def callbacks_deliver(t: Target, as_json: bool) -> None:
    """Send every notification that is due now, and wait for the answers."""
    emit(t.control("POST", "/callbacks/deliver"), as_json, _print_attempts)


@callbacks.command("redeliver")
@click.argument("notification_id")
@target_options
def callbacks_redeliver(t: Target, notification_id: str, as_json: bool) -> None:
    """Send one notification again now (one more send if all were used)."""
    emit(
        t.control("POST", f"/callbacks/{segment(notification_id, 'a notification id')}/redeliver"),
        as_json,
        _print_attempts,
    )
