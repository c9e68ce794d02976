"""Cross-process counters of the store, raced from threads with separate connections, on both
databases: the sequence and the rate-limit window never hand out a value twice or over the limit."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from wxpartner.store import sandbox
from wxpartner.store.db import Database


def test_next_sequence_first_use_race_gives_distinct_values(database_url: str) -> None:
    db = Database(database_url)
    try:

        def bump(_: int) -> int:
            with db.write() as conn:
                return sandbox.next_sequence(conn, "race", 1000)

        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(bump, range(40)))
        assert sorted(got) == list(range(1000, 1040))
    finally:
        db.dispose()


def test_rate_window_admits_exactly_the_limit(database_url: str) -> None:
    db = Database(database_url)
    try:

        def hit(_: int) -> bool:  # True: within the limit
            with db.write() as conn:
                return sandbox.hit_rate_limit(conn, "test:scope", 123456, 10)

        with ThreadPoolExecutor(8) as pool:
            admitted = list(pool.map(hit, range(30)))
        assert admitted.count(True) == 10
    finally:
        db.dispose()
