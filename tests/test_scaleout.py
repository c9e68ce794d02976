"""Scale-out: two server instances (separate processes on different loopback ports) over ONE
PostgreSQL database. Whatever must hold across hosts is held by the database."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from live import LiveServer, hosts_on_postgres
from pg import PgServer
from support import SP_B, ApiClient, World, sign_request

pytestmark = pytest.mark.slow
_names = itertools.count()


@pytest.fixture(scope="module")
def two_hosts(
    tmp_path_factory: pytest.TempPathFactory, world: World, pg_server: PgServer | None
) -> Iterator[tuple[LiveServer, LiveServer]]:
    with hosts_on_postgres(pg_server, tmp_path_factory.mktemp("scaleout"), world) as (a, b):
        yield a, b


def test_replayed_nonce_is_refused_by_the_other_host(
    two_hosts: tuple[LiveServer, LiveServer], world: World
) -> None:
    a, b = two_hosts
    signed = sign_request(world.merchants[SP_B], "GET", "/v3/certificates")
    first = httpx.get(a.url + signed.url, headers=signed.headers)
    assert first.status_code == 200, first.text
    replay = httpx.get(b.url + signed.url, headers=signed.headers)
    assert replay.status_code == 401
    assert replay.json()["code"] == "SIGN_ERROR"
    assert "nonce_str" in replay.json()["detail"]["field"]


def test_clock_moved_on_one_host_is_seen_by_the_other(two_hosts: tuple[LiveServer, LiveServer]) -> None:
    a, b = two_hosts
    with a.control() as ca, b.control() as cb:
        before = cb.get("/sandbox/clock").json()["now_ts"]
        moved = ca.post("/sandbox/clock", json={"advance": 86400}).json()["now_ts"]
        seen = cb.get("/sandbox/clock").json()["now_ts"]
    assert moved - before >= 86400
    assert abs(seen - moved) < 5


def test_requests_alternate_between_hosts(two_hosts: tuple[LiveServer, LiveServer], world: World) -> None:
    a, b = two_hosts
    with httpx.Client(base_url=a.url) as ha, httpx.Client(base_url=b.url) as hb:
        clients = [ApiClient(ha, world, SP_B), ApiClient(hb, world, SP_B)]
        for i in range(10):
            resp = clients[i % 2].get("/v3/certificates")
            assert resp.status_code == 200, resp.text


def test_readiness_endpoints(two_hosts: tuple[LiveServer, LiveServer]) -> None:
    for host in two_hosts:
        assert httpx.get(host.url + "/healthz").json() == {"status": "ok"}
        # PostgreSQL: the pipeline runs in threads by default (database round trips overlap).
        assert httpx.get(host.url + "/readyz").json() == {
            "status": "ready",
            "backend": "postgresql",
            "pipeline": "threads",
        }


def test_a_fault_rule_deleted_on_one_host_stops_at_once_on_the_other(
    two_hosts: tuple[LiveServer, LiveServer], world: World
) -> None:
    """Every firing of a rule already takes a use of it in the database; a rule deleted through another
    host is found gone there, so it does not fire from a process's cached rule list (0.5 s) any more."""
    a, b = two_hosts
    with httpx.Client(base_url=b.url, timeout=30) as http, a.control() as control:
        on_b = ApiClient(http, world, SP_B)
        added = control.post(
            "/sandbox/faults", json={"kind": "SYSTEM_ERROR", "operation": "certificates.list", "mchid": SP_B}
        )
        assert added.status_code == 201, added.text
        try:
            # the rule reaches B's list within its 0.5 s cache; from then on B fires it
            deadline = time.monotonic() + 5
            while (fired := on_b.get("/v3/certificates")).status_code == 200:
                assert time.monotonic() < deadline, "the rule never reached host B"
                time.sleep(0.05)
            assert fired.status_code == 500 and fired.json()["detail"]["location"] == "sandbox", fired.text
        finally:
            deleted = control.delete(f"/sandbox/faults/{added.json()['id']}")
        assert deleted.status_code == 200, deleted.text
        after = on_b.get("/v3/certificates")  # B's cached list still holds the rule
    assert after.status_code == 200, after.text


def test_clock_advances_racing_on_both_hosts_all_count(two_hosts: tuple[LiveServer, LiveServer]) -> None:
    """Each advance reads the clock and writes it back: concurrent ones through two hosts used to read
    the same offset, and all but one of them were lost (20 advances of 100 s moved it 900 s)."""
    a, b = two_hosts
    with a.control() as control:
        before = control.get("/sandbox/clock").json()["offset_seconds"]

    def advance(i: int) -> httpx.Response:
        with two_hosts[i % 2].control() as control:
            return control.post("/sandbox/clock", json={"advance": 100})

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(advance, range(20)))
    assert {r.status_code for r in answers} == {200}, [r.text for r in answers]
    with b.control() as control:
        after = control.get("/sandbox/clock").json()["offset_seconds"]
    assert after - before == 2000
    # every answer is the clock its own advance left: twenty different offsets
    assert len({r.json()["offset_seconds"] for r in answers}) == 20
