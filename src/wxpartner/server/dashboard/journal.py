"""Request journal pages: the filtered list (also on the overview) and one request with the explanation
of a refused signature."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import anyio
from starlette.requests import Request
from starlette.responses import Response

from ...protocol.detail import described
from ...protocol.messages import visible_controls
from ..control import ControlError
from ..control_ops import journal_filter, read_journal, read_journal_entry
from .layout import badge, card, esc, fmt_ts, not_found, page, status_badge, table
from .routing import flash, route

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

EXPLAIN = (
    "The server verified the signature over exactly these bytes: the HTTP method, the URL path and query as "
    "sent, the timestamp, the nonce and the body, each followed by one line feed (\\n, shown as ⏎; any other "
    "control character is shown as its symbol: a carriage return as ␍, a tab as ␉; a byte that is not UTF-8 as �). "
    "Sign this text with the private key of the certificate named in <code>serial_no</code>. Usual causes: "
    "signing a different URL (decoded or re-encoded, missing query), re-serialising the JSON body after "
    "signing, a CRLF or a missing final line feed, or the wrong key."
)


def _status(r: dict[str, Any]) -> str:
    return status_badge(int(r["status"])) + (f" <code>{esc(r['code'])}</code>" if r["code"] else "")


CLAIMED = (
    "not verified: the mchid this request's Authorization header claims (its signature was not "
    "verified, and anyone can send a request claiming any merchant)"
)


def mchid_cell(r: dict[str, Any], unknown: str = "") -> str:
    """The mchid, marked as an unverified claim unless the request's signature was verified."""
    if not r["mchid"]:
        return esc(unknown)
    if r.get("mchid_verified"):
        return esc(r["mchid"])
    return f'{esc(r["mchid"])} <span class="badge warn claimed" title="{esc(CLAIMED)}">claimed</span>'


def journal_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    """Table cells for ``JOURNAL_HEADERS``."""
    out = []
    for r in rows:
        verification = r["verification"]
        tone = "" if verification == "ok" else "bad"
        out.append(
            [
                esc(fmt_ts(r["at"])),
                f'<a class="mono" href="/dashboard/journal/{esc(r["request_id"])}">{esc(r["request_id"])}</a>',
                mchid_cell(r),
                f"{esc(r['method'])} <code>{esc(r['path'][:80])}</code>",
                f"<code>{esc(r['operation'])}</code>",
                _status(r),
                badge(verification, tone)
                + (f' <span class="muted">{esc(r["verify_field"])}</span>' if r["verify_field"] else ""),
                badge(r["fault"], "warn") if r["fault"] else "",
                f"{float(r['latency_ms']):.1f} ms",
            ]
        )
    return out


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
        # a 400 with the form as it was sent, to correct (a redirect to the bare page lost every filter)
        refused = f'<div class="flash bad" role="status">{esc(described(exc.message, exc.detail))}</div>'
        return page(
            "Request journal", refused + _filter_form(request.query_params), active="journal", status=400
        )
    rows = await anyio.to_thread.run_sync(lambda: read_journal(st, f))
    more = ""
    if len(rows) == f.limit:
        params = {k: v for k, v in request.query_params.items() if k != "before_id"}
        more = f'<p><a href="?{esc(urlencode({**params, "before_id": rows[-1]["id"]}))}">Older →</a></p>'
    body = (
        flash(request)
        + _filter_form(request.query_params)
        + card(
            "Requests, newest first",
            table(JOURNAL_HEADERS, journal_rows(rows), empty="No matching requests."),
        )
        + more
    )
    return page("Request journal", body, active="journal")


@route("/journal/{key}")
async def journal_entry(request: Request) -> Response:
    st = request.app.state.wx
    key = request.path_params["key"]
    r = await anyio.to_thread.run_sync(read_journal_entry, st, key)
    if r is None:
        return not_found(f"journal entry {key}", active="journal")
    facts = [
        ("time (UTC)", esc(fmt_ts(r["at"]))),
        ("Request-ID", f"<code>{esc(r['request_id'])}</code>"),
        (
            "merchant",
            mchid_cell(r, "unknown")
            + (
                ""
                if r.get("mchid_verified") or not r["mchid"]
                else f' <span class="muted">{esc(CLAIMED)}</span>'
            ),
        ),
        ("request", f"{esc(r['method'])} <code>{esc(r['path'])}</code>"),
        ("operation", f"<code>{esc(r['operation'])}</code>"),
        ("status", _status(r)),
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
        body += card("Signature explanation", _explanation(r))
    return page(f"Request {r['request_id']}", body, active="journal")


def _certificates(mchid: str, certificates: list[dict[str, Any]]) -> str:
    """What ``serial_no`` may name: the merchant's own API certificates (a WeChat Pay platform
    certificate's or public key's id is the usual mix-up)."""
    if not certificates:
        return f'<p id="merchant-certificates">{esc(mchid)} has no API certificate registered.</p>'
    items = "".join(
        f"<li><code>{esc(c['serial_no'])}</code>{' ' + badge('revoked', 'bad') if c['revoked'] else ''}</li>"
        for c in certificates
    )
    return (
        f'<div id="merchant-certificates"><p>serial_no names the certificate of the merchant\'s own key that '
        f"signed the request (not a WeChat Pay platform certificate or public key); {esc(mchid)} has:</p>"
        f'<ul>{items}</ul><p class="muted">See <a href="/dashboard/merchants">Merchants &amp; keys</a>.</p></div>'
    )


def _explanation(r: dict[str, Any]) -> str:
    """Which check refused the request and, for a bad signature, the exact bytes the server checked:
    control characters as symbols (a CR would otherwise read as a line break), and said so when the
    journal kept only the start of a long message."""
    explain = f"<p>Refused on <code>{esc(r['verify_field'] or '')}</code>: {esc(r['verify_issue'] or '')}</p>"
    certificates = r.get("merchant_certificates")
    if certificates is not None:
        explain += _certificates(str(r["mchid"]), certificates)
    message = r["expected_message"]
    if message:
        shown = esc(visible_controls(message)).replace("\n", "⏎\n")
        length = r.get("expected_message_length")
        size = f"{length} bytes" if length is not None else "length unknown"
        if r.get("expected_message_truncated"):
            size += f"; only the first {len(message)} characters are kept, the rest is not shown"
            shown += "…"
        explain += f'<p class="muted">{EXPLAIN}</p><pre id="expected-message">{shown}</pre>'
        explain += f'<p class="muted" id="expected-message-size">{esc(size)}</p>'
    return explain
