"""What each kind of Database block costs the database: on PostgreSQL a read (and the verification's
lookup and nonce) runs in autocommit, with no BEGIN/COMMIT round trips; a write is one transaction."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from psycopg.pq import TransactionStatus

from pg import PgServer, create_database, drop_database
from wxpartner.store import registry, sandbox
from wxpartner.store.db import Database, LeanStatement, sqlite_url_for


def _status(conn: sa.Connection) -> TransactionStatus:
    driver = conn.connection.driver_connection
    return driver.info.transaction_status  # type: ignore[union-attr, no-any-return]


def test_postgresql_reads_open_no_transaction_and_writes_one(pg_server: PgServer | None) -> None:
    if pg_server is None:
        pytest.skip("PostgreSQL is not installed here (apt-get install postgresql); .ci/run installs it")
    db = Database(create_database(pg_server, "wx_transactions"))
    try:
        db.migrate()
        with db.read() as conn:
            assert conn.execute(sa.text("select 1")).scalar() == 1
            assert _status(conn) == TransactionStatus.IDLE, "no BEGIN was sent for a read"
        with db.autocommit() as conn:
            assert sandbox.record_nonce(conn, "1900000001", "autocommit-nonce", 1.0)
            assert _status(conn) == TransactionStatus.IDLE, "the insert committed by itself"
        with db.read() as conn:
            assert sandbox.nonce_seen(conn, "1900000001", "autocommit-nonce")
        with db.write() as conn:
            conn.execute(sa.text("select 1"))
            assert _status(conn) == TransactionStatus.INTRANS
        with pytest.raises(RuntimeError), db.write() as conn:
            assert sandbox.record_nonce(conn, "1900000001", "rolled-back", 1.0)
            raise RuntimeError("refused")
        with db.read() as conn:
            assert not sandbox.nonce_seen(conn, "1900000001", "rolled-back"), "a write block is atomic"
    finally:
        db.dispose()
        drop_database(pg_server, "wx_transactions")


def test_autocommit_is_one_write_transaction_on_sqlite(tmp_path: Path) -> None:
    db = Database(sqlite_url_for(tmp_path))
    try:
        db.migrate()
        with pytest.raises(RuntimeError), db.autocommit() as conn:
            assert sandbox.record_nonce(conn, "1900000001", "rolled-back", 1.0)
            raise RuntimeError("refused")
        with db.read() as conn:
            assert not sandbox.nonce_seen(conn, "1900000001", "rolled-back")
    finally:
        db.dispose()


def test_lean_statements_return_rows_exactly_when_the_statement_has_them(database_url: str) -> None:
    """Rows come back for a SELECT and for DML with RETURNING, none for plain DML, and a text
    statement asks the cursor; the same on both drivers (psycopg refuses fetchall without a result)."""
    meta = sa.MetaData()
    t = sa.Table("lean_probe", meta, sa.Column("k", sa.String, primary_key=True), sa.Column("v", sa.Integer))
    db = Database(database_url)
    try:
        with db.write() as conn:
            meta.create_all(conn)
        insert = LeanStatement(sa.insert(t).values(k=sa.bindparam("k"), v=sa.bindparam("v")))
        insert_back = LeanStatement(
            sa.insert(t).values(k=sa.bindparam("k"), v=sa.bindparam("v")).returning(t.c.v)
        )
        select = LeanStatement(
            sa.select(t.c.k, t.c.v).where(t.c.v >= sa.bindparam("v")).order_by(t.c.k), ("k", "v")
        )
        delete = LeanStatement(sa.delete(t).where(t.c.k == sa.bindparam("k")))
        text = LeanStatement(sa.text("SELECT count(*) FROM lean_probe"))
        with db.write() as conn:
            assert insert.rows(conn, {"k": "a", "v": 1}) == []
            assert insert_back.rows(conn, {"k": "b", "v": 2}) == [(2,)]
            assert select.rows(conn, {"v": 2}) == [("b", 2)]
            assert select.first_mapping(conn, {"v": 0}) == {"k": "a", "v": 1}
            assert select.first(conn, {"v": 9}) is None
            assert text.rows(conn, {}) == [(2,)]
            assert delete.rows(conn, {"k": "a"}) == []
        with db.read() as conn:
            assert select.rows(conn, {"v": 0}) == [("b", 2)]
    finally:
        with db.write() as conn:
            meta.drop_all(conn)
        db.dispose()


def test_lean_statements_share_one_cursor_per_connection_and_survive_its_errors(database_url: str) -> None:
    """Every LeanStatement on a connection runs on one kept cursor: a statement that failed leaves it
    usable by the next transaction, and a connection that is replaced comes with a cursor of its own."""
    meta = sa.MetaData()
    t = sa.Table("lean_cursor", meta, sa.Column("k", sa.String, primary_key=True))
    db = Database(database_url)
    try:
        with db.write() as conn:
            meta.create_all(conn)
        insert = LeanStatement(sa.insert(t).values(k=sa.bindparam("k")))
        count = LeanStatement(sa.select(sa.func.count()).select_from(t))
        with db.write() as conn:
            insert.rows(conn, {"k": "a"})
            kept = conn.connection.info["wx_cursor"]
            assert count.first(conn, {}) == (1,)
            assert conn.connection.info["wx_cursor"] is kept
        with pytest.raises(sa.exc.IntegrityError), db.write() as conn:
            insert.rows(conn, {"k": "a"})  # a duplicate: the transaction is rolled back
        with db.write() as conn:
            insert.rows(conn, {"k": "b"})  # the error closed the kept cursor: a new one serves
            again = conn.connection.info["wx_cursor"]
            assert again is not kept
            assert count.first(conn, {}) == (2,)
            assert conn.connection.info["wx_cursor"] is again
        with db.read() as conn:
            assert count.first(conn, {}) == (2,)
        with db.engine.connect() as conn:
            assert count.first(conn, {}) == (2,)
            kept = conn.connection.info["wx_cursor"]
            conn.invalidate()  # the driver connection is closed: its cursor goes with it
        with db.engine.connect() as conn:
            assert count.first(conn, {}) == (2,)
            assert conn.connection.info["wx_cursor"] is not kept
    finally:
        with db.write() as conn:
            meta.drop_all(conn)
        db.dispose()


def test_postgresql_reads_never_switch_a_connection_into_autocommit_and_back(
    pg_server: PgServer | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads have a pool of connections that stay in autocommit: switching one of the main pool's at
    checkout and back at checkin cost as much CPU as the statement itself."""
    if pg_server is None:
        pytest.skip("PostgreSQL is not installed here (apt-get install postgresql); .ci/run installs it")
    import psycopg

    db = Database(create_database(pg_server, "wx_autocommit_pool"))
    try:
        db.migrate()
        with db.read() as conn:  # the first use connects (and sets autocommit once)
            conn.execute(sa.text("select 1"))
        switches: list[bool] = []
        real = psycopg.Connection._set_autocommit

        def spy(self: psycopg.Connection[object], value: bool) -> None:
            switches.append(value)
            real(self, value)

        monkeypatch.setattr(psycopg.Connection, "_set_autocommit", spy)
        for _ in range(3):
            with db.read() as conn:
                assert conn.execute(sa.text("select 1")).scalar() == 1
                assert _status(conn) == TransactionStatus.IDLE
            with db.write() as conn:
                conn.execute(sa.text("select 1"))
                assert _status(conn) == TransactionStatus.INTRANS
        assert switches == []
    finally:
        db.dispose()
        drop_database(pg_server, "wx_autocommit_pool")


def test_a_database_error_names_no_bound_parameter(database_url: str) -> None:
    """A failed statement's text is logged (the pipeline's log.exception, uvicorn): its parameters,
    here a platform private key, must not be in it, on the main engine nor on the autocommit pool."""
    db = Database(database_url)
    try:
        with db.read() as conn:
            stored = registry.list_platform_keys(conn)[0]
        for block in (db.write, db.read):
            with pytest.raises(sa.exc.IntegrityError) as exc, block() as conn:
                registry.add_platform_key(conn, stored)  # the same key_id again
            assert "INSERT INTO platform_keys" in str(exc.value)
            assert stored.private_key_pem not in str(exc.value)
            assert "PRIVATE KEY" not in str(exc.value)
    finally:
        db.dispose()
