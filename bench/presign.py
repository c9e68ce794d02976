"""Requests signed before the timed phase: raw HTTP/1.1 bytes, each with its own nonce.

Signing is spread over a process pool so preparing tens of thousands of requests takes seconds, and
the load generators only copy bytes while the server is measured.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from wxpartner.protocol import keys as k
from wxpartner.protocol.authorization import Authorization
from wxpartner.protocol.messages import request_message
from wxpartner.protocol.signing import new_nonce, sign


@dataclass(frozen=True)
class Signer:
    mchid: str
    serial_no: str
    private_key_path: str


@dataclass(frozen=True)
class Call:
    method: str
    url: str  # path and query exactly as sent
    body: bytes = b""


# Builds the i-th call of an endpoint; must be a module-level function (it crosses process boundaries).
CallFactory = Callable[[int], Call]

_key_cache: dict[str, object] = {}


def raw_request(signer: Signer, call: Call, host: str, timestamp: str | None = None) -> bytes:
    key = _key_cache.get(signer.private_key_path)
    if key is None:  # loading a PEM costs ~40 ms: once per process
        key = _key_cache[signer.private_key_path] = k.load_private_key(
            Path(signer.private_key_path).read_bytes()
        )
    ts = timestamp or str(int(time.time()))
    nonce = new_nonce()
    signature = sign(key, request_message(call.method, call.url, ts, nonce, call.body))  # type: ignore[arg-type]
    auth = Authorization(signer.mchid, nonce, ts, signer.serial_no, signature).header_value()
    lines = [
        f"{call.method} {call.url} HTTP/1.1",
        f"Host: {host}",
        "Accept: application/json",
        "User-Agent: wxpartner-bench/1",
        f"Authorization: {auth}",
    ]
    if call.method in ("POST", "PUT", "PATCH"):
        lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(call.body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + call.body


def _chunk(args: tuple[Signer, CallFactory, str, int, int]) -> list[bytes]:
    signer, factory, host, start, stop = args
    return [raw_request(signer, factory(i), host) for i in range(start, stop)]


def presign(
    signer: Signer, factory: CallFactory, host: str, count: int, *, start: int = 0, processes: int = 2
) -> list[bytes]:
    step = max(1, count // (processes * 4))
    jobs = [
        (signer, factory, host, i, min(i + step, start + count)) for i in range(start, start + count, step)
    ]
    with ProcessPoolExecutor(processes) as pool:
        out: list[bytes] = []
        for part in pool.map(_chunk, jobs):
            out.extend(part)
    return out


def write_partitions(requests: Sequence[bytes], base: Path, parts: int) -> None:
    """One file per wrk thread, records separated by NUL (never part of an HTTP request)."""
    for p in range(parts):
        (base.parent / f"{base.name}.{p}").write_bytes(b"\0".join(requests[p::parts]))
