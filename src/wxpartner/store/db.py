"""Engine creation, transactions and migrations for SQLite (embedded) and PostgreSQL (scale-out)."""

from __future__ import annotations

import ast
import contextlib
import fcntl
import operator
import os
import re
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .change_signal import ChangeSignal, take_change
from .idle_connections import IdleConnections
from .replay_window import ReplayWindow
from .wal_checkpoints import WalCheckpointer
from .write_queue import WriteQueue

if TYPE_CHECKING:  # alembic is imported only to migrate: importing it costs more than a restart
    from alembic.script import ScriptDirectory

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(url: str, *, pool_size: int = 10, autocommit: bool = False) -> Engine:
    """SQLite: WAL, synchronous=NORMAL, busy timeout, explicit BEGIN so writers take the lock up front.
    PostgreSQL: a bounded pool with pre-ping so a restarted database is reconnected transparently;
    ``autocommit``: its connections are in autocommit for life (PostgreSQL only).
    Both keep bound parameters out of error text (``hide_parameters``): a failed statement's message
    is logged, and its parameters may be API keys or private keys."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    if is_sqlite(url):
        database_file = sqlite_file(url)
        engine = sa.create_engine(
            url,
            hide_parameters=True,
            connect_args={"timeout": 30, "check_same_thread": False},
            # Enough idle connections for every worker thread: an overflow connection is opened (file,
            # PRAGMAs) and closed again per request, which cost more than the query it served.
            pool_size=max(pool_size, 48),
            max_overflow=16,
        )

        if database_file is not None:  # before SQLite first creates the file; later connects find it so

            @sa.event.listens_for(engine, "do_connect", once=True)
            def _before_open(*_args: Any) -> None:
                private_database_file(database_file)

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=10000")
            cur.execute("PRAGMA foreign_keys=ON")
            # Checkpoints run in the background (store/wal_checkpoints.py), not inside a commit.
            cur.execute("PRAGMA wal_autocheckpoint=0")
            cur.execute("PRAGMA journal_size_limit=67108864")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # A writer must hold the write lock from the start: a deferred transaction that later
            # upgrades can fail with SQLITE_BUSY without waiting on busy_timeout.
            # Straight to the driver: through exec_driver_sql this cost as much as a query.
            write = conn.get_execution_options().get("wx_write")
            driver = conn.connection.driver_connection
            assert driver is not None  # a checked-out connection always has one
            driver.execute("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    engine = sa.create_engine(
        url,
        hide_parameters=True,
        **({"isolation_level": "AUTOCOMMIT"} if autocommit else {}),
        pool_size=pool_size,
        max_overflow=10,
        pool_timeout=10,
        pool_recycle=1800,
        # A stuck statement or an abandoned transaction must not hold a worker (or locks) forever.
        connect_args={
            "connect_timeout": 5,
            "options": f"-c statement_timeout={_statement_timeout_ms()} -c idle_in_transaction_session_timeout=30000",
        },
    )
    _ping_when_idle(engine)
    return engine


def _statement_timeout_ms() -> int:
    """PostgreSQL's statement timeout: 15 s, or ``WXPARTNER_PG_STATEMENT_TIMEOUT_MS`` (a positive
    integer; anything else is the default)."""
    given = os.environ.get("WXPARTNER_PG_STATEMENT_TIMEOUT_MS", "")
    return int(given) if given.isascii() and given.isdigit() and int(given) > 0 else 15000


# A pooled PostgreSQL connection is pinged before use only when it has been idle this long. Pinging on
# every checkout (pool_pre_ping) was one more round trip per transaction: W4 467-487 ->
# 512-534 requests/s without it. A connection used within the last second is not pinged: if the
# database restarted meanwhile, that request fails (500 SYSTEM_ERROR, retry) and SQLAlchemy
# invalidates every connection the pool held before it, so the next requests reconnect.
PING_AFTER_IDLE_S = 1.0


def _ping_when_idle(engine: Engine) -> None:
    @sa.event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_conn: Any, record: Any) -> None:
        record.info["wx_idle_since"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _ping(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("wx_idle_since")
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_S:
            return  # just connected, or in use a moment ago
        try:
            engine.dialect.do_ping(dbapi_conn)  # what pool_pre_ping runs (outside any transaction)
        except Exception as exc:
            # The pool discards this connection and checks out another (or connects anew).
            raise sa.exc.DisconnectionError(f"stale connection: {type(exc).__name__}") from exc


@contextlib.contextmanager
def _idle_transaction(
    idle: IdleConnections, committed: Callable[[Connection], None] | None = None
) -> Iterator[Connection]:
    conn = idle.take()
    try:
        with conn.begin():
            yield conn
        if committed is not None:  # before the connection goes back: its marks are this transaction's
            committed(conn)
    finally:
        idle.give(conn)  # only a connection that ended its transaction cleanly goes back on the shelf


class Database:
    """A SQLAlchemy engine plus the two kinds of transaction the server uses."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size)
        self.sqlite = is_sqlite(url)
        # SQLite has one writer at a time, and its busy handler sleeps 1..100 ms between retries: two
        # worker processes taking turns through it lost most of their second core. Writers queue in
        # front of it instead (store/write_queue.py): threads on a lock, processes on a file lock.
        database_file = sqlite_file(url) if self.sqlite else None
        self._write_queue = WriteQueue(database_file) if self.sqlite else None
        # SQLite on a file: the replay window in memory shared by this host's processes (one write
        # transaction less per request); otherwise the request_nonces table.
        self.replay_window = ReplayWindow(database_file) if database_file is not None else None
        # ... and lookups of merchants, certificates and the clock may be cached by each process.
        self.change_signal = ChangeSignal(database_file) if database_file is not None else None
        # SQLite: this process's count of committed changes (the word of an in-memory database, which
        # no other process shares; server/keyring.py).
        self.local_changes = 0
        self._checkpointer = WalCheckpointer(self) if self.sqlite else None
        # SQLite: connections wait between transactions on a shelf (read, write) instead of the pool.
        self._idle = (
            (IdleConnections(self.engine, write=False), IdleConnections(self.engine, write=True))
            if self.sqlite
            else None
        )
        # PostgreSQL: a pool of its own whose connections stay in autocommit. Switching a connection of
        # the main pool to autocommit at checkout and back at checkin (``execution_options``) cost
        # ~55 µs of CPU per use, as much as the statement itself: a W4 query uses it twice.
        self._autocommit = None if self.sqlite else make_engine(url, pool_size=pool_size, autocommit=True)

    @property
    def engines(self) -> tuple[Engine, ...]:
        """Every engine statements run through, for event listeners: the main one and, on PostgreSQL,
        the autocommit pool's."""
        return (self.engine,) if self._autocommit is None else (self.engine, self._autocommit)

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction that may write; committed on success, rolled back on any exception."""
        if self._write_queue is None or self._idle is None:  # PostgreSQL: the pool, no queue
            with self.engine.connect() as raw:
                conn = raw.execution_options(wx_write=True)
                with conn.begin():
                    yield conn
            return
        with self._write_queue.turn(), _idle_transaction(self._idle[1], self._committed) as conn:
            take_change(conn)  # a mark left by a transaction that rolled back
            yield conn
        if self._checkpointer is not None:
            self._checkpointer.wrote()

    def _committed(self, conn: Connection) -> None:
        if take_change(conn):
            self.local_changes += 1
            if self.change_signal is not None:
                self.change_signal.signal()

    def write_turn(self) -> contextlib.AbstractContextManager[None]:
        """The writers' queue alone, without a transaction (SQLite; nothing for PostgreSQL)."""
        return self._write_queue.turn() if self._write_queue is not None else contextlib.nullcontext()

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        if self._autocommit is not None:
            # PostgreSQL reads at READ COMMITTED, where every statement takes its own snapshot even
            # inside a transaction: BEGIN and COMMIT around reads bought no consistency, only two round
            # trips (W4: 4 of its 8).
            with self._autocommit.connect() as conn:
                yield conn
            return
        assert self._idle is not None
        with _idle_transaction(self._idle[0]) as conn:
            yield conn

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """A read-only transaction whose statements all see one moment, for a read in many statements
        that must agree (the streamed scenario export). SQLite's read transaction already is one;
        ``read()`` on PostgreSQL is READ COMMITTED, each statement its own snapshot, so this one is
        REPEATABLE READ. Held while a slow client reads, it keeps old row versions (PostgreSQL) and
        WAL frames (SQLite) alive: keep it to what one answer needs."""
        if self._autocommit is None:
            with self.read() as conn:
                yield conn
            return
        with self.engine.connect() as conn:
            conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                yield conn

    def autocommit(self) -> contextlib.AbstractContextManager[Connection]:
        """Statements that each commit on their own on PostgreSQL (no BEGIN/COMMIT round trips); on
        SQLite, one write transaction. For work whose statements are each atomic by themselves."""
        return self.read() if self._autocommit is not None else self.write()

    def migrate(self) -> None:
        migrate(self.engine)

    @contextlib.contextmanager
    def setup_lock(self) -> Iterator[None]:
        """Hosts starting at once set the database up one after the other (PostgreSQL: a session
        advisory lock held on a connection of its own while the block runs). Start-up's
        look-then-insert steps (platform keys, the demo merchant, the sandbox token) then each find
        what the host before them made, instead of inserting it a second time. SQLite on a file: a
        file lock beside it (two ``serve`` runs with different data dirs may share one file);
        in memory: nothing to share, nothing to take."""
        if self.sqlite:
            database_file = sqlite_file(self.url)
            if database_file is None:
                yield
                return
            try:
                lock = open(f"{database_file}.setup-lock", "a")  # noqa: SIM115 - closed below
            except OSError:  # its directory is missing or not ours: the database's own error follows
                yield
                return
            with lock:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # released when the file closes
                yield
            return
        with self.engine.connect() as conn:
            # Waiting for another host's set-up (a scenario may generate many keys) is no statement
            # for the 15 s statement timeout to cancel; SET LOCAL ends with the transaction, the
            # session lock does not.
            conn.exec_driver_sql("SET LOCAL statement_timeout = 0")
            conn.exec_driver_sql(f"SELECT pg_advisory_lock({SETUP_LOCK})")
            conn.commit()
            try:
                yield
            finally:
                try:
                    conn.exec_driver_sql(f"SELECT pg_advisory_unlock({SETUP_LOCK})")
                    conn.commit()
                except sa.exc.DBAPIError:
                    conn.invalidate()  # a session that may still hold the lock never goes back to the pool

    def dispose(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        for idle in self._idle or ():
            idle.close()
        if self.replay_window is not None:
            self.replay_window.close()
        if self.change_signal is not None:
            self.change_signal.close()
        if self._autocommit is not None:
            self._autocommit.dispose()
        if self._write_queue is not None:
            self._write_queue.close()
        self.engine.dispose()  # closing the last connection checkpoints the WAL


def storable(text: str, length: int) -> bool:
    """A value a String(length) column can hold on both backends (PostgreSQL refuses NUL in text, and
    longer values). A lookup by a value that is not storable finds nothing: it is not sent at all,
    where PostgreSQL would raise (a 500) and SQLite would just miss."""
    return len(text) <= length and "\x00" not in text


def private_database_file(path: Path) -> None:
    """Make the SQLite file owner-only (0600) before SQLite opens it: it holds every APIv3 key, the platform
    private keys and the sandbox token, and SQLite creates its -wal and -shm files with the database
    file's mode. A file that exists already (made before this, or under a loose umask) is narrowed
    to its owner, with its -wal and -shm."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        for part in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            with contextlib.suppress(OSError):  # absent, or not ours to change: SQLite decides
                mode = stat.S_IMODE(part.stat().st_mode)
                if mode & 0o077:
                    part.chmod(mode & 0o700)
    except OSError:
        pass  # no such directory, read-only: SQLite's own open reports it
    else:
        os.close(fd)


def sqlite_url_for(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'wxpartner.sqlite3').resolve()}"


def shown_url(url: str) -> str | None:
    """``url`` as a terminal or a log may show it, or None when it is no database URL: the password
    hidden, after the user name and in the query too (libpq, so psycopg, takes ``?password=`` and
    ``?sslpassword=``, which SQLAlchemy's ``hide_password`` leaves as they are)."""
    try:
        parsed = sa.engine.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        return None
    hidden = {name: "***" for name in parsed.query if "password" in name.lower()}
    if hidden:
        parsed = parsed.update_query_dict(hidden)
    return parsed.render_as_string(hide_password=True).replace("%2A%2A%2A", "***")


def finish_wal(url: str) -> None:
    """Fold a SQLite database's WAL into its file and remove it, as the last connection to close does,
    unless a process still has the database open. Nothing for PostgreSQL or an absent file."""
    path = sqlite_file(url) if is_sqlite(url) else None
    if path is None or not path.is_file():
        return
    with contextlib.suppress(sqlite3.Error):
        conn = sqlite3.connect(path)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL; None for an in-memory database."""
    path = sa.engine.make_url(url).database
    if not path or path == ":memory:" or path.startswith("file::memory:"):
        return None
    return Path(path)


_REVISION = re.compile(r"^(down_revision|revision)\b[^=]*=\s*(.+)$", re.MULTILINE)


def _script_heads() -> set[str] | None:
    """The head revisions of the migration scripts, read from their text (importing alembic alone takes
    longer than a whole start-up should); None if a script is not in the simple form we can read."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("[0-9]*.py"):
        found = dict((k, v.strip()) for k, v in _REVISION.findall(path.read_text()))
        try:
            revision = ast.literal_eval(found["revision"])
            down = ast.literal_eval(found["down_revision"])
        except (KeyError, ValueError, SyntaxError):
            return None
        if not isinstance(revision, str):
            return None
        revisions.add(revision)
        parents.update([down] if isinstance(down, str) else (down or ()))
    return revisions - parents


def at_heads(engine: Engine) -> bool:
    """True when the database is already migrated to every head (the usual restart)."""
    heads = _script_heads()
    if not heads:
        return False
    try:
        with engine.connect() as conn:
            current = {
                str(v) for v in conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars()
            }
    except sa.exc.DBAPIError:  # no schema yet
        return False
    return current == heads


MIGRATE_LOCK = 7365926  # pg_advisory_xact_lock: one host migrates, the others wait
SETUP_LOCK = 7365927  # pg_advisory_lock: one host at a time runs start-up's set-up (Database.setup_lock)


class SchemaTooNew(sa.exc.SQLAlchemyError):
    """The database was migrated by a newer wxpartner: its schema revision is unknown to this code.
    A database error to its callers (``serve`` shows it on one line, as an unreachable database)."""

    def __init__(self, unknown: Sequence[str], heads: Sequence[str]) -> None:
        super().__init__(
            f"it was written by a newer wxpartner (schema revision {', '.join(unknown)}; this version "
            f"knows up to {', '.join(heads)}): run that version or a newer one, or use another database; "
            "nothing was changed"
        )


def migrate(engine: Engine) -> None:
    """Bring the schema to every head (each product family is its own branch off the foundation), all
    of it in one transaction: a migration that fails leaves the database as it was (PostgreSQL's DDL is
    transactional, and so is SQLite's under the explicit BEGIN of make_engine). A database a newer
    version migrated is refused untouched (SchemaTooNew): this code would not know its tables."""
    if at_heads(engine):
        return
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # SQLite: BEGIN IMMEDIATE (make_engine's begin event), so processes migrating one file at once take
    # turns on its write lock, each reading the revision the one before it left. Deferred, two read the
    # same old revision and the second failed ("database is locked", "index … already exists").
    with engine.connect() as raw, raw.execution_options(wx_write=True).begin() as transaction:
        conn = transaction.connection
        if engine.dialect.name == "postgresql":
            # Several hosts may start at once: one migrates, the others wait and then find nothing to do.
            # Neither the wait nor an upgrade's statements are for the 15 s statement timeout to cancel
            # (SET LOCAL: this transaction only).
            conn.exec_driver_sql("SET LOCAL statement_timeout = 0")
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATE_LOCK})")
        _refuse_newer(conn, ScriptDirectory.from_config(cfg))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "heads")


def _refuse_newer(conn: Connection, scripts: ScriptDirectory) -> None:
    """SchemaTooNew if the database names a revision no script here has (Alembic's own message was a
    traceback, "Can't locate revision identified by '0099'")."""
    if not sa.inspect(conn).has_table("alembic_version"):
        return  # a new database
    current = {str(v) for v in conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars()}
    known = {script.revision for script in scripts.walk_revisions()}
    unknown = sorted(current - known)
    if unknown:
        raise SchemaTooNew(unknown, sorted(scripts.get_heads()))


def insert_for(dialect: str | Connection, table: sa.Table) -> Any:
    """INSERT with ``on_conflict_do_*``: the dialect's own construct (SQLite and PostgreSQL spell the
    clauses alike). ``dialect`` is a dialect name or a connection."""
    from sqlalchemy.dialects import postgresql, sqlite

    name = dialect if isinstance(dialect, str) else dialect.dialect.name
    return (sqlite.insert if name == "sqlite" else postgresql.insert)(table)


# A one-row subquery: outer-join to it what a single statement should read by unique keys, and exactly
# one row comes back, with NULLs for what is missing (the repositories' combined reads).
ONE_ROW = sa.select(sa.literal(1).label("one")).subquery("one")

_KEPT_CURSOR = "wx_cursor"


def _kept_cursor(conn: Connection) -> Any:
    """One DBAPI cursor per driver connection, kept for its life and reused by every LeanStatement:
    making a psycopg cursor per statement cost ~10 µs. A connection serves one thread at a time, and
    each statement's rows are fetched before the next runs. The pool's ``info`` dict lives exactly as
    long as the driver connection (cleared when it is invalidated or closed); a statement that fails
    drops the cursor, which SQLAlchemy's error handling has closed."""
    fairy = conn.connection
    cursor = fairy.info.get(_KEPT_CURSOR)
    if cursor is None:
        cursor = fairy.info[_KEPT_CURSOR] = fairy.cursor()
    return cursor


def _drop_kept_cursor(conn: Connection) -> None:
    with contextlib.suppress(Exception):  # a connection invalidated meanwhile has nothing to drop
        conn.connection.info.pop(_KEPT_CURSOR, None)


# A LeanStatement compiled for one dialect: SQL text, parameter order (positional drivers), literal
# parameter values, and whether rows come back (None: unknown until run).
_Compiled = tuple[str, tuple[str, ...] | None, dict[str, Any], bool | None]


class LeanStatement:
    """A fixed Core statement compiled ONCE per dialect and run straight on the DBAPI cursor of the
    caller's connection (same transaction, same events and error wrapping as ``conn.execute``).

    For the statements every request runs: SQLAlchemy's general execution path (cache key, compiled
    cache lookup, execution context, result metadata) cost ~0.15 ms per statement here, more than the
    database work. Parameters are plain Python values the driver takes as they are (str, int, float,
    bool, None); rows come back as the driver returns them (e.g. SQLite booleans are 0/1).

    ``stmt`` is the statement, or a builder called once per dialect name for statements that differ
    by dialect (``insert_for(...)`` with ``ON CONFLICT``).
    """

    __slots__ = ("_compiled", "_stmt", "keys")

    def __init__(
        self, stmt: sa.Executable | Callable[[str], sa.Executable], keys: tuple[str, ...] = ()
    ) -> None:
        self._stmt = stmt
        self._compiled: dict[str, _Compiled] = {}
        self.keys = keys  # column names of the rows, for callers that want a mapping

    def _compile(self, dialect: sa.Dialect) -> _Compiled:
        stmt = self._stmt(dialect.name) if callable(self._stmt) else self._stmt
        compiled = stmt.compile(dialect=dialect)  # type: ignore[attr-defined]
        defaults = dict(compiled.construct_params(_check=False))  # literal values (e.g. sa.literal(1))
        order = tuple(compiled.positiontup) if compiled.positional else None
        # Whether rows come back is known from the statement. Asking the cursor instead
        # (``description``) made psycopg build a Column object per column: ≈ 40 µs for a card row.
        rows_back: bool | None = (
            bool(compiled.effective_returning) if stmt.is_dml else True if stmt.is_select else None
        )
        return compiled.string, order, defaults, rows_back

    def _entry(self, dialect: sa.Dialect) -> _Compiled:
        entry = self._compiled.get(dialect.name)
        if entry is None:
            entry = self._compiled[dialect.name] = self._compile(dialect)
        return entry

    def rows(self, conn: Connection, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        dialect = conn.dialect
        sql, order, defaults, rows_back = self._entry(dialect)
        values = {**defaults, **params} if defaults else params
        args: Any = tuple(values[name] for name in order) if order is not None else values
        cursor = _kept_cursor(conn)
        try:
            # Connection._cursor_execute fires the cursor events and wraps driver errors in
            # sqlalchemy.exc.DBAPIError (invalidating a dead connection) exactly as conn.execute does.
            conn._cursor_execute(cursor, sql, args)
            if rows_back is None:  # a statement of unknown kind (text): the cursor knows
                rows_back = cursor.description is not None
            try:
                return list(cursor.fetchall()) if rows_back else []
            except dialect.loaded_dbapi.Error as exc:  # e.g. SQLite reports some errors while stepping
                conn._handle_dbapi_exception(exc, sql, args, cursor, None)
                raise  # not reached: the handler raises the wrapped error
        except BaseException:
            _drop_kept_cursor(conn)  # the error handling closed it
            raise

    def count(self, conn: Connection, params: dict[str, Any] | None = None) -> int:
        """Run a write that returns no rows; how many rows it changed: the driver's ``rowcount``, as
        ``conn.execute(...).rowcount`` gave it (for a count the caller reports; a write whose success
        decides what the caller does next says ``RETURNING`` instead)."""
        self.rows(conn, params or {})
        return int(_kept_cursor(conn).rowcount)

    def first(self, conn: Connection, params: dict[str, Any]) -> tuple[Any, ...] | None:
        rows = self.rows(conn, params)
        return rows[0] if rows else None

    def first_mapping(self, conn: Connection, params: dict[str, Any]) -> dict[str, Any] | None:
        """The first row as {column: value} by ``keys`` (None when there is none)."""
        row = self.first(conn, params)
        return dict(zip(self.keys, row, strict=True)) if row is not None else None

    def run_many(self, conn: Connection, many: Sequence[dict[str, Any]]) -> None:
        """The statement once per parameter set, in one driver ``executemany`` (no rows back). Driver
        errors are wrapped as by ``conn.execute``; cursor events are not fired for it."""
        dialect = conn.dialect
        sql, order, defaults, _ = self._entry(dialect)
        merged = [{**defaults, **p} for p in many] if defaults else many
        if order is None:
            args: Any = merged
        else:  # itemgetter of one key returns the value itself, of several a tuple
            get = operator.itemgetter(*order)
            args = [(get(v),) for v in merged] if len(order) == 1 else list(map(get, merged))
        cursor = conn.connection.cursor()
        try:
            dialect.do_executemany(cursor, sql, args, None)
        except dialect.loaded_dbapi.Error as exc:
            conn._handle_dbapi_exception(exc, sql, args, cursor, None)
            raise  # not reached: the handler raises the wrapped error
        finally:
            cursor.close()
