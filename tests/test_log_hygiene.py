"""What a request can put into a log line: a path is cut (a 60 KiB path logged twice made a line of
120 KiB) and its control characters escaped (a decoded %1b is a terminal escape, %c2%85 a line break
to str.splitlines)."""

from __future__ import annotations

import json
import logging

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from support import ApiClient
from wxpartner.server import logs
from wxpartner.server.app import WxPartnerApp


def test_a_huge_path_makes_a_short_access_line(client_b: ApiClient, caplog: pytest.LogCaptureFixture) -> None:
    path = "/v3/" + "a" * 60_000
    with caplog.at_level(logging.INFO, logger="wxpartner.access"):
        resp = client_b.get(path, check=False)
    assert resp.status_code == 404
    record = next(r for r in caplog.records if r.name == "wxpartner.access")
    line = logs.JsonFormatter().format(record)
    assert len(line) < 4096, len(line)
    data = json.loads(line)
    assert data["path"] == path[:1024] + "…"  # as the journal's path column cuts it
    assert data["request_id"] == resp.headers["Request-ID"]


def test_shown_path_escapes_what_would_break_a_line() -> None:
    shown = logs.shown_path("/v3/a\r\nFAKE\x1b[31m\x85\u2028b")
    assert shown == "/v3/a\\r\\nFAKE\\x1b[31m\\x85\\u2028b"
    assert shown.isprintable() and len(shown.splitlines()) == 1
    assert logs.shown_path("/v3/ok?x=1") == "/v3/ok?x=1"


def test_decoded_control_characters_in_a_control_path_are_escaped_in_its_log_line(
    app: WxPartnerApp, control: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A database error in the control API logs the path; Starlette's is percent-decoded (its URL
    parsing drops CR, LF and tab, not ESC or NEL): ESC [1A ESC [2K would erase the line above on a
    terminal showing the log, and NEL splits it for str.splitlines."""
    with app.state.db.write() as conn:
        conn.execute(sa.text("DROP TABLE sandbox_faults"))
    with caplog.at_level(logging.ERROR, logger="wxpartner.control"):
        resp = control.get("/sandbox/faults/x%1b[1A%1b[2K%c2%85ERROR%20forged%20line")
    assert resp.status_code == 500 and resp.json()["code"] == "SYSTEM_ERROR"
    messages = [r.getMessage() for r in caplog.records if "control API" in r.getMessage()]
    assert messages, [r.getMessage() for r in caplog.records]
    assert all(m.isprintable() for m in messages), messages
    assert "x\\x1b[1A\\x1b[2K\\x85ERROR forged line" in messages[0]


def test_refusals_echo_a_huge_value_cut(client_b: ApiClient) -> None:
    """A refusal echoes what it refuses cut (protocol/detail.py: 64 characters; a path as the journal
    keeps it): an unknown mchid, serial_no or Authorization parameter, a Content-Type or a path of
    20 000 characters came back whole, so an answer (and the caller's log of it) grew with the request."""
    huge = "9" * 20_000
    answers = [
        client_b.get("/v3/certificates", mchid=huge, check=False),
        client_b.get("/v3/certificates", serial_no="A" * 20_000, check=False),
        client_b.get("/v3/" + "a" * 20_000, check=False),
        client_b.get(
            "/v3/certificates", headers={"Authorization": f'WECHATPAY2-SHA256-RSA2048 {"k" * 20_000}="v"'}
        ),
        client_b.post(
            "/v3/webizpay/users/user_0001/authorization-url",
            b"{}",
            headers={"Content-Type": "t/" + "x" * 20_000},
        ),
    ]
    assert [a.status_code for a in answers] == [401, 401, 404, 401, 400]
    for answer in answers:
        assert len(answer.content) < 2048, answer.text[:200]
