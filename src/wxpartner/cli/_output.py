"""What the commands print: ``--json`` documents and rich text on stdout, progress bars on stderr.

Text that came from outside (a request's User-Agent, path or claimed mchid, a merchant endpoint's
answer, a server's message, an id) goes through ``visible`` before it reaches a terminal: every
helper here applies it (``kv``, ``table``, ``say``, ``verdict``, ``print_json``), and a line built
with markup wraps each such value in ``safe``. ``--json`` prints the data as it is."""

from __future__ import annotations

import json
import sys
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.highlighter import JSONHighlighter
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

from ._text import UNSAFE_CATEGORIES
from ._text import visible as visible  # the commands print through this module

F = TypeVar("F", bound=Callable[..., Any])
# Piped or captured output is not squeezed into 80 columns: tables stay readable in logs and files.
console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, highlight=False)  # progress and status: never on stdout


def safe(value: Any) -> str:
    """A value from outside inside a markup string: ``visible`` and never read as markup."""
    return escape(visible(str(value)))


def counted(n: int, one: str, many: str | None = None) -> str:
    """``n`` and the noun that goes with it: ``1 quota card``, ``3 quota cards`` (``many`` when the
    plural is not ``one`` + "s"). Every summary a command prints counts with it ("1 quota cards")."""
    return f"{n} {one if n == 1 else (many or one + 's')}"


def emit(data: Any, as_json: bool, pretty: Callable[[Any], None]) -> None:
    """One JSON document for scripts, else ``pretty(data)`` for people."""
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False))
    else:
        pretty(data)


def kv(data: dict[str, Any]) -> None:
    for key, val in data.items():
        console.print(f"[bold]{safe(key)}[/]: {safe(val)}")


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    """Cells are data, never markup; a cell that is already a ``Text`` keeps its style."""
    t = Table(title=Text(visible(title)), show_lines=False, header_style="bold")
    for i, col in enumerate(columns):
        ident = i == 0 or col in ("id", "request_id")  # ids must stay copyable: never folded
        t.add_column(col, overflow="fold", no_wrap=ident, min_width=18 if col == "request_id" else None)
    for row in rows:
        t.add_row(*[_cell(v) for v in row])
    console.print(t)


def _cell(value: Any) -> Text:
    if isinstance(value, Text):
        return value
    return Text("" if value is None else visible(str(value)))  # data, never markup


def say(text: str, style: str = "", *, lines: bool = False) -> None:
    """Text from the server or the user, never read as markup (a '[/]' in it is text), through
    ``visible``; ``lines``: a text of several lines (see ``visible``)."""
    console.print(Text(visible(text, lines=lines), style=style))


def print_json(data: Any) -> None:
    """Indented and highlighted. json.dumps escapes C0 controls (\\u001b); ``visible``'s other
    characters (U+009B, U+202E) are written as JSON escapes too, so the text shown is still the JSON
    of the same data."""
    text = json.dumps(data, ensure_ascii=False, indent=2)
    if not text.isprintable():  # its line feeds are its own (one in a string is \n already)
        text = "".join(
            json.dumps(ch)[1:-1] if ch != "\n" and unicodedata.category(ch) in UNSAFE_CATEGORIES else ch
            for ch in text
        )  # json.dumps: ASCII escapes, a character past U+FFFF as its surrogate pair
    shown = JSONHighlighter()(text)
    shown.no_wrap, shown.overflow = True, None
    console.print(shown, soft_wrap=True)


def verdict(ok: bool, why: str) -> None:
    """A signature check's result: ✓ in green or ✗ in red."""
    console.print(("[green]✓ " if ok else "[red]✗ ") + safe(why) + "[/]")


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
        task = bar.add_task(safe(description), total=total)  # names a file or merchant given
        yield lambda n: bar.advance(task, n)
