"""Control API for sandbox operations: fault rules and the request journal (token-guarded)."""

from __future__ import annotations

import time
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..domain.faults import FaultRule, FaultSpecError, validate_rule
from ..store import ops_repo, registry
from ..store.schema import INTEGER_MAX
from .control import ControlError, control_route, json_body
from .faults import injector
from .journal import explained, writer
from .params import Location, bad, choice_param, number, optional_integer, string


def fault_view(rule: FaultRule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "kind": rule.kind.value,
        "operation": rule.operation,
        "path": rule.path,
        "mchid": rule.mchid,
        "remaining": rule.remaining,
        "probability": rule.probability,
        "latency_ms": rule.latency_ms,
        "hits": rule.hits,
        "note": rule.note,
        "created_at": rule.created_at,
    }


def _opt_str(body: dict[str, Any], name: str, location: Location) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise bad(
            f"{name} must be a string", field=name, location=location, issue="not a string", value=value
        )
    return value.strip() or None


def parse_fault_body(body: dict[str, Any], location: Location = "body") -> dict[str, Any]:
    """Validate a fault rule from JSON (or a dashboard form, ``location`` "form") into add_fault's
    keyword arguments."""
    unknown = sorted(
        set(body) - {"kind", "operation", "path", "mchid", "count", "probability", "latency_ms", "note"}
    )
    if unknown:
        raise bad(
            f"unknown field(s): {', '.join(unknown)}",
            field=unknown[0],
            location=location,
            issue="unknown field",
        )
    kind = body.get("kind")
    if not isinstance(kind, str) or not kind:
        raise bad(
            "kind is required (e.g. SYSTEM_ERROR)",
            field="kind",
            location=location,
            issue="required" if kind is None else "not a non-empty string",
            value=kind,
        )
    raw_probability = body.get("probability")
    probability = (
        1.0
        if raw_probability is None or raw_probability == ""
        else number(raw_probability, "probability", location=location, what="a number in (0, 1]")
    )
    args: dict[str, Any] = {
        "operation": _opt_str(body, "operation", location),
        "path": _opt_str(body, "path", location),
        "mchid": _opt_str(body, "mchid", location),
        # the remaining count is an INTEGER column
        "count": optional_integer(body.get("count"), "count", location=location, lo=1, hi=INTEGER_MAX),
        "probability": probability,
    }
    latency_ms = optional_integer(body.get("latency_ms"), "latency_ms", location=location)
    try:
        fk, latency = validate_rule(kind=kind, latency_ms=latency_ms, **args)
    except FaultSpecError as exc:
        value = body.get(exc.field) if exc.field is not None else None
        raise bad(str(exc), field=exc.field, location=location, issue=exc.issue, value=value) from None
    # The note's column holds 256 characters: a longer one (or one that is no string) is refused, not cut.
    raw_note = body.get("note")
    note = "" if raw_note in (None, "") else string(raw_note, "note", location=location, max_length=256)
    return {**args, "kind": fk, "latency_ms": latency, "note": note}


# Fault rule changes, shared with the dashboard's forms; each one drops the injector's cached rules. They
# run in a worker thread.


def add_fault_rule(request: Request, args: dict[str, Any]) -> FaultRule:
    st = request.app.state.wx
    with st.db.write() as conn:
        rule = ops_repo.add_fault(conn, now=time.time(), **args)
    injector(st).invalidate()
    return rule


def delete_fault_rule(st: Any, rule_id: str) -> bool:
    with st.db.write() as conn:
        ok = ops_repo.delete_fault(conn, rule_id)
    injector(st).invalidate()
    return ok


def clear_fault_rules(st: Any) -> int:
    with st.db.write() as conn:
        n = ops_repo.clear_faults(conn)
    injector(st).invalidate()
    return n


def list_fault_rules(st: Any) -> list[FaultRule]:
    with st.db.read() as conn:
        return ops_repo.list_faults(conn)


@control_route("/faults", ["GET", "POST", "DELETE"])
async def faults(request: Request) -> Response:
    st = request.app.state.wx
    if request.method == "POST":
        args = parse_fault_body(await json_body(request))
        rule = await anyio.to_thread.run_sync(lambda: add_fault_rule(request, args))
        return JSONResponse(fault_view(rule), status_code=201)
    if request.method == "DELETE":
        return JSONResponse({"deleted": await anyio.to_thread.run_sync(clear_fault_rules, st)})
    rules = await anyio.to_thread.run_sync(list_fault_rules, st)
    return JSONResponse({"data": [fault_view(r) for r in rules]})


@control_route("/faults/{rule_id}", ["GET", "DELETE"])
async def fault(request: Request) -> Response:
    st = request.app.state.wx
    rule_id = request.path_params["rule_id"]
    if request.method == "DELETE":
        if not await anyio.to_thread.run_sync(delete_fault_rule, st, rule_id):
            raise ControlError(404, "RESOURCE_NOT_EXISTS", f"no fault rule {rule_id}")
        return JSONResponse({"id": rule_id, "deleted": True})

    def read() -> FaultRule | None:
        with st.db.read() as conn:
            return ops_repo.get_fault(conn, rule_id)

    found = await anyio.to_thread.run_sync(read)
    if found is None:
        raise ControlError(404, "RESOURCE_NOT_EXISTS", f"no fault rule {rule_id}")
    return JSONResponse(fault_view(found))


JOURNAL_PAGE_MAX = 1000


# What a journal entry's verification is (server/journal.py): the signature checked, refused, an error
# before it could be, or no operation at that path.
VERIFICATIONS = ("ok", "refused", "error", "not_routed")


def journal_filter(params: Any) -> ops_repo.JournalFilter:
    failed = str(params.get("failed", "")).lower() in ("1", "true", "yes", "on")
    verification = choice_param(params, "verification", VERIFICATIONS)
    status = optional_integer(params.get("status"), "status", location="query", lo=0, hi=999)  # 0: dropped
    before = optional_integer(params.get("before_id"), "before_id", location="query")
    # 1..1000 (default 100), clamped here and not only in the store: "a full page, so there may be
    # more" compares the rows with this limit (a limit of 5000 gave 1000 rows and no next_before_id).
    limit = optional_integer(params.get("limit"), "limit", location="query")
    limit = 100 if limit is None else max(1, min(limit, JOURNAL_PAGE_MAX))
    return ops_repo.JournalFilter(
        mchid=params.get("mchid") or None,
        operation=params.get("operation") or None,
        status=status,
        code=params.get("code") or None,
        verification=verification,
        failed=failed,
        request_id=params.get("request_id") or None,
        before_id=before,
        limit=limit,
    )


def read_journal(st: Any, f: ops_repo.JournalFilter) -> list[dict[str, Any]]:
    # this process's buffered rows first, so a caller sees its own requests (and how many unverified
    # ones were left out: server/journal.py)
    writer(st).flush(note=True)
    with st.db.read() as conn:
        return ops_repo.list_journal(conn, f)


def read_journal_entry(st: Any, key: str) -> dict[str, Any] | None:
    """One entry by Request-ID (or row id), this process's buffered rows flushed first; a refused
    signature's entry says how long the string-to-sign was and whether it is cut (``explained``), a
    refused ``serial_no``'s which certificates the merchant has (``merchant_certificates``)."""
    writer(st).flush(note=True)
    with st.db.read() as conn:
        row = ops_repo.get_journal(conn, key)
        if row is None:
            return None
        entry = explained(row)
        if entry.get("verify_field") == "serial_no" and entry.get("mchid"):
            # what the serial should have been: a merchant's own certificates (not the platform's, the
            # usual mix-up), each with whether it is revoked; none when the merchant is not registered
            entry["merchant_certificates"] = [
                {"serial_no": c["serial_no"], "revoked": bool(c["revoked"])}
                for c in registry.list_certificates(conn, str(entry["mchid"]))
            ]
    return entry


@control_route("/journal", ["GET", "DELETE"])
async def journal(request: Request) -> Response:
    """GET ?mchid=&operation=(op id or prefix*)&status=&code=&verification=&failed=1&before_id=&limit="""
    st = request.app.state.wx
    if request.method == "DELETE":

        def clear() -> int:
            writer(st).flush()
            with st.db.write() as conn:
                return ops_repo.clear_journal(conn)

        return JSONResponse({"deleted": await anyio.to_thread.run_sync(clear)})
    f = journal_filter(request.query_params)
    rows = await anyio.to_thread.run_sync(lambda: read_journal(st, f))
    return JSONResponse({"data": rows, "next_before_id": rows[-1]["id"] if len(rows) == f.limit else None})


@control_route("/journal/{key}", ["GET"])
async def journal_entry(request: Request) -> Response:
    """One entry by Request-ID (or row id)."""
    st = request.app.state.wx
    key = request.path_params["key"]
    row = await anyio.to_thread.run_sync(read_journal_entry, st, key)
    if row is None:
        raise ControlError(404, "RESOURCE_NOT_EXISTS", f"no journal entry {key}")
    return JSONResponse(row)
