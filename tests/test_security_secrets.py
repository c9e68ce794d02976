"""Secrets stay where they belong: the decrypted identity data of an applyment (apply4subject), a
merchant's APIv3 key, the sandbox token and a notify_url's password appear in no log record, no journal entry, no stored row (the
identity data), no control API answer other than the documented scenario export, no metric and no
dashboard page, after a submission, a refused submission and a signature mismatch."""

from __future__ import annotations

import json
import logging

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from apply4subject_support import make_body, serial_for, set_roles, submit
from conftest import SANDBOX_TOKEN
from support import APIV3_KEY, SP_A, ApiClient, World, sign_request
from test_security_dashboard import _crawl, _login
from wxpartner.server.app import WxPartnerApp

IDNO = "44030519871205433X"
MOBILE = "13912345678"
BAD_MOBILE = "139-secret-mobile"  # refused: the refusal must not echo it
RECEIVER_PASSWORD = "pw-Receiver-Secret"


def _rows(app: WxPartnerApp) -> str:
    meta = sa.MetaData()
    with app.state.db.read() as conn:
        meta.reflect(bind=conn)
        out = []
        for table in meta.sorted_tables:
            for row in conn.execute(sa.select(table)):
                out.append(f"{table.name}: {tuple(row)!r}")
    return "\n".join(out)


def test_identity_data_keys_and_token_stay_secret(
    app: WxPartnerApp,
    http: TestClient,
    world: World,
    client_a: ApiClient,
    control: TestClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    set_roles(app, world)
    caplog.set_level(logging.DEBUG)
    # A receiver behind basic auth: its password is shown as *** (shown_url) everywhere but the export.
    url = f"http://receiver:{RECEIVER_PASSWORD}@127.0.0.1:9/notify"
    assert control.put(f"/sandbox/merchants/{SP_A}/notify-url", json={"notify_url": url}).status_code == 200
    ok = submit(client_a, make_body(client_a, "secretBiz0001", idno=IDNO, mobile=MOBILE))
    assert ok.status_code == 200, ok.text
    refused = submit(client_a, make_body(client_a, "secretBiz0002", idno=IDNO, mobile=BAD_MOBILE))
    assert refused.status_code == 400, refused.text
    assert BAD_MOBILE not in refused.text and IDNO not in refused.text
    # A signature mismatch: the journal keeps the string the server verified (the body's ciphertext).
    body = json.dumps(make_body(client_a, "secretBiz0003", idno=IDNO, mobile=MOBILE)).encode()
    signed = sign_request(world.merchants[SP_A], "POST", "/v3/apply4subject/applyment", b"{}")
    headers = {**signed.headers, "Wechatpay-Serial": serial_for(client_a)}
    mismatch = http.post("/v3/apply4subject/applyment", content=body, headers=headers)
    assert mismatch.status_code == 401, mismatch.text

    answers = {
        path: control.get(path).text
        for path in (
            "/sandbox/journal",
            "/sandbox/apply4subject/applyments",
            f"/sandbox/apply4subject/applyments/{ok.json()['applyment_id']}",
            "/sandbox/merchants",
            "/sandbox/callbacks",
            "/metrics",
        )
    }
    del http.headers["Authorization"]
    _login(http)
    pages = _crawl(http, ["/dashboard"])
    logged = "\n".join(r.getMessage() + (str(r.exc_info) if r.exc_info else "") for r in caplog.records)
    stored = _rows(app)

    identity = {"id number": IDNO, "mobile": MOBILE, "refused mobile": BAD_MOBILE}
    keys = {"APIv3 key": APIV3_KEY, "sandbox token": SANDBOX_TOKEN, "receiver password": RECEIVER_PASSWORD}
    found = []
    for where, text in [("logs", logged), *answers.items(), *pages.items()]:
        found += [f"{name} in {where}" for name, value in {**identity, **keys}.items() if value in text]
    found += [f"{name} in the database" for name, value in identity.items() if value in stored]
    assert not found, found
    # What was checked saw the requests: the applyment, its refusal and the mismatch.
    assert len(pages) > 10 and "secretBiz0001" in "".join(pages.values())
    assert "secretBiz0001" in stored and "sign not match" in answers["/sandbox/journal"]
    assert any("apply4subject" in r.getMessage() for r in caplog.records), "no log record of the requests"
