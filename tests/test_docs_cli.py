"""Every `wxpartner` command line the README shows (in code spans and code blocks) names a command that
exists, and every --option on it is one of that command's (or, for a group, its subcommands')."""

from __future__ import annotations

import re
from pathlib import Path

import click

from wxpartner.cli import main as cli

README = Path(__file__).resolve().parent.parent / "README.md"
FENCED = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
SPAN = re.compile(r"`([^`\n]+)`")
# the program as a command: at a line's start, after a path (.venv/bin/) or a shell operator
COMMAND_LINE = re.compile(r"(?:^|/|[|;&(]\s*|\$\(|\s-m\s)wxpartner ([a-z][a-z-]*)([^\n|;&#]*)", re.MULTILINE)


def _options(command: click.Command) -> set[str]:
    names = {"--help"}
    for param in command.params:
        names.update(param.opts)
        names.update(param.secondary_opts)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            names |= _options(sub)
    return names


def _command_lines() -> list[tuple[str, str]]:
    text = README.read_text()
    code = [m.group(1) for m in FENCED.finditer(text)]
    code += [m.group(1) for m in SPAN.finditer(FENCED.sub("", text))]
    return [(m.group(1), m.group(2)) for chunk in code for m in COMMAND_LINE.finditer(chunk)]


def test_every_command_line_in_the_readme_exists() -> None:
    assert isinstance(cli, click.Group)
    lines = _command_lines()
    assert len(lines) > 20  # the pattern still finds them
    problems = []
    for name, rest in lines:
        command = cli.commands.get(name)
        if command is None:
            problems.append(f"wxpartner {name}: no such command")
            continue
        for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest):
            if flag not in _options(command):
                problems.append(f"wxpartner {name} {flag}: no such option")
    assert problems == []
