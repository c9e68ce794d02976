"""SQLite connections wait on a shelf between transactions (store/idle_connections.py): reused when a
transaction ended cleanly, never when it did not, bounded, per process, closed on dispose. Real SQLite
files; the invariants that matter are that no transaction leaks into the next and nothing half-done is
kept."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from wxpartner.store.db import Database
from wxpartner.store.idle_connections import IdleConnections


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'idle.sqlite3'}")
    with database.write() as conn:
        conn.exec_driver_sql("CREATE TABLE t (v INTEGER)")
    yield database
    database.dispose()


def _values(db: Database) -> list[int]:
    with db.read() as conn:
        return [r[0] for r in conn.exec_driver_sql("SELECT v FROM t ORDER BY v")]


def test_the_next_transaction_reuses_the_connection_of_the_last(db: Database) -> None:
    with db.write() as first:
        first.exec_driver_sql("INSERT INTO t VALUES (1)")
    with db.write() as second:
        assert second is first
        assert second.in_transaction()
    with db.read() as reader:
        assert reader is not first  # reads and writes have shelves of their own
    with db.read() as again:
        assert again is reader
    assert _values(db) == [1]


def test_a_failed_transaction_is_rolled_back_and_its_connection_is_clean(db: Database) -> None:
    with pytest.raises(RuntimeError), db.write() as conn:
        conn.exec_driver_sql("INSERT INTO t VALUES (2)")
        raise RuntimeError("refused half way")
    assert _values(db) == []
    with db.write() as conn:
        conn.exec_driver_sql("INSERT INTO t VALUES (3)")
    assert _values(db) == [3]


def test_an_invalidated_connection_is_not_kept(db: Database) -> None:
    with pytest.raises(RuntimeError), db.write() as conn:
        conn.invalidate()
        raise RuntimeError("connection lost")
    with db.write() as fresh:
        assert fresh is not conn
        fresh.exec_driver_sql("INSERT INTO t VALUES (4)")
    assert _values(db) == [4]


def test_nested_transactions_of_one_thread_get_separate_connections(db: Database) -> None:
    with db.read() as outer, db.read() as inner:
        assert inner is not outer
        assert outer.in_transaction() and inner.in_transaction()
    with db.read() as a, db.read() as b:  # both went back on the shelf and come out again
        assert {id(a), id(b)} == {id(outer), id(inner)}


def test_the_shelf_is_bounded_and_the_rest_go_back_to_the_pool(db: Database) -> None:
    idle = IdleConnections(db.engine, write=False, keep=2)
    taken = [idle.take() for _ in range(4)]
    for conn in taken:
        idle.give(conn)
    assert [c.closed for c in taken] == [False, False, True, True]
    assert {id(idle.take()), id(idle.take())} == {id(taken[0]), id(taken[1])}


def test_a_connection_still_in_a_transaction_is_not_kept(db: Database) -> None:
    idle = IdleConnections(db.engine, write=False)
    conn = idle.take()
    conn.begin()
    idle.give(conn)
    assert conn.closed
    assert idle.take() is not conn


def test_dispose_closes_the_idle_connections(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'd.sqlite3'}")
    with database.write() as conn:
        conn.exec_driver_sql("CREATE TABLE t (v INTEGER)")
    database.dispose()
    assert conn.closed


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_use_the_parents_connections(db: Database) -> None:
    with db.write() as parents:
        parents.exec_driver_sql("INSERT INTO t VALUES (5)")
    pid = os.fork()
    if pid == 0:  # child: must open its own connection and see the committed row
        code = 1
        try:
            with db.write() as conn:
                ok = conn is not parents and conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 1
                conn.exec_driver_sql("INSERT INTO t VALUES (6)")
            code = 0 if ok else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with db.write() as conn:
        assert conn is parents  # the parent's shelf is untouched
    assert _values(db) == [5, 6]


def test_postgresql_urls_do_not_shelve() -> None:
    database = Database("postgresql://nobody@127.0.0.1:1/none")  # nothing connects until used
    try:
        assert database._idle is None  # a held PostgreSQL connection would be a server slot
    finally:
        database.dispose()
