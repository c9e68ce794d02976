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

`--held RATE` measures instead at a fixed, moderate rate (the open-loop generator of `make bench`),
W4, W3, W6 and R1 alternated for `--rounds` rounds: each worker thread's CPU per request from
`/proc/PID/task/*/stat` (the event loop's, user and system, and the other threads': the WAL checkpoint
thread, the thread pool), its voluntary and involuntary context switches, and with `--strace` the
system calls per request (`strace -c -f` on the workers; it slows them, so its rounds' CPU is not
comparable with the others').
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from wxpartner.store.db import Database, sqlite_url_for

from . import endpoints as ep
from .__main__ import CERT_MCHID, SECOND_LEVELS, _authorize, _call, _signer, bench_scenario
from .openloop import measure as open_loop
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


@dataclass(frozen=True)
class ThreadTimes:
    user: float  # seconds
    system: float
    voluntary: int  # context switches: waited (a lock, I/O, the loop idle)
    involuntary: int  # preempted


def parse_task(stat: str, status: str, ticks: int) -> ThreadTimes:
    """One thread's ``/proc/PID/task/TID/stat`` and ``status`` -> its CPU and context switches."""
    fields = stat.rsplit(")", 1)[1].split()  # the name may hold spaces and parentheses
    switches = dict(line.split(":", 1) for line in status.splitlines() if line.endswith(tuple("0123456789")))
    return ThreadTimes(
        int(fields[11]) / ticks,
        int(fields[12]) / ticks,
        int(switches.get("voluntary_ctxt_switches", "0")),
        int(switches.get("nonvoluntary_ctxt_switches", "0")),
    )


def thread_times(pids: Iterable[int]) -> dict[tuple[int, int], ThreadTimes]:
    """Every thread of ``pids``: (pid, tid) -> its times so far (a thread gone meanwhile is skipped)."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                out[(pid, int(task.name))] = parse_task(
                    (task / "stat").read_text(), (task / "status").read_text(), ticks
                )
            except OSError:
                continue
    return out


def per_request(
    before: dict[tuple[int, int], ThreadTimes], after: dict[tuple[int, int], ThreadTimes], requests: int
) -> dict[str, float]:
    """The threads' work between two readings, per request: the event loop's (each worker's main
    thread) and the other threads' CPU in ms, and the loop's context switches."""
    zero = ThreadTimes(0.0, 0.0, 0, 0)
    out = dict.fromkeys(("loop_user", "loop_sys", "others_user", "others_sys", "loop_vcs", "loop_ivcs"), 0.0)
    for (pid, tid), now in after.items():
        was = before.get((pid, tid), zero)
        where = "loop" if pid == tid else "others"
        out[f"{where}_user"] += (now.user - was.user) * 1000
        out[f"{where}_sys"] += (now.system - was.system) * 1000
        if where == "loop":
            out["loop_vcs"] += now.voluntary - was.voluntary
            out["loop_ivcs"] += now.involuntary - was.involuntary
    n = max(1, requests)
    return {k: v / n for k, v in out.items()}


_STRACE_LINE = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:(\d+)\s+)?(\w+)\s*$")


def parse_strace_summary(text: str) -> dict[str, int]:
    """``strace -c`` output -> calls per system call (the ``total`` line left out)."""
    out = {}
    for line in text.splitlines():
        m = _STRACE_LINE.match(line)
        if m and m.group(3) != "total":
            out[m.group(3)] = int(m.group(1))
    return out


def held(
    server: Server, requests: list[bytes], rate: float, *, strace: Path | None = None
) -> dict[str, float]:
    """``requests`` sent open loop at ``rate`` a second; what each kind of worker thread spent per
    request answered (ms), and with ``strace`` the system calls per request (``sc_<name>``)."""
    pids = server.serving_pids()
    tracer = None
    if strace is not None:
        args = ["strace", "-c", "-f", "-o", str(strace), *(a for p in pids for a in ("-p", str(p)))]
        tracer = subprocess.Popen(args, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # attached to every thread
    before = thread_times(pids)
    result = open_loop("127.0.0.1", server.port, requests, rate, 16)
    time.sleep(0.2)  # the last answers' bookkeeping
    after = thread_times(pids)
    if tracer is not None:
        tracer.send_signal(signal.SIGINT)
        tracer.wait(30)
    answered = result.ok
    row = per_request(before, after, answered)
    row["cpu_ms"] = row["loop_user"] + row["loop_sys"] + row["others_user"] + row["others_sys"]
    row["refused"] = float(result.sent - result.ok)
    if strace is not None:
        for name, calls in parse_strace_summary(strace.read_text()).items():
            row[f"sc_{name}"] = calls / max(1, answered)
    return {k: round(v, 3) for k, v in row.items()}


def main_held(args: argparse.Namespace) -> int:
    """``--held RATE``: see the module's docstring."""
    n = int(args.held * args.seconds) + 10
    rows: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="wxsplit-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        (data_dir / "bench.yaml").write_text(bench_scenario())
        server = start_wxpartner(data_dir, args.workers, scenario=data_dir / "bench.yaml")
        info = server.info
        demo = Signer(info["mchid"], info["serial_no"], info["private_key_path"])
        cert = _signer(data_dir, CERT_MCHID)
        db = Database(sqlite_url_for(data_dir))
        try:
            employee = _authorize(server, demo)
            first = _call(server, demo, ep.issue_call(employee, "seed", 0))["card_no"]
            cards = clone_cards(db, first, 1_000, "81")
            to_cancel = clone_cards(db, first, n * (args.rounds + 1), "82")
            stamp = str(int(time.time()))

            def factories(r: int) -> dict[str, tuple[Signer, CallFactory]]:
                mine = slice(r * n, (r + 1) * n)  # each round's own cards and second-level merchants
                return {
                    "W4 query card": (demo, functools.partial(ep.query_call, employee, cards)),
                    "W3 issue card": (demo, functools.partial(ep.issue_call, employee, f"{stamp}r{r}")),
                    "W6 cancel card": (demo, functools.partial(ep.cancel_call, employee, to_cancel[mine])),
                    "R1 add recharge employee": (
                        cert,
                        functools.partial(ep.recharge_add_call, SECOND_LEVELS[r * (n // 3 + 1) :], stamp),
                    ),
                }

            for signer, factory in factories(args.rounds).values():  # warm-up
                open_loop("127.0.0.1", server.port, presign(signer, factory, server.host, 200), args.held, 16)
            for r in range(args.rounds):
                todo = list(factories(r).items())
                for name, (signer, factory) in todo if r % 2 == 0 else todo[::-1]:
                    requests = presign(signer, factory, server.host, n)
                    trace = Path(tmp) / "strace.txt" if args.strace and r == 0 else None
                    row = held(server, requests, args.held, strace=trace)
                    rows.setdefault(name, []).append(row)
                    print(name, row, file=sys.stderr)
        finally:
            db.dispose()
            server.stop()
    _print_held(rows, args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    out.write_text(json.dumps({"started": started, "held_rate": args.held, "rounds": rows}, indent=2))
    print(f"\nwritten to {out}")
    return 0


def _print_held(rows: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> None:
    timed = {
        name: [r for i, r in enumerate(rs) if not (args.strace and i == 0)] or rs for name, rs in rows.items()
    }
    keys = ("cpu_ms", "loop_user", "loop_sys", "others_user", "others_sys", "loop_vcs", "loop_ivcs")
    print(f"\nper request at {args.held:g} requests/s, {args.workers} workers (medians of the rounds;")
    print("CPU in ms: the event loop's user and system, the other threads'; the loop's context switches)\n")
    print(f"{'':26}" + " ".join(f"{k:>11}" for k in keys))
    for name, rs in timed.items():
        print(f"{name:26}" + " ".join(f"{statistics.median(r[k] for r in rs):11.3f}" for k in keys))
    if args.strace:
        calls = sorted({k for rs in rows.values() for k in rs[0] if k.startswith("sc_")})
        print("\nsystem calls per request (strace -c -f, the first round)\n")
        print(f"{'':14}" + " ".join(f"{name[:9]:>10}" for name in rows))
        for call in calls:
            print(f"{call[3:]:14}" + " ".join(f"{rs[0].get(call, 0.0):10.2f}" for rs in rows.values()))


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.split", description=__doc__)
    p.add_argument("--seconds", type=int, default=8, help="wrk duration per endpoint (--held: per round)")
    p.add_argument("--out", default=".bench/split.json")
    p.add_argument("--held", type=float, metavar="RATE", help="a fixed rate instead of full load (see above)")
    p.add_argument("--rounds", type=int, default=3, help="--held: rounds of the four endpoints, alternated")
    p.add_argument("--workers", type=int, default=2, help="--held: worker processes")
    p.add_argument("--strace", action="store_true", help="--held: system calls per request (first round)")
    args = p.parse_args()
    if args.held:
        return main_held(args)
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
