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

import httpx
import yaml

from wxpartner.protocol import keys as k
from wxpartner.store.db import Database, sqlite_url_for

from . import endpoints as ep
from . import seed
from .openloop import measure
from .presign import Call, CallFactory, Signer, presign
from .servers import Server, start_floor, start_wxpartner
from .wrk import ensure_wrk, run_wrk

CERT_MCHID = "1900000002"  # a certificate-mode provider with many second-level merchants
SECOND_LEVELS = [f"19{i:08d}" for i in range(30_000_000, 30_006_000)]


def bench_scenario() -> str:
    return yaml.safe_dump(
        {
            "version": 1,
            "merchants": [
                {
                    "mchid": CERT_MCHID,
                    "name": "Bench certificate-mode provider",
                    "role": "service_provider",
                    "key_mode": "certificate",
                    "apiv3_key": "0123456789abcdef0123456789abcdef",
                    "certificates": [{"generate": True}],
                    "second_level_merchants": SECOND_LEVELS,
                }
            ],
        }
    )


def _peak(server: Server, e: ep.Endpoint, args: argparse.Namespace) -> tuple[float, int, int]:
    """(successful requests per second, refused or failed requests, requests prepared)."""
    count = int(args.expected_rps * args.seconds * 1.3)
    if e.capacity is not None:
        count = min(count, int(e.capacity * 0.75))
    reqs = presign(e.signer, e.factory, server.host, count)
    res = run_wrk(server.url, reqs, seconds=args.seconds, connections=args.connections, threads=2)
    return res.ok_per_second, res.non_2xx + res.errors, count


def _latency(
    server: Server, e: ep.Endpoint, rate: float, used: int, args: argparse.Namespace
) -> dict[str, Any]:
    count = max(200, int(rate * args.latency_seconds))
    if e.capacity is not None:
        count = min(count, e.capacity - used)
    # Request numbers after the peak phase's (fresh out_card_no, cards not yet cancelled, ...).
    factory = functools.partial(_offset, e.factory, used)
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
    p.add_argument("--big", type=int, default=1_000_000, help="cards in the store for the scaled query")
    p.add_argument("--out", default=".bench/results.json")
    args = p.parse_args()
    ensure_wrk()
    results: dict[str, Any] = {"workers": args.workers, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    with tempfile.TemporaryDirectory(prefix="wxbench-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        (data_dir / "bench.yaml").write_text(bench_scenario())
        server = start_wxpartner(data_dir, args.workers, scenario=data_dir / "bench.yaml")
        info = server.info
        demo = Signer(info["mchid"], info["serial_no"], info["private_key_path"])
        keys = data_dir / "keys" / CERT_MCHID
        cert_serial = k.certificate_serial(k.load_certificate((keys / "apiclient_cert.pem").read_bytes()))
        cert = Signer(CERT_MCHID, cert_serial, str(keys / "apiclient_key.pem"))
        floor = start_floor(info["certificate_path"], args.workers, Path(tmp))
        db = Database(sqlite_url_for(data_dir))
        try:
            results.update(_run_all(server, floor, db, demo, cert, args))
            results["peak_rss_mib"] = {"wxpartner": server.peak_rss_mib(), "floor": floor.peak_rss_mib()}
        finally:
            db.dispose()
            server.stop()
            floor.stop()
    _print(results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    return 0


def _call(server: Server, signer: Signer, call: Call) -> Any:
    """One signed request outside the timed phases (setup)."""
    raw = presign(signer, functools.partial(_fixed, call), server.host, 1, processes=1)[0]
    head, _, body = raw.partition(b"\r\n\r\n")
    headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
    resp = httpx.request(call.method, server.url + call.url, headers=headers, content=body or None)
    if resp.status_code >= 300:
        raise RuntimeError(f"setup call {call.method} {call.url} failed: {resp.status_code} {resp.text}")
    return resp.json() if resp.content else None


def _fixed(call: Call, _i: int) -> Call:
    return call


def _authorize(server: Server, demo: Signer) -> str:
    body = json.dumps({"sp_mchid": ep.SP, "sub_mchid": ep.SUB, "application_type": "H5"}).encode()
    started = _call(server, demo, Call("POST", "/v3/webizpay/users/bench_user_01/authorization-url", body))
    token = started["authorization_url"].split("token=", 1)[1]
    resp = httpx.post(
        server.url + "/sandbox/webizpay/authorizations",
        json={"token": token},
        headers={"Authorization": "Bearer bench-token"},
    )
    resp.raise_for_status()
    return str(resp.json()["employee_id"])


def _run_all(
    server: Server, floor: Server, db: Database, demo: Signer, cert: Signer, args: argparse.Namespace
) -> dict[str, Any]:
    floors: dict[str, float] = {}
    for method in ("GET", "POST"):
        e = ep.Endpoint(f"floor {method}", method, functools.partial(ep.floor_call, method), demo)
        floors[method], _, _ = _peak(floor, e, args)
    rows: list[dict[str, Any]] = [
        {"name": f"floor {m}", "rps": round(v, 1), "ratio": 1.0} for m, v in floors.items()
    ]

    def run(e: ep.Endpoint) -> dict[str, Any]:
        rps, bad, used = _peak(server, e, args)
        row: dict[str, Any] = {
            "name": e.name,
            "rps": round(rps, 1),
            "ratio": round(rps / floors[e.method], 3),
        }
        row["refused"] = bad
        row["latency_at_half"] = _latency(server, e, rps / 2, used, args) if rps > 0 else None
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
        return row

    stamp = str(int(time.time()))
    employee = _authorize(server, demo)
    first = _call(server, demo, ep.issue_call(employee, "seed", 0))["card_no"]
    small = seed.clone_cards(db, first, 1_000, "81")
    query = functools.partial(ep.query_call, employee, small)
    base = run(ep.Endpoint("W4 query card (1,000 cards)", "GET", query, demo))
    run(ep.Endpoint("W3 issue card", "POST", functools.partial(ep.issue_call, employee, stamp), demo))
    to_cancel = seed.clone_cards(
        db, first, int(args.expected_rps * (args.seconds + args.latency_seconds)), "82"
    )
    cancel = functools.partial(ep.cancel_call, employee, to_cancel)
    run(ep.Endpoint("W6 cancel card", "POST", cancel, demo, capacity=len(to_cancel)))
    add = functools.partial(ep.recharge_add_call, SECOND_LEVELS, stamp)
    run(ep.Endpoint("R1 add recharge employee", "POST", add, cert, capacity=3 * len(SECOND_LEVELS)))
    run(ep.Endpoint("GET /v3/certificates", "GET", ep.certificates_call, cert))
    started = time.monotonic()
    seed.clone_cards(db, first, max(0, args.big - seed.count_cards(db)), "83")
    print(
        f"store filled to {seed.count_cards(db)} cards in {time.monotonic() - started:.0f}s", file=sys.stderr
    )
    big = run(ep.Endpoint(f"W4 query card ({args.big:,} cards)", "GET", query, demo))
    return {
        "endpoints": rows,
        "query_big_vs_small": round(big["rps"] / base["rps"], 3) if base["rps"] else None,
    }


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
    print(f"W4 query throughput with the big store / with 1,000 cards: {results.get('query_big_vs_small')}")
    if results.get("sdk"):
        print(f"SDK: {results['sdk']}")


if __name__ == "__main__":
    sys.exit(main())
