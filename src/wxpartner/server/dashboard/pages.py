"""Dashboard pages: overview, merchants & keys, journal with signature explanations, faults, clock,
family data. Server-rendered, one round trip per page, database work in a worker thread."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import anyio
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ...domain.clock import ClockState
from ...domain.faults import FaultKind, FaultRule
from ...protocol.times import format_rfc3339, parse_rfc3339
from ...store import dashboard_reads as family_reads
from ...store import dashboard_tables as data
from ...store import ops_repo, registry, sandbox
from ..control import ControlError
from ..control_ops import add_fault_rule, fault_view, journal_filter, parse_fault_body, read_journal
from ..faults import injector
from .auth import Endpoint, form, guarded, set_login, token_ok
from .layout import badge, card, esc, fmt_ts, page, status_badge, table

ROUTES: list[Route] = []


def route(
    path: str, methods: list[str] | None = None, *, public: bool = False
) -> Callable[[Endpoint], Endpoint]:
    def register(fn: Endpoint) -> Endpoint:
        ROUTES.append(Route("/dashboard" + path, fn if public else guarded(fn), methods=methods or ["GET"]))
        return fn

    return register


def _flash(request: Request) -> str:
    msg = request.query_params.get("msg")
    if not msg:
        return ""
    tone = " bad" if request.query_params.get("tone") == "bad" else ""
    return f'<div class="flash{tone}" role="status">{esc(msg)}</div>'


def _back(path: str, msg: str, *, bad: bool = False) -> RedirectResponse:
    query = {"msg": msg, **({"tone": "bad"} if bad else {})}
    return RedirectResponse(f"{path}?{urlencode(query)}", status_code=303)


# ---- login ---------------------------------------------------------------------------------------


@route("/login", ["GET", "POST"], public=True)
async def login(request: Request) -> Response:
    nxt = request.query_params.get("next") or "/dashboard"
    if not nxt.startswith("/dashboard"):
        nxt = "/dashboard"
    error = ""
    if request.method == "POST":
        fields = await form(request)
        if token_ok(request, fields.get("token", "")):
            resp = RedirectResponse(nxt, status_code=303)
            set_login(resp, request.app.state.wx.sandbox_token, request.url.scheme == "https")
            return resp
        error = '<div class="flash bad" role="alert">That is not the sandbox token.</div>'
    body = (
        f'{error}<section class="card" style="max-width:420px">'
        f'<form method="post" action="/dashboard/login?{urlencode({"next": nxt})}">'
        '<label for="token">Sandbox token (printed by <code>wxpartner serve</code>, also in '
        "connection.json)</label>"
        '<input id="token" name="token" type="password" autocomplete="current-password" style="width:100%" '
        'autofocus><p><button type="submit">Log in</button></p></form></section>'
    )
    return page("Log in", body, nav=False, status=401 if error else 200)


@route("/logout", ["POST"], public=True)
async def logout(_request: Request) -> Response:
    resp = RedirectResponse("/dashboard/login", status_code=303)
    resp.delete_cookie("wxpartner_dashboard", path="/")
    return resp


# ---- overview ------------------------------------------------------------------------------------


def _clock_html(state: ClockState) -> str:
    frozen = badge("frozen", "warn") if state.frozen_at is not None else badge("running")
    offset = state.offset_seconds
    shift = f"offset {offset:+.0f}s" if state.frozen_at is None else ""
    return (
        f'<div class="big" id="clock-now">{esc(format_rfc3339(state.now()))}</div>'
        f'<p>{frozen} <span class="muted">{esc(shift)}</span></p>'
    )


def _journal_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    for r in rows:
        verification = r["verification"]
        tone = "" if verification == "ok" else "bad"
        out.append(
            [
                esc(fmt_ts(r["at"])),
                f'<a class="mono" href="/dashboard/journal/{esc(r["request_id"])}">{esc(r["request_id"])}</a>',
                esc(r["mchid"] or ""),
                f"{esc(r['method'])} <code>{esc(r['path'][:80])}</code>",
                f"<code>{esc(r['operation'])}</code>",
                status_badge(int(r["status"])) + (f" <code>{esc(r['code'])}</code>" if r["code"] else ""),
                badge(verification, tone)
                + (f' <span class="muted">{esc(r["verify_field"])}</span>' if r["verify_field"] else ""),
                badge(r["fault"], "warn") if r["fault"] else "",
                f"{float(r['latency_ms']):.1f} ms",
            ]
        )
    return out


JOURNAL_HEADERS = (
    "time (UTC)",
    "Request-ID",
    "mchid",
    "request",
    "operation",
    "status",
    "verification",
    "fault",
    "latency",
)


@route("")
async def overview(request: Request) -> Response:
    st = request.app.state.wx

    def read() -> tuple[ClockState, int, list[FaultRule], list[dict[str, Any]], dict[str, int]]:
        rows = read_journal(st, ops_repo.JournalFilter(limit=15))
        with st.db.read() as conn:
            return (
                sandbox.read_clock(conn),
                len(registry.list_merchants(conn)),
                ops_repo.list_faults(conn, active_only=True),
                rows,
                family_reads.counts(conn),
            )

    clock, n_merchants, faults, rows, counts = await anyio.to_thread.run_sync(read)
    links = {
        "authorized employees": "/dashboard/employees",
        "quota cards": "/dashboard/cards",
        "spends": "/dashboard/cards",
        "recharge employees": "/dashboard/recharge",
        "applyments": "/dashboard/applyments",
        "callbacks pending": "/dashboard/callbacks?state=pending",
    }
    family = card(
        "Family data",
        '<div class="row" id="family-counts">'
        + "".join(
            f'<div><div class="big">{n if n <= family_reads.COUNT_CAP else f"{family_reads.COUNT_CAP}+"}</div>'
            f'<a href="{links[label]}">{esc(label)}</a></div>'
            for label, n in counts.items()
        )
        + "</div>",
    )
    tiles = (
        '<div class="grid">'
        + card("Business clock", _clock_html(clock) + '<a href="/dashboard/clock">Set / freeze / advance</a>')
        + card(
            "Merchants",
            f'<div class="big">{n_merchants}</div><a href="/dashboard/merchants">Merchants & keys</a>',
        )
        + card(
            "Active faults",
            f'<div class="big" id="active-faults">{len(faults)}</div><a href="/dashboard/faults">Fault rules</a>',
        )
        + "</div>"
    )
    recent = card(
        "Latest requests", table(JOURNAL_HEADERS, _journal_rows(rows), empty="No /v3 requests yet.")
    )
    return page("Overview", _flash(request) + tiles + family + recent, active="overview")


# ---- merchants -----------------------------------------------------------------------------------


@route("/merchants")
async def merchants(request: Request) -> Response:
    st = request.app.state.wx

    def read() -> tuple[
        list[Any], dict[str, list[dict[str, Any]]], dict[str, list[tuple[str, str]]], list[Any]
    ]:
        with st.db.read() as conn:
            ms = registry.list_merchants(conn)
            certs = {m.mchid: registry.list_certificates(conn, m.mchid) for m in ms}
            kids = {m.mchid: registry.children(conn, m.mchid) for m in ms}
            keys = registry.list_platform_keys(conn)
        return ms, certs, kids, keys

    ms, certs, kids, keys = await anyio.to_thread.run_sync(read)
    rows = []
    for m in ms:
        cert_html = "<br>".join(
            f"<code>{esc(c['serial_no'])}</code>" + (" " + badge("revoked", "bad") if c["revoked"] else "")
            for c in certs[m.mchid]
        )
        rows.append(
            [
                f'<span class="mono merchant-id">{esc(m.mchid)}</span>',
                esc(m.name),
                badge(m.role.value, "mute"),
                esc(m.key_mode.value),
                badge("set") if m.apiv3_key else badge("none", "mute"),
                cert_html or '<span class="muted">none</span>',
                ", ".join(f"{esc(ch)} <span class=muted>({esc(kind)})</span>" for ch, kind in kids[m.mchid]),
                esc(m.notify_url or ""),
            ]
        )
    merchants_html = table(
        ("mchid", "name", "role", "key mode", "APIv3 key", "API certificates", "children", "notify_url"),
        rows,
        empty="No merchants registered.",
    )
    key_rows = [
        [
            f"<code>{esc(k.key_id)}</code>",
            esc(k.kind),
            esc(k.mchid or "all merchants"),
            esc(fmt_ts(k.not_before)) + " → " + esc(fmt_ts(k.not_after)),
            badge("retired", "mute") if k.retired else badge("active"),
        ]
        for k in keys
    ]
    body = card("Merchants (APIv3 keys are never shown)", merchants_html) + card(
        "WeChat Pay platform keys", table(("key id", "kind", "for", "valid", "state"), key_rows)
    )
    return page("Merchants & keys", body, active="merchants")


# ---- journal -------------------------------------------------------------------------------------


def _filter_form(q: Any) -> str:
    def field(name: str, label: str, width: str = "") -> str:
        return (
            f'<div><label for="f-{name}">{label}</label><input id="f-{name}" name="{name}" '
            f'value="{esc(q.get(name, ""))}"{width}></div>'
        )

    checked = " checked" if q.get("failed") else ""
    return (
        '<form method="get" class="row card">'
        + field("mchid", "mchid")
        + field("operation", "operation (id or prefix*)")
        + field("status", "status")
        + field("code", "code")
        + f'<div><label><input type="checkbox" name="failed" value="1"{checked}> failures only</label></div>'
        + '<div><button type="submit">Filter</button> <a href="/dashboard/journal">clear</a></div></form>'
    )


@route("/journal")
async def journal(request: Request) -> Response:
    st = request.app.state.wx
    try:
        f = journal_filter(request.query_params)
    except ControlError as exc:
        return _back("/dashboard/journal", exc.message, bad=True)
    rows = await anyio.to_thread.run_sync(lambda: read_journal(st, f))
    more = ""
    if len(rows) == f.limit:
        params = {k: v for k, v in request.query_params.items() if k != "before_id"}
        more = f'<p><a href="?{esc(urlencode({**params, "before_id": rows[-1]["id"]}))}">Older →</a></p>'
    body = (
        _flash(request)
        + _filter_form(request.query_params)
        + card(
            "Requests, newest first",
            table(JOURNAL_HEADERS, _journal_rows(rows), empty="No matching requests."),
        )
        + more
    )
    return page("Request journal", body, active="journal")


EXPLAIN = (
    "The server verified the signature over exactly these bytes: the HTTP method, the URL path and query as "
    "sent, the timestamp, the nonce and the body, each followed by one line feed (\\n, shown as ⏎). "
    "Sign this text with the private key of the certificate named in <code>serial_no</code>. Usual causes: "
    "signing a different URL (decoded or re-encoded, missing query), re-serialising the JSON body after "
    "signing, a CRLF or a missing final line feed, or the wrong key."
)


@route("/journal/{key}")
async def journal_entry(request: Request) -> Response:
    st = request.app.state.wx
    key = request.path_params["key"]

    def read() -> dict[str, Any] | None:
        read_journal(st, ops_repo.JournalFilter(limit=1))  # flush this process's buffer
        with st.db.read() as conn:
            return ops_repo.get_journal(conn, key)

    r = await anyio.to_thread.run_sync(read)
    if r is None:
        return page("Not found", f"<p>No journal entry {esc(key)}.</p>", active="journal", status=404)
    facts = [
        ("time (UTC)", esc(fmt_ts(r["at"]))),
        ("Request-ID", f"<code>{esc(r['request_id'])}</code>"),
        ("merchant", esc(r["mchid"] or "unknown")),
        ("request", f"{esc(r['method'])} <code>{esc(r['path'])}</code>"),
        ("operation", f"<code>{esc(r['operation'])}</code>"),
        ("status", status_badge(int(r["status"])) + (f" <code>{esc(r['code'])}</code>" if r["code"] else "")),
        ("message", esc(r["message"] or "")),
        ("verification", badge(r["verification"], "" if r["verification"] == "ok" else "bad")),
        ("latency", f"{float(r['latency_ms']):.2f} ms"),
        ("fault", badge(r["fault"], "warn") if r["fault"] else "none"),
        (
            "body",
            f"{r['body_length']} bytes"
            + (f" · sha256 <code>{esc(r['body_sha256'])}</code>" if r["body_sha256"] else ""),
        ),
        ("client", esc(r["client"] or "") + (f" · {esc(r['user_agent'])}" if r["user_agent"] else "")),
    ]
    body = card("Request", table(("", ""), [[f"<b>{k}</b>", v] for k, v in facts]))
    if r["verification"] == "refused":
        explain = (
            f"<p>Refused on <code>{esc(r['verify_field'] or '')}</code>: {esc(r['verify_issue'] or '')}</p>"
        )
        if r["expected_message"]:
            shown = esc(r["expected_message"]).replace("\n", "⏎\n")
            explain += f'<p class="muted">{EXPLAIN}</p><pre id="expected-message">{shown}</pre>'
            explain += f'<p class="muted">{len(r["expected_message"].encode())} bytes</p>'
        body += card("Signature explanation", explain)
    return page(f"Request {r['request_id']}", body, active="journal")


# ---- faults --------------------------------------------------------------------------------------


def _fault_form() -> str:
    kinds = "".join(f"<option>{k.value}</option>" for k in FaultKind)
    return (
        '<form method="post" action="/dashboard/faults" class="row" id="fault-form">'
        f'<div><label for="kind">kind</label><select id="kind" name="kind">{kinds}</select></div>'
        '<div><label for="operation">operation id (glob, empty = any)</label><input id="operation" name="operation" placeholder="webizpay.*"></div>'
        '<div><label for="path">path (glob)</label><input id="path" name="path" placeholder="/v3/certificates"></div>'
        '<div><label for="mchid">mchid</label><input id="mchid" name="mchid"></div>'
        '<div><label for="count">count (empty = unlimited)</label><input id="count" name="count" inputmode="numeric"></div>'
        '<div><label for="probability">probability</label><input id="probability" name="probability" value="1"></div>'
        '<div><label for="latency_ms">latency ms</label><input id="latency_ms" name="latency_ms" placeholder="LATENCY only"></div>'
        '<div><button type="submit">Add fault</button></div></form>'
    )


@route("/faults", ["GET", "POST"])
async def faults(request: Request) -> Response:
    st = request.app.state.wx
    if request.method == "POST":
        fields = await form(request)
        try:
            args = parse_fault_body({k: v for k, v in fields.items() if v != ""})
        except ControlError as exc:
            return _back("/dashboard/faults", exc.message, bad=True)
        rule = await anyio.to_thread.run_sync(lambda: add_fault_rule(request, args))
        return _back("/dashboard/faults", f"Added {rule.kind.value} rule {rule.id}")

    def read() -> list[FaultRule]:
        with st.db.read() as conn:
            return ops_repo.list_faults(conn)

    rules = await anyio.to_thread.run_sync(read)
    rows = []
    for rule in rules:
        v = fault_view(rule)
        spent = rule.remaining is not None and rule.remaining <= 0
        rows.append(
            [
                f"<code>{esc(v['id'])}</code>",
                badge(v["kind"], "mute" if spent else "warn"),
                esc(v["operation"] or "any"),
                esc(v["path"] or "any"),
                esc(v["mchid"] or "any"),
                esc("∞" if v["remaining"] is None else v["remaining"]),
                esc(v["probability"]),
                esc(v["latency_ms"] or ""),
                esc(v["hits"]),
                f'<form class="inline" method="post" action="/dashboard/faults/{esc(v["id"])}/delete">'
                '<button class="ghost">Delete</button></form>',
            ]
        )
    header_help = (
        "<p>Faults act after the request signature was verified and change nothing in the store. A single "
        "request can ask for one with the header <code>Wechatpay-Sandbox-Fault: SYSTEM_ERROR</code> "
        "(several: <code>LATENCY=1500, BAD_SIGNATURE</code>).</p>"
    )
    body = (
        _flash(request)
        + card("Add a rule", _fault_form() + header_help)
        + card(
            "Rules",
            table(
                (
                    "id",
                    "kind",
                    "operation",
                    "path",
                    "mchid",
                    "remaining",
                    "probability",
                    "latency",
                    "hits",
                    "",
                ),
                rows,
                empty="No fault rules: every request is answered normally.",
            )
            + (
                '<form method="post" action="/dashboard/faults/clear"><button class="danger">Clear all</button></form>'
                if rules
                else ""
            ),
        )
    )
    return page("Faults", body, active="faults")


@route("/faults/{rule_id}/delete", ["POST"])
async def fault_delete(request: Request) -> Response:
    st = request.app.state.wx
    rule_id = request.path_params["rule_id"]

    def apply() -> bool:
        with st.db.write() as conn:
            ok = ops_repo.delete_fault(conn, rule_id)
        injector(st).invalidate()
        return ok

    ok = await anyio.to_thread.run_sync(apply)
    return _back("/dashboard/faults", f"Deleted {rule_id}" if ok else f"No rule {rule_id}", bad=not ok)


@route("/faults/clear", ["POST"])
async def faults_clear(request: Request) -> Response:
    st = request.app.state.wx

    def apply() -> int:
        with st.db.write() as conn:
            n = ops_repo.clear_faults(conn)
        injector(st).invalidate()
        return n

    n = await anyio.to_thread.run_sync(apply)
    return _back("/dashboard/faults", f"Deleted {n} rule(s)")


# ---- clock ---------------------------------------------------------------------------------------

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``2h``, ``30d``, ``-1h``."""
    t = text.strip().lower()
    if not t:
        raise ValueError("empty duration")
    factor = UNITS.get(t[-1])
    if factor is not None:
        t = t[:-1]
    return float(t) * (factor or 1)


@route("/clock", ["GET", "POST"])
async def clock(request: Request) -> Response:
    st = request.app.state.wx
    if request.method == "POST":
        fields = await form(request)
        action = fields.get("action", "")

        def apply() -> ClockState:
            with st.db.write() as conn:
                state = sandbox.read_clock(conn)
                if action == "freeze":
                    state = state.frozen()
                elif action == "thaw":
                    state = state.thawed()
                elif action == "reset":
                    state = ClockState()
                elif action == "advance":
                    state = state.advanced(parse_duration(fields.get("advance", "")))
                elif action == "set":
                    ts = parse_rfc3339(fields.get("set", "").strip()).timestamp()
                    state = state.set_to(ts, frozen=state.frozen_at is not None)
                else:
                    raise ValueError(f"unknown action {action!r}")
                sandbox.write_clock(conn, state)
                return state

        try:
            state = await anyio.to_thread.run_sync(apply)
        except ValueError as exc:
            return _back("/dashboard/clock", str(exc), bad=True)
        return _back("/dashboard/clock", f"Business time is now {format_rfc3339(state.now())}")

    def read() -> ClockState:
        with st.db.read() as conn:
            return sandbox.read_clock(conn)

    state = await anyio.to_thread.run_sync(read)

    def button(action: str, label: str, extra: str = "") -> str:
        return (
            f'<form method="post" class="row" action="/dashboard/clock">{extra}'
            f'<input type="hidden" name="action" value="{action}"><div><button>{label}</button></div></form>'
        )

    controls = (
        button(
            "advance",
            "Advance",
            '<div><label for="advance">advance by (90s, 15m, 2h, 30d)</label><input id="advance" name="advance" value="1h"></div>',
        )
        + button(
            "set",
            "Set",
            f'<div><label for="set">set to (RFC 3339)</label><input id="set" name="set" value="{esc(format_rfc3339(state.now()))}"></div>',
        )
        + '<div class="row">'
        + button("freeze", "Freeze")
        + button("thaw", "Thaw")
        + button("reset", "Back to real time")
        + "</div>"
    )
    help_text = (
        '<p class="muted">Business time drives expiry, audits and callbacks due; wire timestamps '
        "(request signing) always stay real time.</p>"
    )
    body = (
        _flash(request) + card("Business clock", _clock_html(state) + help_text) + card("Change it", controls)
    )
    return page("Clock", body, active="clock")


# ---- family data ---------------------------------------------------------------------------------


@route("/data")
async def data_index(request: Request) -> Response:
    st = request.app.state.wx
    groups = await anyio.to_thread.run_sync(lambda: data.family_tables(st.db))
    if not groups:
        return page(
            "Family data",
            card("Nothing yet", "<p>No product family tables in this database.</p>"),
            active="data",
        )
    body = (
        '<div class="grid">'
        + "".join(
            card(
                title,
                "<ul>"
                + "".join(f'<li><a href="/dashboard/data/{esc(t)}">{esc(t)}</a></li>' for t in tables)
                + "</ul>",
            )
            for title, tables in groups.items()
        )
        + "</div>"
    )
    return page("Family data", body, active="data")


@route("/data/{table}")
async def data_table(request: Request) -> Response:
    st = request.app.state.wx
    name = request.path_params["table"]
    mchid = request.query_params.get("mchid") or None
    try:
        cols, rows = await anyio.to_thread.run_sync(lambda: data.read_table(st.db, name, mchid=mchid))
    except LookupError:
        return page("Not found", f"<p>No family table {esc(name)}.</p>", active="data", status=404)
    cells = [
        [
            esc(fmt_ts(v) if c.endswith("_at") and isinstance(v, float) else v)
            for c, v in zip(cols, row, strict=True)
        ]
        for row in rows
    ]
    note = f'<p class="muted">Newest {data.MAX_ROWS} rows; personal and secret columns are masked.</p>'
    return page(
        f"{data.group_of(name)} · {name}",
        card(name, note + table(cols, cells, empty="No rows.")),
        active="data",
    )
