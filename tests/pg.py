"""A throwaway PostgreSQL server for the test matrix: a real server on loopback, started from the
Debian packages' binaries in a temporary directory (or the one named by WXPARTNER_TEST_PG_URL)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

ENV_URL = "WXPARTNER_TEST_PG_URL"


@dataclass
class PgServer:
    url: str  # admin URL (database "postgres")
    data_dir: Path | None = None
    bin_dir: Path | None = None
    start_options: str = ""

    def pg_ctl(self, *args: str) -> None:
        """Stop or start the server itself (outage tests); only for servers this module started."""
        assert self.data_dir is not None and self.bin_dir is not None, "not a server started here"
        extra = (
            ["-o", self.start_options, "-l", str(self.data_dir.parent / "log")] if args[0] == "start" else []
        )
        _run_as_postgres([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *extra, "-w", *args])

    def database_url(self, name: str) -> str:
        return self.url.rsplit("/", 1)[0] + "/" + name

    def admin(self) -> sa.Engine:
        return sa.create_engine(
            self.url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
        )

    def stop(self) -> None:
        if self.data_dir is None or self.bin_dir is None:
            return
        _run_as_postgres(
            [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "stop"], check=False
        )
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as_postgres(args: list[str], *, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        args = ["runuser", "-u", "postgres", "--", *args]
    return subprocess.run(args, check=check, capture_output=True, timeout=60)


def find_bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


# Tests want speed, not durability: nothing here must survive an OS crash.
TEST_SETTINGS = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"


def start_pg(port: int, *, own: bool = False, settings: str = TEST_SETTINGS) -> PgServer | None:
    """None when no PostgreSQL is installed (the matrix then skips its PostgreSQL half, loudly).
    ``own`` always starts a private server, even when WXPARTNER_TEST_PG_URL names a shared one;
    ``settings`` are extra ``-c name=value`` server options."""
    if os.environ.get(ENV_URL) and not own:
        return PgServer(os.environ[ENV_URL])
    bin_dir = find_bin_dir()
    if bin_dir is None:
        return None
    root = Path(tempfile.mkdtemp(prefix="wxpartner-pg-"))
    data = root / "data"
    sock = root / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
    root.chmod(0o755)
    _run_as_postgres(
        [str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"]
    )
    # ``port`` was picked free, but another process may take it before the server binds it (then
    # pg_ctl fails, and every PostgreSQL test of the session with it): another free port then.
    for attempt in range(5):
        opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c max_connections=300 {settings}"
        started = _run_as_postgres(
            [str(bin_dir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "start"],
            check=False,
        )
        if started.returncode == 0:
            break
        if attempt == 4 or "could not bind" not in (root / "log").read_text(errors="replace"):
            raise subprocess.CalledProcessError(
                started.returncode, started.args, started.stdout, started.stderr
            )
        port = _free_port()
    server = PgServer(f"postgresql://postgres@127.0.0.1:{port}/postgres", data, bin_dir, opts)
    deadline = time.monotonic() + 20
    while True:
        try:
            with server.admin().connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return server
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def create_database(server: PgServer, name: str, template: str | None = None) -> str:
    engine = server.admin()
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        suffix = f' TEMPLATE "{template}"' if template else ""
        conn.execute(sa.text(f'CREATE DATABASE "{name}"{suffix}'))
    engine.dispose()
    return server.database_url(name)


def drop_database(server: PgServer, name: str) -> None:
    engine = server.admin()
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def wait_for_lock_waiters(database_url: str, count: int, timeout: float = 60) -> None:
    """Until ``count`` sessions of the database wait on a lock (pg_stat_activity): what the test holds
    is then what they wait for. (A fixed sleep instead was too short on a loaded machine, and the test
    then raced nothing.) ``timeout`` bounds a wait that should end at once; it is not a measure."""
    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    waiting = sa.text(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )
    deadline = time.monotonic() + timeout
    try:
        while True:
            with engine.connect() as conn:  # a new transaction each time: pg_stat_activity is a snapshot
                seen = conn.execute(waiting).scalar_one()
            if seen >= count:
                return
            assert time.monotonic() < deadline, f"{seen} of {count} sessions wait on a lock"
            time.sleep(0.01)
    finally:
        engine.dispose()
