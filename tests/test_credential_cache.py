"""Cached credential and clock lookups on SQLite (server/credential_cache.py, store/change_signal.py):
a change committed by any process is seen by every process's next request, a change that rolled back
signals nothing, and a change made behind the signal's back is seen within a second."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from live import start_live_server
from support import SP_A, World, sign_request
from wxpartner.domain.clock import ClockState
from wxpartner.domain.merchants import KeyMode, Merchant, Role
from wxpartner.server import credential_cache
from wxpartner.server.credential_cache import CredentialCache
from wxpartner.store import registry, sandbox
from wxpartner.store.db import Database, sqlite_url_for

MCHID, SERIAL = "1900000109", "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"


@pytest.fixture
def two_processes(tmp_path: Path) -> Iterator[tuple[Database, Database]]:
    """Two Database objects on one file: what two worker processes have."""
    url = sqlite_url_for(tmp_path)
    first = Database(url)
    first.migrate()
    second = Database(url)
    with first.write() as conn:
        registry.upsert_merchant(
            conn, Merchant(MCHID, "m", Role.SERVICE_PROVIDER, None, KeyMode.PUBLIC_KEY, None)
        )
        registry.add_certificate(conn, MCHID, SERIAL, "PEM")
    yield first, second
    second.dispose()
    first.dispose()


def _lookup(db: Database, cache: CredentialCache) -> credential_cache.Lookup:
    def fetch() -> credential_cache.Lookup:
        with db.read() as conn:
            return registry.get_credential_and_clock(conn, MCHID, SERIAL)

    return cache.lookup(MCHID, SERIAL, fetch)


def test_a_change_committed_elsewhere_is_seen_at_once(two_processes: tuple[Database, Database]) -> None:
    writer, reader = two_processes
    assert reader.change_signal is not None
    cache = CredentialCache(reader.change_signal)
    assert _lookup(reader, cache)[1] is not None and not _lookup(reader, cache)[1].revoked  # type: ignore[union-attr]
    assert cache.get(MCHID, SERIAL) is not None, "kept"
    with writer.write() as conn:
        assert registry.revoke_certificate(conn, SERIAL)
    assert cache.get(MCHID, SERIAL) is None
    assert _lookup(reader, cache)[1].revoked  # type: ignore[union-attr]
    with writer.write() as conn:
        sandbox.write_clock(conn, ClockState(offset_seconds=3600.0))
    assert _lookup(reader, cache)[2] == ClockState(offset_seconds=3600.0)


def test_only_marked_committed_transactions_signal(two_processes: tuple[Database, Database]) -> None:
    writer, _ = two_processes
    signal = writer.change_signal
    assert signal is not None
    word = signal.current()
    with writer.write() as conn:
        sandbox.kv_set(conn, "unrelated", "1")
    assert signal.current() == word, "a transaction that changed no credential"
    with pytest.raises(RuntimeError), writer.write() as conn:
        registry.revoke_certificate(conn, SERIAL)
        raise RuntimeError("rolled back")
    assert signal.current() == word, "rolled back: nothing changed"
    with writer.write():
        pass
    assert signal.current() == word, "the mark of the rolled-back transaction does not leak into the next"
    with writer.write() as conn:
        registry.revoke_certificate(conn, SERIAL)
    assert signal.current() != word


def test_unknown_credentials_are_not_kept(two_processes: tuple[Database, Database]) -> None:
    _, reader = two_processes
    assert reader.change_signal is not None
    cache = CredentialCache(reader.change_signal)
    with reader.read() as conn:
        found = registry.get_credential_and_clock(conn, MCHID, "NO-SUCH-SERIAL")
    cache.lookup(MCHID, "NO-SUCH-SERIAL", lambda: found)
    assert cache.get(MCHID, "NO-SUCH-SERIAL") is None


def test_a_change_behind_the_signals_back_is_seen_within_the_max_age(
    two_processes: tuple[Database, Database], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, reader = two_processes
    assert reader.change_signal is not None
    cache = CredentialCache(reader.change_signal)
    clock = [1000.0]
    monkeypatch.setattr(credential_cache.time, "monotonic", lambda: clock[0])
    assert not _lookup(reader, cache)[1].revoked  # type: ignore[union-attr]
    with sqlite3.connect(tmp_path / "wxpartner.sqlite3") as shell:  # the sqlite3 shell, say
        shell.execute("UPDATE merchant_certificates SET revoked = 1")
    clock[0] += credential_cache.MAX_AGE_S / 2
    assert not _lookup(reader, cache)[1].revoked, "still the cached lookup"  # type: ignore[union-attr]
    clock[0] += credential_cache.MAX_AGE_S
    assert _lookup(reader, cache)[1].revoked  # type: ignore[union-attr]


@pytest.mark.slow
def test_a_revocation_is_seen_by_every_worker_at_once(tmp_path: Path, world: World) -> None:
    server = start_live_server(tmp_path / "live", world, workers=2)
    keys = world.merchants[SP_A]

    def fire(_: int) -> int:
        signed = sign_request(keys, "GET", "/v3/certificates")
        # a fresh connection per request: the kernel spreads them over both workers
        return httpx.get(server.url + "/v3/certificates", headers=signed.headers, timeout=30).status_code

    try:
        with ThreadPoolExecutor(8) as pool:
            before = set(pool.map(fire, range(24)))  # verified (200, or 404 in public-key mode)
            assert 401 not in before, before  # and both workers have the lookup cached
            with server.control() as control:
                resp = control.post(f"/sandbox/certificates/{keys.serial_no}/revoke")
            assert resp.status_code == 200, resp.text
            assert set(pool.map(fire, range(24))) == {401}
    finally:
        server.stop()
