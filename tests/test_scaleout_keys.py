"""Platform-key rotation made through one host's control API, seen by another host over the same
PostgreSQL database at its next request (not a refresh interval later): both sign with the new key and
neither offers the retired one, so a client that took its keys from either host verifies both."""

from __future__ import annotations

import itertools
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from live import LiveServer, start_live_server
from pg import PgServer, create_database, drop_database
from receiver import start_receiver
from support import SP_A, SP_B, SUB_A, ApiClient, World
from webizpay_support import link_token
from wxpartner.protocol import keys as k
from wxpartner.protocol.messages import response_message
from wxpartner.protocol.signing import verify
from wxpartner.sandbox.material import make_platform_public_key
from wxpartner.store import registry
from wxpartner.store.db import Database

pytestmark = pytest.mark.slow


def _verifies_with_keys_of(host: LiveServer, resp: httpx.Response) -> bool:
    """The answer verifies with the platform keys ``host`` offers (what a client downloaded there)."""
    with host.control() as control:
        offered = {key["key_id"]: key for key in control.get("/sandbox/platform-keys").json()["data"]}
    key = offered[resp.headers["Wechatpay-Serial"]]
    assert not key["retired"], key
    h = resp.headers
    message = response_message(h["Wechatpay-Timestamp"], h["Wechatpay-Nonce"], resp.content)
    return verify(k.load_public_key(key["public_key"].encode()), message, h["Wechatpay-Signature"])


_names = itertools.count()


def test_a_certificate_rotated_on_one_host_is_used_by_the_other_at_once(
    hosts: tuple[LiveServer, LiveServer], world: World
) -> None:
    a, b = hosts
    with httpx.Client(base_url=b.url, timeout=30) as http:
        on_b = ApiClient(http, world, SP_B)  # certificate mode: signed with the newest certificate
        before = on_b.get("/v3/certificates")  # B has just loaded its keys
        assert before.status_code == 200, before.text
        assert before.headers["Wechatpay-Serial"] == world.platform_cert.key_id
        with a.control() as control:
            rotated = control.post(
                "/sandbox/platform-keys/rotate",
                json={"kind": "certificate", "retire": world.platform_cert.key_id},
            )
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()["key_id"]
        after = on_b.get("/v3/certificates", check=False)
    assert after.status_code == 200, after.text
    assert after.headers["Wechatpay-Serial"] == new
    assert [c["serial_no"] for c in after.json()["data"]] == [new]
    assert _verifies_with_keys_of(a, after)


def test_a_public_key_rotated_on_one_host_is_used_by_the_other_at_once(
    hosts: tuple[LiveServer, LiveServer], world: World
) -> None:
    a, b = hosts
    with httpx.Client(base_url=b.url, timeout=30) as http:
        on_b = ApiClient(http, world, SP_A)  # public-key mode
        before = on_b.get(f"/v3/webizpay/avail-mch-ranges?sp_mchid={SP_A}")
        assert before.status_code == 200, before.text
        assert before.headers["Wechatpay-Serial"] == world.platform_pub.key_id
        with a.control() as control:
            rotated = control.post(
                "/sandbox/platform-keys/rotate",
                json={"kind": "public_key", "retire": world.platform_pub.key_id},
            )
        assert rotated.status_code == 200, rotated.text
        after = on_b.get(f"/v3/webizpay/avail-mch-ranges?sp_mchid={SP_A}", check=False)
    assert after.status_code == 200, after.text
    assert after.headers["Wechatpay-Serial"] == rotated.json()["key_id"]
    assert _verifies_with_keys_of(a, after)


def test_a_merchants_public_key_rotation_overlaps_on_every_host_until_retired_on_one(
    hosts: tuple[LiveServer, LiveServer], world: World
) -> None:
    """A merchant's own public key rotated through host A: host B answers a request naming the old key
    with the old key and one naming the new key with the new one (the overlap), and once A retires the
    old key B's next answer to a request still naming it comes signed with the new key."""
    a, b = hosts
    path = f"/v3/webizpay/avail-mch-ranges?sp_mchid={SP_A}"

    def own_key() -> str:
        with a.control() as control:
            made = control.post("/sandbox/platform-keys/rotate", json={"kind": "public_key", "mchid": SP_A})
        assert made.status_code == 200, made.text
        return str(made.json()["key_id"])

    with httpx.Client(base_url=b.url, timeout=30) as http:
        on_b = ApiClient(http, world, SP_A)  # public-key mode; answers checked below, not by the world's keys
        old = own_key()  # the key SP_A has been using
        assert on_b.get(path, wechatpay_serial=old, check=False).headers["Wechatpay-Serial"] == old
        new = own_key()  # its rotation
        named_old = on_b.get(path, wechatpay_serial=old, check=False)
        named_new = on_b.get(path, wechatpay_serial=new, check=False)
        with a.control() as control:
            assert control.post(f"/sandbox/platform-keys/{old}/retire").status_code == 200
        after = on_b.get(path, wechatpay_serial=old, check=False)
    assert [r.status_code for r in (named_old, named_new, after)] == [200, 200, 200]
    assert named_old.headers["Wechatpay-Serial"] == old
    assert named_new.headers["Wechatpay-Serial"] == new and _verifies_with_keys_of(a, named_new)
    assert after.headers["Wechatpay-Serial"] == new and _verifies_with_keys_of(a, after)


def test_one_scenario_loaded_through_both_hosts_at_once_loads_everywhere(
    hosts: tuple[LiveServer, LiveServer],
) -> None:
    """A scenario's load looks before it inserts (a platform key it names may be there already): copies
    loaded at once through two hosts used to both find a new key absent, and all but one failed on its
    primary key (500). Loads now run one after the other."""
    failed: list[str] = []
    for _ in range(3):
        row = make_platform_public_key()
        scenario = {
            "platform_keys": [
                {"kind": "public_key", "key_id": row.key_id, "private_key": row.private_key_pem}
            ]
        }

        def load(i: int, scenario: dict[str, object] = scenario) -> httpx.Response:
            with hosts[i % 2].control() as control:
                return control.post("/sandbox/scenario", json=scenario)

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(load, range(8)))
        failed += [f"{r.status_code} {r.text[:200]}" for r in answers if r.status_code != 200]
        with hosts[1].control() as control:
            keys = [k["key_id"] for k in control.get("/sandbox/platform-keys").json()["data"]]
        assert keys.count(row.key_id) == 1
    assert not failed, failed


def test_callbacks_are_signed_with_a_key_rotated_through_another_host_at_once(
    tmp_path: Path, world: World, pg_server: PgServer | None
) -> None:
    """Host B delivers callbacks; the platform public key is rotated (the old one retired) by another
    host, here the test writing to the shared database as that host's control API does. B's next
    callback is signed with the new key, where it used the retired one for up to 5 s."""
    if pg_server is None:
        pytest.skip("PostgreSQL is not installed here; .ci/run installs it")
    name = f"wx_keys_cb_{next(_names)}"
    url = create_database(pg_server, name)
    b = start_live_server(tmp_path / "host-b", world, database_url=url)
    receiver = start_receiver()
    other_host = Database(url)
    try:
        with b.control() as control, httpx.Client(base_url=b.url, timeout=30) as http:
            put = control.put(f"/sandbox/merchants/{SP_A}/notify-url", json={"notify_url": receiver.url})
            assert put.status_code in (200, 204), put.text
            start = ApiClient(http, world, SP_A).post(  # B (re)reads its keys for this request
                f"/v3/webizpay/users/rot_cb_{time.time_ns()}/authorization-url",
                {"sp_mchid": SP_A, "sub_mchid": SUB_A, "application_type": "H5"},
            )
            assert start.status_code == 200, start.text
            new = make_platform_public_key()
            with other_host.write() as conn:
                registry.add_platform_key(conn, new)
                assert registry.retire_platform_key(conn, world.platform_pub.key_id)
            done = control.post(  # the employee consents: WEBIZPAY.AUTHORIZED, delivered by B
                "/sandbox/webizpay/authorizations",
                json={"token": link_token(start.json()["authorization_url"])},
            )
            assert done.status_code == 200, done.text
            # sent now (B's own poll may take it first; this returns once it is out), well inside the
            # 5 s after which B would have re-read its keys anyway
            assert control.post("/sandbox/callbacks/deliver").status_code == 200
        assert receiver.deliveries, "no callback delivered"
        headers = {k.lower(): v for k, v in receiver.deliveries[0].headers.items()}
        assert headers["wechatpay-serial"] == new.key_id
    finally:
        receiver.stop()
        other_host.dispose()
        b.stop()
        drop_database(pg_server, name)
