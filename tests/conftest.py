"""Shared fixtures: one key world per session, a migrated template database copied per test,
an in-process app (Starlette TestClient: real ASGI, no port) and signing clients per merchant."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from live import LiveServer
from support import SP_A, SP_B, SP_C, ApiClient, World, clone_sqlite, make_world, seed
from wxpartner.server.app import WxPartnerApp, create_app
from wxpartner.server.settings import Settings
from wxpartner.store.db import Database

SANDBOX_TOKEN = "test-token-0123456789"


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


@pytest.fixture
def settings(tmp_path: Path, template_db: Path) -> Settings:
    url = clone_sqlite(template_db, tmp_path / "wxpartner.sqlite3")
    return Settings(
        data_dir=str(tmp_path), database_url=url, sandbox_token=SANDBOX_TOKEN, deliver_callbacks=False
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


@pytest.fixture
def live_server(tmp_path: Path, world: World) -> Iterator[LiveServer]:
    from live import start_live_server

    server = start_live_server(tmp_path / "live", world)
    yield server
    server.stop()
