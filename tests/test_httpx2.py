"""The SDK and the pytest plugin on httpx2, the httpx fork Starlette's TestClient is built on as soon as
it is installed (Starlette 1.x deprecates its httpx fallback and tells users to install httpx2). The
rest of the suite runs its TestClients on httpx (conftest.py); here the SDK's and the plugin's tests
run again in a pytest of their own with httpx2 chosen, and an httpx2 client's transport failures are
checked to keep their meaning for retries."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from starlette.testclient import TestClient

from support import SP_A, World
from wxpartner.client import AsyncClient, Client, RetryPolicy, TransportError
from wxpartner.client.given_http import library_of
from wxpartner.server.app import WxPartnerApp

TESTS = Path(__file__).parent
# Every test module that hands the SDK an in-process client, or uses the plugin.
ON_HTTPX2 = [
    "test_client.py",
    "test_client_plugin.py",
    "test_plugin_user.py",
    "test_client_frameworks.py",
    "test_client_faults.py",
    "test_client_keys.py",
    "test_client_operations.py",
]
FAST = RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_max=0.05)
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.mark.slow
def test_the_sdk_and_plugin_tests_pass_with_testclient_on_httpx2() -> None:
    env = {**os.environ, "WXPARTNER_TEST_HTTPX2": "1", "WXPARTNER_TEST_BACKENDS": "sqlite"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *ON_HTTPX2],
        cwd=TESTS,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    tail = "\n".join(run.stdout.splitlines()[-30:])
    assert run.returncode == 0, tail
    assert " passed" in tail and "failed" not in tail and "error" not in tail, tail


def test_the_library_is_found_through_subclasses(http: TestClient) -> None:
    assert library_of(httpx2.Client()).__name__ == "httpx2"
    assert library_of(httpx2.AsyncClient()).__name__ == "httpx2"
    assert library_of(http).__name__ == "httpx"  # this suite's TestClient (conftest.py)

    class Custom(httpx2.Client):
        pass

    assert library_of(Custom()).__name__ == "httpx2"


def _client(world: World, http: Any, kind: type[Client] | type[AsyncClient] = Client) -> Any:
    m = world.merchants[SP_A]
    return kind(
        SP_A,
        m.serial_no,
        m.private_key,
        wechatpay_public_key=world.platform_pub.public_key_pem,
        wechatpay_public_key_id=world.platform_pub.key_id,
        base_url="http://testserver",
        http_client=http,
        retry=FAST,
    )


def _failing(error: type[Exception], calls: list[str]) -> Callable[[httpx2.Request], httpx2.Response]:
    def handle(request: httpx2.Request) -> httpx2.Response:
        calls.append(request.method)
        raise error("simulated", request=request)

    return handle


@pytest.mark.parametrize(
    ("error", "method", "sent", "attempts"),
    [
        (httpx2.ConnectError, "POST", False, 3),  # never sent: repeated even for a write
        (httpx2.ReadTimeout, "POST", True, 1),  # may have taken effect: a write is not repeated
        (httpx2.ReadTimeout, "GET", True, 3),  # a query is
    ],
)
def test_httpx2_transport_errors_keep_their_meaning(
    world: World, error: type[Exception], method: str, sent: bool, attempts: int
) -> None:
    calls: list[str] = []
    http = httpx2.Client(transport=httpx2.MockTransport(_failing(error, calls)))
    body = {"sp_mchid": SP_A} if method == "POST" else None
    with _client(world, http) as client, pytest.raises(TransportError) as info:
        client.request(method, "/v3/webizpay/avail-mch-ranges", json=body)
    assert info.value.sent is sent and len(calls) == attempts
    # httpx's class of the same name (what the retry policy reads), caused by the httpx2 original
    assert type(info.value.__cause__) is getattr(httpx, error.__name__)
    assert isinstance(info.value.__cause__.__cause__, error)

    async def main() -> None:
        calls.clear()
        ahttp = httpx2.AsyncClient(transport=httpx2.MockTransport(_failing(error, calls)))
        async with _client(world, ahttp, AsyncClient) as aclient:
            with pytest.raises(TransportError) as ainfo:
                await aclient.request(method, "/v3/webizpay/avail-mch-ranges", json=body)
        assert ainfo.value.sent is sent and len(calls) == attempts

    anyio.run(main)


@SQLITE_ONLY
def test_a_verified_call_through_an_async_httpx2_client(
    app: WxPartnerApp, http: TestClient, world: World
) -> None:
    async def main() -> None:
        transport = httpx2.ASGITransport(app=app)
        async with _client(world, httpx2.AsyncClient(transport=transport), AsyncClient) as client:
            answer = await client.request("GET", "/v3/webizpay/avail-mch-ranges", query={"sp_mchid": SP_A})
        assert answer.status == 200 and answer.verified_by == world.platform_pub.key_id

    anyio.run(main)
