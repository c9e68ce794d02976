"""Closed-loop peak throughput with wrk (installed from Debian's packages when missing)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .presign import write_partitions

LUA = Path(__file__).with_name("replay.lua")


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, env=env, capture_output=True)
    path = shutil.which("wrk")
    if not path:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env, capture_output=True)
        path = shutil.which("wrk")
    if not path:
        raise RuntimeError("wrk is not installed and could not be installed from Debian's packages")
    return path


@dataclass
class WrkResult:
    requests: int
    seconds: float
    non_2xx: int
    errors: int

    @property
    def ok_per_second(self) -> float:
        return (self.requests - self.non_2xx - self.errors) / self.seconds


def run_wrk(url: str, requests: list[bytes], *, seconds: int, connections: int, threads: int) -> WrkResult:
    with tempfile.TemporaryDirectory(prefix="wxbench-") as tmp:
        base = Path(tmp) / "reqs"
        write_partitions(requests, base, threads)
        out = subprocess.run(
            [
                ensure_wrk(),
                f"-t{threads}",
                f"-c{connections}",
                f"-d{seconds}s",
                "-s",
                str(LUA),
                url,
                "--",
                str(base),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    m = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", out)
    if not m:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0}[m.group(3)]
    non2 = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return WrkResult(
        requests=int(m.group(1)),
        seconds=float(m.group(2)) * scale,
        non_2xx=int(non2.group(1)) if non2 else 0,
        errors=sum(int(g) for g in errs.groups()) if errs else 0,
    )
