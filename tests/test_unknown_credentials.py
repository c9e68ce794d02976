"""Requests naming an unknown mchid or serial_no (server/verify.py, server/credential_cache.py): refused
from a per-process memory of the registry instead of a lookup each, yet a merchant or certificate
registered afterwards through another host (two app instances on one database, as in
test_credential_generation.py) is honoured on its very next request; the memory is bounded by the
registry, not by what requests name; and the refusal is the same bytes as the lookup's.
Every test runs on SQLite (its shared-memory signal) and on PostgreSQL (the generation row)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from conftest import SANDBOX_TOKEN
from live import Served
from support import SP_A, SP_B, World, sign_request, statements_run
from wxpartner.cli import main
from wxpartner.domain.merchants import KeyMode, Merchant, Role
from wxpartner.protocol import keys as k
from wxpartner.protocol.errors import ApiError
from wxpartner.server import credential_cache
from wxpartner.server.app import WxPartnerApp, create_app
from wxpartner.server.http import RawRequest
from wxpartner.server.journal import writer
from wxpartner.server.settings import Settings
from wxpartner.server.verify import Verified
from wxpartner.store import registry

NEW_MCHID = "1900000777"
NEW_SERIAL = "1A2B3C4D5E6F708192A3B4C5D6E7F8091A2B3C4D"


@pytest.fixture
def hosts(settings: Settings) -> Iterator[tuple[WxPartnerApp, WxPartnerApp]]:
    first, second = create_app(settings), create_app(settings)
    yield first, second
    second.state.db.dispose()
    first.state.db.dispose()


def _request(world: World, *, mchid: str | None = None, serial_no: str | None = None) -> RawRequest:
    # The key no merchant registered: the one a merchant registered "afterwards" below.
    key = world.other_key if mchid == NEW_MCHID or serial_no == NEW_SERIAL else None
    signed = sign_request(
        world.merchants[SP_A], "GET", "/v3/certificates", mchid=mchid, serial_no=serial_no, private_key=key
    )
    headers = {k.lower(): v for k, v in signed.headers.items()}
    return RawRequest("GET", "/v3/certificates", "", headers, b"", "127.0.0.1:1")


def _verify(app: WxPartnerApp, req: RawRequest) -> Verified:
    return app.state.verifier.verify(req)


def _refused(app: WxPartnerApp, req: RawRequest) -> dict[str, Any]:
    with pytest.raises(ApiError) as info:
        _verify(app, req)
    assert info.value.code == "SIGN_ERROR" and info.value.detail is not None
    return info.value.detail


def _register(app: WxPartnerApp, world: World, mchid: str, serial_no: str) -> None:
    assert world.other_key is not None
    pem = k.public_key_pem(world.other_key.public_key())
    with app.state.db.write() as conn:
        if registry.get_merchant(conn, mchid) is None:
            registry.upsert_merchant(
                conn, Merchant(mchid, "new", Role.SERVICE_PROVIDER, None, KeyMode.PUBLIC_KEY, None)
            )
        registry.add_certificate(conn, mchid, serial_no, pem)


@pytest.mark.parametrize("unknown", ["mchid", "serial_no"])
def test_a_repeated_refusal_costs_no_lookup(
    hosts: tuple[WxPartnerApp, WxPartnerApp], world: World, unknown: str
) -> None:
    """SQLite: no statement at all; PostgreSQL: one, the generation's (the lookup and, refused, the
    clock's or the serials' took two)."""
    _, app = hosts
    db = app.state.db
    rnd = random.Random(7)

    def forged() -> RawRequest:
        if unknown == "mchid":
            return _request(world, mchid=str(rnd.randrange(10**9, 10**10)))
        return _request(world, serial_no=f"{rnd.getrandbits(160):040X}")

    _refused(app, forged())  # the first: looked up, and the registry read
    with statements_run(db) as statements:
        for _ in range(20):
            assert _refused(app, forged())["field"] == unknown
    if db.sqlite:
        assert statements == []
    else:
        assert len(statements) == 20 and all("sandbox_kv" in s for s in statements), statements[:3]


@pytest.mark.parametrize("unknown", ["mchid", "serial_no"])
def test_registered_through_another_host_it_is_honoured_on_the_next_request(
    hosts: tuple[WxPartnerApp, WxPartnerApp], world: World, unknown: str
) -> None:
    first, second = hosts
    mchid, serial = (NEW_MCHID, NEW_SERIAL) if unknown == "mchid" else (SP_A, NEW_SERIAL)
    for _ in range(3):  # refused, then refused from memory
        assert _refused(second, _request(world, mchid=mchid, serial_no=serial))["field"] == unknown
    _register(first, world, mchid, serial)
    assert _verify(second, _request(world, mchid=mchid, serial_no=serial)).caller.merchant.mchid == mchid


def test_a_scenario_loaded_through_another_host_is_honoured_on_the_next_request(
    hosts: tuple[WxPartnerApp, WxPartnerApp], world: World
) -> None:
    first, second = hosts
    assert world.other_key is not None
    for _ in range(3):
        assert _refused(second, _request(world, mchid=NEW_MCHID, serial_no=NEW_SERIAL))["field"] == "mchid"
    scenario = {
        "merchants": [
            {
                "mchid": NEW_MCHID,
                "certificates": [
                    {"serial_no": NEW_SERIAL, "public_key": k.public_key_pem(world.other_key.public_key())}
                ],
            }
        ]
    }
    with TestClient(first) as control:
        answer = control.post(
            "/sandbox/scenario", json=scenario, headers={"Authorization": f"Bearer {SANDBOX_TOKEN}"}
        )
        assert answer.status_code == 200, answer.text
    assert (
        _verify(second, _request(world, mchid=NEW_MCHID, serial_no=NEW_SERIAL)).caller.merchant.mchid
        == NEW_MCHID
    )


def test_a_revoked_certificate_is_still_refused_as_revoked(
    hosts: tuple[WxPartnerApp, WxPartnerApp], world: World
) -> None:
    """The memory answers only "not registered": a revoked serial is registered, and its refusal
    says so (as before)."""
    first, second = hosts
    _refused(second, _request(world, mchid="1999999999"))  # the registry read
    with first.state.db.write() as conn:
        assert registry.revoke_certificate(conn, world.merchants[SP_A].serial_no)
    _refused(second, _request(world, mchid="1999999998"))  # read again at the new word
    assert "revoked" in _refused(second, _request(world))["detail"]["issue"]


def test_the_memory_holds_the_registry_whatever_the_requests_name(
    hosts: tuple[WxPartnerApp, WxPartnerApp], world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, app = hosts
    verifier = app.state.verifier
    for i in range(300):
        _refused(app, _request(world, mchid=str(1_800_000_000 + i)))
        _refused(app, _request(world, serial_no=f"{i:040X}"))
    kept = verifier._registered.latest()
    assert kept is not None
    with app.state.db.read() as conn:
        registered = {m.mchid for m in registry.list_merchants(conn)}
    assert set(kept.serials) == registered, "only what the registry holds, nothing the requests named"
    assert sum(len(s) for s in kept.serials.values()) <= credential_cache.REGISTERED_LIMIT


def test_a_registry_beyond_the_limit_is_not_kept_and_requests_are_looked_up(
    hosts: tuple[WxPartnerApp, WxPartnerApp], world: World
) -> None:
    _, app = hosts
    verifier = app.state.verifier
    with app.state.db.read() as conn:
        pairs = sum(
            max(1, len(registry.list_certificates(conn, m.mchid))) for m in registry.list_merchants(conn)
        )
    verifier._registered = credential_cache.RegisteredMemory(limit=pairs - 1)
    for unknown in ("mchid", "serial_no"):
        for i in range(3):
            req = (
                _request(world, mchid=str(1_700_000_000 + i))
                if unknown == "mchid"
                else _request(world, serial_no=f"{i:040X}")
            )
            with statements_run(app.state.db) as statements:
                assert _refused(app, req)["field"] == unknown
            assert statements, "looked up"
    assert verifier._registered.latest() is None
    verifier._registered = credential_cache.RegisteredMemory(limit=pairs)
    _refused(app, _request(world, mchid="1700000000"))
    assert verifier._registered.latest() is not None


def _journal_row(control: TestClient, request_id: str) -> dict[str, Any]:
    resp = control.get("/sandbox/journal", params={"limit": "1000"})
    assert resp.status_code == 200, resp.text
    [row] = [r for r in resp.json()["data"] if r.get("request_id") == request_id]
    return {
        key: value
        for key, value in row.items()
        if key not in ("request_id", "id", "at", "time", "created_at", "latency_ms")
    }


@pytest.mark.parametrize(
    "sent",
    [
        {"mchid": "1999999999"},
        {"serial_no": "ABCDEF0123456789"},
        {"serial_no": "lower"},  # a registered serial in lower case: the refusal names it (the hint)
    ],
)
def test_a_refusal_from_memory_is_the_lookups_refusal_byte_for_byte(
    app: WxPartnerApp, world: World, sent: dict[str, str]
) -> None:
    if sent.get("serial_no") == "lower":
        sent = {"serial_no": world.merchants[SP_A].serial_no.lower()}
    with TestClient(app) as http:
        control = {"Authorization": f"Bearer {SANDBOX_TOKEN}"}
        answers = []
        for _ in range(2):  # the first refused on a lookup, the second from memory
            signed = sign_request(world.merchants[SP_A], "GET", "/v3/certificates", **sent)
            answers.append(http.get("/v3/certificates", headers=signed.headers))
            assert app.state.verifier._registered.latest() is not None
        writer(app.state).flush()
        first, second = answers
        assert first.status_code == second.status_code == 401
        assert first.content == second.content
        assert b"SIGN_ERROR" in first.content
        if sent.get("serial_no", "").islower():
            assert b"registered serial" in first.content
        drop = {"request-id", "date", "content-length"}
        assert {h: v for h, v in first.headers.items() if h not in drop} == {
            h: v for h, v in second.headers.items() if h not in drop
        }
        http.headers.update(control)
        rows = [_journal_row(http, a.headers["Request-ID"]) for a in answers]
        assert rows[0] == rows[1]


def test_a_merchant_the_cli_loads_is_honoured_by_every_worker_on_its_next_request(
    tmp_path: Path, world: World
) -> None:
    """`wxpartner scenario load` into a running two-worker `serve`: the workers have refused the
    merchant (and remembered the registry), and honour it from the load on. End to end only: a load
    slower than the memory's second would pass without the change word (the tests above prove that)."""
    key = k.generate_private_key()
    served = Served(tmp_path / "data", "--workers", "2")
    try:

        def call() -> httpx.Response:
            signed = sign_request(
                world.merchants[SP_A],
                "GET",
                "/v3/certificates",
                mchid=NEW_MCHID,
                serial_no=NEW_SERIAL,
                private_key=key,
            )
            return httpx.get(served.url + "/v3/certificates", headers=signed.headers)  # a new connection

        for _ in range(8):
            refused = call()
            assert refused.status_code == 401 and refused.json()["detail"]["field"] == "mchid", refused.text
        scenario = tmp_path / "new.yaml"
        scenario.write_text(
            json.dumps(
                {
                    "merchants": [
                        {
                            "mchid": NEW_MCHID,
                            "key_mode": "certificate",  # so GET /v3/certificates answers it
                            "apiv3_key": "0123456789abcdef0123456789abcdef",
                            "certificates": [
                                {"serial_no": NEW_SERIAL, "public_key": k.public_key_pem(key.public_key())}
                            ],
                        }
                    ]
                }
            )
        )
        loaded = CliRunner().invoke(
            main, ["scenario", "load", str(scenario), "--data-dir", str(served.data_dir)]
        )
        assert loaded.exit_code == 0, loaded.output
        for _ in range(8):
            answer = call()
            assert answer.status_code == 200, answer.text
    finally:
        served.stop()


def test_a_serial_moved_to_another_merchant_refuses_without_burning_the_nonce(
    hosts: tuple[WxPartnerApp, WxPartnerApp], world: World
) -> None:
    """PostgreSQL: the remembered lookup passes and the nonce is recorded before the moved generation
    sends the request to a fresh lookup, which finds the serial no longer the merchant's: that refusal
    takes the nonce back, like every refusal on fresh facts (a refusal writes nothing)."""
    first, second = hosts
    keys = world.merchants[SP_A]
    pem = k.public_key_pem(keys.private_key.public_key())
    for _ in range(3):
        _verify(second, _request(world))  # remembered by the second host
    with first.state.db.write() as conn:
        registry.add_certificate(conn, SP_B, keys.serial_no, pem)  # the serial is SP_B's now
    refused = _request(world)
    assert _refused(second, refused)["field"] == "serial_no"
    with first.state.db.write() as conn:
        registry.add_certificate(conn, SP_A, keys.serial_no, pem, keys.certificate_pem)
    _verify(second, refused)  # its nonce was not taken
