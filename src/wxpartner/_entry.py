"""The ``wxpartner`` console script: the CLI imported under a Ctrl-C guard.

Importing the commands takes a few hundred milliseconds (click, cryptography, SQLAlchemy); a Ctrl-C in
that time raised KeyboardInterrupt from the script's own import line, with a traceback. Once the CLI
runs, click answers a Ctrl-C the same way ("Aborted!", exit status 1)."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from .cli import main as cli
    except KeyboardInterrupt:
        sys.stderr.write("\nAborted!\n")
        raise SystemExit(1) from None
    cli()
