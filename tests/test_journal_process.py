"""The request journal written by a process of its own at idle priority beside each ``wxpartner serve``
worker (server/journal_process.py, server/journal_link.py), on both backends: what the journal promised
before still holds (a reader finds its own requests at once, a stop loses nothing), the writer runs at
idle priority with no secret on its command line, and a worker whose writer died writes its rows itself.
The wire between them (frames, acknowledgements) is tested on a real socket pair."""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from live import Served
from wxpartner.server import journal
from wxpartner.server import journal_process as jp
from wxpartner.server.app import WxPartnerApp
from wxpartner.server.journal_link import JournalLink
from wxpartner.server.settings import ENV_VAR, Settings
from wxpartner.store import ops_repo
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


def idle_priority(pid: int) -> bool:
    """The writer's scheduling class once it has set it: its first step, but a process found just
    after its start has not run it yet."""
    deadline = time.monotonic() + 10
    while os.sched_getscheduler(pid) != os.SCHED_IDLE and time.monotonic() < deadline:
        time.sleep(0.05)
    return os.sched_getscheduler(pid) == os.SCHED_IDLE


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
            assert idle_priority(writer)
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


def test_a_worker_whose_writer_died_writes_its_rows_and_starts_another(tmp_path: Path, database: str) -> None:
    served = serve(tmp_path, database, workers=1)
    try:
        with httpx.Client(base_url=served.url, timeout=20) as http:
            unsigned(http, 1)  # the writer starts with the first rows
        deadline = time.monotonic() + 20
        while not (found := writers(served)) and time.monotonic() < deadline:
            time.sleep(0.1)
        ((worker, writer),) = found.items()
        with control(served) as http:
            before = unsigned(http, 5)
            http.get("/sandbox/journal", params={"limit": 1})  # flushed: written and acknowledged
            os.kill(writer, signal.SIGSTOP)
            held = unsigned(http, 5)
            time.sleep(0.6)  # shipped to the stopped writer: it never writes them
            os.kill(writer, signal.SIGKILL)
            while Path(f"/proc/{writer}").exists() and "Z" not in Path(f"/proc/{writer}/stat").read_text():
                time.sleep(0.01)
            after = unsigned(http, 5)  # the next flush finds the writer gone: taken back, written here
            time.sleep(0.6)
            again = unsigned(http, 5)
            listed = http.get("/sandbox/journal", params={"limit": 100}).json()["data"]
            assert set(before + held + after + again) <= {r["request_id"] for r in listed}
            # Another writer takes over (two seconds after the first one's start at most), at idle priority.
            deadline = time.monotonic() + 20
            while (found := writers(served)).get(worker, writer) == writer and time.monotonic() < deadline:
                unsigned(http, 1)
                time.sleep(0.2)
            assert found[worker] != writer
            if hasattr(os, "SCHED_IDLE"):
                assert idle_priority(found[worker])
            later = unsigned(http, 5)
            found_later = http.get("/sandbox/journal", params={"request_id": later[-1]}).json()["data"]
            assert [r["request_id"] for r in found_later] == [later[-1]]
            exported = http.get("/metrics").text  # one worker: its own counters
            assert 'wxpartner_journal_events_total{event="writer_restarted"} 1.0' in exported
            taken = re.search(r'wxpartner_journal_events_total\{event="rows_taken_back"\} (\S+)', exported)
            assert taken is not None and float(taken.group(1)) >= len(held)
    finally:
        served.stop()
    assert served.proc.stderr is not None
    log = served.proc.stderr.read()
    assert b"journal writer process" in log and b"started in place of" in log


def test_a_stop_waits_for_a_stalled_writer_only_so_long(tmp_path: Path, database: str) -> None:
    """A writer given no CPU (stopped here) when ``serve`` stops: the worker waits 5 s for it, kills
    it and writes its rows itself, so ``serve`` has exited with every row in the journal."""
    served = serve(tmp_path, database, workers=1)
    try:
        with httpx.Client(base_url=served.url, timeout=20) as http:
            ids = unsigned(http, 3)
            deadline = time.monotonic() + 20
            while not (found := writers(served)) and time.monotonic() < deadline:
                time.sleep(0.1)
            ((_, writer),) = found.items()
            os.kill(writer, signal.SIGSTOP)
            ids += unsigned(http, 20)
    finally:
        started = time.monotonic()
        served.stop()
    assert served.proc.returncode == 0 and time.monotonic() - started < 15
    assert set(ids) <= journal_ids(database, served)
    assert not Path(f"/proc/{writer}").exists()
    assert served.proc.stderr is not None
    assert b"still writing after 5 s: stopped" in served.proc.stderr.read()


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
        theirs.sendall(jp.ack(jp.SYNCED, 7) + jp.ack(jp.WRITTEN, 3))
        assert jp.read_ack(ours.recv(jp.ACK_SIZE)) == (jp.SYNCED, 7)
        assert jp.read_ack(ours.recv(jp.ACK_SIZE)) == (jp.WRITTEN, 3)
        assert jp.unframe(jp.frame(("rows", rows))) == ("rows", rows)
        ours.shutdown(socket.SHUT_WR)
        with pytest.raises(EOFError):
            frames.next(None)
        theirs.sendall(jp.dropped_ack("buffer_full", 4) + jp.dropped_ack("unstorable", 1))
        assert jp.read_ack(ours.recv(jp.ACK_SIZE)) == (b"F", 4)
        assert jp.read_ack(ours.recv(jp.ACK_SIZE)) == (b"U", 1)
        assert {jp.DROPPED[b"F"], jp.DROPPED[b"U"]} == {"buffer_full", "unstorable"}
        with pytest.raises(ValueError):
            jp.read_ack(b"X" + bytes(8))


# A stand-in writer: it takes two frames of rows, says it is done with the first 70 rows (the second
# frame's first 20 among them), then waits for the end of the stream, or ignores it and hangs.
_PARTIAL_WRITER = """
import socket, sys, time
from wxpartner.server import journal_process as jp
sock = socket.socket(fileno=int(sys.argv[-1]))
frames = jp._Frames(sock)
frames.next(None), frames.next(None)
sock.sendall(jp.ack(jp.WRITTEN, 70))
if sys.argv[1] == "hang":
    time.sleep(60)
try:
    frames.next(None)
except EOFError:
    pass
"""


@pytest.mark.parametrize("writer", ["exits", "hang"])
def test_the_link_takes_back_exactly_the_rows_not_written(writer: str) -> None:
    """Rows are kept until the writer counts them done, across frame boundaries; a writer that does
    not end within the stop's wait is killed, and what it did not write comes back either way."""
    link = JournalLink((sys.executable, "-c", _PARTIAL_WRITER, writer))
    rows = [{"request_id": f"r{i}", "status": 200} for i in range(100)]
    with link.lock:
        link.send_rows(rows[:50])
        link.send_rows(rows[50:])
    started = time.monotonic()
    left = link.close(1.0)
    took = time.monotonic() - started
    assert left == rows[70:]
    assert link.proc.returncode == (0 if writer == "exits" else -signal.SIGKILL)
    assert took < 0.9 if writer == "exits" else 0.95 < took < 5
    assert not link.up and link.close(1.0) == []


def _rows(prefix: str, n: int) -> list[dict[str, object]]:
    return [
        {
            "request_id": f"{prefix}-{i}",
            "at": time.time(),
            "method": "GET",
            "path": "/v3/x",
            "operation": "test",
            "status": 200,
            "latency_ms": 0.1,
            "verification": "ok",
        }
        for i in range(n)
    ]


def _journaled(app: WxPartnerApp) -> list[str]:
    with app.state.db.read() as conn:
        return [
            str(r)
            for t in ("request_journal", "request_journal_1")
            for r in conn.execute(sa.text(f"SELECT request_id FROM {t}")).scalars()
        ]


def test_rows_a_stalled_writer_holds_are_written_by_its_worker_at_a_stop(
    app: WxPartnerApp, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer runs at idle priority and a busy machine may give it no CPU while its worker stops
    (a stopped process here): the worker waits SYNC_SECONDS, kills it and writes what it was not told
    was written, each row once."""
    monkeypatch.setenv(ENV_VAR, settings.to_env())
    monkeypatch.setattr(journal, "SYNC_SECONDS", 1.0)
    w = journal.JournalWriter(app.state)
    w.start_process()
    assert w.shipping
    for row in _rows("early", 100):
        w.record(row)
    assert w.ship() == 100
    w.flush()  # a reader's: written by the writer, acknowledged
    assert sorted(_journaled(app)) == sorted(f"early-{i}" for i in range(100))
    assert w.link is not None
    os.kill(w.link.proc.pid, signal.SIGSTOP)
    for row in _rows("late", 150):
        w.record(row)
    w.ship()  # in the socket, or taken by the writer before it stopped: never written by it
    for row in _rows("last", 10):
        w.record(row)  # still in the worker's buffer at the stop
    started = time.monotonic()
    w.close_process()
    assert 0.9 < time.monotonic() - started < 5
    assert not w.shipping and w.link.proc.returncode == -signal.SIGKILL
    w.flush()
    ids = _journaled(app)
    assert len(ids) == len(set(ids)) == 260
    assert set(ids) == {
        f"{p}-{i}" for p, n in (("early", 100), ("late", 150), ("last", 10)) for i in range(n)
    }


def _events(event: str) -> float:
    return REGISTRY.get_sample_value("wxpartner_journal_events_total", {"event": event}) or 0.0


def test_rows_left_out_or_taken_back_are_counted_in_metrics(
    app: WxPartnerApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal, "MAX_BUFFER", 4)
    w = journal.JournalWriter(app.state)
    full, back = _events("buffer_full"), _events("rows_taken_back")
    for row in _rows("kept", 6):
        w.record(row)  # the two oldest go
    w._take_back(_rows("back", 3))  # older still: to the head, the three newest go
    assert _events("buffer_full") - full == 5 and w.dropped == 5
    assert _events("rows_taken_back") - back == 3
    w.flush()
    assert sorted(_journaled(app)) == ["back-0", "back-1", "back-2", "kept-2"]


# A stand-in writer that drops rows: 3 beyond its pending bound and 2 its database refused, then
# counts all 10 done with.
_DROPPING_WRITER = """
import socket, sys
from wxpartner.server import journal_process as jp
sock = socket.socket(fileno=int(sys.argv[-1]))
frames = jp._Frames(sock)
frames.next(None)
sock.sendall(jp.dropped_ack("buffer_full", 3) + jp.dropped_ack("unstorable", 2) + jp.ack(jp.WRITTEN, 10))
try:
    frames.next(None)
except EOFError:
    pass
"""


def test_the_link_reports_the_rows_its_writer_dropped() -> None:
    told: list[tuple[str, int]] = []
    link = JournalLink((sys.executable, "-c", _DROPPING_WRITER), on_dropped=lambda e, n: told.append((e, n)))
    with link.lock:
        link.send_rows([{"request_id": f"r{i}", "status": 200} for i in range(10)])
    assert link.close(5.0) == []  # all ten done with: nothing taken back
    assert told == [("buffer_full", 3), ("unstorable", 2)]


def test_a_writer_beyond_its_pending_bound_says_how_many_it_dropped(
    app: WxPartnerApp, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer's own bound (a database down for long): the oldest rows go, told as dropped before
    they are counted done with, so the worker neither keeps nor writes them."""
    monkeypatch.setattr(jp, "MAX_PENDING", 5)
    ours, theirs = _pair()
    writer = jp._Writer(theirs, database_url, keep=1000)
    try:
        writer.add(_rows("over", 7))
        assert [r["request_id"] for r in writer.pending] == [f"over-{i}" for i in range(2, 7)]
        writer.write_all()
        acks = [jp.read_ack(ours.recv(jp.ACK_SIZE)) for _ in range(3)]
        assert acks == [(b"F", 2), (jp.WRITTEN, 2), (jp.WRITTEN, 7)]
        assert sorted(_journaled(app)) == [f"over-{i}" for i in range(2, 7)]
    finally:
        writer.db.dispose()
        ours.close()
        theirs.close()


def test_rows_the_writer_process_dropped_are_counted_in_its_workers_metrics(
    app: WxPartnerApp, settings: Settings, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row the database refuses for its data (a method longer than its column: PostgreSQL refuses
    it, SQLite does not look at lengths) is dropped by the writer process and counted as unstorable in
    the worker's /metrics, as the worker's own drops are."""
    monkeypatch.setenv(ENV_VAR, settings.to_env())
    w = journal.JournalWriter(app.state)
    w.start_process()
    before = _events("unstorable")
    try:
        good, bad = _rows("fine", 3), _rows("long", 1)
        bad[0]["method"] = "M" * 40
        for row in good + bad:
            w.record(row)
        assert w.ship() == 4
        w.flush()  # the writer has written (or dropped) them and said so
        refused = 1 if backend == "postgres" else 0
        assert _events("unstorable") - before == refused and w.dropped == refused
        assert sorted(_journaled(app)) == sorted(r["request_id"] for r in good + bad[: 1 - refused])
    finally:
        w.close_process()


def test_a_chunk_written_but_not_acknowledged_is_not_written_twice(app: WxPartnerApp) -> None:
    """A writer can end between its commit and its acknowledgement: of the rows taken back, those
    the journal already holds are left out."""
    w = journal.JournalWriter(app.state)
    rows = _rows("back", 80)
    ops_repo.write_journal_chunk(app.state.db, rows[:30], w.keep)  # its last commit
    w.record(_rows("newer", 1)[0])
    w._take_back(rows)
    w.flush()
    ids = _journaled(app)
    assert len(ids) == len(set(ids)) == 81
    with app.state.db.read() as conn:
        newest = ops_repo.list_journal(conn, ops_repo.JournalFilter(limit=1))[0]
    assert newest["request_id"] == "newer-0"  # taken back rows go before what is buffered


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
