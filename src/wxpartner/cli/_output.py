"""What the commands print: ``--json`` documents and rich text on stdout, progress bars on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

F = TypeVar("F", bound=Callable[..., Any])
# Piped or captured output is not squeezed into 80 columns: tables stay readable in logs and files.
console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, highlight=False)  # progress and status: never on stdout


def emit(data: Any, as_json: bool, pretty: Callable[[Any], None]) -> None:
    """One JSON document for scripts, else ``pretty(data)`` for people."""
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False))
    else:
        pretty(data)


def kv(data: dict[str, Any]) -> None:
    for key, val in data.items():
        console.print(f"[bold]{escape(str(key))}[/]: {escape(str(val))}")


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    t = Table(title=title, show_lines=False, header_style="bold")
    for i, col in enumerate(columns):
        ident = i == 0 or col in ("id", "request_id")  # ids must stay copyable: never folded
        t.add_column(col, overflow="fold", no_wrap=ident, min_width=18 if col == "request_id" else None)
    for row in rows:
        t.add_row(*[Text("" if v is None else str(v)) for v in row])  # data, never markup
    console.print(t)


def say(text: str, style: str = "") -> None:
    """Text from the server or the user, printed as is (a '[/]' in it is not rich markup)."""
    console.print(Text(text, style=style))


def print_json(data: Any) -> None:
    console.print_json(json.dumps(data, ensure_ascii=False))


def verdict(ok: bool, why: str) -> None:
    """A signature check's result: ✓ in green or ✗ in red."""
    console.print(("[green]✓ " if ok else "[red]✗ ") + escape(why) + "[/]")


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
