"""Family data browser: every product family table, newest rows first (where an index gives that
order), personal and secret columns masked by the store (store/dashboard_tables.py)."""

from __future__ import annotations

import anyio
from starlette.requests import Request
from starlette.responses import Response

from ...store import dashboard_tables as data
from .layout import card, esc, fmt_ts, not_found, page, table
from .listing import settled
from .routing import route


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
    await settled(st)
    try:
        cols, rows, order = await anyio.to_thread.run_sync(lambda: data.read_table(st.db, name, mchid=mchid))
    except LookupError:
        return not_found(f"family table {name}", active="data")
    cells = [
        [
            esc(fmt_ts(v) if c.endswith("_at") and isinstance(v, float) else v)
            for c, v in zip(cols, row, strict=True)
        ]
        for row in rows
    ]
    note = (
        f'<p class="muted">At most {data.MAX_ROWS} rows, {esc(order)}; personal and secret columns are'
        " masked.</p>"
    )
    return page(
        f"{data.group_of(name)} · {name}",
        card(name, note + table(cols, cells, empty="No rows.")),
        active="data",
    )
