"""`python -m bench`: wxpartner's endpoints as ratios of the signing floor, measured in one run.

The machine is shared and noisy, so nothing here is compared with another day: every figure is a
ratio to the floor measured minutes earlier in the same run, on the same cores.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from wxpartner.protocol import keys as k

from . import endpoints as ep
from .openloop import measure
from .presign import Call, CallFactory, Signer, presign
from .servers import Server, start_floor, start_wxpartner
from .wrk import ensure_wrk, run_wrk

BENCH_SCENARIO = """
version: 1
merchants:
  - mchid: "1900000002"
    name: Bench certificate-mode provider
    role: service_provider
    key_mode: certificate
    apiv3_key: 0123456789abcdef0123456789abcdef
    certificates: [{generate: true}]
"""


def _peak(server: Server, e: ep.Endpoint, args: argparse.Namespace) -> tuple[float, int]:
    count = int(args.expected_rps * args.seconds * 1.3)
    if e.prepare:
        e.prepare(count)
    reqs = presign(e.signer, e.factory, server.host, count)
    res = run_wrk(server.url, reqs, seconds=args.seconds, connections=args.connections, threads=2)
    return res.ok_per_second, res.non_2xx + res.errors


def _latency(server: Server, e: ep.Endpoint, rate: float, args: argparse.Namespace) -> dict[str, Any]:
    count = max(200, int(rate * args.latency_seconds))
    if e.prepare:
        e.prepare(count)
    # Distinct request numbers from the peak phase (unique out_card_no etc.).
    factory = functools.partial(_offset, e.factory, 10_000_000)
    reqs = presign(e.signer, factory, server.host, count)
    lat = measure("127.0.0.1", server.port, reqs, rate)
    return {
        "rate": round(rate, 1),
        "p50_ms": lat.p50_ms,
        "p99_ms": lat.p99_ms,
        "ok": lat.ok,
        "sent": lat.sent,
    }


def _offset(factory: CallFactory, offset: int, i: int) -> Call:
    return factory(offset + i)


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seconds", type=int, default=5, help="wrk duration per endpoint")
    p.add_argument("--latency-seconds", type=float, default=3.0)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--expected-rps", type=float, default=4000, help="sizes the pre-signed request pool")
    p.add_argument("--only", default="", help="comma-separated endpoint names")
    p.add_argument("--out", default=".bench/results.json")
    args = p.parse_args()
    ensure_wrk()
    results: dict[str, Any] = {"workers": args.workers, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    with tempfile.TemporaryDirectory(prefix="wxbench-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        (data_dir / "bench.yaml").write_text(BENCH_SCENARIO)
        server = start_wxpartner(data_dir, args.workers, scenario=data_dir / "bench.yaml")
        info = server.info
        demo = Signer(info["mchid"], info["serial_no"], info["private_key_path"])
        cert_key = data_dir / "keys" / "1900000002" / "apiclient_key.pem"
        cert_pem = (data_dir / "keys" / "1900000002" / "apiclient_cert.pem").read_bytes()
        cert_serial = k.certificate_serial(k.load_certificate(cert_pem))
        floor = start_floor(info["certificate_path"], args.workers, Path(tmp))
        try:
            rows = _run_all(server, floor, demo, Signer("1900000002", cert_serial, str(cert_key)), args)
            results["endpoints"] = rows
            results["peak_rss_mib"] = {"wxpartner": server.peak_rss_mib(), "floor": floor.peak_rss_mib()}
        finally:
            server.stop()
            floor.stop()
    _print(results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    return 0


def _run_all(
    server: Server, floor: Server, demo: Signer, cert: Signer, args: argparse.Namespace
) -> list[dict[str, Any]]:
    floors: dict[str, float] = {}
    for method in ("GET", "POST"):
        e = ep.Endpoint(f"floor {method}", method, functools.partial(ep.floor_call, method), demo)
        floors[method], _ = _peak(floor, e, args)
    endpoints = [ep.Endpoint("certificates (GET /v3/certificates)", "GET", ep.certificates_call, cert)]
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    rows = [{"name": f"floor {m}", "rps": round(v, 1), "ratio": 1.0} for m, v in floors.items()]
    for e in endpoints:
        if only and not any(o in e.name for o in only):
            continue
        rps, bad = _peak(server, e, args)
        row: dict[str, Any] = {
            "name": e.name,
            "rps": round(rps, 1),
            "ratio": round(rps / floors[e.method], 3),
        }
        row["refused"] = bad
        row["latency_at_half"] = _latency(server, e, rps / 2, args) if rps > 0 else None
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    return rows


def _print(results: dict[str, Any]) -> None:
    print(
        f"\nwxpartner bench — {results['workers']} workers, ratios to the signing floor measured in this run\n"
    )
    print(f"{'endpoint':44} {'req/s':>9} {'÷floor':>7} {'p50 ms':>8} {'p99 ms':>8} {'@ req/s':>8}")
    for r in results.get("endpoints", []):
        lat = r.get("latency_at_half") or {}
        print(
            f"{r['name']:44} {r['rps']:>9} {r['ratio']:>7} {lat.get('p50_ms', ''):>8} "
            f"{lat.get('p99_ms', ''):>8} {lat.get('rate', ''):>8}"
        )
    print(f"\npeak RSS per worker (MiB): {results.get('peak_rss_mib')}")


if __name__ == "__main__":
    sys.exit(main())
