"""The dashboard's one look: a base page with inline CSS (no CDN, one request per page) that family
pages (simulated employee pages, applyment confirmation) reuse through ``render_page``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from starlette.responses import HTMLResponse

CSS = """
:root{--bg:#f5f7f6;--card:#fff;--ink:#1d2521;--mute:#67736d;--line:#e2e7e4;--brand:#07c160;
--brand-d:#06a452;--bad:#d93b3b;--warn:#c98a00;--mono:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
*{box-sizing:border-box}body{margin:0;font:14px/1.5 system-ui,-apple-system,"Segoe UI","PingFang SC",
"Microsoft YaHei",sans-serif;background:var(--bg);color:var(--ink)}
header.top{background:#1d2521;color:#fff;display:flex;align-items:center;gap:18px;padding:0 20px;height:48px}
header.top .logo{font-weight:700;color:var(--brand);letter-spacing:.3px}
header.top nav a{color:#cfd8d3;text-decoration:none;padding:14px 6px;display:inline-block;font-size:13px}
header.top nav a.on,header.top nav a:hover{color:#fff;box-shadow:inset 0 -3px 0 var(--brand)}
header.top form{margin-left:auto}
main{max-width:1200px;margin:0 auto;padding:20px}
h1{font-size:20px;margin:0 0 16px}h2{font-size:16px;margin:0 0 10px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:16px;margin-bottom:16px;
overflow-x:auto}
tr.spends>td{border-bottom:2px solid var(--line);padding-top:0}tr.spends table{background:#fafcfb;font-size:12px}
tr.spends th,tr.spends td{padding:3px 8px}tbody.card-group:hover td{background:transparent}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(280px,1fr));gap:16px}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{text-align:left;padding:6px 8px;
border-bottom:1px solid var(--line);vertical-align:top}th{color:var(--mute);font-weight:600;white-space:nowrap}
tr:hover td{background:#fafcfb}
code,pre,.mono{font-family:var(--mono);font-size:12px}pre{background:#f0f3f1;padding:10px;border-radius:6px;
overflow:auto;white-space:pre-wrap;word-break:break-all}
.badge{display:inline-block;padding:1px 7px;border-radius:10px;font-size:12px;background:#e6f4ec;color:#0b7a3e}
.badge.bad{background:#fde8e8;color:var(--bad)}.badge.warn{background:#fff4d6;color:var(--warn)}
.badge.mute{background:#eef1ef;color:var(--mute)}
.muted{color:var(--mute)}a{color:#0a7f43}
form.inline{display:inline}label{display:block;font-size:12px;color:var(--mute);margin:6px 0 2px}
input,select{font:inherit;padding:6px 8px;border:1px solid var(--line);border-radius:6px;background:#fff;min-width:0}
.row{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-end}.row>div{flex:1 1 140px}
form.row>div:last-child{flex:0 0 auto}
button,.btn{font:inherit;background:var(--brand);color:#fff;border:0;border-radius:6px;padding:7px 14px;
cursor:pointer;text-decoration:none;display:inline-block}button:hover{background:var(--brand-d)}
button.ghost{background:transparent;color:var(--ink);border:1px solid var(--line)}
button.danger{background:var(--bad)}
.flash{padding:10px 14px;border-radius:6px;background:#e6f4ec;margin-bottom:16px}
.flash.bad{background:#fde8e8;color:var(--bad)}
.big{font-size:22px;font-weight:600}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:6px 14px;margin:0 0 12px}
dl.facts dt{color:var(--mute)}dl.facts dd{margin:0;word-break:break-all}
main.narrow{max-width:520px}main.narrow button[type=submit]{width:100%;padding:11px;font-size:16px}
main.narrow label{font-size:13px;margin-top:10px}main.narrow input{width:100%;padding:9px}
.sub{color:#cfd8d3;font-size:12px;margin-left:auto}
.pager{display:flex;gap:14px;margin:-6px 0 16px}.qr{image-rendering:pixelated;border:1px solid var(--line)}
.result{font-size:18px;font-weight:600;color:var(--brand-d)}.error{color:var(--bad);font-weight:600}
.card>:first-child{margin-top:0}
@media (max-width:700px){header.top{flex-wrap:wrap;height:auto;padding:10px 12px;gap:4px 18px}
main{padding:12px}}
"""

NAV = (
    ("overview", "/dashboard", "Overview"),
    ("merchants", "/dashboard/merchants", "Merchants & keys"),
    ("employees", "/dashboard/employees", "Employees"),
    ("cards", "/dashboard/cards", "Quota cards"),
    ("recharge", "/dashboard/recharge", "Recharge"),
    ("applyments", "/dashboard/applyments", "Applyments"),
    ("callbacks", "/dashboard/callbacks", "Callbacks"),
    ("journal", "/dashboard/journal", "Request journal"),
    ("faults", "/dashboard/faults", "Faults"),
    ("clock", "/dashboard/clock", "Clock"),
    ("data", "/dashboard/data", "Family data"),
)


def esc(value: Any) -> str:
    return escape("" if value is None else str(value))


def render_page(
    title: str,
    body_html: str,
    *,
    active: str = "",
    nav: bool = True,
    lang: str = "en",
    narrow: bool = False,
    subtitle: str = "",
) -> str:
    """A complete HTML page in the sandbox's look. ``body_html`` is trusted HTML: escape what you insert
    (``esc``). ``nav=False`` for pages shown to simulated end users (no dashboard links, no login);
    ``narrow`` lays the page out like a phone screen; ``subtitle`` is shown in the top bar."""
    links = f'<span class="sub">{esc(subtitle)}</span>' if subtitle else ""
    if nav:
        links = "<nav>" + "".join(
            f'<a href="{href}"{" class=on" if key == active else ""}>{label}</a>' for key, href, label in NAV
        )
        links += (
            '</nav><form method="post" action="/dashboard/logout">'
            '<button class="ghost" style="color:#cfd8d3">Log out</button></form>'
        )
    return (
        f'<!doctype html><html lang="{esc(lang)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{esc(title)} · wxpartner</title><style>{CSS}</style></head><body>"
        f'<header class="top"><span class="logo">wxpartner sandbox</span>{links}</header>'
        f"<main{' class=narrow' if narrow else ''}><h1>{esc(title)}</h1>{body_html}</main></body></html>"
    )


def page(
    title: str,
    body_html: str,
    *,
    active: str = "",
    status: int = 200,
    nav: bool = True,
    lang: str = "en",
    narrow: bool = False,
    subtitle: str = "",
) -> HTMLResponse:
    return HTMLResponse(
        render_page(title, body_html, active=active, nav=nav, lang=lang, narrow=narrow, subtitle=subtitle),
        status_code=status,
    )


def facts(items: Iterable[tuple[str, str]], *, dl_id: str = "") -> str:
    """A definition list of (label, trusted HTML value) pairs."""
    ident = f' id="{esc(dl_id)}"' if dl_id else ""
    return (
        f'<dl class="facts"{ident}>' + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"
    )


def fen(amount: int | None) -> str:
    """An amount in fen as yuan, e.g. 12345 -> ¥123.45."""
    return "" if amount is None else f"¥{amount / 100:,.2f}"


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    empty: str = "Nothing yet.",
    empty_html: str | None = None,
) -> str:
    """Cells are trusted HTML (escape values with ``esc`` before); without rows, ``empty`` (text), or
    ``empty_html`` (trusted HTML) when given."""
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    if not body:
        return empty_html if empty_html is not None else f'<p class="muted">{esc(empty)}</p>'
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def badge(text: str, tone: str = "") -> str:
    return f'<span class="badge {tone}">{esc(text)}</span>'


def status_badge(status: int) -> str:
    if status == 0:
        return badge("dropped", "bad")
    return badge(str(status), "" if status < 400 else ("warn" if status < 500 else "bad"))


def fmt_ts(ts: float | None) -> str:
    if ts is None:
        return ""
    try:
        return dt.datetime.fromtimestamp(float(ts), dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (ValueError, OverflowError, OSError):
        # A stored time no date holds (beyond year 9999, NaN): shown as it is, not a page's 500.
        return f"{ts} (epoch seconds)"


def card(title: str, inner: str) -> str:
    return f'<section class="card"><h2>{esc(title)}</h2>{inner}</section>'


def not_found(what: str, *, active: str) -> HTMLResponse:
    """The 404 page for a missing row: ``what`` is e.g. ``journal entry 42`` (escaped here)."""
    return page("Not found", f"<p>No {esc(what)}.</p>", active=active, status=404)


def forbidden(message: str) -> HTMLResponse:
    """The 403 page (``message`` is escaped here)."""
    return page("Forbidden", f'<div class="flash bad" role="status">{esc(message)}</div>', status=403)


def bad_request(message: str) -> HTMLResponse:
    """The 400 page for input no page can use (``message`` is escaped here)."""
    return page("Bad request", f'<div class="flash bad" role="status">{esc(message)}</div>', status=400)
