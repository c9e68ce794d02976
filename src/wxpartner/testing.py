"""pytest plugin (registered through the ``pytest11`` entry point): a wxpartner server for an
integrator's own test suite, in three lines::

    def test_issue_card(wxpartner_client):
        ranges = wxpartner_client.webizpay.ranges.list(sp_mchid=wxpartner_client.mchid)
        assert ranges.range_list == []

Fixtures (all lazy: nothing starts unless a test asks for it):

- ``wxpartner_server``: the session's server, in-process (ASGI, no port), business data reset before
  the test (merchants and keys stay). Load scenarios, move the clock, inject faults, rotate keys,
  send callbacks to your own endpoint (``set_notify_url``, ``deliver_callbacks``).
- ``wxpartner_client`` / ``wxpartner_async_client``: a configured ``Client`` / ``AsyncClient`` for the
  demo service provider (public-key mode) bound to that server.
- ``wxpartner_live_server``: the same server also listening on a loopback port (uvicorn in a thread), for
  code under test that makes its own HTTP calls (``.live_url``; ``.client(live=True)`` uses the socket).

ini options: ``wxpartner_scenario`` (a scenario file loaded at session start, relative to the ini file;
its business sections are loaded again after every reset), ``wxpartner_database_url``
(default: SQLite in a temporary directory; under pytest-xdist each worker uses its own database,
``<name>_gw0``...). A wrong one fails the tests that use the server with one line naming it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .testing_server import IN_PROCESS_URL, TOKEN, WxPartnerServer

if TYPE_CHECKING:
    from .client import AsyncClient, Client

__all__ = ["IN_PROCESS_URL", "TOKEN", "WxPartnerServer", "start_server", "worker_database"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("wxpartner_scenario", "scenario file loaded into the wxpartner test server", default="")
    parser.addini(
        "wxpartner_database_url", "database for the wxpartner test server (default: SQLite)", default=""
    )


def _ini_path(config: pytest.Config, value: str) -> Path:
    """An ini option's path, relative to the file that set it (pytest's rule for paths), else to the
    rootdir."""
    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    base = config.inipath.parent if config.inipath is not None else config.rootpath
    return base / path


def worker_database(url: str, worker: str) -> str:
    """A pytest-xdist worker's own database: every test resets the server's database, so workers
    sharing one would delete each other's data mid-test. SQLite ``x.sqlite3`` becomes
    ``x_gw0.sqlite3``; a PostgreSQL database ``x`` becomes ``x_gw0``, created (empty) if missing
    through the URL's own database and role (which then needs CREATEDB)."""
    import sqlalchemy as sa

    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:" or parsed.database.startswith("file:"):
            return url  # in memory: each process has its own anyway
        file = Path(parsed.database)
        own = parsed.set(database=str(file.with_name(f"{file.stem}_{worker}{file.suffix}")))
        return own.render_as_string(hide_password=False)
    name = f"{parsed.database or parsed.username or 'postgres'}_{worker}"
    own = parsed.set(database=name)
    if parsed.get_backend_name() == "postgresql":
        admin = parsed.set(drivername="postgresql+psycopg") if parsed.drivername == "postgresql" else parsed
        engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT", hide_parameters=True)
        try:
            with engine.connect() as conn:
                found = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
                if found.first() is None:
                    conn.exec_driver_sql(f"CREATE DATABASE {conn.dialect.identifier_preparer.quote(name)}")
        finally:
            engine.dispose()
    return own.render_as_string(hide_password=False)


def start_server(config: pytest.Config, data_dir: Path) -> WxPartnerServer:
    """The server the ini options describe; a wrong option fails with one line naming it (no traceback
    into the plugin), and what was opened before the failure is closed."""
    import sqlalchemy as sa

    from .sandbox.scenario import ScenarioError
    from .store.db import shown_url

    scenario = str(config.getini("wxpartner_scenario") or "").strip()
    database_url = str(config.getini("wxpartner_database_url") or "").strip()
    where = f" (in {config.inipath.name})" if config.inipath is not None else ""
    path = _ini_path(config, scenario) if scenario else None
    if path is not None and not path.is_file():
        pytest.fail(f"wxpartner_scenario = {scenario}{where}: no such file: {path}", pytrace=False)
    worker = str(getattr(config, "workerinput", {}).get("workerid", ""))  # a pytest-xdist worker
    try:
        own_url = worker_database(database_url, worker) if worker and database_url else database_url
        return WxPartnerServer(data_dir, database_url=own_url, scenario=path)
    except ScenarioError as exc:
        problem = f"wxpartner_scenario = {scenario}{where}: {exc}"
    except (sa.exc.SQLAlchemyError, ImportError) as exc:  # no such driver, host, database, role...
        if not database_url:
            raise
        shown = shown_url(database_url) or "(not a database URL)"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        own = f" (as {worker}'s own database, created if missing)" if worker else ""
        problem = (
            f"wxpartner_database_url = {shown}{where}: the wxpartner test server cannot use it{own} "
            f"(SQLite: sqlite:///path, PostgreSQL: postgresql://...): {type(exc).__name__}: {reason}"
        )
    pytest.fail(problem, pytrace=False)  # outside the except: no "during handling" chain


@pytest.fixture(scope="session")
def wxpartner_session(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WxPartnerServer]:
    """The session's server (started on first use), NOT reset: for your module- or session-scoped
    fixtures, to set up what survives resets (merchants, keys). Tests take ``wxpartner_server``."""
    server = start_server(request.config, tmp_path_factory.mktemp("wxpartner"))
    yield server
    server.close()


@pytest.fixture
def wxpartner_server(wxpartner_session: WxPartnerServer) -> WxPartnerServer:
    """The session's in-process server, reset for this test: business data, callbacks, faults, the
    journal, the clock and notify URLs as the ini scenario left them (merchants and keys stay).
    ``.client()``, ``.load_scenario()``, ``.advance_clock()``, ``.inject_fault()``,
    ``.set_notify_url()``, ``.deliver_callbacks()``, ``.control`` (the /sandbox API)."""
    wxpartner_session.reset()
    return wxpartner_session


@pytest.fixture
def wxpartner_client(wxpartner_server: WxPartnerServer) -> Iterator[Client]:
    """A ``Client`` for the demo service provider (public-key mode) on the reset in-process server,
    closed after the test; ``wxpartner_server.client(**overrides)`` makes others."""
    with wxpartner_server.client() as client:
        yield client


@pytest.fixture
def wxpartner_async_client(wxpartner_server: WxPartnerServer) -> Iterator[AsyncClient]:
    """An ``AsyncClient`` for the demo service provider on the reset in-process server: await it in
    an async test (``@pytest.mark.anyio``); ``async with`` is fine, it is closed after the test
    either way."""
    import anyio

    client = wxpartner_server.async_client()
    yield client
    anyio.run(client.aclose)


@pytest.fixture
def wxpartner_live_server(wxpartner_server: WxPartnerServer) -> WxPartnerServer:
    """The same server, reset, also listening on a loopback port (``.live_url``; started once per
    session); ``.client(live=True)`` talks to it over the socket."""
    wxpartner_server.serve()
    return wxpartner_server
