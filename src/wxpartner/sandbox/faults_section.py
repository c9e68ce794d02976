"""The ``faults`` section of scenario files: fault rules to start with (exported while still active).

```yaml
faults:
  - kind: SYSTEM_ERROR
    operation: "webizpay.*"
    count: 1
```
"""

from __future__ import annotations

import re
import time
from typing import Any

from sqlalchemy.engine import Connection

from ..domain.faults import FaultSpecError, validate_rule
from ..store import ops_repo
from .scenario import MCHID_PATTERN, LoadContext, ScenarioError, Section, register_section

MCHID = re.compile(MCHID_PATTERN)
FIELDS = {"kind", "operation", "path", "mchid", "count", "probability", "latency_ms", "note"}


def load(conn: Connection, value: Any, lctx: LoadContext) -> None:
    if not isinstance(value, list):
        raise ScenarioError("faults: must be a list of rules")
    for i, raw in enumerate(value):
        where = f"faults[{i}]"
        if not isinstance(raw, dict) or set(raw) - FIELDS:
            raise ScenarioError(f"{where}: a mapping with keys from {', '.join(sorted(FIELDS))}")
        if raw.get("mchid") is not None and not MCHID.fullmatch(str(raw["mchid"])):
            raise ScenarioError(f"{where}.mchid: a merchant number (1 to 32 digits)")
        try:
            kind, latency = validate_rule(
                kind=str(raw.get("kind", "")),
                operation=raw.get("operation"),
                path=raw.get("path"),
                mchid=None if raw.get("mchid") is None else str(raw["mchid"]),
                count=raw.get("count"),
                probability=float(raw.get("probability", 1.0)),
                latency_ms=raw.get("latency_ms"),
            )
        except (FaultSpecError, TypeError, ValueError) as exc:
            raise ScenarioError(f"{where}: {exc}") from None
        ops_repo.add_fault(
            conn,
            kind=kind,
            operation=raw.get("operation"),
            path=raw.get("path"),
            mchid=None if raw.get("mchid") is None else str(raw["mchid"]),
            count=raw.get("count"),
            probability=float(raw.get("probability", 1.0)),
            latency_ms=latency,
            note=str(raw.get("note", ""))[:256],
            now=time.time(),
        )
    lctx.report["faults"] = len(value)


def export(conn: Connection) -> list[dict[str, Any]]:
    out = []
    for rule in ops_repo.list_faults(conn, active_only=True):
        entry: dict[str, Any] = {"kind": rule.kind.value}
        for name, val in (
            ("operation", rule.operation),
            ("path", rule.path),
            ("mchid", rule.mchid),
            ("count", rule.remaining),
            ("probability", rule.probability if rule.probability != 1.0 else None),
            ("latency_ms", rule.latency_ms or None),
            ("note", rule.note or None),
        ):
            if val is not None:
                entry[name] = val
        out.append(entry)
    return out


register_section(Section("faults", load, export))
