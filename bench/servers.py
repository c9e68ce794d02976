"""The two servers measured side by side: wxpartner itself and the signing floor, each under uvicorn
with the same number of worker processes on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def worker_pids(self) -> list[int]:
        """uvicorn's worker processes: children of the supervisor that are not multiprocessing helpers
        (nor, with one worker, that worker's journal writer)."""
        out = []
        for pid in _children(self.proc.pid):
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            if b"resource_tracker" not in cmd and b"journal_process" not in cmd:
                out.append(pid)
        return out

    def serving_pids(self) -> list[int]:
        """The processes that answer requests: the workers, or the server itself when it has none
        (one worker: uvicorn serves in-process)."""
        return self.worker_pids() or [self.proc.pid]

    def journal_writers(self) -> dict[int, int]:
        """{serving pid: its journal writer process} (wxpartner's `serve` starts one per worker)."""
        out = {}
        for pid in self.serving_pids():
            for child in _children(pid):
                with contextlib.suppress(OSError):
                    if b"journal_process" in Path(f"/proc/{child}/cmdline").read_bytes():
                        out[pid] = child
        return out

    def cpu_seconds(self) -> float:
        """User + system CPU the serving processes and their journal writers have used so far (a
        supervisor serves nothing). The writers' share is the journal's writing, which a worker did
        itself before they existed."""
        pids = self.serving_pids() + list(self.journal_writers().values())
        return sum(process_cpu_seconds(pid) for pid in pids)

    def peak_rss_mib(self) -> list[float]:
        """Per worker, its peak RSS with its journal writer's."""
        writers = self.journal_writers()
        return [
            round((_vm_hwm_kib(pid) + (_vm_hwm_kib(writers[pid]) if pid in writers else 0)) / 1024, 1)
            for pid in self.serving_pids()
        ]

    def writer_rss_mib(self) -> list[float]:
        return [round(_vm_hwm_kib(pid) / 1024, 1) for pid in self.journal_writers().values()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            out.append(int(entry.name))
    return out


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (a busy machine stretches wall time, not this)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"server not ready: {log.read_text()[-2000:]}")


def start_wxpartner(
    data_dir: Path, workers: int, *, database_url: str = "", scenario: Path | None = None
) -> Server:
    port = free_port()
    args = [
        sys.executable, "-m", "wxpartner.cli", "serve", "--port", str(port), "--data-dir", str(data_dir),
        "--workers", str(workers), "--no-rate-limits", "--json", "--token", "bench-token",
    ]  # fmt: skip
    if database_url:
        args += ["--database-url", database_url]
    if scenario:
        args += ["--scenario", str(scenario)]
    if os.environ.get("BENCH_PIPELINE"):  # A/B runs: loop or threads
        args += ["--pipeline", os.environ["BENCH_PIPELINE"]]
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "server.log"
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log.open("wb"))
    assert proc.stdout is not None
    info = json.loads(proc.stdout.readline() or b"{}")
    server = Server("wxpartner", port, proc, info)
    _wait_ready(server.url + "/healthz", proc, log)
    return server


def start_floor(merchant_cert: str, workers: int, log_dir: Path) -> Server:
    port = free_port()
    args = [sys.executable, "-m", "bench.floor", str(port), str(workers)]
    log = log_dir / "floor.log"
    env = {**os.environ, "BENCH_MERCHANT_CERT": merchant_cert}
    proc = subprocess.Popen(args, stderr=log.open("wb"), env=env)
    server = Server("floor", port, proc)
    _wait_ready(server.url + "/", proc, log)
    return server
