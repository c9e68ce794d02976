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

from ..domain.faults import rule_shape
from ..store import ops_repo
from .scenario import MCHID_PATTERN, LoadContext, ScenarioError, Section, register_section

MCHID = re.compile(MCHID_PATTERN)
FIELDS = {"kind", "operation", "path", "mchid", "count", "probability", "latency_ms", "note"}


def load(conn: Connection, value: Any, lctx: LoadContext) -> None:
    # The control API's and the dashboard's own check (types, ranges, lengths, NUL), so a scenario rule
    # is refused with the same message; a path of [1] or a count of 1.5 used to be a 500 or stored as is.
    from ..server.control_ops import parse_fault_body
    from ..server.params import ControlError

    if not isinstance(value, list):
        raise ScenarioError("faults: must be a list of rules")
    # Loading a file again changes nothing: a rule it made before (same shape, used up or not) is given
    # the file's count again instead of a twin; each existing rule stands for one entry of the file.
    before: dict[tuple[object, ...], list[str]] = {}
    for existing in ops_repo.list_faults(conn):
        before.setdefault(existing.shape(), []).append(existing.id)
    for i, raw in enumerate(value):
        where = f"faults[{i}]"
        if not isinstance(raw, dict) or set(raw) - FIELDS:
            raise ScenarioError(f"{where}: a mapping with keys from {', '.join(sorted(FIELDS))}")
        rule = dict(raw)
        for name in ("mchid", "kind"):  # YAML reads an unquoted merchant number or `kind: 500` as an integer
            if isinstance(rule.get(name), int) and not isinstance(rule[name], bool):
                rule[name] = str(rule[name])
        if rule.get("mchid") is not None and not MCHID.fullmatch(str(rule["mchid"])):
            raise ScenarioError(f"{where}.mchid: a merchant number (1 to 32 digits)")
        try:
            args = parse_fault_body(rule)
        except ControlError as exc:
            raise ScenarioError(f"{where}: {exc.message}") from None
        shape = rule_shape(
            args["kind"],
            args["operation"],
            args["path"],
            args["mchid"],
            args["probability"],
            args["latency_ms"],
            args["note"],
        )
        same = before.get(shape)
        if same:
            ops_repo.rearm_fault(conn, same.pop(0), args["count"])
        else:
            ops_repo.add_fault(conn, now=time.time(), **args)
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
