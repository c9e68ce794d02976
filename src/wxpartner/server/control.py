"""The sandbox control API (``/sandbox/...``): token-protected, never reachable without the token.

Families add routes with ``@control_route``; handlers are async Starlette endpoints and do their
database work in a thread.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..domain.clock import ClockState
from ..domain.merchants import KeyMode, notify_url_problem, shown_url
from ..protocol.errors import ApiError
from ..protocol.times import format_rfc3339, parse_rfc3339
from ..sandbox import scenario
from ..sandbox.material import make_platform_certificate, make_platform_public_key
from ..store import dashboard_reads, registry, sandbox
from . import cursors
from .logs import shown_path
from .params import ControlError as ControlError  # families raise it from here
from .params import bad, flag, known_fields, nul_pointer, number, optional_integer, refuse_nul, string
from .streaming import streamed

if TYPE_CHECKING:
    from .app import AppState

log = logging.getLogger("wxpartner.control")

Endpoint = Callable[[Request], Awaitable[Response]]
CONTROL_ROUTES: list[Route] = []


def control_route(path: str, methods: list[str]) -> Callable[[Endpoint], Endpoint]:
    def register(fn: Endpoint) -> Endpoint:
        CONTROL_ROUTES.append(Route("/sandbox" + path, _guarded(fn), methods=methods))
        return fn

    return register


def has_token(expected: str, headers: Mapping[str, str]) -> bool:
    """The request carries the sandbox token (``Authorization: Bearer`` or ``X-Sandbox-Token``)."""
    given = headers.get("x-sandbox-token", "")
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def _guarded(fn: Endpoint) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        if not has_token(request.app.state.wx.sandbox_token, request.headers):
            return error(
                401, "UNAUTHORIZED", "the sandbox control API needs 'Authorization: Bearer <sandbox token>'"
            )
        try:
            refuse_nul(request.query_params.multi_items(), "query")
            refuse_nul(request.path_params.items(), "path")
            return await fn(request)
        except (ControlError, ApiError) as exc:  # ApiError: a domain refusal, as the business API answers it
            return error(exc.status, exc.code, exc.message, exc.detail)
        except scenario.ScenarioError as exc:
            where = exc.where  # the entry to blame, as the business API's detail names a field
            detail = {"field": where, "location": "body", "issue": exc.reason[:512]} if where else None
            return error(400, "SCENARIO_ERROR", str(exc), detail)
        except (DBAPIError, PoolTimeout):
            # The database is unreachable (an outage, a restart) or refused a transaction. Each
            # transaction commits whole or not at all, but a few endpoints run several (a redeliver
            # reopens, then sends): the message claims no more than that. Answered like /v3 does.
            # The path as logged: request.url.path is percent-decoded, so %0d%0a in it would end the line.
            path = shown_path(request.url.path)
            log.exception("database error in the control API: %s %s", request.method, path)
            return error(
                500,
                "SYSTEM_ERROR",
                "系统繁忙，请稍后用相同参数重试 (the database failed the request; what it failed was not written, retry)",
            )

    return endpoint


def error(status: int, code: str, message: str, detail: dict[str, Any] | None = None) -> JSONResponse:
    """The business API's error shape (protocol.md §6): ``detail`` only when there is one."""
    body: dict[str, Any] = {"code": code, "message": message}
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(body, status_code=status)


async def json_value(request: Request) -> Any:
    """The JSON body (None when empty); no string in it may hold a NUL."""
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise bad(f"body is not JSON: {exc}", field="/", location="body", issue="not JSON") from exc
    except RecursionError:  # nested deeper than the parser goes
        raise bad(
            "body is not JSON: nested too deeply", field="/", location="body", issue="not JSON"
        ) from None
    pointer = nul_pointer(data)
    if pointer is not None:  # the value is not echoed: nothing says whether it is a secret
        raise bad(
            f"body{pointer} must not contain NUL characters",
            field=pointer or "/",
            location="body",
            issue="contains NUL",
        )
    return data


async def json_body(request: Request) -> dict[str, Any]:
    data = await json_value(request)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise bad("body must be a JSON object", field="/", location="body", issue="not an object")
    return data


def clock_view(state: ClockState) -> dict[str, Any]:
    return {
        "now": format_rfc3339(state.now()),
        "now_ts": state.now_ts(),
        "frozen": state.frozen_at is not None,
        "offset_seconds": state.offset_seconds,
    }


def _seconds(value: Any, name: str) -> float:
    return number(value, name, location="body", text=False, what="a finite number of seconds")


def _ts(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _seconds(value, "set")
    if isinstance(value, str):
        try:
            return parse_rfc3339(value).timestamp()
        except ValueError as exc:
            raise bad(
                f"set: {exc}", field="set", location="body", issue="not an RFC 3339 date-time", value=value
            ) from exc
    raise bad(
        "set must be Unix seconds or an RFC 3339 date-time",
        field="set",
        location="body",
        issue="not a time",
        value=value,
    )


@control_route("/clock", ["GET", "POST"])
async def clock(request: Request) -> Response:
    """POST {"real": true, "set": ts|rfc3339, "freeze": bool, "advance": seconds, "thaw": true}; "real"
    (back to real time, running) applies first, so {"real": true, "advance": 60} is a minute ahead."""
    db = request.app.state.wx.db
    if request.method == "GET":

        def read() -> ClockState:
            with db.read() as conn:
                return sandbox.read_clock(conn)

        return JSONResponse(clock_view(await anyio.to_thread.run_sync(read)))
    body = await json_body(request)
    known_fields(body, "real", "set", "freeze", "thaw", "advance", location="body")
    real, freeze, thaw = (flag(body.get(name), name, location="body") for name in ("real", "freeze", "thaw"))
    if freeze and thaw:
        raise bad(
            "freeze and thaw contradict each other: give one",
            field="freeze, thaw",
            location="body",
            issue="contradictory",
        )

    def apply() -> ClockState:
        with db.write() as conn:
            state = sandbox.clock_for_change(conn)  # locks out other changes first
            if real:
                state = ClockState()
            if "set" in body:
                keep = state.frozen_at is not None
                state = state.set_to(_ts(body["set"]), frozen=freeze if "freeze" in body else keep)
            elif freeze:
                state = state.frozen()
            if thaw:
                state = state.thawed()
            if "advance" in body:
                state = state.advanced(_seconds(body["advance"], "advance"))
            try:
                state.checked()  # before writing: the clock stays usable
            except ValueError as exc:
                raise bad(str(exc), location="body", issue="out of range") from None
            sandbox.write_clock(conn, state)
            return state

    state = await anyio.to_thread.run_sync(apply)
    # What the move owes (expired cards, their callbacks, audits by time) is made before the answer,
    # as the pytest plugin's advance_clock does; bounded, and the answer says what it made.
    from .settle import settle  # registers with server/app.py, which imports this module

    done = await anyio.to_thread.run_sync(settle, request.app.state.wx)
    return JSONResponse({**clock_view(state), **done.view()})


@control_route("/reset", ["POST"])
async def reset(request: Request) -> Response:
    body = await json_body(request)
    known_fields(body, "mchid", location="body")  # a misspelt mchid must not reset every merchant
    if "mchid" in body and body["mchid"] is None:  # a script's unset variable must not either
        raise bad(
            "mchid is null: give a merchant number, or send {} (no mchid) to reset every merchant",
            field="mchid",
            location="body",
            issue="null",
        )
    # before anything is deleted
    mchid = string(body.get("mchid"), "mchid", location="body", max_length=32, required=False)
    if not await anyio.to_thread.run_sync(scenario.reset, request.app.state.wx.db, mchid):
        raise ControlError(404, "RESOURCE_NOT_EXISTS", f"merchant {mchid} is not registered")
    return JSONResponse({"reset": mchid or "all"})


@control_route("/scenario", ["GET", "POST"])
async def scenario_endpoint(request: Request) -> Response:
    st = request.app.state.wx
    if request.method == "GET":
        # Streamed as the rows are read (one read transaction): 100,000 applyments and as many
        # recharge employees were a 29.5 MB answer built in memory, and the process kept the memory.
        return await streamed(scenario.export_json(st.db), "application/json")
    text = (await request.body()).decode("utf-8", errors="replace")
    data = scenario.parse_text(text)
    where = scenario.nul_path(data)
    if where is not None:  # no column can hold it on PostgreSQL; named as every scenario error names one
        raise bad(f"{where}: {scenario.NUL_REASON}", field=where, location="body", issue="contains NUL")

    def load() -> dict[str, Any]:
        found = scenario.load_scenario(
            st.db, data, base_dir=st.settings.data_path, data_dir=st.settings.data_path, confine=True
        )
        scenario_loaded(st)
        return found

    report = await anyio.to_thread.run_sync(load)
    return JSONResponse({"loaded": True, **report})


def scenario_loaded(st: AppState) -> None:
    """After a load committed: this process's next request sees the scenario's platform keys and what
    the families cache from it (fault rules)."""
    from .app import SCENARIO_LOADED_HOOKS

    st.keyring.refresh(force=True)
    for hook in SCENARIO_LOADED_HOOKS:
        hook(st)


MERCHANT_PAGE_MAX = 1000


@control_route("/merchants", ["GET"])
async def merchants(request: Request) -> Response:
    """Every merchant by mchid, or a page of them: ``?limit=`` (1-1000) and ``?after=`` (the answer's
    ``next_after``). Each merchant's certificates and children are read for all of them at once (a
    query per merchant took 40 s for 20,000 merchants on SQLite)."""
    db = request.app.state.wx.db
    q = request.query_params
    known_fields(dict(q), "limit", "after", location="query")  # ?mchid= listed every merchant
    limit = optional_integer(q.get("limit"), "limit", location="query", lo=1, hi=MERCHANT_PAGE_MAX)
    after = cursors.decode(q, str)

    def read() -> dashboard_reads.MerchantListing:
        with db.read() as conn:
            return dashboard_reads.merchants_page(conn, after=after[0] if after else None, limit=limit)

    found = await anyio.to_thread.run_sync(read)
    data = [
        {
            "mchid": m.mchid,
            "name": m.name,
            "role": m.role.value,
            "key_mode": m.key_mode.value,
            "notify_url": shown_url(m.notify_url) if m.notify_url else None,
            "certificates": found.certificates[m.mchid],
            "children": [{"mchid": ch, "kind": kind} for ch, kind in found.children[m.mchid]],
        }
        for m in found.merchants
    ]
    next_after = cursors.encode([found.merchants[-1].mchid]) if found.more and found.merchants else None
    return JSONResponse({"data": data, "next_after": next_after})


@control_route("/merchants/{mchid}/notify-url", ["PUT", "POST"])
async def notify_url(request: Request) -> Response:
    db = request.app.state.wx.db
    body = await json_body(request)
    known_fields(body, "notify_url", location="body")
    if "notify_url" not in body:  # a misspelt field must not clear the URL
        raise bad(
            "notify_url is required: a URL, or null to clear it",
            field="notify_url",
            location="body",
            issue="required",
        )
    url = body.get("notify_url")
    mchid = request.path_params["mchid"]
    problem = notify_url_problem(url)
    if problem is not None:
        raise bad(problem, field="notify_url", location="body", issue="not a URL", value=url)

    def apply() -> bool:
        with db.write() as conn:
            return registry.set_notify_url(conn, mchid, url)

    if not await anyio.to_thread.run_sync(apply):
        raise ControlError(404, "RESOURCE_NOT_EXISTS", f"merchant {mchid} is not registered")
    return JSONResponse({"mchid": mchid, "notify_url": url})


@control_route("/merchants/{mchid}/key-mode", ["PUT", "POST"])
async def key_mode(request: Request) -> Response:
    """Switch one merchant's key mode (certificate -> migrating -> public_key, or back), keeping the rest
    of it: reloading a scenario entry to do so also replaced its role, APIv3 key and notify URL with
    the entry's (their defaults when left out)."""
    db = request.app.state.wx.db
    body = await json_body(request)
    known_fields(body, "key_mode", location="body")
    value = body.get("key_mode")
    modes = [mode.value for mode in KeyMode]
    if not isinstance(value, str) or value not in modes:  # a list or an object is no mode either
        raise bad(
            f"key_mode must be one of {', '.join(modes)}",
            field="key_mode",
            location="body",
            issue="not an allowed value" if "key_mode" in body else "required",
            value=value,
        )
    mode = KeyMode(value)
    mchid = request.path_params["mchid"]

    def apply() -> KeyMode | None:
        with db.write() as conn:
            before = registry.set_key_mode(conn, mchid, mode)
            if before is not None:
                refuse_unkeyed(conn)
            return before

    before = await anyio.to_thread.run_sync(apply)
    if before is None:
        raise ControlError(404, "RESOURCE_NOT_EXISTS", f"merchant {mchid} is not registered")
    return JSONResponse({"mchid": mchid, "key_mode": mode.value, "previous": before.value})


@control_route("/certificates/{serial_no}/revoke", ["POST"])
async def revoke_certificate(request: Request) -> Response:
    db = request.app.state.wx.db
    serial = request.path_params["serial_no"]

    def apply() -> bool:
        with db.write() as conn:
            return registry.revoke_certificate(conn, serial)

    if not await anyio.to_thread.run_sync(apply):
        raise ControlError(404, "RESOURCE_NOT_EXISTS", f"no merchant certificate {serial}")
    return JSONResponse({"serial_no": serial, "revoked": True})


@control_route("/platform-keys", ["GET"])
async def platform_keys(request: Request) -> Response:
    keyring = request.app.state.wx.keyring
    await anyio.to_thread.run_sync(lambda: keyring.refresh(force=True))
    data = [
        {
            "key_id": k.key_id,
            "kind": k.row.kind,
            "mchid": k.row.mchid,
            "retired": k.row.retired,
            "public_key": k.row.public_key_pem,
            "certificate": k.row.certificate_pem,
            "not_before": format_rfc3339(dt.datetime.fromtimestamp(k.row.not_before, dt.UTC)),
            "not_after": format_rfc3339(dt.datetime.fromtimestamp(k.row.not_after, dt.UTC)),
        }
        for k in keyring.all()
    ]
    return JSONResponse({"data": data})


@control_route("/platform-keys/rotate", ["POST"])
async def rotate_platform_key(request: Request) -> Response:
    """Add a new platform certificate (or public key). The old one stays valid until retired, so
    clients see two overlapping keys, as during a real rotation."""
    st = request.app.state.wx
    body = await json_body(request)
    known_fields(body, "kind", "mchid", "retire", location="body")
    kind = body.get("kind", "certificate")
    if kind not in ("certificate", "public_key"):
        raise bad(
            "kind must be certificate or public_key",
            field="kind",
            location="body",
            issue="not an allowed value",
            value=kind,
        )
    mchid = string(body.get("mchid"), "mchid", location="body", max_length=32, required=False)
    if mchid is not None and kind == "certificate":
        raise bad(
            "mchid is for kind public_key only (platform certificates are shared)",
            field="mchid",
            location="body",
            issue="not allowed with kind certificate",
            value=mchid,
        )
    retire = string(body.get("retire"), "retire", location="body", max_length=64, required=False)

    def apply() -> str:
        row = make_platform_certificate() if kind == "certificate" else make_platform_public_key(mchid)
        with st.db.write() as conn:
            # a merchant's own public key: only for a merchant that exists ("../x" is none)
            if mchid is not None and registry.get_merchant(conn, mchid) is None:
                raise ControlError(404, "RESOURCE_NOT_EXISTS", f"merchant {mchid} is not registered")
            registry.add_platform_key(conn, row)
            # an unknown key leaves nothing changed (the new key goes too): the caller meant to replace it
            if retire is not None and not registry.retire_platform_key(conn, retire):
                raise ControlError(404, "RESOURCE_NOT_EXISTS", f"no platform key {retire}")
            if retire is not None:
                refuse_unkeyed(conn, retire)
        st.keyring.refresh(force=True)
        return row.key_id

    key_id = await anyio.to_thread.run_sync(apply)
    return JSONResponse({"key_id": key_id, "kind": kind, "mchid": mchid, "retired": retire})


@control_route("/platform-keys/{key_id}/retire", ["POST"])
async def retire_platform_key(request: Request) -> Response:
    st = request.app.state.wx
    key_id = request.path_params["key_id"]

    def apply() -> bool:
        with st.db.write() as conn:
            ok = registry.retire_platform_key(conn, key_id)
            if ok:
                refuse_unkeyed(conn, key_id)
        st.keyring.refresh(force=True)
        return ok

    if not await anyio.to_thread.run_sync(apply):
        raise ControlError(404, "RESOURCE_NOT_EXISTS", f"no platform key {key_id}")
    return JSONResponse({"key_id": key_id, "retired": True})


def refuse_unkeyed(conn: Connection, retired: str | None = None) -> None:
    """409 (and the retirement or key-mode switch rolled back) when it leaves a merchant no key its
    mode can answer with: before, a public-key merchant was answered with a certificate, and with
    neither kind in force a 200 went out unsigned."""
    unkeyed = registry.unkeyed_merchant(conn, time.time())
    if unkeyed is not None:
        mchid, mode = unkeyed
        need = {
            KeyMode.CERTIFICATE: "a valid platform certificate",
            KeyMode.PUBLIC_KEY: "a WeChat Pay public key (its own or a shared one)",
            KeyMode.MIGRATING: "a platform certificate or a WeChat Pay public key",
        }[mode]
        if retired is None:
            message = (
                f"merchant {mchid} in {mode.value} mode would have no key to be answered with: it needs "
                f"{need}; add one (POST /sandbox/platform-keys/rotate) first"
            )
        else:
            message = (
                f"retiring {retired} leaves merchant {mchid} ({mode.value} mode) without {need}: rotate "
                f'with "retire": "{retired}" to replace it, or switch the merchant\'s key mode first'
            )
        raise ControlError(409, "INVALID_REQUEST", message)
