"""GET /sandbox/scenario is streamed as its rows are read, in one read transaction: 100,000
applyments and 100,000 recharge employees were built into one 29.5 MB answer in memory (4.2 s; the
server's RSS went from 90 to 280 MB and stayed). The bytes are what they were."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from conftest import SANDBOX_TOKEN
from support import SP_A, SUB_A
from wxpartner.sandbox import scenario
from wxpartner.server.app import WxPartnerApp
from wxpartner.store.apply4subject_tables import apply4subject_applyments, apply4subject_authorizations
from wxpartner.store.recharge_tables import recharge_employees

T0 = 1_747_280_000.0
AUTH = [(b"authorization", f"Bearer {SANDBOX_TOKEN}".encode())]


def _rows(app: WxPartnerApp, applyments: int, employees: int) -> None:
    """Rows as the API would have left them (written directly: a big world in little time)."""
    apps = [
        {
            "applyment_id": 20_000_000_000_000 + i,
            "mchid": SP_A,
            "business_code": f"bc{i}",
            "state": "APPLYMENT_STATE_WAITTING_FOR_AUDIT",
            "fingerprint": "f",
            "materials": "{}",
            "confirm_mchids": '["1900000109"]' if i % 2 else "[]",
            "confirm_token": f"ct{i}",
            "state_since": T0 + i,
            "created_at": T0 + i,
            "updated_at": T0 + i,
        }
        for i in range(applyments)
    ]
    emps = [
        {
            "mchid": SP_A,
            "sub_mchid": f"19{i // 7:08d}",  # groups of 7
            "sp_openid": f"o{i:09d}",
            "state": "EFFECTIVE" if i % 3 else "DELETED",
            "create_time": T0 - i,
            "update_time": T0 - i,
        }
        for i in range(employees)
    ]
    with app.state.db.write() as conn:
        if apps:
            conn.execute(apply4subject_applyments.insert(), apps)
        if emps:
            conn.execute(recharge_employees.insert(), emps)


def _old_answer(app: WxPartnerApp) -> bytes:
    """What the endpoint answered before: starlette's JSONResponse of the whole export."""
    data = scenario.export_scenario(app.state.db)
    return json.dumps(data, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


async def _messages(app: WxPartnerApp) -> list[dict[str, Any]]:
    """The ASGI messages of one GET /sandbox/scenario, as a server would send them."""
    sent: list[dict[str, Any]] = []
    done = False

    async def receive() -> dict[str, Any]:
        nonlocal done
        if not done:
            done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await _never()
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/sandbox/scenario",
        "raw_path": b"/sandbox/scenario",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *AUTH],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    return sent


async def _never() -> None:
    import anyio

    await anyio.sleep_forever()


def test_the_export_keeps_its_bytes(app: WxPartnerApp, control: TestClient) -> None:
    """Every section, small: the streamed answer is byte for byte the JSONResponse it was."""
    loaded = control.post(
        "/sandbox/scenario",
        json={
            "faults": [{"kind": "LATENCY", "latency_ms": 5, "note": '慢 "quoted" \u2028'}],
            "apply4subject": {
                "auto_policy": {"outcome": "reject", "after_queries": 2},
                "applyments": [
                    {
                        "mchid": SP_A,
                        "business_code": "a1",
                        "state": "APPLYMENT_STATE_REJECTED",
                        "reject_param": "merchant_name",
                        "reject_reason": "公司名称与工商局登记不一致",
                    },
                    {"mchid": SP_A, "business_code": "a2", "confirm_mchid_list": ["1900000109"]},
                ],
                "authorizations": [{"mchid": SP_A, "sub_mchid": "1900000110"}],
            },
            "webizpay": {"templates": [{"sp_mchid": SP_A, "card_template_id": "tpl_1"}]},
        },
    )
    assert loaded.status_code == 200, loaded.text
    _rows(app, 0, 15)
    answer = control.get("/sandbox/scenario")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    assert answer.content == _old_answer(app)
    data = answer.json()
    assert {"faults", "apply4subject", "webizpay", "recharge_employees"} <= data.keys()
    assert [len(g["employees"]) for g in data["recharge_employees"]] == [7, 7, 1]
    # an empty world's too
    control.post("/sandbox/reset", json={})
    assert control.get("/sandbox/scenario").content == _old_answer(app)


def test_the_export_is_sent_a_batch_of_rows_at_a_time(
    app: WxPartnerApp, control: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows are fetched and sent EXPORT_BATCH at a time (10 here): no chunk carries more, there is no
    Content-Length (it is not known before the end), and together they are the whole export."""
    monkeypatch.setattr(scenario, "EXPORT_BATCH", 10, raising=False)  # (before, one answer of everything)
    _rows(app, 95, 95)
    messages = control.portal.call(_messages, app)  # type: ignore[union-attr]
    start = messages[0]
    assert start["status"] == 200
    assert b"content-length" not in dict(start["headers"])
    chunks = [m["body"] for m in messages[1:] if m.get("body")]
    assert len(chunks) >= 2 * 95 // 10
    for chunk in chunks:
        assert chunk.count(b'"business_code"') <= 10 and chunk.count(b'"sp_openid"') <= 10
    assert b"".join(chunks) == _old_answer(app)


def test_the_export_reads_one_moment(app: WxPartnerApp, monkeypatch: pytest.MonkeyPatch) -> None:
    """What is written while the export is being sent is not in it (one read transaction: on
    PostgreSQL REPEATABLE READ, where a plain read took a new snapshot per statement)."""
    monkeypatch.setattr(scenario, "EXPORT_BATCH", 10)
    _rows(app, 50, 0)
    chunks = scenario.export_json(app.state.db)
    first = next(chunks)  # the applyments are being read
    assert b'"business_code":"bc0"' in first
    with app.state.db.write() as conn:  # meanwhile, through another connection
        conn.execute(
            apply4subject_authorizations.insert().values(
                mchid=SP_A, sub_mchid=SUB_A, applyment_id=None, authorized_at=T0
            )
        )
        conn.execute(sa.update(apply4subject_applyments).values(state="APPLYMENT_STATE_CANCELED"))
    rest = b"".join(chunks)
    exported = json.loads(first + rest)["apply4subject"]
    assert "authorizations" not in exported
    assert {a["state"] for a in exported["applyments"]} == {"APPLYMENT_STATE_WAITTING_FOR_AUDIT"}
    assert "authorizations" in scenario.export_scenario(app.state.db)["apply4subject"]


def test_an_export_the_client_stops_reading_ends_its_transaction(app: WxPartnerApp) -> None:
    """A generator closed half-way (the client went away) ends its read transaction: a write that
    needs every reader gone (SQLite's RESTART checkpoint; here simply the next export) goes on."""
    _rows(app, 30, 0)
    chunks = scenario.export_json(app.state.db)
    next(chunks)
    chunks.close()
    assert len(scenario.export_scenario(app.state.db)["apply4subject"]["applyments"]) == 30


def test_a_stalled_client_is_given_up_on_and_never_told_the_answer_was_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """server/streaming.py: a client that takes nothing for STALL_SECONDS has the generator closed
    (its transaction ends) and, should it come back, the answer is cut short, never ended as if whole."""
    import anyio

    from wxpartner.server import streaming

    monkeypatch.setattr(streaming, "STALL_SECONDS", 0.3)
    monkeypatch.setattr(streaming, "QUEUED", 1)
    closed: list[bool] = []

    def chunks() -> Any:
        try:
            for i in range(100):
                yield b"x%d," % i
        finally:
            closed.append(True)

    async def main() -> None:
        response = await streaming.streamed(chunks(), "application/json")
        body = response.body_iterator
        assert await body.__anext__() == b"x0,"
        for _ in range(100):  # the producer gives up (a condition, not a time: polled)
            if closed:
                break
            await anyio.sleep(0.1)
        assert closed == [True]
        with pytest.raises(ConnectionAbortedError):
            async for _ in body:
                pass

    anyio.run(main)
