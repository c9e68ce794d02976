"""Hosts whose clocks differ over one PostgreSQL database. Host B runs with its clock 0.9 s ahead (a ``sitecustomize`` on its PYTHONPATH shifts ``time.time``; everything else
is real). The recharge-employee rate limit (10 adds per second per platform merchant) still admits
exactly 10 calls of a burst spread over both hosts: the one-second window is the database's."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from live import LiveServer, hosts_on_postgres
from pg import PgServer
from support import SECOND_A, SP_A, World, sign_request

pytestmark = pytest.mark.slow
_names = itertools.count()
SKEW_S = 0.9
SKEWED_CLOCK = f"""
import time

_real_time = time.time
time.time = lambda: _real_time() + {SKEW_S}
"""


@pytest.fixture
def skewed_hosts(
    tmp_path: Path, world: World, pg_server: PgServer | None
) -> Iterator[tuple[LiveServer, LiveServer]]:
    skew = tmp_path / "skew"
    skew.mkdir()
    (skew / "sitecustomize.py").write_text(SKEWED_CLOCK)
    with hosts_on_postgres(
        pg_server, tmp_path, world, env_of=lambda i: {"PYTHONPATH": str(skew)} if i == 1 else None
    ) as (a, b):
        yield a, b


def test_the_rate_limit_holds_across_hosts_whose_clocks_differ(
    skewed_hosts: tuple[LiveServer, LiveServer], world: World
) -> None:
    path = "/v3/platsolution/ecommerce/recharge-employees"
    openid = f"oSkew{time.time_ns()}"  # one employee added again and again: every repeat is legitimate
    for _ in range(4):
        signed = [
            sign_request(world.merchants[SP_A], "POST", path, {"sub_mchid": SECOND_A, "sp_openid": openid})
            for _ in range(30)
        ]
        # Start 0.12 s into a second: until it ends, host A's clock is in this second and host B's in
        # the next (by its own clock, each host's burst falls in one second).
        time.sleep(1.12 - time.time() % 1)
        second = int(time.time())
        with httpx.Client(timeout=30) as http, ThreadPoolExecutor(10) as pool:
            answers = list(
                pool.map(
                    lambda i, request: http.post(
                        skewed_hosts[i % 2].url + path, content=request.body, headers=request.headers
                    ),
                    range(30),
                    signed,
                )
            )
        if int(time.time()) == second:  # the whole burst fell in one second of the database's clock
            break
    else:
        pytest.skip("the machine is too busy to send the burst within one second")
    codes = [r.status_code for r in answers]
    assert codes.count(200) == 10, codes
    assert codes.count(429) == 20, codes
