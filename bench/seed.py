"""Bulk state for the benchmark, written straight into the store: copies of a card the server issued
itself (so every column is what the domain would have written), in large batches."""

from __future__ import annotations

import sqlalchemy as sa

from wxpartner.store.db import Database
from wxpartner.store.webizpay_tables import webizpay_cards


def clone_cards(db: Database, card_no: str, count: int, prefix: str, *, batch: int = 20_000) -> list[str]:
    """Insert ``count`` ACTIVE copies of card ``card_no`` with fresh card numbers; returns them."""
    with db.read() as conn:
        row = (
            conn.execute(sa.select(webizpay_cards).where(webizpay_cards.c.card_no == card_no))
            .mappings()
            .one()
        )
    template = dict(row)
    made: list[str] = []
    for start in range(0, count, batch):
        rows = []
        for i in range(start, min(start + batch, count)):
            no = f"{prefix}{i:0{19 - len(prefix)}d}"  # 19 digits, like the server's card numbers
            rows.append({**template, "card_no": no, "out_card_no": f"bk{no}", "state": "ACTIVE"})
            made.append(no)
        with db.write() as conn:
            conn.execute(webizpay_cards.insert(), rows)
    return made


def count_cards(db: Database) -> int:
    with db.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(webizpay_cards)).scalar_one())
