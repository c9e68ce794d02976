"""Every `wxpartner` command line the README shows (in code spans and code blocks) names a command that
exists, and every --option on it is one of that command's (or, for a group, its subcommands')."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from wxpartner.cli import main as cli

README = Path(__file__).resolve().parent.parent / "README.md"
FENCED = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
SPAN = re.compile(r"`([^`\n]+)`")
# the program as a command: at a line's start, after a path (.venv/bin/) or a shell operator
SHELL_BLOCK = re.compile(r"^```(?:sh|bash)\n(.*?)^```", re.MULTILINE | re.DOTALL)
COMMAND_LINE = re.compile(r"(?:^|/|[|;&(]\s*|\$\(|\s-m\s)wxpartner ([a-z][a-z-]*)([^\n|;&#]*)", re.MULTILINE)


def _options(command: click.Command) -> set[str]:
    names = {"--help"}
    for param in command.params:
        names.update(param.opts)
        names.update(param.secondary_opts)
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None:
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
        command = cli.get_command(click.Context(cli), name)
        if command is None:
            problems.append(f"wxpartner {name}: no such command")
            continue
        for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest):
            if flag not in _options(command):
                problems.append(f"wxpartner {name} {flag}: no such option")
    assert problems == []


def _shell_commands() -> list[tuple[int, list[str]]]:
    """`wxpartner …` commands of the README's sh/bash blocks as argument lists (continuations joined, a
    leading `sudo` or path dropped), with the block's line."""
    found = []
    for block in SHELL_BLOCK.finditer(README.read_text()):
        line = README.read_text()[: block.start()].count("\n") + 1
        for command in block.group(1).replace("\\\n", " ").splitlines():
            args = shlex.split(command, comments=True)
            if args[:1] == ["sudo"]:
                args = args[1:]
            if args and Path(args[0]).name == "wxpartner":
                found.append((line, args[1:]))
    return found


def _parse(command: click.Command, name: str, args: list[str], parent: click.Context | None = None) -> None:
    """Parse as click would before running the command: unknown options, missing values, bad types."""
    with command.make_context(name, list(args), parent=parent) as ctx:
        if isinstance(command, click.Group):
            sub_name, sub, rest = command.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
            assert sub is not None and sub_name is not None
            _parse(sub, sub_name, rest, ctx)


def test_every_command_in_a_shell_block_parses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commands = _shell_commands()
    assert len(commands) >= 3  # the pattern still finds them
    monkeypatch.chdir(tmp_path)  # files the commands name (`--scenario team.yaml`) exist, as for the user
    problems = []
    for line, args in commands:
        for arg in args:
            if arg.endswith((".yaml", ".json", ".pem")) and "/" not in arg:
                (tmp_path / arg).touch()
        try:
            _parse(cli, "wxpartner", args)
        except click.ClickException as exc:
            problems.append(f"README.md:{line}: wxpartner {' '.join(args)}: {exc.format_message()}")
    assert problems == []


def test_every_make_target_in_a_shell_block_exists() -> None:
    makefile = (README.parent / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, re.MULTILINE))
    named = {
        m.group(1)
        for block in SHELL_BLOCK.finditer(README.read_text())
        for m in re.finditer(r"(?:^|\s)make ([\w-]+)", block.group(1), re.MULTILINE)
    }
    assert named >= {"serve", "test"}  # the pattern still finds them
    assert named <= targets, named - targets
