"""`python -m bench.split`: where a served request's CPU goes, wxpartner beside the signing floor.

`make bench` says how far each endpoint is from the floor; this says what the difference is made of.
Both servers run as `make bench` runs them (2 workers, SQLite, the bench scenario); while wrk drives
one endpoint at full load, Linux `perf` samples both workers' CPU (kernel and user, every library),
and each sample is put in a class by the shared object it ran in: the crypto (OpenSSL, inside
`cryptography`), the Python interpreter, the kernel, SQLite, the C library, and the rest (pydantic's
core, uvloop, the HTTP parser...). With the workers' CPU per request from /proc, each class is given
in milliseconds per request. The crypto per request is the same work on both servers (one RSA
signature, one verification); the difference is the rest.

Needs `perf` (Debian's `linux-perf`, installed here when missing) and the right to sample the
workers (root, or `kernel.perf_event_paranoid` ≤ 1).
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from wxpartner.store.db import Database, sqlite_url_for

from . import endpoints as ep
from .__main__ import CERT_MCHID, _authorize, _call, _signer, bench_scenario
from .presign import CallFactory, Signer, presign
from .seed import clone_cards
from .servers import Server, start_floor, start_wxpartner
from .wrk import ensure_wrk, run_wrk

# First match wins; a shared object's base name (perf prints "[kernel.kallsyms]" for the kernel).
CLASSES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("crypto", re.compile(r"^_rust\.abi3\.so$|^libcrypto|^libssl")),
    ("python", re.compile(r"^libpython|^python3")),
    ("kernel", re.compile(r"^\[kernel|^\[vdso\]")),
    ("sqlite", re.compile(r"sqlite3")),
    ("libc", re.compile(r"^libc[.-]|^libm[.-]|^ld-linux")),
)
ORDER = ("crypto", "python", "kernel", "sqlite", "libc", "other")


def classify(shares: Iterable[tuple[str, float]]) -> dict[str, float]:
    """Percent of samples per shared object -> percent per class (every class present, 0 if none)."""
    out = dict.fromkeys(ORDER, 0.0)
    for dso, percent in shares:
        name = Path(dso).name if not dso.startswith("[") else dso
        cls = next((c for c, pattern in CLASSES if pattern.search(name)), "other")
        out[cls] += percent
    return out


_REPORT_LINE = re.compile(r"^\s*([\d.]+)%\s+(\S.*?)\s*$")


def parse_report(text: str) -> list[tuple[str, float]]:
    """``perf report --sort dso --stdio`` -> [(shared object, percent of samples)]."""
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = _REPORT_LINE.match(line)
        if m:
            out.append((m.group(2), float(m.group(1))))
    return out


def ensure_perf() -> str:
    path = shutil.which("perf")
    if path:
        return path
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "linux-perf"], check=False, env=env, capture_output=True
    )
    path = shutil.which("perf")
    if not path:
        raise RuntimeError("perf is not installed and could not be installed (apt-get install linux-perf)")
    return path


def measure(server: Server, requests: list[bytes], seconds: int, out: Path) -> dict[str, float]:
    """wrk at full load on ``server`` while perf samples its workers; CPU per request by class (ms)."""
    run_wrk(server.url, requests[:2000], seconds=1, connections=32, threads=2)  # warm-up
    pids = server.serving_pids()
    done: dict[str, float] = {}

    def load() -> None:
        cpu0 = server.cpu_seconds()
        result = run_wrk(server.url, requests[2000:], seconds=seconds, connections=32, threads=2)
        done["cpu_ms"] = (server.cpu_seconds() - cpu0) * 1000 / max(1, result.requests)
        done["rps"] = result.ok_per_second
        done["bad"] = result.non_2xx + result.errors

    thread = threading.Thread(target=load)
    thread.start()
    time.sleep(1)  # past wrk's connection set-up
    perf = ensure_perf()
    record = [
        perf,
        "record",
        "-q",
        "-F",
        "999",
        "-e",
        "cpu-clock",
        "-o",
        str(out),
        "-p",
        ",".join(map(str, pids)),
    ]
    subprocess.run([*record, "--", "sleep", str(max(1, seconds - 2))], check=True, capture_output=True)
    thread.join()
    report = subprocess.run(
        [perf, "report", "-i", str(out), "--sort", "dso", "--stdio", "--no-children"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    split = classify(parse_report(report))
    total = sum(split.values()) or 1.0
    row = {cls: round(done["cpu_ms"] * split[cls] / total, 3) for cls in ORDER}
    return {"rps": round(done["rps"], 1), "refused": done["bad"], "cpu_ms": round(done["cpu_ms"], 3), **row}


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.split", description=__doc__)
    p.add_argument("--seconds", type=int, default=8, help="wrk duration per endpoint")
    p.add_argument("--out", default=".bench/split.json")
    args = p.parse_args()
    ensure_wrk()
    ensure_perf()
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="wxsplit-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        (data_dir / "bench.yaml").write_text(bench_scenario())
        server = start_wxpartner(data_dir, 2, scenario=data_dir / "bench.yaml")
        info = server.info
        demo = Signer(info["mchid"], info["serial_no"], info["private_key_path"])
        db = Database(sqlite_url_for(data_dir))
        try:
            employee = _authorize(server, demo)
            first = _call(server, demo, ep.issue_call(employee, "seed", 0))["card_no"]
            cards = clone_cards(db, first, 1_000, "81")
            n = 2200 * (args.seconds + 2)
            todo: dict[str, tuple[Signer, CallFactory]] = {
                "W4 query card": (demo, functools.partial(ep.query_call, employee, cards)),
                "W3 issue card": (demo, functools.partial(ep.issue_call, employee, str(int(time.time())))),
                "GET /v3/certificates": (_signer(data_dir, CERT_MCHID), ep.certificates_call),
            }
            for name, (signer, factory) in todo.items():
                rows[name] = measure(
                    server, presign(signer, factory, server.host, n), args.seconds, Path(tmp) / "w.perf"
                )
                print(name, rows[name], file=sys.stderr)
        finally:
            db.dispose()
            server.stop()
        floor = start_floor(info["certificate_path"], 2, Path(tmp))
        try:
            for method in ("GET", "POST"):
                calls = presign(
                    demo, functools.partial(ep.floor_call, method), floor.host, 2500 * (args.seconds + 2)
                )
                rows[f"floor {method}"] = measure(floor, calls, args.seconds, Path(tmp) / "f.perf")
                print(f"floor {method}", rows[f"floor {method}"], file=sys.stderr)
        finally:
            floor.stop()
    _print(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "rows": rows}, indent=2))
    print(f"\nwritten to {out}")
    return 0


def _print(rows: dict[str, dict[str, float]]) -> None:
    print("\nCPU per request (ms) of the workers at full load, by where it ran (perf samples)\n")
    head = f"{'':24} {'req/s':>7} {'total':>6} " + " ".join(f"{c:>7}" for c in ORDER)
    print(head)
    order = ["floor GET", "floor POST", *(k for k in rows if not k.startswith("floor"))]
    for name in order:
        r = rows[name]
        print(f"{name:24} {r['rps']:7.0f} {r['cpu_ms']:6.3f} " + " ".join(f"{r[c]:7.3f}" for c in ORDER))
    print("\nbeyond the floor (same method):")
    for name in order[2:]:
        floor = rows["floor POST" if "issue" in name else "floor GET"]
        diffs = " ".join(f"{rows[name][c] - floor[c]:+7.3f}" for c in ORDER)
        print(f"{name:24} {'':7} {rows[name]['cpu_ms'] - floor['cpu_ms']:+6.3f} {diffs}")


if __name__ == "__main__":
    sys.exit(main())
