"""The request journal written by a process of its own at idle priority beside each ``wxpartner serve``
worker (server/journal_process.py, server/journal_link.py), on both backends: what the journal promised
before still holds (a reader finds its own requests at once, a stop loses nothing), the writer runs at
idle priority with no secret on its command line, and a worker whose writer died writes its rows itself.
The wire between them (frames, acknowledgements) is tested on a real socket pair."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from live import Served
from wxpartner.server import journal_process as jp
from wxpartner.store.db import Database, sqlite_url_for


@pytest.fixture
def database(serve_database: str) -> str:
    return serve_database


def serve(tmp_path: Path, database: str, workers: int = 2) -> Served:
    extra = ["--workers", str(workers)] + (["--database-url", database] if database else [])
    return Served(tmp_path / "data", *extra)


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def writers(served: Served) -> dict[int, int]:
    """{worker pid: its journal writer's pid} (one worker is ``serve`` itself, several its children)."""
    out = {}
    for worker in [served.proc.pid, *children(served.proc.pid)]:
        for child in children(worker):
            try:
                if b"wxpartner.server.journal_process" in Path(f"/proc/{child}/cmdline").read_bytes():
                    out[worker] = child
            except OSError:
                continue
    return out


def journal_ids(database: str, served: Served) -> set[str]:
    db = Database(database or sqlite_url_for(served.data_dir))
    try:
        with db.read() as conn:
            return {
                str(r)
                for t in ("request_journal", "request_journal_1")
                for r in conn.execute(sa.text(f"SELECT request_id FROM {t}")).scalars()
            }
    finally:
        db.dispose()


def unsigned(http: httpx.Client, n: int) -> list[str]:
    """``n`` requests refused for their missing signature (journaled all the same); their Request-IDs."""
    return [http.get("/v3/certificates").headers["request-id"] for _ in range(n)]


def control(served: Served) -> httpx.Client:
    token = served.info["sandbox_token"]
    return httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {token}"}, timeout=20)


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux's idle scheduling class")
def test_each_worker_has_an_idle_priority_writer(tmp_path: Path, database: str) -> None:
    served = serve(tmp_path, database)
    try:
        found: dict[int, int] = {}
        assert not writers(served)  # started with their workers' first rows, not before
        for _ in range(40):  # new connections land on the workers by a hash: enough reach both
            httpx.get(served.url + "/v3/certificates", headers={"Connection": "close"}, timeout=20)
        deadline = time.monotonic() + 20
        while len(found) < 2 and time.monotonic() < deadline:
            found = writers(served)
            time.sleep(0.1)
        assert len(found) == 2, found
        for writer in found.values():
            assert os.sched_getscheduler(writer) == os.SCHED_IDLE
            cmdline = Path(f"/proc/{writer}/cmdline").read_bytes()
            assert b"postgresql" not in cmdline and b"sqlite" not in cmdline, cmdline  # no URL, no password
    finally:
        served.stop()
    for writer in found.values():  # the stop ends them too
        assert (
            not Path(f"/proc/{writer}").exists() or "Z" in Path(f"/proc/{writer}/stat").read_text().split()[2]
        )


def test_a_reader_finds_its_own_requests_at_once(tmp_path: Path, database: str) -> None:
    served = serve(tmp_path, database)
    try:
        # One connection: the requests and the read reach the same worker (its rows are the ones its
        # read flushes; the other worker's follow within a quarter second).
        with control(served) as http:
            ids = unsigned(http, 30)
            for request_id in ids[-3:]:
                found = http.get("/sandbox/journal", params={"request_id": request_id}).json()["data"]
                assert [r["request_id"] for r in found] == [request_id]
            listed = http.get("/sandbox/journal", params={"limit": 100}).json()["data"]
            assert set(ids) <= {r["request_id"] for r in listed}
    finally:
        served.stop()


@pytest.mark.parametrize("ctrl_c", ["serve", "group"])
def test_a_stop_loses_nothing(tmp_path: Path, database: str, ctrl_c: str) -> None:
    """Stopped at once after its requests, by SIGINT to ``serve`` or, as Ctrl-C in a terminal does,
    to its whole process group (the writers included: they wait for their workers)."""
    served = serve(tmp_path, database)
    ids: list[str] = []
    try:
        clients = [httpx.Client(base_url=served.url, timeout=20) for _ in range(4)]
        threads = [threading.Thread(target=lambda c=c: ids.extend(unsigned(c, 50))) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for c in clients:
            c.close()
    finally:  # at once: rows still buffered in the workers and in their writers
        if ctrl_c == "group":
            os.killpg(served.proc.pid, signal.SIGINT)
            served.proc.wait(30)
        else:
            served.stop()
    assert served.proc.returncode == 0
    assert len(ids) == 200 and set(ids) <= journal_ids(database, served)


def test_a_worker_whose_writer_died_writes_its_rows_itself(tmp_path: Path, database: str) -> None:
    served = serve(tmp_path, database, workers=1)
    try:
        with httpx.Client(base_url=served.url, timeout=20) as http:
            unsigned(http, 1)  # the writer starts with the first rows
        deadline = time.monotonic() + 20
        while not (found := writers(served)) and time.monotonic() < deadline:
            time.sleep(0.1)
        ((_, writer),) = found.items()
        with control(served) as http:
            before = unsigned(http, 5)
            http.get("/sandbox/journal", params={"limit": 1})  # flushed: written and acknowledged
            os.kill(writer, signal.SIGKILL)
            while Path(f"/proc/{writer}").exists() and "Z" not in Path(f"/proc/{writer}/stat").read_text():
                time.sleep(0.01)
            after = unsigned(http, 5)  # the next flush finds the writer gone: kept, written here
            time.sleep(0.6)
            again = unsigned(http, 5)
            listed = http.get("/sandbox/journal", params={"limit": 100}).json()["data"]
        assert set(before + after + again) <= {r["request_id"] for r in listed}
    finally:
        served.stop()
    assert served.proc.stderr is not None
    assert b"journal writer process" in served.proc.stderr.read()


def _pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    return a, b


def test_frames_and_acknowledgements_on_a_socket_pair() -> None:
    ours, theirs = _pair()
    with ours, theirs:
        rows = [{"request_id": f"r{i}", "status": 200, "latency_ms": 0.5, "mchid": None} for i in range(3)]
        ours.sendall(jp.frame(("rows", rows)) + jp.frame(("sync", 7)))
        frames = jp._Frames(theirs)
        assert frames.next(None) == ("rows", rows)
        assert frames.next(None) == ("sync", 7)
        assert frames.next(0.05) is None  # nothing more yet
        theirs.sendall(jp.ack(7))
        assert jp.read_ack(ours.recv(jp.ACK_SIZE)) == 7
        ours.shutdown(socket.SHUT_WR)
        with pytest.raises(EOFError):
            frames.next(None)
        with pytest.raises(ValueError):
            jp.read_ack(b"X" + bytes(8))


@pytest.mark.parametrize("workers", [1, 2])
def test_the_benchmark_counts_the_writers(tmp_path: Path, workers: int) -> None:
    """`make bench` charges each worker with its writer's CPU and memory (the journal's writing was the
    worker's own before), and never takes a writer for a worker."""
    from bench.servers import process_cpu_seconds, start_wxpartner

    server = start_wxpartner(tmp_path / "data", workers)
    try:
        for _ in range(40):  # new connections, spread over the workers by the kernel's hash
            httpx.get(server.url + "/v3/certificates", headers={"Connection": "close"}, timeout=20)
        deadline = time.monotonic() + 20
        while len(found := server.journal_writers()) < workers and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(found) == workers and set(found) == set(server.serving_pids()), found
        assert not set(found.values()) & set(server.serving_pids())
        cpu = server.cpu_seconds()
        own = sum(process_cpu_seconds(pid) for pid in server.serving_pids())
        assert cpu == pytest.approx(own + sum(process_cpu_seconds(p) for p in found.values()), abs=0.05)
        assert cpu > own  # the writers have imported their database layer, at least
        assert len(server.writer_rss_mib()) == workers
        assert all(a > b for a, b in zip(server.peak_rss_mib(), server.writer_rss_mib(), strict=True))
    finally:
        server.stop()
