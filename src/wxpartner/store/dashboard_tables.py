"""Generic, read-only views of the product families' tables, found at run time: families land in
parallel, so a missing table simply is not listed. Columns that look secret or personal are masked."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa

from .db import Database

# Foundation and ops tables have their own pages.
OWN_PAGES = {
    "merchants",
    "merchant_relations",
    "merchant_certificates",
    "platform_keys",
    "request_nonces",
    "sandbox_clock",
    "rate_counters",
    "sandbox_kv",
    "request_journal",
    "request_journal_1",
    "sandbox_faults",
    "alembic_version",
}
# First match wins: family prefixes before the webizpay sub-groups.
GROUPS = (
    ("Callbacks & delivery attempts", re.compile(r"^callback|outbox|deliver|notif")),
    ("Applyments (apply4subject)", re.compile(r"^apply4subject|applyment")),
    ("Recharge employees", re.compile(r"^recharge")),
    ("Employees & authorizations", re.compile(r"employee|authori[sz]|relation|auth_link|template")),
    (
        "Quota cards & spends",
        re.compile(r"card|spend|payment|refund|bill|store|range|match|funding|identifier"),
    ),
)
SECRET = re.compile(
    r"private_key|apiv3_key|secret|password|token|cipher|id_card|id_number|identity|mobile|phone|"
    r"account_number|bank_account|user_name|real_name|^name_enc|^materials$",
    re.I,
)
MAX_ROWS = 200


def group_of(table: str) -> str:
    for title, pattern in GROUPS:
        if pattern.search(table):
            return title
    return "Other"


def family_tables(db: Database) -> dict[str, list[str]]:
    """Existing family tables, by group title."""
    names = sorted(set(sa.inspect(db.engine).get_table_names()) - OWN_PAGES)
    found: dict[str, list[str]] = {}
    for name in names:
        found.setdefault(group_of(name), []).append(name)
    order = [title for title, _ in GROUPS] + ["Other"]
    return {title: found[title] for title in order if title in found}


MAX_CELL = 160


def mask(column: str, value: Any) -> Any:
    """Hide secret-looking columns, shorten long cells (JSON documents, file contents)."""
    if value is None:
        return value
    if SECRET.search(column):
        text = str(value)
        return "•••• (hidden)" if len(text) < 8 else f"••••{text[-2:]} (hidden)"
    if isinstance(value, str | bytes) and len(value) > MAX_CELL:
        text = value if isinstance(value, str) else value.decode("utf-8", errors="replace")
        return text[:MAX_CELL] + f"… ({len(value)} chars)"
    return value


TIME_COLUMNS = ("created_at", "create_time", "updated_at", "at", "id")


def _order(table: sa.Table) -> tuple[list[sa.ColumnElement[Any]], str]:
    """Newest first by a time column when an index leads with it; else the primary key's order,
    highest first (sorting a table by a column no index holds reads and sorts every row: 0.8 s at
    100,000 applyments on SQLite). Also says which order it is."""
    pk = list(table.primary_key.columns)
    # what the reflection found (no more round trips: on PostgreSQL each costs milliseconds)
    leading = {next(iter(ix.columns)).name for ix in table.indexes if len(ix.columns)}
    uniques = [c for c in table.constraints if isinstance(c, sa.UniqueConstraint) and len(c.columns)]
    leading |= {next(iter(c.columns)).name for c in uniques}
    if pk:
        leading.add(pk[0].name)
    for name in TIME_COLUMNS:
        if name in table.c and name in leading:
            return [table.c[name].desc()], f"newest {name} first"
    if pk:
        return [c.desc() for c in pk], f"by {', '.join(c.name for c in pk)}, highest first"
    return [], "in storage order"


def read_table(
    db: Database, name: str, *, mchid: str | None = None
) -> tuple[list[str], list[list[Any]], str]:
    """At most MAX_ROWS rows, newest first when an index gives that order (see _order), and which
    order it is. Raises LookupError for unknown tables."""
    existing = set(sa.inspect(db.engine).get_table_names()) - OWN_PAGES
    if name not in existing:
        raise LookupError(name)
    table = sa.Table(name, sa.MetaData(), autoload_with=db.engine)
    cols = [c.name for c in table.columns]
    order, described = _order(table)
    q = sa.select(*_cells(table)).order_by(*order).limit(MAX_ROWS)
    if mchid:
        for col in ("mchid", "sp_mchid", "sub_mchid"):
            if col in table.c:
                q = q.where(table.c[col] == mchid)
                break
    with db.read() as conn:
        rows = [[_shown(c, r._mapping) for c in cols] for r in conn.execute(q)]
    return cols, rows, described


def _is_long(column: sa.Column[Any]) -> bool:
    kind = column.type
    return isinstance(kind, sa.Text) or (isinstance(kind, sa.String) and (kind.length or 0) > MAX_CELL)


def _cells(table: sa.Table) -> list[sa.ColumnElement[Any]]:
    """The columns, a long text one as its first MAX_CELL characters and its length: a proof's
    document is 16 MB, and 200 of them were read whole to show a line of each."""
    cells: list[sa.ColumnElement[Any]] = []
    for c in table.columns:
        if _is_long(c):
            cells += [
                sa.func.substr(c, 1, MAX_CELL).label(c.name),
                sa.func.length(c).label(f"{c.name} length"),
            ]
        else:
            cells.append(c)
    return cells


def _shown(column: str, row: sa.RowMapping) -> Any:
    value = row[column]
    length = row.get(f"{column} length")
    if length is None or value is None or length <= MAX_CELL:
        return mask(column, value)
    if SECRET.search(column):
        return "•••• (hidden)"
    return f"{value}… ({length} chars)"
