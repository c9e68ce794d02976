"""``wxpartner``: serve the sandbox, make keys, explain signatures, and operate a running server.

One module per command (group); the operations commands talk to the server's control API (_http.py)."""

from __future__ import annotations

import click

from .bills import bills
from .call import call
from .callbacks import callbacks
from .clock import clock
from .encrypt import encrypt
from .faults import faults
from .journal import journal
from .keys import keys
from .openapi import openapi
from .reset import reset
from .scenario import scenario
from .serve import serve
from .sign import sign_cmd
from .verify_callback import verify_callback


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="wxpartner")
def main() -> None:
    """wxpartner: a local, stateful WeChat Pay APIv3 partner server, SDK and sandbox.

    Start with `wxpartner serve` (it writes .wxpartner/connection.json); the other commands read that
    file from the same directory (or --data-dir): `wxpartner call GET /v3/certificates` signs as the
    demo service provider (--merchant channel: as the demo channel merchant), `wxpartner journal`
    lists what the server received. `wxpartner COMMAND --help` describes each command."""


for _command in (
    serve,
    keys,
    sign_cmd,
    encrypt,
    clock,
    reset,
    scenario,
    faults,
    journal,
    call,
    bills,
    callbacks,
    verify_callback,
    openapi,
):
    main.add_command(_command)

__all__ = ["main"]
