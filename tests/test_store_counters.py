"""Cross-process counters of the store, raced from threads with separate connections, on both
databases: the sequence and the rate-limit window never hand out a value twice or over the limit."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from pg import wait_for_lock_waiters
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


def test_two_first_writes_of_one_key_both_succeed(database_url: str, backend: str) -> None:
    """sandbox.kv_set (the applyment auto policy, the sandbox token) on a key nobody wrote yet, by two
    transactions at once (two hosts): the second waits for the first and then writes too. An UPDATE
    that found no row followed by an INSERT made the second fail on the primary key (a 500)."""
    if backend == "sqlite":
        pytest.skip("SQLite runs one writer at a time: the two transactions cannot overlap")
    db = Database(database_url)
    pool = ThreadPoolExecutor(1)

    def second_write() -> None:
        with db.write() as conn:
            sandbox.kv_set(conn, "race:first-write", "two")

    try:
        with db.write() as first:
            sandbox.kv_set(first, "race:first-write", "one")  # not committed yet
            second = pool.submit(second_write)
            wait_for_lock_waiters(database_url, 1)  # the second now waits for the first's row
            assert not second.done()
        second.result(timeout=10)  # the first committed: the second goes on
        with db.read() as conn:
            assert sandbox.kv_get(conn, "race:first-write") == "two"
    finally:
        pool.shutdown()
        db.dispose()


def test_a_prune_keeps_the_windows_still_counting_by_the_clock_that_numbers_them(
    database_url: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL numbers the windows by the database's second (every host the same); the prune read
    this host's clock, so a host a minute and more ahead deleted windows still counting (and the limit
    began again). Here this process's clock runs an hour ahead."""
    real = time.time
    if backend != "sqlite":  # SQLite numbers them by this host's clock, which the prune reads too
        monkeypatch.setattr(time, "time", lambda: real() + 3600)
    db = Database(database_url)
    try:
        for attempt in range(4):  # the three statements inside one second of the real clock
            second, scope = int(real()), f"test:prune:{attempt}"
            with db.write() as conn:
                assert sandbox.hit_rate_limit(conn, scope, None, 1)
            with db.write() as conn:
                sandbox.prune_rate_counters(conn)
                still_counting = not sandbox.hit_rate_limit(conn, scope, None, 1)
            if int(real()) == second:
                break
        assert still_counting  # the window was kept: the second call is over the limit of 1
    finally:
        db.dispose()
