"""Open-loop latency at a fixed arrival rate.

Requests are due at t0 + i/rate whether or not earlier ones have been answered; latency is measured
from the moment a request was *due*, so a stalled server shows up in the tail instead of silently
slowing the generator down (no coordinated omission, up to the connection pool's size).

The generator is ``openloop.c``, compiled with the machine's C compiler on first use: it shares the
two CPUs with the server, and the asyncio one below (kept for a machine without a compiler) cost ~0.13
ms of CPU per request and answered late whenever several responses came at once: the signing floor,
which serves a request in ~0.5 ms, showed a p99 of ~3.6 ms through it at 1,100 requests/s.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).with_name("openloop.c")


@dataclass
class Latency:
    rate: float
    sent: int
    ok: int
    p50_ms: float
    p99_ms: float
    achieved_rate: float
    generator: str = "python"


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def _run(host: str, port: int, requests: list[bytes], rate: float, connections: int) -> Latency:
    queue: asyncio.Queue[tuple[bytes, float] | None] = asyncio.Queue()
    latencies: list[float] = []
    ok = 0

    async def worker() -> None:
        nonlocal ok
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while (item := await queue.get()) is not None:
                raw, due = item
                writer.write(raw)
                await writer.drain()
                status = await _read_response(reader)
                latencies.append(time.perf_counter() - due)
                ok += 200 <= status < 300
        finally:
            writer.close()

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    await asyncio.sleep(0.2)  # connections established before the clock starts
    t0 = time.perf_counter()
    for i, raw in enumerate(requests):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((raw, due))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    elapsed = time.perf_counter() - t0
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 2)

    return Latency(rate, len(requests), ok, pct(0.50), pct(0.99), round(len(latencies) / elapsed, 1))


@functools.cache
def compiled() -> str | None:
    """The C generator, built once per version of its source (None without a C compiler)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    binary = Path(tempfile.gettempdir()) / f"wxpartner-openloop-{digest}"
    if not binary.exists():
        partial = binary.with_suffix(".partial")
        built = subprocess.run([cc, "-O2", "-o", str(partial), str(SOURCE)], capture_output=True, text=True)
        if built.returncode != 0:
            print(
                f"openloop.c did not compile, using the asyncio generator:\n{built.stderr}", file=sys.stderr
            )
            return None
        partial.replace(binary)
    return str(binary)


def _measure_c(
    binary: str, host: str, port: int, requests: list[bytes], rate: float, connections: int
) -> Latency:
    with tempfile.TemporaryDirectory(prefix="wxbench-") as tmp:
        path = Path(tmp) / "requests"
        path.write_bytes(b"\0".join(requests))
        out = subprocess.run(
            [binary, host, str(port), repr(rate), str(connections), str(path)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    r = json.loads(out)
    return Latency(
        rate, r["sent"], r["ok"], round(r["p50_ms"], 2), round(r["p99_ms"], 2),
        round((r["ok"] + r["non_2xx"]) / r["elapsed_s"], 1) if r["elapsed_s"] > 0 else 0.0, "c",
    )  # fmt: skip


def measure(
    host: str, port: int, requests: list[bytes], rate: float, connections: int = 64, *, python: bool = False
) -> Latency:
    binary = None if python else compiled()
    if binary is not None:
        return _measure_c(binary, host, port, requests, rate, connections)
    return _measure_python(host, port, requests, rate, connections)


def _measure_python(host: str, port: int, requests: list[bytes], rate: float, connections: int) -> Latency:
    # The generator must not stall either: a full collection of this process's heap (the pre-signed
    # pools, the imported server code) takes ~25 ms here, and every request due meanwhile would count
    # it. So: collected before the clock starts, collector paused while it runs.
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        import uvloop  # ships with uvicorn[standard]; a faster generator disturbs the server less

        return uvloop.run(_run(host, port, requests, rate, connections))
    except ImportError:  # pragma: no cover
        return asyncio.run(_run(host, port, requests, rate, connections))
    finally:
        gc.enable()
        gc.unfreeze()
