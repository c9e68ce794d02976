"""The pytest plugin used the way an integrator would: no conftest, only the wxpartner_* fixtures."""

from __future__ import annotations

import time

import anyio
import pytest

from wxpartner.client import ApiError, AsyncClient, Client, ServerError, TransportError
from wxpartner.testing import WxPartnerServer


def test_three_lines(wxpartner_client: Client) -> None:
    created = wxpartner_client.webizpay.ranges.create(
        {"sp_mchid": wxpartner_client.mchid, "identifier_type": "TRANSACTION_ID"}
    )
    assert [
        r.range_id for r in wxpartner_client.webizpay.ranges.list(sp_mchid=wxpartner_client.mchid).range_list
    ] == [created.range_id]


def test_state_is_reset_between_tests_quickly(
    wxpartner_server: WxPartnerServer, wxpartner_client: Client
) -> None:
    assert (
        wxpartner_client.webizpay.ranges.list(sp_mchid=wxpartner_client.mchid).range_list == []
    )  # the test above left one
    wxpartner_client.webizpay.ranges.create(
        {"sp_mchid": wxpartner_client.mchid, "identifier_type": "TRANSACTION_ID"}
    )
    started = time.perf_counter()
    wxpartner_server.reset()
    elapsed = time.perf_counter() - started
    assert wxpartner_client.webizpay.ranges.list(sp_mchid=wxpartner_client.mchid).range_list == []
    assert elapsed < 0.1, f"reset took {elapsed * 1000:.0f} ms"
    print(f"reset: {elapsed * 1000:.1f} ms")


def test_clock_and_faults(wxpartner_server: WxPartnerServer, wxpartner_client: Client) -> None:
    before = wxpartner_server.control.get("/sandbox/clock").json()["now_ts"]
    wxpartner_server.advance_clock(86400)
    assert wxpartner_server.control.get("/sandbox/clock").json()["now_ts"] - before >= 86400 - 5
    wxpartner_server.inject_fault("SYSTEM_ERROR", count=5)
    with pytest.raises(ServerError):
        wxpartner_client.webizpay.ranges.list(sp_mchid=wxpartner_client.mchid)


def test_async_client(wxpartner_async_client: AsyncClient) -> None:
    async def main() -> None:
        async with wxpartner_async_client as client:
            listed = await client.webizpay.ranges.list(sp_mchid=client.mchid)
            assert listed.range_list == []

    anyio.run(main)


def test_loopback_port(wxpartner_live_server: WxPartnerServer) -> None:
    assert wxpartner_live_server.live_url and wxpartner_live_server.live_url.startswith("http://127.0.0.1:")
    with wxpartner_live_server.client(live=True) as client:
        client.webizpay.ranges.create({"sp_mchid": client.mchid, "identifier_type": "ORGANIZATION_CODE"})
        # the same database behind both doors
        assert len(wxpartner_live_server.client().webizpay.ranges.list(sp_mchid=client.mchid).range_list) == 1
        wxpartner_live_server.inject_fault("DROP_CONNECTION", count=1)
        # Under uvicorn the dropped connection surfaces as a bare 500 (no WeChat code): either way the
        # outcome is ambiguous, so creating a range is never repeated blindly.
        with pytest.raises((TransportError, ApiError)) as info:
            client.webizpay.ranges.create({"sp_mchid": client.mchid, "identifier_type": "ORGANIZATION_CODE"})
        assert not isinstance(info.value, ApiError) or info.value.code == "HTTP_500"
        assert len(client.webizpay.ranges.list(sp_mchid=client.mchid).range_list) == 1
