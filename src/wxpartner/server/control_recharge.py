"""Sandbox plumbing of the scan-to-recharge employee family: preload employees through the control
API (``/sandbox/recharge-employees``) or a scenario file section ``recharge_employees``, and reset.

Both take the same entries::

    recharge_employees:
      - sub_mchid: "1900001109"
        mchid: "1900000001"        # the platform; optional when sub_mchid has exactly one platform
        employees:
          - oLTPCuCsfN3ABBz50VUZBNlHDbUU           # EFFECTIVE, added now
          - {sp_openid: oOld, state: DELETED, create_time: "2025-05-20T13:29:35.120+08:00"}
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import anyio
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy.engine import Connection
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..domain import recharge
from ..domain.clock import is_business_time
from ..domain.merchants import RelationKind
from ..protocol.detail import dotted, first_problem
from ..protocol.times import format_rfc3339, parse_rfc3339
from ..sandbox import scenario
from ..store import sandbox as sandbox_store
from ..store.recharge_repo import RechargeStore
from ..store.schema import BIGINT_MAX, merchant_relations
from . import cursors
from .control import ControlError, control_route, json_value
from .params import int_param, known_fields

SECTION = "recharge_employees"


class EmployeeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sp_openid: str = Field(min_length=1, max_length=32)
    state: recharge.StateName = "EFFECTIVE"
    create_time: str | float | None = None  # RFC 3339 or Unix seconds; default: business now
    update_time: str | float | None = None  # default: create_time


class PreloadSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sub_mchid: scenario.Mchid
    mchid: scenario.Mchid | None = None
    employees: list[EmployeeSpec] = []

    @field_validator("employees", mode="before")
    @classmethod
    def _openids(cls, value: Any) -> Any:
        """An openid alone is an EmployeeSpec of it: validated as one, so a wrong entry's error names
        its field ("employees[0].state: Input should be 'EFFECTIVE' or 'DELETED'"), where the union of
        the two read "employees[0].constrained-str: Input should be a valid string"."""
        if isinstance(value, list):
            return [{"sp_openid": item} if isinstance(item, str) else item for item in value]
        return value


def _ts(value: str | float | None, where: str) -> float | None:
    if value is None:
        return None
    try:
        ts = value if isinstance(value, float | int) else parse_rfc3339(value).timestamp()
    except ValueError as exc:
        detail = {"field": where, "location": "body", "issue": "not an RFC 3339 date-time"}
        raise recharge.PreloadError(f"{where}: {exc}", detail) from exc
    if not is_business_time(ts):  # it is rendered as a date in every answer that shows the employee
        detail = {"field": where, "location": "body", "issue": "out of range"}
        raise recharge.PreloadError(f"{where}: must be between 1970 and 9999", detail)
    return ts


def _platform_of(conn: Connection, sub_mchid: str) -> str:
    parents = [
        r[0]
        for r in conn.execute(
            sa.select(merchant_relations.c.parent_mchid).where(
                merchant_relations.c.child_mchid == sub_mchid,
                merchant_relations.c.kind == RelationKind.SECOND_LEVEL.value,
            )
        )
    ]
    if len(parents) != 1:
        found = ", ".join(sorted(parents)) or "none"
        raise recharge.PreloadError(
            f"give mchid: {sub_mchid} needs exactly one platform merchant to derive it (found {found})"
        )
    return str(parents[0])


def preload(conn: Connection, spec: PreloadSpec, where: str = "") -> list[recharge.Employee]:
    """``where``: the entry's path before its fields (``recharge_employees[0].`` in a scenario), for
    the errors that name one of its employees' times."""
    now = sandbox_store.read_clock(conn).now_ts()
    platform = spec.mchid or _platform_of(conn, spec.sub_mchid)
    entries = []
    for i, item in enumerate(spec.employees):
        entry = f"{where}employees[{i}]"
        entries.append(
            recharge.PreloadEntry(
                item.sp_openid,
                item.state,
                _ts(item.create_time, entry + ".create_time"),
                _ts(item.update_time, entry + ".update_time"),
            )
        )
    return recharge.preload(RechargeStore(conn), now, platform, spec.sub_mchid, entries)


def view(e: recharge.Employee) -> dict[str, Any]:
    def fmt(ts: float) -> str:
        return format_rfc3339(dt.datetime.fromtimestamp(ts, dt.UTC), millis=True)

    return {
        "mchid": e.mchid,
        "sub_mchid": e.sub_mchid,
        "sp_openid": e.sp_openid,
        "state": e.state,
        "create_time": fmt(e.create_time),
        "update_time": fmt(e.update_time),
    }


def _parse(data: Any, where: str) -> list[PreloadSpec]:
    items = data if isinstance(data, list) else [data]
    out = []
    for i, item in enumerate(items):
        try:
            out.append(PreloadSpec.model_validate(item))
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            detail = {
                "field": f"{where}[{i}].{dotted(first['loc'])}",
                "location": "body",
                "issue": first["msg"],
            }
            raise recharge.PreloadError(first_problem(exc, f"{where}[{i}]."), detail) from None
    return out


# --- scenario section ------------------------------------------------------------------------------


def _load_section(conn: Connection, data: Any, lctx: scenario.LoadContext) -> None:
    count = 0
    where = SECTION
    try:
        for i, spec in enumerate(_parse(data, SECTION)):
            where = f"{SECTION}[{i}]"
            count += len(preload(conn, spec, f"{where}."))
    except recharge.PreloadError as exc:
        # an entry's own path names the section already ("recharge_employees: recharge_employees[0]…",
        # with detail.field the section alone): said once, so the detail names the entry; a time was
        # named without its entry ("recharge_employees: employees[0].create_time: …")
        message = str(exc)
        located = message.startswith((f"{SECTION}[", f"{SECTION}."))
        raise scenario.ScenarioError(message if located else f"{where}: {message}") from exc
    lctx.report[SECTION] = count


def _export_section(conn: Connection) -> scenario.Rows | None:
    """One entry per (platform, second-level merchant) with its employees, oldest first: streamed as
    the rows are read (a group of 100,000 employees included)."""
    store = RechargeStore(conn)
    if not store.any_employee():
        return None
    grouped = itertools.groupby(store.export_all(scenario.EXPORT_BATCH), key=lambda e: (e.mchid, e.sub_mchid))
    groups = (
        {"mchid": m, "sub_mchid": s, "employees": scenario.Rows(_entry(e) for e in group)}
        for (m, s), group in grouped
    )
    return scenario.Rows(groups, nested=True)


def _entry(e: recharge.Employee) -> dict[str, Any]:
    v = view(e)
    return {k: v[k] for k in ("sp_openid", "state", "create_time", "update_time")}


def _reset(conn: Connection, mchid: str | None) -> None:
    RechargeStore(conn).reset(mchid)


scenario.register_section(scenario.Section(SECTION, _load_section, _export_section))
scenario.RESETTERS.append(_reset)


# --- control API ---------------------------------------------------------------------------------

LIST_LIMIT = 1000  # employees a GET answers at most (more: ?offset=)


@control_route("/recharge-employees", ["GET", "POST"])
async def recharge_employees(request: Request) -> Response:
    """POST one preload entry (or a list of them); GET the employees, DELETED ones included, a page
    at a time (``?limit=`` 1-1000, default 1000, ``&offset=``; ``next_offset`` while more follow;
    ``?sub_mchid=`` narrows to one second-level merchant)."""
    db = request.app.state.wx.db
    if request.method == "GET":
        q = request.query_params
        # ?sub_mchd= was ignored, and the answer listed every second-level merchant's employees
        known_fields(dict(q), "sub_mchid", "limit", "offset", "after", location="query")
        sub = q.get("sub_mchid")
        limit = int_param(q, "limit", LIST_LIMIT, 1, LIST_LIMIT)
        after = cursors.decode(q, str, str, float, str)
        offset = int_param(q, "offset", 0, 0, BIGINT_MAX)
        key = (after[0], after[1], after[2], after[3]) if after else None

        def read() -> list[recharge.Employee]:
            with db.read() as conn:
                return RechargeStore(conn).list_all(sub, limit=limit + 1, offset=offset, after=key)

        found = await anyio.to_thread.run_sync(read)
        more = len(found) > limit
        page = found[:limit]
        last = page[-1] if page else None
        return JSONResponse(
            {
                "employees": [view(e) for e in page],
                "next_offset": offset + limit if more and after is None else None,
                "next_after": cursors.encode([last.mchid, last.sub_mchid, last.create_time, last.sp_openid])
                if more and last
                else None,
            }
        )

    body = await _json_entries(request)

    def apply() -> list[dict[str, Any]]:
        with db.write() as conn:
            out: list[dict[str, Any]] = []
            for spec in _parse(body, "body"):
                out += [view(e) for e in preload(conn, spec)]
            return out

    try:
        loaded = await anyio.to_thread.run_sync(apply)
    except recharge.PreloadError as exc:
        raise ControlError(400, "PARAM_ERROR", str(exc), exc.detail) from exc
    return JSONResponse({"loaded": len(loaded), "employees": loaded})


async def _json_entries(request: Request) -> Any:
    """One entry object, or a JSON list of them."""
    data = await json_value(request)
    return {} if data is None else data
