"""Callback leases across hosts whose clocks differ, over one PostgreSQL database. A lease is real time
(it guards against a dead sender), and it used to be taken and judged on each host's own clock: a host
whose clock ran ahead by more than the lease took over a live send of another host (the receiver got
the notification twice at once), and a host whose clock ran behind waited for a dead host's lease that
much longer. The lease is now the database's clock. Skewed processes run under ``faketime``
(libfaketime, Debian's ``faketime``), which offsets every clock call of the process. Last, a redeliver
through one host claims the send it makes in the statement that reopens the notification, whatever
other hosts' passes do meanwhile."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from live import LiveServer, start_live_server
from pg import PgServer, create_database, drop_database
from receiver import start_receiver
from support import SP_A, World
from wxpartner.store import outbox
from wxpartner.store.db import Database
from wxpartner.store.schema import merchants

pytestmark = pytest.mark.slow
_names = itertools.count()
FROZEN_AT = 1_767_225_600.0  # business time, frozen: only the lease depends on the hosts' clocks
RECEIVER = "http://127.0.0.1:9/notify"  # never sent to: the claims here are not followed by a send


def faketime(offset_seconds: int) -> dict[str, str]:
    """The environment under which a program's clocks run ``offset_seconds`` off, threads too: the
    LD_PRELOAD and FAKETIME that Debian's ``faketime`` sets up. Given to the program itself rather than
    run through the ``faketime`` command, whose child the program then is: stopping the process the
    test started (a server's Ctrl-C) stopped faketime and left the server running. The monotonic clock
    moves with the wall clock: an offset changes no interval (with libfaketime 0.9.10's
    --exclude-monotonic, Python's time.sleep fails with EINVAL)."""
    if shutil.which("faketime") is None:
        pytest.skip("faketime is not installed here (apt-get install faketime); .ci/run installs it")
    shown = subprocess.run(
        ["faketime", "-m", "-f", f"{offset_seconds:+d}s", "env"], capture_output=True, check=True, text=True
    )
    env = dict(line.split("=", 1) for line in shown.stdout.splitlines() if "=" in line)
    return {name: env[name] for name in ("LD_PRELOAD", "FAKETIME")}


def _database(pg_server: PgServer | None, template: str | None = None) -> Iterator[str]:
    if pg_server is None:
        pytest.skip("PostgreSQL is not installed here; .ci/run installs it")
    name = f"wx_leases_{os.getpid()}_{next(_names)}"
    url = create_database(pg_server, name, template=template)
    yield url
    drop_database(pg_server, name)


@pytest.fixture
def database(pg_server: PgServer | None) -> Iterator[str]:
    """Empty: the hosts set it up."""
    yield from _database(pg_server)


@pytest.fixture
def seeded(pg_server: PgServer | None, pg_template: str | None) -> Iterator[str]:
    """The test world's merchants, SP_A receiving callbacks."""
    for url in _database(pg_server, pg_template):
        db = Database(url, pool_size=1)
        with db.write() as conn:
            conn.execute(merchants.update().where(merchants.c.mchid == SP_A).values(notify_url=RECEIVER))
        db.dispose()
        yield url


def test_faketime_offsets_a_python_processs_clock() -> None:
    """What the tests below rely on: a child under ``faketime`` sees time.time() moved."""
    shown = subprocess.run(
        [sys.executable, "-c", "import time; print(time.time())"],
        capture_output=True,
        check=True,
        text=True,
        env={**os.environ, **faketime(600)},
    )
    assert float(shown.stdout) - time.time() > 500


def _enqueue(db: Database) -> str:
    with db.write() as conn:
        return outbox.enqueue(
            conn, mchid=SP_A, event_type="WEBIZPAY.REVOKED", summary="", resource={"n": 1}, now=FROZEN_AT
        )


def test_a_host_whose_clock_runs_ahead_does_not_take_a_live_send_of_another_host(
    tmp_path: Path, world: World, database: str
) -> None:
    """Host A claims the notification and is sending it (the receiver holds its answer) when it is
    killed: its 60 s lease stands. Host B, its clock 120 s ahead, is asked to deliver everything due.
    B took the notification at once (by its clock A's lease had run out a minute ago) and sent it a
    second time; now it waits (bounded) for A's lease and sends nothing."""
    receiver = start_receiver()
    receiver.gate = threading.Event()
    db = Database(database, pool_size=2)
    a = start_live_server(tmp_path / "host-a", world, database_url=database)
    b: LiveServer | None = None
    try:
        with a.control() as control:
            assert control.post("/sandbox/clock", json={"set": FROZEN_AT, "freeze": True}).status_code == 200
            nid = _enqueue(db)  # waits: SP_A has no notify_url yet
            put = control.put(f"/sandbox/merchants/{SP_A}/notify-url", json={"notify_url": receiver.url})
            assert put.status_code == 200, put.text
        deadline = time.monotonic() + 20  # A's poll (once a second) claims it and sends
        while not receiver.deliveries and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(receiver.deliveries) == 1
        a.proc.kill()  # mid-send: its lease is all that says the notification is being sent
        a.proc.wait(10)
        b = start_live_server(tmp_path / "host-b", world, database_url=database, env=faketime(120))
        with b.control() as control:
            # B's start loaded the scenario again, which names no notify_url
            put = control.put(f"/sandbox/merchants/{SP_A}/notify-url", json={"notify_url": receiver.url})
            assert put.status_code == 200, put.text
            delivered = control.post("/sandbox/callbacks/deliver", timeout=30)
            shown = control.get(f"/sandbox/callbacks/{nid}").json()
        assert delivered.status_code == 200, delivered.text
        assert delivered.json()["attempts"] == []
        assert len(receiver.deliveries) == 1
        assert (shown["state"], shown["leased"], shown["attempts"]) == ("pending", True, [])
    finally:
        receiver.stop()
        db.dispose()
        a.stop()
        if b is not None:
            b.stop()


CLAIMER = """
import json, sys
from wxpartner.store import outbox
from wxpartner.store.db import Database
from wxpartner.store.schema import merchants

url, nid, lease, business_now = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
db = Database(url, pool_size=1)
with db.write() as conn:
    claims = outbox.claim_due(
        conn, business_now=business_now, owner="skewed", lease_seconds=lease, limit=1, ids=[nid]
    )
db.dispose()
print(json.dumps([c.id for c in claims]))
"""


def _claim_elsewhere(offset_seconds: int, url: str, nid: str, lease_seconds: float) -> list[str]:
    """A claim by another process (host) whose clock is ``offset_seconds`` off; it then ends without
    completing the send (a killed host)."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            CLAIMER,
            url,
            nid,
            str(lease_seconds),
            str(FROZEN_AT),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **faketime(offset_seconds)},
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


def _claim_here(db: Database, nid: str, lease_seconds: float) -> list[str]:
    with db.write() as conn:
        claims = outbox.claim_due(
            conn, business_now=FROZEN_AT, owner="here", lease_seconds=lease_seconds, limit=1, ids=[nid]
        )
    return [c.id for c in claims]


def _wait_for_the_lease_to_run_out(db: Database, nid: str) -> None:
    """Until the lease is over by the clock leases are judged by (the database's), for at most 20 s:
    a lease judged by a host's clock 600 s off would outlast that, and the claim after then fails."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with db.read() as conn:
            if not outbox.in_flight(conn, nid):
                return
        time.sleep(0.02)


@pytest.fixture
def db(seeded: str) -> Iterator[Database]:
    made = Database(seeded, pool_size=2)
    yield made
    made.dispose()


def test_a_dead_host_whose_clock_ran_ahead_holds_its_notification_only_for_its_lease(
    seeded: str, db: Database
) -> None:
    """A host 600 s ahead claims (a 1 s lease) and dies: another host took the notification over only
    when its own clock reached the dead host's, 10 minutes later; now once the lease has run out."""
    nid = _enqueue(db)
    assert _claim_elsewhere(600, seeded, nid, 1.0) == [nid]
    _wait_for_the_lease_to_run_out(db, nid)
    assert _claim_here(db, nid, 60) == [nid]


def test_a_host_whose_clock_runs_behind_takes_over_a_dead_hosts_lease_once_it_has_run_out(
    seeded: str, db: Database
) -> None:
    """A host dies holding a 1 s lease: a host 600 s behind waited 10 minutes longer; now not."""
    nid = _enqueue(db)
    assert _claim_here(db, nid, 1.0) == [nid]
    _wait_for_the_lease_to_run_out(db, nid)
    assert _claim_elsewhere(-600, seeded, nid, 60) == [nid]


def test_a_host_whose_clock_runs_ahead_does_not_take_a_live_lease(seeded: str, db: Database) -> None:
    nid = _enqueue(db)
    assert _claim_here(db, nid, 60) == [nid]
    assert _claim_elsewhere(600, seeded, nid, 60) == []


def test_a_redeliver_answers_with_the_send_it_made_while_another_host_delivers(
    tmp_path: Path, world: World, database: str
) -> None:
    """Host B is delivering a notification (the receiver holds its answer) when a redeliver of it comes
    through host A, and more delivery passes wait on both hosts. A made the notification due and then,
    in a second step, claimed it once B's send was over: any of those passes, going on at the same
    moment, took the redelivered send first, and A answered with no attempt (its answer did not
    describe the send it caused; about every other round here). Now A waits for B's send to end, then
    reopens and claims in one statement: A sends attempt 2 and answers with it, no other pass sends."""
    receiver = start_receiver()
    db = Database(database, pool_size=2)
    a = start_live_server(tmp_path / "host-a", world, database_url=database)
    b = start_live_server(tmp_path / "host-b", world, database_url=database)

    def post(host: LiveServer, path: str, sent: threading.Event | None = None) -> httpx.Response:
        """``sent`` is set once the whole request is written to the host's socket (httpx's trace)."""

        def trace(name: str, _info: dict[str, object]) -> None:
            if sent is not None and name == "http11.send_request_body.complete":
                sent.set()

        with host.control() as control:
            return control.post(path, timeout=60, extensions={"trace": trace})

    try:
        with b.control() as control:
            assert control.post("/sandbox/clock", json={"set": FROZEN_AT, "freeze": True}).status_code == 200
            put = control.put(f"/sandbox/merchants/{SP_A}/notify-url", json={"notify_url": receiver.url})
            assert put.status_code == 200, put.text
        for _round in range(3):
            receiver.gate = threading.Event()
            sent_before = len(receiver.deliveries)
            nid = _enqueue(db)
            with ThreadPoolExecutor(8) as pool:
                # B delivers what is due (or, if a poll took it first, waits for that send)
                delivering = pool.submit(post, b, "/sandbox/callbacks/deliver")
                deadline = time.monotonic() + 20
                while len(receiver.deliveries) == sent_before and time.monotonic() < deadline:
                    time.sleep(0.02)
                assert len(receiver.deliveries) == sent_before + 1
                sent = [threading.Event() for _ in range(7)]
                redelivering = pool.submit(post, a, f"/sandbox/callbacks/{nid}/redeliver", sent[0])
                # other passes (other workers, other hosts) waiting, as B's, for the send in flight
                passes = [
                    pool.submit(post, host, "/sandbox/callbacks/deliver", event)
                    for host, event in zip((a, b) * 3, sent[1:], strict=True)
                ]
                # they come in while that send is held: the gate opens once every request has reached
                # its host (a handler not yet waiting by then simply follows the send)
                assert all(event.wait(20) for event in sent)
                receiver.gate.set()
                delivered, redelivered = delivering.result(), redelivering.result()
                others = [p.result() for p in passes]
            with a.control() as control:
                shown = control.get(f"/sandbox/callbacks/{nid}").json()
            assert redelivered.status_code == 200, redelivered.text
            assert [(x["attempt_no"], x["state"]) for x in redelivered.json()["attempts"]] == [
                (2, "delivered")
            ]
            assert delivered.status_code == 200, delivered.text
            assert [x["attempt_no"] for x in delivered.json()["attempts"]] in (
                [],
                [1],
            )  # [] if a poll sent it
            assert [(r.status_code, r.json()["attempts"]) for r in others] == [(200, [])] * 6
            assert len(receiver.deliveries) == sent_before + 2
            assert (shown["state"], shown["sends"]) == ("delivered", 2)
            assert [(x["attempt_no"], x["ok"]) for x in shown["attempts"]] == [(1, True), (2, True)]
    finally:
        receiver.stop()
        db.dispose()
        a.stop()
        b.stop()
