"""An optional PNG of the results. matplotlib is not a dependency of wxpartner: the bench installs it
into the running environment when asked to draw and it is missing, and skips the chart (saying why)
when that is not possible."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any


def _matplotlib(install: bool) -> Any | None:
    try:
        return importlib.import_module("matplotlib")
    except ImportError:
        if not install:
            return None
    print("installing matplotlib for the chart (pip install matplotlib) ...", file=sys.stderr)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "matplotlib"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        print(f"could not install matplotlib: {done.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    importlib.invalidate_caches()
    return importlib.import_module("matplotlib")


def draw(results: dict[str, Any], path: Path, *, install: bool = True) -> str:
    """Draw the chart; returns a one-line note of what happened."""
    mpl = _matplotlib(install)
    if mpl is None:
        return "chart skipped: matplotlib is not installed (pip install matplotlib, or pip install .[bench]; or pass --no-chart)"
    mpl.use("Agg")
    plt = importlib.import_module("matplotlib.pyplot")
    rows = [r for r in results.get("endpoints", []) if not r["name"].startswith("floor")]
    names = [r["name"] for r in rows]
    pg = {r["name"]: r for r in (results.get("postgresql") or {}).get("endpoints", [])}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 0.6 * len(rows) + 2.5))
    y = range(len(rows))
    if pg:  # PostgreSQL beside SQLite: the same endpoints against its own floor run
        ax1.barh(
            [i - 0.2 for i in y], [r["ratio"] for r in rows], height=0.4, label="SQLite", color="#4a7ebb"
        )
        pg_ratios = [(pg.get(n) or {}).get("ratio") or 0 for n in names]
        ax1.barh([i + 0.2 for i in y], pg_ratios, height=0.4, label="PostgreSQL", color="#9fc5e8")
        ax1.legend(loc="lower right")
    else:
        ax1.barh(list(y), [r["ratio"] for r in rows], color="#4a7ebb")
    ax1.set_yticks(list(y), names)
    ax1.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    ax1.set_xlabel("throughput ÷ signing floor (same run, same workers)")
    ax1.invert_yaxis()
    p50 = [(r.get("latency_at_half") or {}).get("p50_ms", 0) for r in rows]
    p99 = [(r.get("latency_at_half") or {}).get("p99_ms", 0) for r in rows]
    ax2.barh([i - 0.2 for i in y], p50, height=0.4, label="p50 (SQLite)", color="#6aa84f")
    ax2.barh([i + 0.2 for i in y], p99, height=0.4, label="p99 (SQLite)", color="#cc4125")
    ax2.axvline(5.0, color="grey", linestyle="--", linewidth=1)
    floor_p99 = ((results.get("goals") or {}).get("worst_p99_ms") or {}).get("floor_p99_ms")
    if floor_p99:  # the same measure on the signing floor, at half of its own peak
        ax2.axvline(floor_p99, color="#cc4125", linestyle=":", linewidth=1.5, label="floor p99")
    ax2.set_yticks(list(y), [""] * len(rows))
    ax2.invert_yaxis()
    ax2.set_xscale("log")
    ax2.set_xlabel("latency at half of max throughput, ms (open loop, log scale)")
    ax2.legend(loc="lower right")
    fig.suptitle(
        f"wxpartner bench — {results.get('workers')} workers, {results.get('machine', {}).get('cpus')} CPUs"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"chart written to {path}"
