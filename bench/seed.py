"""Bulk state for the benchmark, written straight into the store: copies of a card the server issued
itself (so every column is what the domain would have written), in large batches."""

from __future__ import annotations

import os
import time

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


def fill_cards(db: Database, card_no: str, count: int, prefix: str, *, batch: int = 250_000) -> None:
    """Like ``clone_cards`` for millions of rows: the copies are generated inside the database (a
    recursive CTE on SQLite, generate_series on PostgreSQL), so nothing crosses into Python per row."""
    t = webizpay_cards
    with db.read() as conn:
        template = dict(conn.execute(sa.select(t).where(t.c.card_no == card_no)).mappings().one())
    width = 19 - len(prefix)
    number = f"printf('%0{width}d', i)" if db.sqlite else f"lpad(i::text, {width}, '0')"
    generated = {
        "card_no": f"'{prefix}' || {number}",
        "out_card_no": f"'bk{prefix}' || {number}",
        "state": "'ACTIVE'",
    }
    names = [c.name for c in t.columns]
    select = ", ".join(generated.get(n, f":{n}") for n in names)
    params = {n: v for n, v in template.items() if n not in generated}
    for start in range(0, count, batch):
        stop = min(start + batch, count)
        seq = (
            f"WITH RECURSIVE seq(i) AS (SELECT {start} UNION ALL SELECT i + 1 FROM seq WHERE i + 1 < {stop}) "
            if db.sqlite
            else f"WITH seq(i) AS (SELECT generate_series({start}, {stop - 1})) "
        )
        with db.write() as conn:
            conn.execute(
                sa.text(f"{seq}INSERT INTO {t.name} ({', '.join(names)}) SELECT {select} FROM seq"), params
            )
    if db.sqlite:
        _truncate_wal(db)
    else:  # what autovacuum would do a little later: visibility map and planner statistics
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f"VACUUM ANALYZE {t.name}")
    # The fill's hundreds of MB still wait in the page cache for the kernel to write them back; let
    # that happen now rather than during the measurement that follows.
    os.sync()


def _truncate_wal(db: Database, *, within: float = 60.0) -> None:
    """The fill leaves a WAL of a few hundred MB: copy it back now, so the measurement that follows
    does not share the disk with that checkpoint (the server checkpoints small and often). A TRUNCATE
    that meets another checkpoint (this process's own background one, which the fill's writes woke)
    returns busy at once and copies nothing; so try until it reports an empty log."""
    deadline = time.monotonic() + within
    while True:
        with db.engine.connect() as conn:
            busy, log, _copied = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
        if busy == 0 and log == 0:
            return
        if time.monotonic() > deadline:
            print(f"  note: the WAL after the fill was not truncated (busy {busy}, {log} frames left)")
            return
        time.sleep(0.05)
