"""Shared fixtures: one key world per session, a migrated template database copied per test,
an in-process app (Starlette TestClient: real ASGI, no port) and signing clients per merchant."""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Starlette's TestClient is built on httpx2 when that is importable, else on httpx (deprecated since
# Starlette 1.x, but what an install without httpx2 gets). The suite runs on httpx; test_httpx2.py runs
# the SDK and plugin tests again with WXPARTNER_TEST_HTTPX2=1, on httpx2. httpx2 stays importable.
if os.environ.get("WXPARTNER_TEST_HTTPX2") != "1" and "starlette.testclient" not in sys.modules:
    _httpx2 = sys.modules.pop("httpx2", None)
    sys.modules["httpx2"] = None  # type: ignore[assignment]  # "not installed", for this one import
    try:
        import starlette.testclient  # noqa: F401
    finally:
        del sys.modules["httpx2"]
        if _httpx2 is not None:
            sys.modules["httpx2"] = _httpx2

from starlette.testclient import TestClient

from live import LiveServer, free_port, hosts_on_postgres
from pg import PgServer, create_database, drop_database, start_pg
from support import SP_A, SP_B, SP_C, ApiClient, World, clone_sqlite, make_world, seed
from wxpartner.server.app import WxPartnerApp, create_app
from wxpartner.server.settings import Settings
from wxpartner.store.db import Database

SANDBOX_TOKEN = "test-token-0123456789"
# WXPARTNER_TEST_BACKENDS=sqlite runs only the SQLite half (a quick local loop); make test runs both.
BACKENDS = [b for b in os.environ.get("WXPARTNER_TEST_BACKENDS", "sqlite,postgres").split(",") if b]


@pytest.fixture(scope="session")
def world() -> World:
    return make_world()


@pytest.fixture(scope="session")
def template_db(world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    db = Database(f"sqlite:///{path}")
    seed(db, world)
    with db.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    db.dispose()
    return path


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer | None]:
    server = start_pg(free_port())
    yield server
    if server is not None:
        server.stop()


@pytest.fixture(scope="session")
def pg_template(pg_server: PgServer | None, world: World) -> str | None:
    if pg_server is None:
        return None
    url = create_database(pg_server, "wx_template")
    db = Database(url)
    seed(db, world)
    db.dispose()
    return "wx_template"


@pytest.fixture
def hosts(
    tmp_path: Path, world: World, pg_server: PgServer | None
) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Two hosts (serve processes, each with its own data dir) on one fresh PostgreSQL database; a
    module that needs other options defines its own."""
    with hosts_on_postgres(pg_server, tmp_path, world) as (a, b):
        yield a, b


_db_counter = itertools.count()


@pytest.fixture(params=BACKENDS)
def database_url(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    template_db: Path,
    pg_server: PgServer | None,
    pg_template: str | None,
) -> Iterator[str]:
    """The test matrix: every test that touches the store runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield clone_sqlite(template_db, tmp_path / "wxpartner.sqlite3")
        return
    if pg_server is None or pg_template is None:
        pytest.skip("PostgreSQL is not installed here (apt-get install postgresql); .ci/run installs it")
    name = f"wx_t{os.getpid()}_{next(_db_counter)}"
    url = create_database(pg_server, name, template=pg_template)
    yield url
    drop_database(pg_server, name)


@pytest.fixture(params=BACKENDS)
def serve_database(request: pytest.FixtureRequest, pg_server: PgServer | None) -> Iterator[str]:
    """For a `wxpartner serve` of the test's own: '' (SQLite in the server's data dir, which it
    creates) or a fresh, empty PostgreSQL database (it migrates it), dropped afterwards."""
    if request.param == "sqlite":
        yield ""
        return
    if pg_server is None:
        pytest.skip("PostgreSQL is not installed here; .ci/run installs it")
    name = f"wx_serve_{os.getpid()}_{next(_db_counter)}"
    url = create_database(pg_server, name)
    try:
        yield url
    finally:
        drop_database(pg_server, name)


@pytest.fixture
def backend(database_url: str) -> str:
    return "sqlite" if database_url.startswith("sqlite") else "postgres"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=str(tmp_path),
        database_url=database_url,
        sandbox_token=SANDBOX_TOKEN,
        deliver_callbacks=False,
        # Business-rule tests submit applyments faster than WeChat's 5 per second; the rate-limit
        # tests (test_rate_limits.py, test_recharge*.py) set their own limits.
        extra={"apply4subject_rate_limits": {"submit": 0, "query": 0}},
    )


@pytest.fixture
def app(settings: Settings) -> Iterator[WxPartnerApp]:
    application = create_app(settings)
    yield application
    application.state.db.dispose()


@pytest.fixture
def http(app: WxPartnerApp) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://testserver") as client:
        yield client


@pytest.fixture
def client_a(http: TestClient, world: World) -> ApiClient:
    return ApiClient(http, world, SP_A)


@pytest.fixture
def client_b(http: TestClient, world: World) -> ApiClient:
    return ApiClient(http, world, SP_B)


@pytest.fixture
def client_c(http: TestClient, world: World) -> ApiClient:
    return ApiClient(http, world, SP_C)


@pytest.fixture
def control(http: TestClient) -> TestClient:
    http.headers["Authorization"] = f"Bearer {SANDBOX_TOKEN}"
    return http


@contextlib.contextmanager
def quiet_control(settings: Settings) -> Iterator[tuple[WxPartnerApp, TestClient]]:
    """An app without its background sweep, whose clock moves settle nothing, and its control API:
    what settles is what the test runs. (The background round, every 2 s, took part of a test's cards
    on a loaded machine, and the sweep under test answered 200 of 230.)"""
    settings.extra.update(webizpay_sweep_seconds=0, clock_settle_max=0)
    application = create_app(settings)
    try:
        with TestClient(application, headers={"Authorization": f"Bearer {SANDBOX_TOKEN}"}) as control:
            yield application, control
    finally:
        application.state.db.dispose()


@pytest.fixture
def live_server(tmp_path: Path, world: World) -> Iterator[LiveServer]:
    from live import start_live_server

    server = start_live_server(tmp_path / "live", world)
    yield server
    server.stop()
