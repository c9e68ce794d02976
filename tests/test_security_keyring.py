"""A ``Wechatpay-Serial`` that names no WeChat Pay key (a client pinned to a stale ID, or an attacker)
costs no read of the platform keys per request: the key ring reads the table again only once the keys'
change word moved (server/keyring.py). A key added through another process or host is still found by
the next request that names it."""

from __future__ import annotations

import httpx
import pytest
from starlette.testclient import TestClient

from live import LiveServer
from support import SP_A, ApiClient, World, statements_run
from wxpartner.protocol import keys as k
from wxpartner.protocol.messages import response_message
from wxpartner.protocol.signing import verify
from wxpartner.sandbox.material import make_platform_public_key
from wxpartner.server.app import WxPartnerApp
from wxpartner.store import registry
from wxpartner.store.db import Database

PATH = f"/v3/webizpay/avail-mch-ranges?sp_mchid={SP_A}"
STALE = "PUB_KEY_ID_0114232134912410000000000000"


def _signed_with(resp: httpx.Response, public_key_pem: str) -> bool:
    h = resp.headers
    message = response_message(h["Wechatpay-Timestamp"], h["Wechatpay-Nonce"], resp.content)
    return verify(k.load_public_key(public_key_pem.encode()), message, h["Wechatpay-Signature"])


def test_unknown_wechatpay_serial_reads_the_keys_once_not_per_request(
    app: WxPartnerApp, http: TestClient, client_a: ApiClient, database_url: str
) -> None:
    first = client_a.get(PATH, wechatpay_serial=STALE)  # may read the keys (nothing known yet)
    assert first.status_code == 200, first.text
    with statements_run(app.state.db) as seen:
        answers = [client_a.get(PATH, wechatpay_serial=STALE) for _ in range(20)]
    assert [r.status_code for r in answers] == [200] * 20
    reads = [s for s in seen if "platform_keys" in s]
    # The ring's periodic re-read (every REFRESH_SECONDS) may fall inside the loop once; before, every
    # request naming the unknown ID read the table again (20 reads).
    assert len(reads) <= 1, reads

    # A key added by another process (SQLite) or host (PostgreSQL), through its own connection: the
    # next request that names it is answered with it, although its ID was just missed.
    other = Database(database_url)
    try:
        new = make_platform_public_key(mchid=SP_A)
        with other.write() as conn:
            registry.add_platform_key(conn, new)
    finally:
        other.dispose()
    missed = client_a.get(PATH, wechatpay_serial=new.key_id, check=False)
    assert missed.status_code == 200, missed.text
    assert missed.headers["Wechatpay-Serial"] == new.key_id
    assert _signed_with(missed, new.public_key_pem)


@pytest.mark.slow
def test_a_key_added_on_one_host_is_found_by_the_other_after_misses(
    hosts: tuple[LiveServer, LiveServer], world: World
) -> None:
    a, b = hosts
    with httpx.Client(base_url=b.url, timeout=30) as http:
        on_b = ApiClient(http, world, SP_A)
        for _ in range(3):  # B remembers that the ID names nothing
            assert on_b.get(PATH, wechatpay_serial=STALE).status_code == 200
        with a.control() as control:
            made = control.post("/sandbox/platform-keys/rotate", json={"kind": "public_key", "mchid": SP_A})
        assert made.status_code == 200, made.text
        new = made.json()
        answer = on_b.get(PATH, wechatpay_serial=new["key_id"], check=False)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Wechatpay-Serial"] == new["key_id"]
    with a.control() as control:
        offered = {key["key_id"]: key for key in control.get("/sandbox/platform-keys").json()["data"]}
    assert _signed_with(answer, offered[new["key_id"]]["public_key"])
