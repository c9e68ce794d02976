"""A served worker freezes its start-up heap once started (server/app.py), so the collector's full
collections scan only the requests' objects; an app built in-process (tests, the pytest plugin) leaves
the host process's collector alone."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from wxpartner.server.app import app_from_env, create_app
from wxpartner.server.settings import ENV_VAR, Settings


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # never leave this test process's objects out of the collector's sight


def test_the_worker_factory_freezes_what_start_up_left(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, unfrozen: None
) -> None:
    monkeypatch.setenv(ENV_VAR, settings.to_env())  # as `wxpartner serve` hands settings to its workers
    app = app_from_env()
    assert gc.get_freeze_count() == 0
    with TestClient(app) as client:
        assert gc.get_freeze_count() > 10_000  # the modules, models and keys of a started worker
        frozen = gc.get_freeze_count()
        assert client.get("/readyz").status_code == 200
        # Once, at start-up: the requests' objects stay collectable (frozen ones may still be freed).
        assert gc.get_freeze_count() <= frozen
    app.state.db.dispose()


def test_an_in_process_app_leaves_the_collector_alone(settings: Settings, unfrozen: None) -> None:
    app = create_app(settings)
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 200
        assert gc.get_freeze_count() == 0
    app.state.db.dispose()
