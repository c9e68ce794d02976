"""What each kind of Database block costs the database: on PostgreSQL a read (and the verification's
lookup and nonce) runs in autocommit, with no BEGIN/COMMIT round trips; a write is one transaction."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from psycopg.pq import TransactionStatus

from pg import PgServer, create_database, drop_database
from wxpartner.store import sandbox
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
