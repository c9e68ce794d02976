"""`wxpartner serve --workers N` (server/workers.py): each worker listens on its own socket of one
SO_REUSEPORT port group, so keep-alive connections opened together are spread over the workers instead
of piling onto whichever woke first; a worker that dies is replaced; a port already taken is refused
at start; SIGINT stops every worker."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from live import LiveServer, free_port, kill_group, start_live_server, stop_process
from support import World
from wxpartner.cli import main
from wxpartner.server.workers import config_for, stop_seconds

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path, world: World) -> Iterator[LiveServer]:
    live = start_live_server(tmp_path / "live", world, workers=2)
    try:
        _wait_listening(live)
        yield live
    finally:
        live.stop()


def _listening(pid: int) -> bool:
    listeners = {f[9] for f in (ln.split() for ln in Path("/proc/net/tcp").read_text().splitlines()[1:])
                 if f[3] == "0A"}  # fmt: skip
    return bool(_socket_inodes(pid) & listeners)


def _wait_listening(live: LiveServer, count: int = 2) -> list[int]:
    """The workers, once ``count`` of them each hold a listening socket (a worker joins the port group
    as it starts, before its app has loaded)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        workers = _workers(live)
        if len(workers) == count and all(_listening(pid) for pid in workers):
            return workers
        time.sleep(0.05)
    pytest.fail(f"workers not listening: {_workers(live)}")


def _workers(live: LiveServer) -> list[int]:
    """The supervisor's worker processes (not multiprocessing's resource tracker)."""
    pid = live.proc.pid
    children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return [c for c in children if b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes()]


def _socket_inodes(pid: int) -> set[str]:
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


def _peer_ports_by_inode() -> dict[str, int]:
    """inode -> remote port of every IPv4 TCP socket on this host."""
    out = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        out[fields[9]] = int(fields[2].split(":")[1], 16)
    return out


def test_connections_opened_together_are_spread_over_the_workers(server: LiveServer) -> None:
    workers = _workers(server)
    assert len(workers) == 2
    port = int(server.url.rsplit(":", 1)[1])
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
    try:
        for c in clients:  # one request each, so every connection has surely been accepted
            c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        for c in clients:
            assert c.recv(4096).startswith(b"HTTP/1.1 200")
        ours = {c.getsockname()[1] for c in clients}
        peers = _peer_ports_by_inode()
        held = [sum(1 for i in _socket_inodes(pid) if peers.get(i) in ours) for pid in workers]
    finally:
        for c in clients:
            c.close()
    assert sum(held) == 40, held
    # By a hash of the addresses: 40 connections split like coin flips (both sides >= 8 has a chance
    # of failing below one in 10,000). Sharing one socket, 64 connections went 54 / 10 here.
    assert min(held) >= 8, held


def test_a_dead_worker_is_replaced(server: LiveServer) -> None:
    first, second = _workers(server)
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while first in _workers(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    now = _wait_listening(server)
    assert first not in now and second in now
    for _ in range(20):  # both the old and the new worker answer
        assert httpx.get(server.url + "/healthz", headers={"Connection": "close"}).status_code == 200


def test_sigint_stops_every_worker(server: LiveServer) -> None:
    workers = _workers(server)
    server.proc.send_signal(signal.SIGINT)
    assert server.proc.wait(30) == 0
    assert not [pid for pid in workers if _running(pid)]


def test_a_port_in_use_is_refused_at_start(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        port = taken.getsockname()[1]
        args = [
            "serve",
            "--port",
            str(port),
            "--workers",
            "2",
            "--data-dir",
            str(tmp_path / "data"),
            "--json",
        ]
        proc = subprocess.run(
            [sys.executable, "-m", "wxpartner.cli", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "cannot listen" in proc.stderr


def test_workers_stop_when_the_supervisor_is_killed(server: LiveServer) -> None:
    workers = _workers(server)
    server.proc.kill()  # SIGKILL: the supervisor cannot tell anyone
    server.proc.wait(10)
    deadline = time.monotonic() + 20
    alive = workers
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in workers if _running(pid)]
        time.sleep(0.1)
    assert not alive, f"workers still serving without their supervisor: {alive}"


def test_the_supervisor_wakes_for_a_stop_at_once(tmp_path: Path) -> None:
    """The supervisor looked for a stop twice a second (a wait with a 0.5 s timeout), so a stop waited
    up to 0.5 s before any worker heard of it. Here its waits are given no timeout at all: only a wake-up
    by the signal itself ends them, as it does now; the polling supervisor never noticed the SIGTERM."""
    port = free_port()
    harness = (
        "import sys\n"
        "from wxpartner.server import workers\n"
        "waited = workers.wait\n"
        "workers.wait = lambda objects, timeout=None: waited(objects)  # as patient as can be\n"
        "from wxpartner.cli import main\n"
        "sys.argv[0] = 'wxpartner'\n"
        "main()\n"
    )
    args = ["serve", "--port", str(port), "--workers", "2", "--no-demo", "--json"]
    proc = subprocess.Popen(
        [sys.executable, "-c", harness, *args, "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its workers too are killed below if it never stops
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline()
        live = LiveServer(f"http://127.0.0.1:{port}", "", tmp_path / "data", proc, {})
        workers = _wait_listening(live)
        proc.send_signal(signal.SIGTERM)
        try:
            status = proc.wait(30)
        except subprocess.TimeoutExpired:
            pytest.fail("the supervisor did not notice the SIGTERM")
        assert status == 0
        assert not [pid for pid in workers if _running(pid)]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def test_the_graceful_timeout_reaches_the_workers_and_the_supervisors_deadline() -> None:
    """--graceful-timeout is uvicorn's timeout_graceful_shutdown in every worker, and the supervisor
    kills a worker 10 s after it (it gave 5 s + 10 whatever the setting, and 0 read as 5)."""
    for seconds in (0, 5, 60):
        config = config_for("x:app", host="127.0.0.1", port=1, log_level="info", graceful_timeout=seconds)
        assert config["timeout_graceful_shutdown"] == seconds
        assert stop_seconds(config) == seconds + 10


def test_a_server_never_ready_leaves_nothing_running(tmp_path: Path, world: World) -> None:
    """tests/live.py: a server that printed its settings but never answered its health check (here:
    HTTPS only, asked in plain HTTP) was given up with a SIGKILL to its supervisor alone, and its
    workers went on running past the test (until they noticed, then stopped gracefully). Now the whole
    process group is killed, and nothing of it runs once start_live_server has raised."""
    data_dir = tmp_path / "never-ready"
    with pytest.raises(RuntimeError, match="not ready"):
        start_live_server(data_dir, world, workers=2, extra_args=["--tls"], ready_seconds=3)
    assert not _processes_naming(str(data_dir).encode())


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_bad_log_level_is_one_line_before_anything_starts(tmp_path: Path, workers: str) -> None:
    """WXPARTNER_LOG_LEVEL=loud with JSON logs: serve printed its settings as "serving", then every
    worker died on a ValueError traceback (exit status 1, and with --workers 2 four tracebacks)."""
    proc = subprocess.run(
        [sys.executable, "-m", "wxpartner.cli", "serve", "--port", str(free_port()), "--workers", workers,
         "--data-dir", str(tmp_path / "data"), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "WXPARTNER_LOG_FORMAT": "json", "WXPARTNER_LOG_LEVEL": "loud"},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "Error: WXPARTNER_LOG_LEVEL='loud': one of critical, error, warning, info, debug"
    ]
    assert not (tmp_path / "data").exists()


def test_a_misspelt_log_format_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    """WXPARTNER_LOG_FORMAT=jsno: serve started with plain-text logs, and said nothing."""
    proc = subprocess.run(
        [sys.executable, "-m", "wxpartner.cli", "serve", "--port", str(free_port()),
         "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "WXPARTNER_LOG_FORMAT": "jsno"},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.splitlines() == ["Error: WXPARTNER_LOG_FORMAT='jsno': one of json, text (unset: text)"]
    assert not (tmp_path / "data").exists()


def _processes_naming(marker: bytes) -> list[int]:
    """Running processes whose command line or environment (a worker's settings) holds ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or not _running(int(entry.name)):
            continue
        try:
            if marker in (entry / "cmdline").read_bytes() or marker in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_workers_stop_when_the_supervisor_is_killed_while_they_start(tmp_path: Path) -> None:
    """A worker watched the pid os.getppid() gave it once it was listening: if its supervisor had been
    killed while it was still starting (importing, ~1 s), that was already init's pid, and the worker
    served on for good (found running half an hour after such a test). It now watches the pid its
    supervisor gave it."""
    port = free_port()
    args = ["serve", "--port", str(port), "--workers", "2", "--no-demo", "--json"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "wxpartner.cli", *args, "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    live = LiveServer(f"http://127.0.0.1:{port}", "", tmp_path / "data", proc, {})
    workers: list[int] = []
    try:
        assert proc.stdout is not None and proc.stdout.readline()
        deadline = time.monotonic() + 20
        while len(workers) < 2 and time.monotonic() < deadline:
            workers = _workers(live)
        assert len(workers) == 2, workers
        starting = [pid for pid in workers if not _listening(pid)]
        proc.kill()  # SIGKILL, while the workers are still starting
        proc.wait(10)
        assert starting == workers, "a worker was listening already: the case is not the one tested"
        deadline = time.monotonic() + 20
        alive = workers
        while alive and time.monotonic() < deadline:
            alive = [pid for pid in workers if _running(pid)]
            time.sleep(0.1)
        assert not alive, f"workers serving on without their supervisor: {alive}"
    finally:
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _listening_ports(pid: int) -> set[int]:
    """The local ports of the IPv4 TCP sockets ``pid`` listens on."""
    inodes = _socket_inodes(pid)
    rows = (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:])
    return {int(f[1].split(":")[1], 16) for f in rows if f[3] == "0A" and f[9] in inodes}


@pytest.mark.parametrize("workers", [1, 2])
def test_port_0_serves_on_a_free_port_and_says_which(tmp_path: Path, workers: int) -> None:
    """``serve --port 0`` was refused (1–65535). It binds a port the system picks, prints it and writes
    it to connection.json (so ``wxpartner call`` finds the server), and with several workers every one
    listens on that one port (a port group), none on another."""
    data = tmp_path / "data"
    args = ["serve", "--port", "0", "--workers", str(workers), "--data-dir", str(data), "--json"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "wxpartner.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # a group of its own: kill_group ends its workers too
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read().decode()[-2000:]
        info = json.loads(line)
        port = int(info["base_url"].rsplit(":", 1)[1])
        assert port != 0 and info["base_url"] == f"http://127.0.0.1:{port}"
        assert json.loads((data / "connection.json").read_text())["base_url"] == info["base_url"]
        listeners = [proc.pid] if workers == 1 else _wait_listening(LiveServer("", "", data, proc, info), 2)
        deadline = time.monotonic() + 20
        while not all(_listening_ports(pid) for pid in listeners) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [_listening_ports(pid) for pid in listeners] == [{port}] * workers
        if workers > 1:
            assert _listening_ports(proc.pid) == set()  # the supervisor holds the port, unlistened
        query = f"/v3/webizpay/avail-mch-ranges?sp_mchid={info['mchid']}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(info["base_url"] + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        result = CliRunner().invoke(main, ["call", "GET", query, "--data-dir", str(data), "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["status"] == 200
        stop_process(proc)
        assert proc.returncode == 0
    finally:
        kill_group(proc)
