"""Open-loop latency at a fixed arrival rate.

Requests are due at t0 + i/rate whether or not earlier ones have been answered; latency is measured
from the moment a request was *due*, so a stalled server shows up in the tail instead of silently
slowing the generator down (no coordinated omission, up to the connection pool's size).
"""

from __future__ import annotations

import asyncio
import gc
import time
from dataclasses import dataclass


@dataclass
class Latency:
    rate: float
    sent: int
    ok: int
    p50_ms: float
    p99_ms: float
    achieved_rate: float


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


def measure(host: str, port: int, requests: list[bytes], rate: float, connections: int = 64) -> Latency:
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
