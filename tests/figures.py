"""Figures of the hostile suites (requests fuzzed, 5xx seen, crash cycles survived, writes lost, ...),
printed and merged into ``.soak/figures.json`` (``WXPARTNER_FIGURES`` overrides the path).

Also a pytest plugin (``pytest -p figures``, with ``tests`` on ``PYTHONPATH``): it counts every /v3
request the in-process app answers, and its 5xx, per test module, and records the crash test's cycles,
so modules that do not report figures themselves (schema fuzzing, crashes) get them too.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

_ROOT = Path(__file__).resolve().parent.parent


def figures_path() -> Path:
    return Path(os.environ.get("WXPARTNER_FIGURES", _ROOT / ".soak" / "figures.json"))


def record(section: str, **numbers: Any) -> None:
    """Print one line of figures and merge them into the figures file under ``section``."""
    print(f"\n[figures] {section}: " + ", ".join(f"{k}={v}" for k, v in numbers.items()))
    path = figures_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    data[section] = {**numbers, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True) + "\n")
    tmp.replace(path)


# --- the plugin ------------------------------------------------------------------------------------

_per_module: dict[str, dict[str, int]] = defaultdict(lambda: {"requests": 0, "5xx": 0})
_current = {"module": ""}
_outcomes: dict[str, str] = {}


def pytest_configure(config: pytest.Config) -> None:
    from wxpartner.server.pipeline import Pipeline

    original = Pipeline.handle
    if getattr(original, "_figures", False):
        return

    def counted(self: Pipeline, req: Any) -> Any:
        resp = original(self, req)
        counts = _per_module[_current["module"] or "?"]
        counts["requests"] += 1
        if resp.status >= 500:
            counts["5xx"] += 1
        return resp

    counted._figures = True  # type: ignore[attr-defined]
    Pipeline.handle = counted  # type: ignore[method-assign]


def pytest_runtest_setup(item: pytest.Item) -> None:
    _current["module"] = item.nodeid.split("::", 1)[0]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or report.outcome != "passed":
        _outcomes[report.nodeid] = report.outcome


def pytest_sessionfinish(session: pytest.Session) -> None:
    for module, counts in sorted(_per_module.items()):
        if counts["requests"]:
            record(f"in-process requests: {module}", requests=counts["requests"], server_errors=counts["5xx"])
    crash = [outcome for nodeid, outcome in _outcomes.items() if "test_crashes.py" in nodeid]
    if crash:
        cycles = int(os.environ.get("WXPARTNER_CRASH_CYCLES", "4"))
        survived = all(outcome == "passed" for outcome in crash)
        # test_crashes asserts every acknowledged write is back after each restart: passing = 0 lost.
        record(
            "crashes (tests/test_crashes.py)",
            crash_cycles=cycles,
            crash_cycles_survived=cycles if survived else "FAILED",
            writes_lost=0 if survived else "FAILED (see test output)",
        )
