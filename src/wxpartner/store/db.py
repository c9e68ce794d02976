"""Engine creation, transactions and migrations for SQLite (embedded) and PostgreSQL (scale-out)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    """SQLite: WAL, synchronous=NORMAL, busy timeout, explicit BEGIN so writers take the lock up front.
    PostgreSQL: a bounded pool with pre-ping so a restarted database is reconnected transparently."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    if is_sqlite(url):
        engine = sa.create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            pool_size=pool_size,
            max_overflow=20,
        )

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=10000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # A writer must hold the write lock from the start: a deferred transaction that later
            # upgrades can fail with SQLITE_BUSY without waiting on busy_timeout.
            mode = "IMMEDIATE" if conn.get_execution_options().get("wx_write") else "DEFERRED"
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    return sa.create_engine(
        url,
        pool_size=pool_size,
        max_overflow=10,
        pool_pre_ping=True,
        pool_timeout=10,
        pool_recycle=1800,
        # A stuck statement or an abandoned transaction must not hold a worker (or locks) forever.
        connect_args={
            "connect_timeout": 5,
            "options": "-c statement_timeout=15000 -c idle_in_transaction_session_timeout=30000",
        },
    )


class Database:
    """A SQLAlchemy engine plus the two kinds of transaction the server uses."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size)
        self.sqlite = is_sqlite(url)

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction that may write; committed on success, rolled back on any exception."""
        with self.engine.connect() as raw:
            conn = raw.execution_options(wx_write=True)
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def migrate(self) -> None:
        migrate(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()


def sqlite_url_for(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'wxpartner.sqlite3').resolve()}"


def migrate(engine: Engine) -> None:
    """Bring the schema to every head (each product family is its own branch off the foundation)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # Several hosts may start at once: one migrates, the others wait and then find nothing to do.
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7365926)")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "heads")
