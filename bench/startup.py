"""Fixed costs a developer feels: ``wxpartner serve`` start-up to its first answer, and the pytest
plugin's per-test reset (``wxpartner_server`` fixture)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from .servers import free_port, process_cpu_seconds


def _serve_once(data_dir: Path) -> tuple[float, float]:
    port = free_port()
    args = [sys.executable, "-m", "wxpartner.cli", "serve", "--port", str(port), "--data-dir", str(data_dir)]
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = started + 60
        while time.perf_counter() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"wxpartner serve exited with {proc.returncode}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    return time.perf_counter() - started, process_cpu_seconds(proc.pid)
            except httpx.HTTPError:
                time.sleep(0.01)
        raise RuntimeError("wxpartner serve did not answer within 60 s")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def serve_ready(repeats: int = 3) -> dict[str, Any]:
    """First run (fresh data directory: keys generated, schema migrated) and warm restarts."""
    with tempfile.TemporaryDirectory(prefix="wxbench-serve-") as tmp:
        data_dir = Path(tmp) / "data"
        first, first_cpu = _serve_once(data_dir)
        warm = [_serve_once(data_dir) for _ in range(repeats)]
    return {
        "first_run_s": round(first, 3),
        "first_run_cpu_s": round(first_cpu, 3),
        "ready_s": round(statistics.median(w for w, _ in warm), 3),
        "ready_cpu_s": round(statistics.median(c for _, c in warm), 3),
    }


def plugin_reset(repeats: int = 30) -> dict[str, Any]:
    """The ``wxpartner_server`` fixture's reset, after a test that left a little data behind."""
    from wxpartner.testing import WxPartnerServer

    with tempfile.TemporaryDirectory(prefix="wxbench-plugin-") as tmp:
        started = time.perf_counter()
        server = WxPartnerServer(Path(tmp))
        session_s = time.perf_counter() - started
        try:
            client = server.client()
            times = []
            for _ in range(repeats):
                # A typical test leaves some data behind: one range created through the SDK.
                client.webizpay.ranges.create({"sp_mchid": server.mchid, "identifier_type": "TRANSACTION_ID"})
                t0 = time.perf_counter()
                server.reset()
                times.append(time.perf_counter() - t0)
        finally:
            server.close()
    return {
        "session_start_s": round(session_s, 3),
        "reset_ms_p50": round(statistics.median(times) * 1000, 2),
        "reset_ms_max": round(max(times) * 1000, 2),
    }
