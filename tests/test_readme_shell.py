"""The README's shell blocks that a reader runs against `make serve` (only `.venv/bin/wxpartner …`, `curl …`
and `TOKEN=…` lines) run, as written, against a real server on a loopback port: bash in a directory whose
`.wxpartner/connection.json` names that server, `.venv/bin/wxpartner` the installed command. Each must
succeed, a `wxpartner call` with a 2xx answer (run with `--fail`) and a curl with a 2xx status (run with
`--fail-with-body`). A file a block loads (`scenario load applyments.yaml`) is the yaml block shown
before it. test_docs_cli.py only parses these lines; this runs them, so a step the README leaves out
(the scenario load before a query of what it loads) fails here. On both backends, as `make serve` on
SQLite and the scale-out hosts on PostgreSQL run them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from wxpartner.sandbox.bootstrap import connection_info
from wxpartner.testing import TOKEN, WxPartnerServer

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)$")
RUNNABLE = re.compile(r"^(\.venv/bin/wxpartner |curl |TOKEN=)")
DEFAULT = re.compile(r"(?:http://)?(?:127\.0\.0\.1|localhost):8080")


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    text: str
    yaml_before: str | None  # the nearest ```yaml block above it


def _blocks() -> list[Block]:
    lines = README.read_text().splitlines()
    found: list[Block] = []
    yaml_before: str | None = None
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        text = "\n".join(lines[i + 1 : end]) + "\n"
        if fence.group(1) == "yaml":
            yaml_before = text
        elif fence.group(1) in ("sh", "bash"):
            commands = [
                c for c in text.replace("\\\n", " ").splitlines() if c.strip() and not c.startswith("#")
            ]
            if commands and all(RUNNABLE.match(c) for c in commands):
                found.append(Block(i + 1, text, yaml_before))
        i = end + 1
    return found


BLOCKS = _blocks()


def test_runnable_blocks_are_found() -> None:
    assert len(BLOCKS) >= 5  # the tour, the applyment queries, recharge, encrypt, the notify URL


@pytest.fixture
def user_dir(tmp_path: Path, database_url: str) -> Iterator[tuple[Path, str]]:
    """A reader's working directory with `make serve` running: connection.json, and `.venv/bin/wxpartner`
    (here the installed command, with `--fail` for `call` so that an error answer fails the block)."""
    server = WxPartnerServer(tmp_path / ".wxpartner", database_url=database_url)
    try:
        url = server.serve()
        connection_info(server.db, server.data_dir, url, TOKEN)
        bin_dir = tmp_path / ".venv" / "bin"
        bin_dir.mkdir(parents=True)
        command = shutil.which("wxpartner", path=str(Path(sys.executable).parent))
        assert command is not None
        wrapper = bin_dir / "wxpartner"
        wrapper.write_text(
            f'#!/bin/sh\nif [ "$1" = call ]; then exec {command} "$@" --fail; fi\nexec {command} "$@"\n'
        )
        wrapper.chmod(0o755)
        yield tmp_path, url
    finally:
        server.close()


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: f"README.md:{b.line}")
def test_shell_block_runs(block: Block, user_dir: tuple[Path, str]) -> None:
    cwd, url = user_dir
    for name in re.findall(r"scenario load (\S+\.ya?ml)", block.text):
        assert block.yaml_before is not None, f"README.md:{block.line} loads {name}: no yaml block before it"
        (cwd / name).write_text(block.yaml_before)
    script = 'set -euo pipefail\ncurl() { command curl -sS --fail-with-body "$@"; echo; }\n'
    script += DEFAULT.sub(url, block.text)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("WXPARTNER_")
    }  # the defaults, as for a reader
    done = subprocess.run(
        ["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, (
        f"README.md:{block.line} exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    )
