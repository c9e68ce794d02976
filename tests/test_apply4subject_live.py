"""apply4subject against a real `wxpartner serve` process over loopback: a client that encrypts its own
fields submits, queries (qrcode PNG after the audit), cancels with the seed's curl form, reads A4."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from apply4subject_support import BASE, SUB_X, make_body, serial_for
from live import LiveServer, start_live_server
from support import SP_A, ApiClient, World


@pytest.fixture
def channel_server(tmp_path: Path, world: World) -> Iterator[LiveServer]:
    # A later entry for SP_A in the scenario makes it a channel merchant (same keys, public-key mode).
    extra = {"merchants": [{"mchid": SP_A, "role": "channel", "key_mode": "public_key"}]}
    server = start_live_server(tmp_path / "live", world, scenario=extra)
    yield server
    server.stop()


def test_live_submit_query_cancel_state(channel_server: LiveServer, world: World) -> None:
    with httpx.Client(base_url=channel_server.url, timeout=10) as http, channel_server.control() as control:
        client = ApiClient(http, world, SP_A)
        resp = client.post(BASE, make_body(client, "live_1"), wechatpay_serial=serial_for(client))
        assert resp.status_code == 200, resp.text
        applyment_id = resp.json()["applyment_id"]

        ok = control.post(f"/sandbox/apply4subject/applyments/{applyment_id}/approve", json={})
        assert ok.status_code == 200, ok.text
        got = client.get(f"{BASE}?business_code=live_1").json()
        assert got["applyment_state"] == "APPLYMENT_STATE_WAITTING_FOR_CONFIRM_CONTACT"
        assert base64.b64decode(got["qrcode_data"])[:8] == b"\x89PNG\r\n\x1a\n"

        # seed 003 curl: business_code in the path, applyment_id in the query, empty signed body.
        resp = client.post(f"{BASE}/live_1/cancel?applyment_id={applyment_id}")
        assert resp.status_code == 204 and resp.content == b""
        assert resp.headers["Wechatpay-Signature"]
        # RFC 9110 §8.6: a 204 carries no Content-Length (nor a chunked body)
        assert "content-length" not in resp.headers and "transfer-encoding" not in resp.headers
        assert client.get(f"{BASE}?applyment_id={applyment_id}").json() == {
            "applyment_state": "APPLYMENT_STATE_CANCELED"
        }
        state = client.get(f"{BASE}/merchants/{SUB_X}/state")
        assert state.json() == {"authorize_state": "AUTHORIZE_STATE_UNAUTHORIZED"}
