"""Keyset paging: a listing's order and the rows beyond a row's key in it. A page starts after the
key of the row the previous one ended with, through the index, whatever its depth (``offset`` walks
every row before the page). Used by the dashboard's lists and the control API's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

Key = list[Any]  # a row's values of its listing's Order, as a cursor carries them


@dataclass(frozen=True)
class Order:
    """A listing's order: columns, each ``True`` when descending; the last ones make it unique. ``tag``
    goes in front of the key in a cursor, so a cursor of one order is never read as another's."""

    columns: tuple[tuple[sa.ColumnElement[Any], bool], ...]
    tag: str = ""

    def clauses(self, *, reverse: bool = False) -> list[sa.ColumnElement[Any]]:
        return [c.asc() if desc == reverse else c.desc() for c, desc in self.columns]

    def key_of(self, row: dict[str, Any]) -> Key:
        return [row[str(c.key)] for c, _ in self.columns]

    def cursor_of(self, row: dict[str, Any]) -> Key:
        return [self.tag, *self.key_of(row)] if self.tag else self.key_of(row)

    def beyond(self, key: Key, *, forward: bool, inclusive: bool = False) -> sa.ColumnElement[bool]:
        """Rows after ``key`` in this order (``forward``) or before it, ``key``'s own row too when
        ``inclusive``. One direction throughout is a row-value range of the index; mixed directions
        (time newest first, then the id) are the lexicographic OR, led by a range on the first column."""
        cols = [c for c, _ in self.columns]
        values = [sa.literal(v) for v in key]
        directions = {desc for _, desc in self.columns}
        if len(directions) == 1:
            greater = (not directions.pop()) == forward
            left = cols[0] if len(cols) == 1 else sa.tuple_(*cols)
            right = values[0] if len(values) == 1 else sa.tuple_(*values)
            if greater:
                return left >= right if inclusive else left > right
            return left <= right if inclusive else left < right
        terms = []
        for i, (col, desc) in enumerate(self.columns):
            same = [cols[j] == values[j] for j in range(i)]
            terms.append(sa.and_(*same, col > values[i] if (not desc) == forward else col < values[i]))
        if inclusive:
            terms.append(sa.and_(*(c == v for c, v in zip(cols, values, strict=True))))
        lead_up = (not self.columns[0][1]) == forward
        lead = cols[0] >= values[0] if lead_up else cols[0] <= values[0]
        return sa.and_(lead, sa.or_(*terms))
