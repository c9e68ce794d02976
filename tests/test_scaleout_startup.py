"""Scale-out start-up: several hosts started at the same moment against one fresh PostgreSQL database
(as a deployment's hosts are, with one scenario file). One migrates and sets the database up; the
others wait for it and find everything made, so all of them start and all use the same platform keys."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from live import LiveServer, start_live_server
from pg import PgServer, create_database, drop_database
from support import World
from wxpartner.store.db import MIGRATE_LOCK, SETUP_LOCK, Database

pytestmark = pytest.mark.slow
_names = itertools.count()
HOSTS = 3


@pytest.fixture
def fresh_database(pg_server: PgServer | None) -> Iterator[str]:
    if pg_server is None:
        pytest.skip("PostgreSQL is not installed here; .ci/run installs it")
    name = f"wx_startup_{next(_names)}"
    yield create_database(pg_server, name)
    drop_database(pg_server, name)


@pytest.mark.parametrize("scenario_keys", [True, False], ids=["scenario-keys", "generated-keys"])
def test_hosts_started_at_once_all_start_with_one_set_of_platform_keys(
    fresh_database: str, tmp_path: Path, world: World, scenario_keys: bool
) -> None:
    # With the scenario's platform keys every host inserts the same key ids; without, each would make
    # its own pair and write a different one into its data directory.
    scenario = None if scenario_keys else {"platform_keys": []}
    with ThreadPoolExecutor(HOSTS) as pool:
        futures = [
            pool.submit(
                start_live_server,
                tmp_path / f"host-{i}",
                world,
                database_url=fresh_database,
                scenario=scenario,
            )
            for i in range(HOSTS)
        ]
        started: list[LiveServer] = []
        failed: list[str] = []
        for future in futures:
            try:
                started.append(future.result())
            except RuntimeError as exc:
                failed.append(str(exc)[-600:])
    try:
        assert not failed, failed
        listings = [sorted(p.name for p in (s.data_dir / "platform").iterdir()) for s in started]
        assert all(listing == listings[0] for listing in listings), listings
        with started[0].control() as control:
            keys = control.get("/sandbox/platform-keys").json()
        kinds = sorted(k["kind"] for k in keys["data"])
        assert kinds == ["certificate", "public_key"], keys
        tokens = {s.info.get("sandbox_token") for s in started}
        assert len(tokens) == 1, tokens
    finally:
        for server in started:
            server.stop()


@pytest.mark.parametrize("step", ["migration", "set-up"])
def test_a_host_waits_for_another_hosts_start_longer_than_the_statement_timeout(
    fresh_database: str, tmp_path: Path, world: World, step: str
) -> None:
    """Another host's migration or set-up may take long (a big upgrade; a scenario generating many
    merchants' keys): waiting for it is not a statement to cancel after the 15 s statement timeout, and
    the host starts once it is done."""
    holder = sa.create_engine(fresh_database.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with holder.connect() as conn:
            if step == "migration":  # held as a migrating host holds it: for its transaction
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATE_LOCK})")
            else:
                Database(fresh_database).migrate()  # as the host holding the set-up had done
                conn.exec_driver_sql(f"SELECT pg_advisory_lock({SETUP_LOCK})")
                conn.commit()
            waiting = ThreadPoolExecutor(1)
            future = waiting.submit(
                start_live_server,
                tmp_path / "host",
                world,
                database_url=fresh_database,
                env={"WXPARTNER_PG_STATEMENT_TIMEOUT_MS": "2000"},  # the 15 s default, shortened
            )
            time.sleep(4)  # > the statement timeout
            assert not future.done(), "the host did not wait (it gave up, or went ahead)"
            if step == "migration":
                conn.rollback()
            else:
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock({SETUP_LOCK})")
                conn.commit()
            server = future.result(timeout=60)
            waiting.shutdown()
    finally:
        holder.dispose()
    try:
        assert httpx.get(server.url + "/readyz").status_code == 200
    finally:
        server.stop()
