"""Fault rules page: add one with a form, see their hits, delete one or all."""

from __future__ import annotations

import anyio
from starlette.requests import Request
from starlette.responses import Response

from ...domain.faults import FaultKind, FaultRule
from ...protocol.detail import described
from ..control import ControlError
from ..control_ops import (
    add_fault_rule,
    clear_fault_rules,
    delete_fault_rule,
    fault_view,
    list_fault_rules,
    parse_fault_body,
)
from .auth import form
from .layout import badge, card, esc, page, table
from .routing import back, flash, route

HEADER_HELP = (
    "<p>Faults act after the request signature was verified and change nothing in the store. A single "
    "request can ask for one with the header <code>Wechatpay-Sandbox-Fault: SYSTEM_ERROR</code> "
    "(several: <code>LATENCY=1500, BAD_SIGNATURE</code>).</p>"
)
RULE_HEADERS = (
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
)


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


def _rule_row(rule: FaultRule) -> list[str]:
    v = fault_view(rule)
    spent = rule.remaining is not None and rule.remaining <= 0
    return [
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


@route("/faults", ["GET", "POST"])
async def faults(request: Request) -> Response:
    st = request.app.state.wx
    if request.method == "POST":
        fields = await form(request)
        try:
            args = parse_fault_body({k: v for k, v in fields.items() if v != ""}, "form")
        except ControlError as exc:
            return back(request, "/dashboard/faults", described(exc.message, exc.detail), bad=True)
        rule = await anyio.to_thread.run_sync(lambda: add_fault_rule(request, args))
        return back(request, "/dashboard/faults", f"Added {rule.kind.value} rule {rule.id}")

    rules = await anyio.to_thread.run_sync(list_fault_rules, st)
    clear_all = (
        '<form method="post" action="/dashboard/faults/clear"><button class="danger">Clear all</button></form>'
        if rules
        else ""
    )
    body = (
        flash(request)
        + card("Add a rule", _fault_form() + HEADER_HELP)
        + card(
            "Rules",
            table(
                RULE_HEADERS,
                [_rule_row(rule) for rule in rules],
                empty="No fault rules: every request is answered normally.",
            )
            + clear_all,
        )
    )
    return page("Faults", body, active="faults")


@route("/faults/{rule_id}/delete", ["POST"])
async def fault_delete(request: Request) -> Response:
    rule_id = request.path_params["rule_id"]
    ok = await anyio.to_thread.run_sync(delete_fault_rule, request.app.state.wx, rule_id)
    return back(
        request, "/dashboard/faults", f"Deleted {rule_id}" if ok else f"No rule {rule_id}", bad=not ok
    )


@route("/faults/clear", ["POST"])
async def faults_clear(request: Request) -> Response:
    n = await anyio.to_thread.run_sync(clear_fault_rules, request.app.state.wx)
    return back(request, "/dashboard/faults", f"Deleted {n} rule(s)")
