"""The recharge-employee rate limits hold across worker processes: a real server with 2 workers,
30 pre-signed requests fired inside one second, exactly 10 answered 200 and 20 answered 429."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from live import LiveServer, start_live_server
from support import SECOND_A, SP_A, Signed, World, sign_request

pytestmark = pytest.mark.slow

BASE = "/v3/platsolution/ecommerce/recharge-employees"
OPENIDS = ["oRate0", "oRate1", "oRate2"]
PRELOAD = {"recharge_employees": [{"sub_mchid": SECOND_A, "mchid": SP_A, "employees": OPENIDS}]}


@pytest.fixture
def two_workers(tmp_path: Path, world: World, database_url: str) -> Iterator[LiveServer]:
    """Both backends (database_url is the SQLite/PostgreSQL matrix); employees preloaded by scenario."""
    server = start_live_server(
        tmp_path / "live", world, workers=2, scenario=PRELOAD, database_url=database_url
    )
    yield server
    server.stop()


def _delete(world: World, i: int) -> Signed:
    url = f"{BASE}/sub-mchid/{SECOND_A}/sp-openid/{OPENIDS[i % 3]}/delete"
    return sign_request(world.merchants[SP_A], "POST", url)


def _add(world: World, i: int) -> Signed:
    body = {"sub_mchid": SECOND_A, "sp_openid": OPENIDS[i % 3]}
    return sign_request(world.merchants[SP_A], "POST", BASE, body)


def burst(server: LiveServer, world: World, make: object, n: int = 30, attempts: int = 6) -> Counter[int]:
    """Sign n requests first (signing must not spread the burst), wait for a whole second to begin,
    fire them all at once; accept only a run whose every answer came back within that second."""
    assert callable(make)
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    with httpx.Client(base_url=server.url, limits=limits, timeout=10) as http, ThreadPoolExecutor(n) as pool:

        def fire(signed: Signed) -> int:
            return http.post(signed.url, content=signed.body or None, headers=signed.headers).status_code

        for _ in range(attempts):
            signed = [make(world, i) for i in range(n)]
            time.sleep(1 - (time.time() % 1) + 0.005)
            start = int(time.time())
            statuses = list(pool.map(fire, signed))
            if int(time.time()) == start:
                return Counter(statuses)
            time.sleep(1.1)  # let the spilled window pass before the next attempt
    pytest.skip("the machine is too busy to fit 30 requests into one second")


def test_thirty_deletes_then_thirty_adds_in_one_second_each(two_workers: LiveServer, world: World) -> None:
    deletes = burst(two_workers, world, _delete)
    assert deletes == Counter({200: 10, 429: 20})
    adds = burst(two_workers, world, _add)
    assert adds == Counter({200: 10, 429: 20})
    # every add was of one of three employees, so all three are in effect again
    signed = sign_request(world.merchants[SP_A], "GET", f"{BASE}/sub-mchid/{SECOND_A}")
    listed = httpx.get(two_workers.url + signed.url, headers=signed.headers).json()["employees"]
    assert sorted(e["sp_openid"] for e in listed) == OPENIDS
