"""Request journal: every /v3 request recorded with its verification outcome, no bodies, bounded."""

from __future__ import annotations

import json
import threading
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from starlette.testclient import TestClient

from conftest import SANDBOX_TOKEN
from support import SP_A, SP_B, ApiClient, World
from wxpartner.server.app import WxPartnerApp
from wxpartner.server.journal import CHUNK, writer
from wxpartner.store import ops_repo
from wxpartner.store.db import make_engine
from wxpartner.store.ops_tables import JOURNAL_GENERATIONS


def test_successful_request_is_journaled(client_b: ApiClient, control: TestClient) -> None:
    resp = client_b.get("/v3/certificates")
    assert resp.status_code == 200
    rid = resp.headers["Request-ID"]
    entry = control.get(f"/sandbox/journal/{rid}")
    assert entry.status_code == 200, entry.text
    row = entry.json()
    assert row["mchid"] == SP_B
    assert row["method"] == "GET"
    assert row["path"] == "/v3/certificates"
    assert row["operation"] != "route"
    assert row["status"] == 200
    assert row["code"] is None
    assert row["verification"] == "ok"
    assert row["expected_message"] is None
    assert row["latency_ms"] >= 0


def test_signature_mismatch_records_expected_string_to_sign(
    client_a: ApiClient, control: TestClient, world: World
) -> None:
    body = {"secret_looking": "x" * 10}
    # a body on a GET is odd but keeps this test independent of any family's POST operation
    resp = client_a.request("GET", "/v3/certificates?limit=1", body, private_key=world.other_key, check=False)
    assert resp.status_code == 401, resp.text
    rows = control.get("/sandbox/journal", params={"mchid": SP_A, "failed": "1"}).json()["data"]
    assert rows, "refusal not journaled"
    row = rows[0]
    assert row["request_id"] == resp.headers["Request-ID"]
    assert row["code"] == "SIGN_ERROR"
    assert row["verification"] == "refused"
    assert row["verify_field"] == "signature"
    assert row["expected_message"].startswith("GET\n/v3/certificates?limit=1\n")
    assert row["expected_message"].endswith(json.dumps(body, separators=(",", ":")) + "\n")
    assert row["body_length"] > 0 and len(row["body_sha256"]) == 64
    # the body itself is never a column
    assert "x" * 10 not in json.dumps({k: v for k, v in row.items() if k != "expected_message"})


def test_sign_error_on_get_is_explained(client_a: ApiClient, control: TestClient, world: World) -> None:
    resp = client_a.get("/v3/certificates", private_key=world.other_key, check=False)
    assert resp.status_code == 401
    row = control.get(f"/sandbox/journal/{resp.headers['Request-ID']}").json()
    assert row["verification"] == "refused"
    assert row["verify_issue"] == "sign not match"
    lines = row["expected_message"].split("\n")
    assert lines[0] == "GET" and lines[1] == "/v3/certificates" and lines[-1] == "" and len(lines) == 6


def test_unknown_merchant_and_unrouted_requests(client_a: ApiClient, control: TestClient) -> None:
    r1 = client_a.get("/v3/certificates", mchid="1999999999", check=False)
    assert r1.status_code == 401
    r2 = client_a.get("/v3/no/such/thing", check=False)
    assert r2.status_code == 404
    one = control.get(f"/sandbox/journal/{r1.headers['Request-ID']}").json()
    assert one["mchid"] == "1999999999" and one["verify_field"] == "mchid"
    assert one["expected_message"] is None
    two = control.get(f"/sandbox/journal/{r2.headers['Request-ID']}").json()
    assert two["verification"] == "not_routed" and two["operation"] == "route" and two["code"] == "NOT_FOUND"


def test_requests_refused_for_their_size_are_journaled_too(
    client_b: ApiClient, control: TestClient, http: TestClient
) -> None:
    """A body over the limit (413) or too many header fields (400) was answered before the pipeline
    and left no trace: no journal row, no metrics, no access line, so "every /v3 request" missed the
    ones a developer most needs to see. The row has the answer's Request-ID and says what was refused."""
    big = client_b.post("/v3/webizpay/users/user_0001/authorization-url", b"x" * (2 << 20), check=False)
    assert big.status_code == 413
    headers = {f"X-Filler-{i}": "1" for i in range(120)}
    many = client_b.get("/v3/certificates", headers=headers, check=False)
    assert many.status_code == 400
    for resp, status, code, field in (
        (big, 413, "REQUEST_ENTITY_TOO_LARGE", "body"),
        (many, 400, "INVALID_REQUEST", "header"),
    ):
        entry = control.get(f"/sandbox/journal/{resp.headers['Request-ID']}")
        assert entry.status_code == 200, entry.text
        row = entry.json()
        assert (row["status"], row["code"], row["operation"]) == (status, code, "limits")
        assert row["verification"] == "refused" and row["verify_field"] == field
        assert row["mchid"] == SP_B and row["user_agent"]
    metrics = http.get("/metrics").text
    assert (
        'wxpartner_requests_total{code="REQUEST_ENTITY_TOO_LARGE",operation="limits",status="413"}' in metrics
    )


def test_filters_paging_and_clear(client_a: ApiClient, client_b: ApiClient, control: TestClient) -> None:
    for _ in range(3):
        client_a.get("/v3/certificates")
    client_b.get("/v3/certificates")
    assert len(control.get("/sandbox/journal", params={"mchid": SP_A}).json()["data"]) == 3
    page1 = control.get("/sandbox/journal", params={"limit": 2}).json()
    assert len(page1["data"]) == 2 and page1["next_before_id"]
    page2 = control.get("/sandbox/journal", params={"limit": 2, "before_id": page1["next_before_id"]}).json()
    assert len(page2["data"]) == 2
    assert {r["id"] for r in page1["data"]}.isdisjoint({r["id"] for r in page2["data"]})
    op = page1["data"][0]["operation"]
    assert (
        len(control.get("/sandbox/journal", params={"operation": op.split(".")[0] + "*"}).json()["data"]) == 4
    )
    assert control.get("/sandbox/journal", params={"status": 500}).json()["data"] == []
    assert control.get("/sandbox/journal", params={"status": "x"}).status_code == 400
    assert control.delete("/sandbox/journal").json()["deleted"] == 4
    assert control.get("/sandbox/journal/NOPE").status_code == 404


NINES = "9" * 30  # past every integer column


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        # found by an audit: each was a database error (500)
        ({"status": NINES}, "status must be between 0 and 999"),
        ({"before_id": NINES}, "before_id must be between"),
        ({"limit": NINES}, "limit must be between"),
        ({"mchid": "a\x00b"}, "must not contain NUL"),  # PostgreSQL refuses NUL in any string
    ],
)
def test_journal_filters_past_a_column_are_param_errors(
    control: TestClient, query: dict[str, str], fragment: str
) -> None:
    resp = control.get("/sandbox/journal", params=query)
    assert resp.status_code == 400 and resp.json()["code"] == "PARAM_ERROR", resp.text
    assert fragment in resp.json()["message"]


def test_journal_entry_by_a_number_past_64_bits_is_not_found(
    client_b: ApiClient, control: TestClient
) -> None:
    client_b.get("/v3/certificates")
    row_id = control.get("/sandbox/journal").json()["data"][0]["id"]
    assert control.get(f"/sandbox/journal/{row_id}").json()["id"] == row_id  # row ids still work
    for key in (NINES, "%C2%B2"):  # "²" is a digit to str.isdigit, not to int()
        resp = control.get(f"/sandbox/journal/{key}")
        assert resp.status_code == 404 and resp.json()["code"] == "RESOURCE_NOT_EXISTS"


def test_journal_needs_the_token(http: TestClient) -> None:
    assert http.get("/sandbox/journal").status_code == 401


def test_buffer_is_flushed_at_shutdown(app: WxPartnerApp, world: World) -> None:
    with TestClient(app) as http:
        rid = ApiClient(http, world, SP_B).get("/v3/certificates").headers["Request-ID"]
        assert writer(app.state).pending() >= 0
    # lifespan ended: the background writer wrote what was left
    assert writer(app.state).pending() == 0
    with app.state.db.read() as conn:
        assert ops_repo.get_journal(conn, rid) is not None


def _row(i: int) -> dict[str, object]:
    return {
        "request_id": f"R{i}",
        "at": float(i),
        "mchid": None,
        "method": "GET",
        "path": "/v3/x",
        "operation": "route",
        "status": 404,
        "latency_ms": 1.0,
        "verification": "not_routed",
        "body_length": 0,
    }


def _ids(conn: Connection) -> list[str]:
    return [r["request_id"] for r in ops_repo.list_journal(conn, ops_repo.JournalFilter(limit=1000))]


def _generation_counts(conn: Connection) -> list[int]:
    return [
        int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()) for t in JOURNAL_GENERATIONS
    ]


def test_retention_keeps_the_newest_rows_in_two_generations(app: WxPartnerApp) -> None:
    """Rows fill the newer generation up to `keep`; then the older one is emptied whole and takes the
    next rows. At any time the newest `keep` rows at least are there, newest first, in order."""
    written = 0
    seen_counts = []
    for _ in range(10):
        with app.state.db.write() as conn:
            ops_repo.insert_journal(conn, [_row(written + i) for i in range(4)], keep=10)
        written += 4
        with app.state.db.read() as conn:
            ids = _ids(conn)
            seen_counts.append(_generation_counts(conn))
        assert (
            ids[: min(written, 10)]
            == [f"R{i}" for i in range(written - 1, written - 11, -1)][: min(written, 10)]
        )
        assert ids == [f"R{i}" for i in range(written - 1, written - 1 - len(ids), -1)]  # no gap
        assert len(ids) <= 2 * 10 + 4
    # 12 rows in the first, then 12 in the second (it fills past 10 by the chunk that crosses it),
    # then the first was emptied and holds the newest 4 beside the second's 12.
    assert seen_counts[2] == [12, 0] and seen_counts[5] == [12, 12] and seen_counts[6] == [4, 12]
    assert seen_counts[-1] == [12, 4]
    with app.state.db.read() as conn:
        rows = ops_repo.list_journal(conn, ops_repo.JournalFilter(limit=1000))
    ids = [r["id"] for r in rows]
    assert ids == sorted(ids, reverse=True) and ids[0] - ids[-1] == len(ids) - 1  # ids run on across both


def test_both_generations_read_as_one_journal(app: WxPartnerApp) -> None:
    with app.state.db.write() as conn:
        ops_repo.insert_journal(conn, [_row(i) for i in range(12)], keep=10)
        ops_repo.insert_journal(conn, [_row(i) for i in range(12, 15)], keep=10)  # the second generation
        assert _generation_counts(conn) == [12, 3]
        older = ops_repo.get_journal(conn, "R3")
        assert older is not None and older["request_id"] == "R3"
        by_id = ops_repo.get_journal(conn, str(older["id"]))
        assert by_id is not None and by_id["request_id"] == "R3"
        newer = ops_repo.get_journal(conn, "R13")
        assert newer is not None and ops_repo.get_journal(conn, str(newer["id"]))["request_id"] == "R13"  # type: ignore[index]
        page = ops_repo.list_journal(conn, ops_repo.JournalFilter(limit=5))
        assert [r["request_id"] for r in page] == ["R14", "R13", "R12", "R11", "R10"]
        rest = ops_repo.list_journal(conn, ops_repo.JournalFilter(limit=5, before_id=page[-1]["id"]))
        assert [r["request_id"] for r in rest] == ["R9", "R8", "R7", "R6", "R5"]
        filtered = ops_repo.list_journal(conn, ops_repo.JournalFilter(request_id="R13"))
        assert [r["request_id"] for r in filtered] == ["R13"]
        assert ops_repo.count_journal(conn) == 15
        assert ops_repo.clear_journal(conn) == 15
        assert ops_repo.count_journal(conn) == 0 and ops_repo.get_journal(conn, "R13") is None


def test_rows_written_before_the_second_generation_stay_in_order(app: WxPartnerApp) -> None:
    """A journal from before migration 0011: its rows have their own ids (with a gap from an old
    prune); new rows run on after them, in the other generation once the first counts as full."""
    with app.state.db.write() as conn:
        for i, row_id in enumerate((5, 6, 9)):
            conn.execute(JOURNAL_GENERATIONS[0].insert().values({**_row(i), "id": row_id}))
        ops_repo.insert_journal(conn, [_row(3)], keep=3)
        assert _generation_counts(conn) == [3, 1]  # ids 5..9 span 5 >= keep: the second one takes it
        assert _ids(conn) == ["R3", "R2", "R1", "R0"]
        assert ops_repo.get_journal(conn, "R3")["id"] == 10  # type: ignore[index]


def test_journal_writers_on_several_connections_take_turns(app: WxPartnerApp) -> None:
    """Flushes from several processes or hosts at once (threads with their own connections here):
    every row is kept once, with its own id, and ids follow the order rows were committed."""
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def flush(worker: int) -> None:
        try:
            start.wait(10)
            for n in range(6):
                with app.state.db.write() as conn:
                    ops_repo.insert_journal(
                        conn, [_row(1000 * worker + 10 * n + i) for i in range(5)], keep=40
                    )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=flush, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    with app.state.db.read() as conn:
        rows = ops_repo.list_journal(conn, ops_repo.JournalFilter(limit=1000))
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids) and ids[0] - ids[-1] == len(ids) - 1
    assert len(rows) >= 40
    for w in range(4):  # each writer's rows in its own order
        mine = [int(r["request_id"][1:]) for r in rows if int(r["request_id"][1:]) // 1000 == w]
        assert mine == sorted(mine, reverse=True)


def test_the_writer_flushes_in_short_transactions(app: WxPartnerApp, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer slot is every request's: a flush writes at most CHUNK rows per transaction."""
    w = writer(app.state)
    for i in range(2 * CHUNK + 5):
        w.record(_row(i))
    chunks: list[int] = []
    insert = ops_repo.insert_journal

    def observed(conn: Connection, rows: list[dict[str, object]], **kw: int) -> None:
        assert conn.in_transaction()
        chunks.append(len(rows))
        insert(conn, rows, **kw)

    begins: list[Connection] = []
    on_begin = begins.append  # one bound method: remove() needs the very object listen() got
    monkeypatch.setattr(ops_repo, "insert_journal", observed)
    sa.event.listen(app.state.db.engine, "begin", on_begin)
    try:
        assert w.flush() == 2 * CHUNK + 5
    finally:
        sa.event.remove(app.state.db.engine, "begin", on_begin)
    assert chunks == [CHUNK, CHUNK, 5]
    assert len(begins) >= 3  # one transaction (one turn of the writer) per chunk
    with app.state.db.read() as conn:
        assert ops_repo.count_journal(conn) == 2 * CHUNK + 5
    assert w.pending() == 0


def test_a_flush_waits_for_the_step_in_flight_so_a_reader_finds_its_rows(
    app: WxPartnerApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The background flush took the rows out of the buffer and is still writing them: a flush from
    the control API (which then reads the journal) must not find the buffer empty and return early."""
    w = writer(app.state)
    w.record(_row(1))
    inside, go = threading.Event(), threading.Event()
    insert = ops_repo.insert_journal

    def slow(conn: Connection, rows: list[dict[str, object]], **kw: int) -> None:
        inside.set()
        assert go.wait(10)
        insert(conn, rows, **kw)

    monkeypatch.setattr(ops_repo, "insert_journal", slow)
    background = threading.Thread(target=w.flush_step)
    background.start()
    assert inside.wait(10)
    seen: list[int] = []

    def flush_then_count() -> None:
        w.flush()
        with app.state.db.read() as conn:
            seen.append(ops_repo.count_journal(conn))

    reader = threading.Thread(target=flush_then_count)
    reader.start()
    reader.join(0.3)
    assert reader.is_alive(), "the flush returned while the rows were still being written"
    go.set()
    background.join(10)
    reader.join(10)
    assert seen == [1]


def test_a_failed_chunk_keeps_only_the_rows_not_yet_written(app: WxPartnerApp) -> None:
    w = writer(app.state)
    for i in range(CHUNK + 5):
        w.record(_row(i))
    w.record({"request_id": "X", "bogus_column": 1})  # the second chunk's insert fails
    assert w.flush() == CHUNK
    assert w.pending() == 6  # five good rows and the bad one, for the next try; nothing twice
    with app.state.db.read() as conn:
        assert ops_repo.count_journal(conn) == CHUNK


def test_a_nul_in_a_request_stops_no_one_s_journal(
    client_a: ApiClient, client_b: ApiClient, control: TestClient, world: World
) -> None:
    """PostgreSQL text cannot hold NUL: a row carrying one failed its chunk, went back to the head of
    the buffer and failed every later flush, so no merchant's request was journaled again."""
    signed = client_a.get("/v3/webizpay/avail-mch-ranges?sp_mchid=12%0034", check=False)
    # unsigned: the refusal keeps the expected string-to-sign, which holds the body
    unsigned = client_a.post(
        "/v3/webizpay/avail-mch-ranges", b'{"a":"\x00"}', private_key=world.other_key, check=False
    )
    assert unsigned.status_code == 401
    control.get("/sandbox/journal")  # flushed
    later = client_b.get("/v3/certificates").headers["Request-ID"]
    assert control.get(f"/sandbox/journal/{later}").status_code == 200
    assert control.get(f"/sandbox/journal/{signed.headers['Request-ID']}").status_code == 200
    row = control.get(f"/sandbox/journal/{unsigned.headers['Request-ID']}").json()
    assert row["expected_message"].endswith('\n{"a":"\ufffd"}\n')  # same length, on both backends


def test_a_row_the_database_cannot_store_is_dropped_not_retried_forever(
    app: WxPartnerApp, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    w = writer(app.state)
    w.record(_row(1))
    w.record({**_row(2), "status": 2**40})  # beyond PostgreSQL's integer (SQLite stores it)
    w.record({**_row(3), "message": "a\x00b"})
    assert w.flush() == 3
    assert w.pending() == 0
    with app.state.db.read() as conn:
        kept = {r["request_id"]: r for r in ops_repo.list_journal(conn, ops_repo.JournalFilter(limit=10))}
    assert kept["R3"]["message"] == "a\ufffdb"
    if backend == "postgres":
        assert set(kept) == {"R1", "R3"}
        assert "journal row R2 dropped" in caplog.text
    else:
        assert set(kept) == {"R1", "R2", "R3"}
    w.record(_row(4))
    assert w.flush() == 1


def test_writer_keeps_rows_when_the_database_fails(app: WxPartnerApp) -> None:
    w = writer(app.state)
    w.record({"request_id": "X", "bogus_column": 1})  # an insert that fails
    assert w.flush() == 0
    assert w.pending() == 1


def test_on_the_loop_the_flush_lets_requests_run_between_chunks(
    app: WxPartnerApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite serves requests on the event loop: the flush writes one chunk, then yields, so a request
    waits for at most one chunk's transaction, not for the whole buffer."""
    import anyio

    from wxpartner.server import journal

    monkeypatch.setattr(journal, "FLUSH_INTERVAL", 0.01)
    monkeypatch.setattr(app.state, "pipeline_on_loop", True)
    w = writer(app.state)
    for i in range(3 * CHUNK):
        w.record(_row(i))
    seen: list[int] = []

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(journal.flush_loop, app.state)
            while w.pending():
                seen.append(w.pending())  # what another task on the loop sees meanwhile
                await anyio.sleep(0)
            tg.cancel_scope.cancel()

    anyio.run(main)
    assert 2 * CHUNK in seen and CHUNK in seen, sorted(set(seen))
    with app.state.db.read() as conn:
        assert ops_repo.count_journal(conn) == 3 * CHUNK


def test_a_page_past_the_cap_still_says_where_the_next_one_starts(
    app: WxPartnerApp, control: TestClient
) -> None:
    """Found in the sandbox audit: the store caps a page at 1000 rows, but next_before_id compared the
    rows with the limit asked for, so `limit=5000` (or a negative limit) gave one page and no way on;
    the dashboard's "Older" link vanished the same way."""
    with app.state.db.write() as conn:
        ops_repo.insert_journal(conn, [_row(i) for i in range(1003)])
    big = control.get("/sandbox/journal", params={"limit": 5000}).json()
    assert len(big["data"]) == 1000 and big["next_before_id"] == big["data"][-1]["id"]
    rest = control.get("/sandbox/journal", params={"limit": 5000, "before_id": big["next_before_id"]}).json()
    assert [r["request_id"] for r in rest["data"]] == ["R2", "R1", "R0"] and rest["next_before_id"] is None
    one = control.get("/sandbox/journal", params={"limit": -3}).json()
    assert len(one["data"]) == 1 and one["next_before_id"] == one["data"][0]["id"]
    control.post("/dashboard/login", data={"token": SANDBOX_TOKEN})
    assert "Older →" in control.get("/dashboard/journal", params={"limit": 5000}).text


def test_a_role_without_truncate_rotates_by_deleting(database_url: str, backend: str) -> None:
    """PostgreSQL empties a generation with TRUNCATE; an application role granted DELETE but not
    TRUNCATE (narrower than the role that migrated) deletes instead, in the same transaction."""
    if backend != "postgres":
        pytest.skip("SQLite has no roles: its generations are emptied with DELETE")
    if "://postgres@" not in database_url:  # a shared server (WXPARTNER_TEST_PG_URL) may not trust us
        pytest.skip("needs the suite's own PostgreSQL server, whose roles log in without a password check")
    role = f"journal_{uuid.uuid4().hex[:12]}"
    admin = make_engine(database_url)
    tables = ", ".join(t.name for t in JOURNAL_GENERATIONS)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN PASSWORD 'journal'")
        conn.exec_driver_sql(f"GRANT USAGE ON SCHEMA public TO {role}")
        conn.exec_driver_sql(f"GRANT SELECT, INSERT, DELETE ON {tables} TO {role}")
    narrow = make_engine(database_url.replace("://postgres@", f"://{role}:journal@", 1))
    try:
        for n in range(4):
            with narrow.begin() as conn:
                ops_repo.insert_journal(conn, [_row(3 * n + i) for i in range(3)], keep=3)
        with narrow.connect() as conn:
            assert _generation_counts(conn) == [3, 3]
            assert _ids(conn) == [f"R{i}" for i in range(11, 5, -1)]
    finally:
        narrow.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP OWNED BY {role}")
            conn.exec_driver_sql(f"DROP ROLE {role}")
        admin.dispose()
