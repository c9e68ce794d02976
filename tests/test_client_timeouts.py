"""Per-call timeouts (``timeout=`` on every typed operation and on ``request()``), sync and async, on the
SDK's own HTTP/1.1 and on httpx: the call's bound wins over the client's for that call only, and a
timeout says which call, which phase and after how long. Against the loopback stub of
test_client_transport.py; the real server's LATENCY fault with a per-call timeout runs in
test_client_faults.py (``faults_over_loopback``)."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import anyio
import httpx
import pytest

from support import SP_A, World
from test_client_transport import Seen, Stub, make_async, make_client, stub  # noqa: F401  (stub is a fixture)
from wxpartner.client import NO_RETRIES, ConfigurationError, TransportError
from wxpartner.client.core import failure_text
from wxpartner.client.resources.webizpay import LIST_RANGES

RANGES = {"range_list": [], "sp_mchid": SP_A}


def slow(seconds: float, body: dict[str, Any]) -> Any:
    def step(s: Stub, seen: Seen) -> tuple[int, dict[str, str], bytes]:
        time.sleep(seconds)
        return s.signed(json.dumps(body).encode())

    return step


@pytest.mark.parametrize("http", ["own", "httpx"])
def test_a_calls_timeout_bounds_that_call_only(
    stub: Stub,  # noqa: F811
    world: World,
    http: str,
) -> None:
    """The client allows 5 s; one W14 list allows 0.2 s and fails, naming the operation, the phase, the
    seconds and that the call set them; the next call, without ``timeout=``, waits as the client does.
    Before, no typed operation took ``timeout=`` (TypeError), and httpx's timeout said only "timed out"."""
    given: dict[str, Any] = {"transport": httpx.HTTPTransport()} if http == "httpx" else {}
    stub.steps = [slow(0.5, RANGES), slow(0.5, RANGES)]
    with make_client(world, stub.url, retry=NO_RETRIES, **given) as client:
        with pytest.raises(TransportError) as info:
            client.webizpay.ranges.list(sp_mchid=SP_A, timeout=0.2)
        text = str(info.value)
        assert text.startswith("webizpay.list_avail_mch_ranges: GET http://127.0.0.1:"), text
        assert (
            "ReadTimeout: nothing received within 0.2 s (the read timeout, from this call's timeout=)" in text
        )
        assert info.value.sent is True and isinstance(info.value.__cause__, httpx.ReadTimeout)
        assert client.webizpay.ranges.list(sp_mchid=SP_A).range_list == []  # the client's 5 s
    assert len(stub.seen) == 2


@pytest.mark.parametrize("http", ["own", "httpx"])
def test_an_async_calls_timeout_bounds_that_call_only(
    stub: Stub,  # noqa: F811
    world: World,
    http: str,
) -> None:
    given: dict[str, Any] = {"transport": httpx.AsyncHTTPTransport()} if http == "httpx" else {}
    stub.steps = [slow(0.5, {"ok": True}), slow(0.5, RANGES)]

    async def main() -> None:
        async with make_async(world, stub.url, retry=NO_RETRIES, **given) as client:
            with pytest.raises(TransportError) as info:
                await client.request("POST", "/v3/x", json={}, timeout=httpx.Timeout(5, read=0.2))
            text = str(info.value)
            assert (
                text.startswith("POST http://127.0.0.1:")
                and "/v3/x failed after the request was sent" in text
            )
            assert "nothing received within 0.2 s (the read timeout, from this call's timeout=)" in text
            assert "(not retried: the call may have taken effect)" in text
            assert (await client.webizpay.ranges.list(sp_mchid=SP_A)).range_list == []

    anyio.run(main)
    assert len(stub.seen) == 2


def test_a_client_timeout_is_named_as_the_clients_on_httpx_too(
    stub: Stub,  # noqa: F811
    world: World,
) -> None:
    """httpx's own ReadTimeout said "timed out"; the SDK's HTTP said the seconds: now both do."""
    stub.steps = [slow(0.5, {})]
    with (
        make_client(
            world, stub.url, retry=NO_RETRIES, timeout=0.2, transport=httpx.HTTPTransport()
        ) as client,
        pytest.raises(TransportError) as info,
    ):
        client.request("GET", "/v3/x")
    assert "ReadTimeout: nothing received within 0.2 s (the read timeout, from the client's timeout=)" in str(
        info.value
    )


def test_each_phase_is_named_with_its_seconds() -> None:
    bounds = httpx.Timeout(30, connect=2.0, pool=1.5)
    said = [
        failure_text(exc, bounds, per_call)
        for exc, per_call in (
            (httpx.ConnectTimeout("timed out"), True),
            (httpx.WriteTimeout("timed out"), False),
            (httpx.PoolTimeout("timed out"), True),
        )
    ]
    assert said == [
        "no connection within 2 s (the connect timeout, from this call's timeout=)",
        "the request not written within 30 s (the write timeout, from the client's timeout=)",
        "no free connection within 1.5 s (the pool timeout, from this call's timeout=)",
    ]
    assert failure_text(httpx.ReadError("reset by peer"), bounds, True) == "reset by peer"


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, "2", True, httpx.Timeout(5, read=0)])
def test_a_timeout_that_is_no_positive_number_is_refused_before_sending(
    stub: Stub,  # noqa: F811
    world: World,
    bad: Any,
) -> None:
    """0 made the sockets non-blocking (every call then failed as a "not sent" ConnectError, retried);
    a string failed deep inside the transport."""
    with make_client(world, stub.url) as client:
        with pytest.raises(ValueError, match="timeout"):
            client.webizpay.ranges.list(sp_mchid=SP_A, timeout=bad)
        with pytest.raises(ValueError, match="timeout"):
            client.request("GET", "/v3/x", timeout=bad)
    with pytest.raises(ConfigurationError, match="timeout"):
        make_client(world, stub.url, timeout=bad)
    assert stub.seen == []


def test_a_seconds_timeout_caps_connect_as_the_clients_does() -> None:
    assert LIST_RANGES.call(query={"sp_mchid": SP_A}, timeout=60).timeout == httpx.Timeout(60, connect=5)
    assert LIST_RANGES.call(query={"sp_mchid": SP_A}, timeout=2).timeout == httpx.Timeout(2)
    assert LIST_RANGES.call(query={"sp_mchid": SP_A}).timeout is None  # the client's
