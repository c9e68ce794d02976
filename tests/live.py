"""A real wxpartner server process on a loopback port (``wxpartner serve``), configured from the
test world through a scenario file, for black-box tests: third-party clients, several workers."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from pg import PgServer, create_database, drop_database
from support import SECOND_A, SECOND_B, SP_A, SP_B, SP_C, SUB_A, SUB_B, World


def free_port() -> int:
    """A port nothing listens on now (for a URL that must be refused). A server is started with
    ``--port 0`` instead: a port picked here may be taken before the server binds it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def world_scenario(world: World) -> dict[str, Any]:
    """The same merchants, keys and relations as support.seed(), as a scenario file."""
    merchants: list[dict[str, Any]] = []
    relations = {
        SP_A: {"sub_merchants": [SUB_A], "second_level_merchants": [SECOND_A]},
        SP_B: {"sub_merchants": [SUB_B], "second_level_merchants": [SECOND_B]},
        SP_C: {"sub_merchants": [SUB_A]},
    }
    for m in world.merchants.values():
        merchants.append(
            {
                "mchid": m.mchid,
                "name": f"Test {m.mchid}",
                "role": "service_provider",
                "key_mode": m.key_mode.value,
                "apiv3_key": m.apiv3_key,
                "certificates": [{"certificate": m.certificate_pem}],
                **relations.get(m.mchid, {}),
            }
        )
    return {
        "platform_keys": [
            {
                "kind": "public_key",
                "key_id": world.platform_pub.key_id,
                "private_key": world.platform_pub.private_key_pem,
            },
            {
                "kind": "certificate",
                "private_key": world.platform_cert.private_key_pem,
                "certificate": world.platform_cert.certificate_pem,
            },
        ],
        "merchants": merchants,
    }


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Ctrl-C, as a user stops ``serve``; its whole process group killed if it has not ended 10 s
    later."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            kill_group(proc)


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL to the process group of a ``serve`` started in a session of its own (its supervisor, its
    workers, multiprocessing's resource tracker), and back once none of them runs. Killing only the
    supervisor left its workers serving until they noticed (up to a second, then their graceful stop),
    past the end of the test that started them."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)
    deadline = time.monotonic() + 10
    while group_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.02)


def group_members(pgid: int) -> list[int]:
    """The processes of process group ``pgid`` that still run (zombies are ended)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[2]) == pgid and stat[0] != "Z":
            found.append(int(entry.name))
    return found


@dataclass
class LiveServer:
    url: str
    token: str
    data_dir: Path
    proc: subprocess.Popen[bytes]
    info: dict[str, Any]

    def control(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=10)

    def stop(self) -> None:
        stop_process(self.proc)


def start_live_server(
    data_dir: Path,
    world: World,
    *,
    workers: int = 1,
    scenario: dict[str, Any] | None = None,
    database_url: str = "",
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
    token: str = "live-test-token",
    ready_seconds: float = 20,
) -> LiveServer:
    data_dir.mkdir(parents=True, exist_ok=True)
    data = world_scenario(world)
    for key, value in (scenario or {}).items():
        if key == "merchants":
            data["merchants"].extend(value)
        else:
            data[key] = value
    scenario_path = data_dir / "scenario.yaml"
    scenario_path.write_text(yaml.safe_dump(data, allow_unicode=True))
    args = [
        sys.executable,
        "-m",
        "wxpartner.cli",
        "serve",
        # a free port the system picks as the server binds it, named in the settings it prints: a
        # port picked here first could be taken by another process before the server bound it
        "--port",
        "0",
        "--data-dir",
        str(data_dir),
        "--no-demo",
        "--scenario",
        str(scenario_path),
        "--token",
        token,
        "--workers",
        str(workers),
        "--json",
        *(extra_args or []),
    ]
    if database_url:
        args += ["--database-url", database_url]
    with open(data_dir / "server.log", "wb") as log:  # the process has its own copy
        proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=log,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # a group of its own: kill_group ends its workers too
        )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            proc.wait(10)
            raise RuntimeError(f"server did not start: {(data_dir / 'server.log').read_text()[-2000:]}")
        info = json.loads(line)
        url = f"http://127.0.0.1:{served_port(info)}"  # plain HTTP, whatever it says (--tls: never ready)
        deadline = time.monotonic() + ready_seconds
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        else:
            raise RuntimeError(f"server not ready: {(data_dir / 'server.log').read_text()[-2000:]}")
    except BaseException:  # not ready, no JSON line, a timeout, Ctrl-C: nothing of it is left running
        kill_group(proc)
        raise
    return LiveServer(url, token, data_dir, proc, info)


def served_port(info: dict[str, Any]) -> int:
    """The port a ``serve --port 0`` bound, as its settings (``--json``, connection.json) name it."""
    port = urlsplit(str(info["base_url"])).port
    assert port, info
    return port


class Served:
    """`wxpartner serve --json` with its demo merchant (unless told otherwise) on a free loopback port
    (``--port 0``, unless ``extra`` names one): ``port`` and ``url`` are the ones it printed."""

    def __init__(self, data_dir: Path, *extra: str, umask: int = -1) -> None:
        self.data_dir = data_dir
        args = [sys.executable, "-m", "wxpartner.cli", "serve", "--data-dir", str(data_dir)]
        if "--port" not in extra:
            args += ["--port", "0"]
        self.proc = subprocess.Popen(
            [*args, "--json", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            umask=umask,
            start_new_session=True,  # a group of its own: kill_group ends its workers too
        )
        try:
            self._wait_ready()
        except BaseException:
            kill_group(self.proc)
            raise

    def _wait_ready(self) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read().decode() if self.proc.stderr else ""
            raise AssertionError(f"serve printed nothing: {err[-2000:]}")
        self.info: dict[str, Any] = json.loads(line)
        self.port = served_port(self.info)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise AssertionError("server not ready")

    def stop(self) -> None:
        stop_process(self.proc)


_databases = itertools.count()


@contextlib.contextmanager
def hosts_on_postgres(
    pg_server: PgServer | None,
    tmp_path: Path,
    world: World,
    *,
    count: int = 2,
    env_of: Callable[[int], dict[str, str] | None] = lambda _i: None,
    **options: Any,
) -> Iterator[list[LiveServer]]:
    """``count`` hosts (``serve`` processes, each with its own data dir) on one fresh PostgreSQL
    database, dropped afterwards; ``env_of(i)`` adds to host i's environment, ``options`` go to
    start_live_server. Skips where PostgreSQL is not installed."""
    if pg_server is None:
        pytest.skip("PostgreSQL is not installed here; .ci/run installs it")
    name = f"wx_hosts_{os.getpid()}_{next(_databases)}"
    url = create_database(pg_server, name)
    started: list[LiveServer] = []
    try:
        for i in range(count):
            host = tmp_path / f"host-{chr(ord('a') + i)}"
            started.append(start_live_server(host, world, database_url=url, env=env_of(i), **options))
        yield started
    finally:
        for server in started:
            server.stop()
        drop_database(pg_server, name)
