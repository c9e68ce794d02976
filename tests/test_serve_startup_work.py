"""What `wxpartner serve` does not need to do at start-up (issue 9): import the other commands' modules
(the SDK client and its models, scenario's YAML loader), or load a merchant's PEM private
key more than once per start. Counts and module names, not times."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest

from wxpartner.cli import main
from wxpartner.protocol import keys as k
from wxpartner.sandbox import bootstrap as boot
from wxpartner.store.db import Database

# Modules of other commands: none is imported by serve's path (the CLI, serve, the server it starts).
NOT_FOR_SERVE = [
    "wxpartner.client",
    "wxpartner.cli.bills",
    "wxpartner.cli.call",
    "wxpartner.cli.scenario",
    "wxpartner.cli._apiv3",
    "wxpartner.cli.openapi",
]


def test_serve_path_imports_no_other_command() -> None:
    code = (
        "import sys, click\n"
        "from wxpartner.cli import main\n"
        "main.get_command(click.Context(main), 'serve')\n"
        "import wxpartner.server.app, wxpartner.server.workers, wxpartner.sandbox.bootstrap, uvicorn\n"
        f"print(sorted(m for m in {NOT_FOR_SERVE!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_help_still_lists_every_command_with_its_short_help() -> None:
    ctx = click.Context(main)
    names = main.list_commands(ctx)
    assert {"serve", "bills", "call", "scenario", "verify-callback", "sign"} <= set(names)
    result = subprocess.run(
        [sys.executable, "-m", "wxpartner.cli", "--help"], capture_output=True, text=True, check=True
    )
    for name in names:
        command = main.get_command(ctx, name)
        assert command is not None
        short = command.get_short_help_str(limit=45)
        assert any(line.split()[:1] == [name] and short[:20] in line for line in result.stdout.splitlines())


def test_a_warm_start_loads_each_merchant_key_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bootstrap then connection.json's info read each demo merchant's key pair up to 3 times (the keys
    check, the top level, its merchants entry): 6 PEM private key loads per start, tens of ms each."""
    db = Database(f"sqlite:///{tmp_path / 'wx.db'}")
    try:
        token = boot.bootstrap(db, tmp_path, token="", demo=True, scenario=None)
        first = boot.connection_info(db, tmp_path, "http://127.0.0.1:1", token)
        loaded: list[Path] = []
        real = k.load_private_key

        def counted(path: Path, *args: object, **kwargs: object) -> object:
            loaded.append(Path(path))
            return real(path, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(k, "load_private_key", counted)
        boot.bootstrap(db, tmp_path, token="", demo=True, scenario=None)
        again = boot.connection_info(db, tmp_path, "http://127.0.0.1:1", token)
        assert again == first
        # this process read them already (the first start): none is loaded again while unchanged
        assert loaded == []
        # a key replaced on disk is read again: its pair no longer matches the registered certificate
        sp_key = tmp_path / "keys" / boot.DEMO_SP / "apiclient_key.pem"
        other = tmp_path / "keys" / boot.DEMO_CHANNEL / "apiclient_key.pem"
        replacement = sp_key.with_suffix(".new")
        replacement.write_bytes(other.read_bytes())
        replacement.replace(sp_key)
        registered = [{"serial_no": first["serial_no"], "revoked": False}]
        assert boot.local_serial(tmp_path, boot.DEMO_SP, registered) is None
        assert loaded == [sp_key]
    finally:
        db.dispose()
