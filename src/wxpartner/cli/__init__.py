"""``wxpartner``: serve the sandbox, make keys, explain signatures, and operate a running server.

One module per command (group); the operations commands talk to the server's control API (_http.py).
A command's module is imported when that command runs (or when --help lists them all), so ``serve``
does not import the SDK client that ``bills`` and ``call`` use, nor ``scenario``'s loader."""

from __future__ import annotations

import importlib

import click

# name -> (module under wxpartner.cli, attribute): imported on first use.
_COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("serve", "serve"),
    "keys": ("keys", "keys"),
    "sign": ("sign", "sign_cmd"),
    "encrypt": ("encrypt", "encrypt"),
    "clock": ("clock", "clock"),
    "reset": ("reset", "reset"),
    "scenario": ("scenario", "scenario"),
    "faults": ("faults", "faults"),
    "journal": ("journal", "journal"),
    "call": ("call", "call"),
    "bills": ("bills", "bills"),
    "callbacks": ("callbacks", "callbacks"),
    "verify-callback": ("verify_callback", "verify_callback"),
    "openapi": ("openapi", "openapi"),
}


class _LazyGroup(click.Group):
    """A group whose commands are imported by name when looked up (click sorts list_commands)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in _COMMANDS:
            module, attribute = _COMMANDS[cmd_name]
            command = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
            self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="wxpartner")
def main() -> None:
    """wxpartner: a local, stateful WeChat Pay APIv3 partner server, SDK and sandbox.

    Start with `wxpartner serve` (it writes .wxpartner/connection.json); the other commands read that
    file from the same directory (or --data-dir): `wxpartner call GET /v3/certificates` signs as the
    demo service provider (--merchant channel: as the demo channel merchant), `wxpartner journal`
    lists what the server received. `wxpartner COMMAND --help` describes each command."""


__all__ = ["main"]
