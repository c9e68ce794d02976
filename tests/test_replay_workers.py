"""A replayed nonce across worker processes (issue 10.2): one server with 2 workers, on SQLite and on
PostgreSQL. The same signed, non-idempotent request (create an available-merchant range: every accepted
call makes a new range) is fired 24 times at once, each over a fresh connection, so both workers receive
copies. Exactly one is accepted; every other copy is 401 SIGN_ERROR on nonce_str, and exactly one range
exists afterwards. (test_scaleout.py covers the same across two hosts on one PostgreSQL.)"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from conftest import BACKENDS
from figures import record
from live import LiveServer, start_live_server
from pg import PgServer, create_database, drop_database
from support import SP_A, ApiClient, World, sign_request

pytestmark = pytest.mark.slow
_names = itertools.count()
COPIES = 24
RANGES = "/v3/webizpay/avail-mch-ranges"


@pytest.fixture(params=BACKENDS)
def two_workers(
    request: pytest.FixtureRequest, tmp_path: Path, world: World, pg_server: PgServer | None
) -> Iterator[tuple[LiveServer, str]]:
    url, name = "", f"wx_replay_{next(_names)}"
    if request.param == "postgres":
        if pg_server is None:
            pytest.skip("PostgreSQL is not installed here; .ci/run installs it")
        url = create_database(pg_server, name)
    server = start_live_server(tmp_path / "replay", world, workers=2, database_url=url)
    try:
        yield server, request.param
    finally:
        server.stop()
        if url and pg_server is not None:
            drop_database(pg_server, name)


def _workers(server: LiveServer) -> int:
    children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split()
    return len(children)


def test_replayed_nonce_is_accepted_once_across_workers(
    two_workers: tuple[LiveServer, str], world: World
) -> None:
    server, backend = two_workers
    assert _workers(server) >= 2, "expected a supervisor with 2 worker processes"
    signed = sign_request(
        world.merchants[SP_A], "POST", RANGES, {"sp_mchid": SP_A, "identifier_type": "ORGANIZATION_CODE"}
    )

    def fire(_: int) -> httpx.Response:
        # a fresh connection per copy: the kernel spreads them over both workers' accept queues
        return httpx.post(server.url + RANGES, content=signed.body, headers=signed.headers, timeout=30)

    with ThreadPoolExecutor(COPIES) as pool:
        answers = list(pool.map(fire, range(COPIES)))
    statuses = sorted(r.status_code for r in answers)
    record(f"replayed nonce across 2 workers ({backend})", copies=COPIES, accepted=statuses.count(200))
    assert statuses.count(200) == 1, statuses
    for resp in answers:
        if resp.status_code != 200:
            assert resp.status_code == 401, resp.text
            body = resp.json()
            assert body["code"] == "SIGN_ERROR" and body["detail"]["field"] == "nonce_str", body
    with httpx.Client(base_url=server.url, timeout=10) as http:
        listed = ApiClient(http, world, SP_A).get(f"{RANGES}?sp_mchid={SP_A}")
    assert listed.status_code == 200, listed.text
    winner = next(r for r in answers if r.status_code == 200).json()["range_id"]
    assert [r["range_id"] for r in listed.json()["range_list"]] == [winner], "the change happened once"
