"""What each kind of Database block costs the database: on PostgreSQL a read (and the verification's
lookup and nonce) runs in autocommit, with no BEGIN/COMMIT round trips; a write is one transaction."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from psycopg.pq import TransactionStatus

from pg import PgServer, create_database, drop_database
from wxpartner.store import sandbox
from wxpartner.store.db import Database, sqlite_url_for


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
