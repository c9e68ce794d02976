"""Remembered credential lookups across hosts (server/verify.py, store/change_signal.py): two app
instances on one database are two hosts. A change committed through one is seen by the other's very
next request; a request refused on fresh facts leaves no nonce behind; and on PostgreSQL a request
with a remembered lookup costs ONE statement (the nonce's INSERT, which reads the change generation).
Every test runs on SQLite (its shared-memory signal) and on PostgreSQL (the generation row)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support import SP_A, World, sign_request, statements_run
from wxpartner.domain.clock import ClockState
from wxpartner.protocol import keys as k
from wxpartner.protocol.errors import ApiError
from wxpartner.server.app import WxPartnerApp, create_app
from wxpartner.server.http import RawRequest
from wxpartner.server.settings import Settings
from wxpartner.server.verify import Verified
from wxpartner.store import registry, sandbox


@pytest.fixture
def hosts(settings: Settings) -> Iterator[tuple[WxPartnerApp, WxPartnerApp]]:
    first, second = create_app(settings), create_app(settings)
    yield first, second
    second.state.db.dispose()
    first.state.db.dispose()


def _request(world: World, *, nonce: str | None = None) -> RawRequest:
    signed = sign_request(world.merchants[SP_A], "GET", "/v3/certificates", nonce=nonce)
    headers = {k.lower(): v for k, v in signed.headers.items()}
    return RawRequest("GET", "/v3/certificates", "", headers, b"", "127.0.0.1:1")


def _verify(app: WxPartnerApp, req: RawRequest) -> Verified:
    return app.state.verifier.verify(req)


def _refusal(app: WxPartnerApp, req: RawRequest) -> str:
    with pytest.raises(ApiError) as info:
        _verify(app, req)
    assert info.value.code == "SIGN_ERROR"
    return str(info.value.detail["detail"]["issue"])  # type: ignore[index]


def test_a_revocation_through_one_host_refuses_the_next_request_on_the_other(
    hosts: tuple[WxPartnerApp, WxPartnerApp], world: World
) -> None:
    first, second = hosts
    serial = world.merchants[SP_A].serial_no
    for _ in range(3):
        _verify(second, _request(world))  # remembered by the second host
    with first.state.db.write() as conn:
        assert registry.revoke_certificate(conn, serial)
    refused = _request(world)
    assert "revoked" in _refusal(second, refused)
    # The refusal wrote nothing: once the certificate is back, the same request (same nonce) passes.
    with first.state.db.write() as conn:
        keys = world.merchants[SP_A]
        pem = k.public_key_pem(keys.private_key.public_key())
        registry.add_certificate(conn, SP_A, serial, pem, keys.certificate_pem)
    _verify(second, refused)
    assert "already used" in _refusal(second, refused)  # and now its nonce is taken


def test_a_clock_moved_through_one_host_is_the_other_hosts_clock_at_once(
    hosts: tuple[WxPartnerApp, WxPartnerApp], world: World
) -> None:
    first, second = hosts
    assert _verify(second, _request(world)).clock == ClockState()
    with first.state.db.write() as conn:
        sandbox.write_clock(conn, ClockState(offset_seconds=86_400.0))
    assert _verify(second, _request(world)).clock == ClockState(offset_seconds=86_400.0)


def test_a_rolled_back_change_keeps_the_remembered_lookup_valid(
    hosts: tuple[WxPartnerApp, WxPartnerApp], world: World
) -> None:
    first, second = hosts
    _verify(second, _request(world))
    with pytest.raises(RuntimeError), first.state.db.write() as conn:
        registry.revoke_certificate(conn, world.merchants[SP_A].serial_no)
        raise RuntimeError("rolled back")
    _verify(second, _request(world))  # not revoked


def test_on_postgresql_a_remembered_lookup_costs_no_statement(
    hosts: tuple[WxPartnerApp, WxPartnerApp], world: World
) -> None:
    first, second = hosts
    db = second.state.db
    if db.sqlite:
        pytest.skip("SQLite checks its shared-memory signal instead (test_credential_cache.py)")
    with statements_run(db) as statements:
        _verify(second, _request(world))  # first: lookup + nonce
        assert len(statements) == 2
        statements.clear()
        _verify(second, _request(world))
        assert len(statements) == 1 and "request_nonces" in statements[0]
        with first.state.db.write() as conn:
            registry.set_notify_url(conn, SP_A, "https://example.com/notify")
        statements.clear()
        _verify(second, _request(world))  # the generation moved: the lookup again
        assert len(statements) == 2
    with db.read() as conn:
        generation = sandbox.kv_get(conn, "changes:generation")
    assert generation is not None and len(generation) == 16
