"""A private PostgreSQL server for the benchmark's scale-out figures, started from Debian's packages
(installed on the way, like wrk) on loopback in a temporary directory.

It is the test suite's throwaway server (tests/pg.py) with durability settings a deployment would
keep: fsync and full-page writes on, ``synchronous_commit=off``, the same promise SQLite's
``synchronous=NORMAL`` in WAL mode makes (an OS crash may lose the last moments, never consistency).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

BENCH_SETTINGS = "-c synchronous_commit=off -c shared_buffers=256MB"


def _pg_module() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "tests" / "pg.py"
    spec = importlib.util.spec_from_file_location("wxpartner_bench_pg", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def _ensure_installed(pg: ModuleType) -> bool:
    if pg.find_bin_dir() is not None:
        return True
    if os.geteuid() != 0:
        return False
    print("installing PostgreSQL from Debian's packages (apt-get install postgresql) ...", file=sys.stderr)
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    for step in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "postgresql"]):
        subprocess.run(step, check=False, env=env, capture_output=True, timeout=600)
    return pg.find_bin_dir() is not None


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL binaries here, and no way to install them (not root, or apt failed)."""


class PrivatePostgres:
    """``start()``, then ``with pg: pg.url`` — a fresh database on a private server, removed on exit."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = ""
        self._server: Any = None
        self._pg: Any = None

    def start(self) -> None:
        pg = _pg_module()
        if not _ensure_installed(pg):
            raise PostgresUnavailable("PostgreSQL is not installed (apt-get install postgresql, as root)")
        self._pg = pg
        self._server = pg.start_pg(self.port, own=True, settings=BENCH_SETTINGS)
        try:
            self.url = pg.create_database(self._server, "wxbench")
        except Exception:
            self._server.stop()
            raise

    def another(self, name: str) -> str:
        """The URL of a second fresh database on the same server (the big store's)."""
        return str(self._pg.create_database(self._server, name))

    def __enter__(self) -> PrivatePostgres:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._server is not None:
            self._server.stop()
