"""Key modes per merchant (protocol.md §7): which WeChat Pay key signs responses, the platform-certificate
download, and platform key rotation/retirement through the sandbox control API."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from conftest import SANDBOX_TOKEN
from support import SP_A, SP_B, SP_C, SUB_A, ApiClient, World
from test_callbacks import Receiver, deliver, enqueue, frozen, receiver, set_notify_url  # noqa: F401
from wxpartner.client import Client
from wxpartner.client.errors import VerificationError
from wxpartner.protocol import keys as k
from wxpartner.protocol.crypto import aes_gcm_decrypt
from wxpartner.protocol.messages import response_message
from wxpartner.protocol.signing import verify
from wxpartner.protocol.times import parse_rfc3339
from wxpartner.server.app import WxPartnerApp
from wxpartner.store.registry import PlatformKeyRow

CERTS = "/v3/certificates"
AUTH = {"Authorization": f"Bearer {SANDBOX_TOKEN}"}


def platform_keys(http: TestClient) -> dict[str, dict[str, Any]]:
    resp = http.get("/sandbox/platform-keys", headers=AUTH)
    assert resp.status_code == 200, resp.text
    return {row["key_id"]: row for row in resp.json()["data"]}


def assert_signed_by(resp: httpx.Response, http: TestClient, key_id: str) -> None:
    """Verify with the public key the control API publishes for ``key_id`` (not the test world's)."""
    h = resp.headers
    assert h["Wechatpay-Serial"] == key_id
    row = platform_keys(http)[key_id]
    public = k.load_public_key((row["certificate"] or row["public_key"]).encode())
    message = response_message(h["Wechatpay-Timestamp"], h["Wechatpay-Nonce"], resp.content)
    assert verify(public, message, h["Wechatpay-Signature"])


def test_public_key_mode_signs_with_pub_key_id(client_a: ApiClient, http: TestClient, world: World) -> None:
    resp = client_a.get(CERTS)
    # /v3/certificates does not exist for a public-key-mode merchant: a signed 404.
    assert resp.status_code == 404
    assert resp.json()["code"] == "RESOURCE_NOT_EXISTS" and "public-key mode" in resp.json()["message"]
    assert resp.headers["Wechatpay-Serial"] == world.platform_pub.key_id
    assert resp.headers["Wechatpay-Serial"].startswith("PUB_KEY_ID_")
    assert_signed_by(resp, http, world.platform_pub.key_id)
    # naming a platform certificate does not switch a public-key merchant to it
    resp = client_a.get(CERTS, wechatpay_serial=world.platform_cert.key_id)
    assert resp.headers["Wechatpay-Serial"] == world.platform_pub.key_id


def test_certificate_mode_signs_with_platform_certificate(
    client_b: ApiClient, http: TestClient, world: World
) -> None:
    resp = client_b.get(CERTS)
    assert resp.status_code == 200
    assert resp.headers["Wechatpay-Serial"] == world.platform_cert.key_id
    assert_signed_by(resp, http, world.platform_cert.key_id)
    # naming the public key does not switch a certificate merchant to it either
    resp = client_b.get(CERTS, wechatpay_serial=world.platform_pub.key_id)
    assert resp.headers["Wechatpay-Serial"] == world.platform_cert.key_id


def test_certificate_download_decrypts_with_apiv3_key(client_b: ApiClient, world: World) -> None:
    resp = client_b.get(CERTS + "?algorithm_type=RSA")
    assert resp.status_code == 200
    [item] = resp.json()["data"]
    assert item["serial_no"] == world.platform_cert.key_id
    enc = item["encrypt_certificate"]
    assert enc["algorithm"] == "AEAD_AES_256_GCM" and enc["associated_data"] == "certificate"
    assert len(enc["nonce"]) == 12
    pem = aes_gcm_decrypt(
        world.merchants[SP_B].apiv3_key, enc["nonce"], enc["associated_data"], enc["ciphertext"]
    )
    assert pem == world.platform_cert.certificate_pem
    cert = k.load_certificate(pem)
    assert k.certificate_serial(cert) == item["serial_no"]
    assert item["effective_time"].endswith("+08:00") and item["expire_time"].endswith("+08:00")
    assert abs(parse_rfc3339(item["effective_time"]).timestamp() - cert.not_valid_before_utc.timestamp()) < 1
    assert abs(parse_rfc3339(item["expire_time"]).timestamp() - cert.not_valid_after_utc.timestamp()) < 1
    # a wrong APIv3 key cannot open it
    with pytest.raises(ValueError):
        aes_gcm_decrypt("x" * 32, enc["nonce"], enc["associated_data"], enc["ciphertext"])


@pytest.mark.parametrize(
    ("serial_header", "expected"),
    [(None, "cert"), ("pub", "pub"), ("cert", "cert"), ("PUB_KEY_ID_0000000000000000000000000000", "cert")],
)
def test_migrating_merchant_signs_with_the_key_named(
    client_c: ApiClient, http: TestClient, world: World, serial_header: str | None, expected: str
) -> None:
    names = {"pub": world.platform_pub.key_id, "cert": world.platform_cert.key_id}
    header = names.get(serial_header or "", serial_header)
    resp = client_c.get(CERTS, wechatpay_serial=header)
    assert resp.status_code == 200, resp.text  # migrating merchants can still download certificates
    assert resp.headers["Wechatpay-Serial"] == names[expected]
    assert_signed_by(resp, http, names[expected])


def test_platform_certificate_rotation_and_retirement(
    client_b: ApiClient, http: TestClient, world: World
) -> None:
    old = world.platform_cert.key_id
    resp = http.post("/sandbox/platform-keys/rotate", json={"kind": "certificate"}, headers=AUTH)
    assert resp.status_code == 200, resp.text
    new = resp.json()["key_id"]
    assert resp.json()["kind"] == "certificate" and new != old and len(new) == 40

    # two overlapping certificates, newest first; responses now signed with the new one
    resp = client_b.get(CERTS, check=False)
    serials = [item["serial_no"] for item in resp.json()["data"]]
    assert serials == [new, old]
    assert_signed_by(resp, http, new)
    for item in resp.json()["data"]:
        enc = item["encrypt_certificate"]
        pem = aes_gcm_decrypt(world.merchants[SP_B].apiv3_key, enc["nonce"], "certificate", enc["ciphertext"])
        assert pem == platform_keys(http)[item["serial_no"]]["certificate"]

    retire = http.post(f"/sandbox/platform-keys/{old}/retire", headers=AUTH)
    assert retire.status_code == 200 and retire.json() == {"key_id": old, "retired": True}
    assert platform_keys(http)[old]["retired"] is True
    resp = client_b.get(CERTS, check=False)
    assert [item["serial_no"] for item in resp.json()["data"]] == [new]
    # a retired certificate can no longer be named in Wechatpay-Serial by a migrating merchant
    resp = ApiClient(http, world, SP_C).get(CERTS, wechatpay_serial=old, check=False)
    assert resp.headers["Wechatpay-Serial"] == new


def test_rotate_with_retire_in_one_call(client_b: ApiClient, http: TestClient, world: World) -> None:
    old = world.platform_cert.key_id
    resp = http.post("/sandbox/platform-keys/rotate", json={"retire": old}, headers=AUTH)
    assert resp.status_code == 200 and resp.json()["retired"] == old
    assert platform_keys(http)[old]["retired"] is True
    new = resp.json()["key_id"]
    resp = client_b.get(CERTS, check=False)
    assert [item["serial_no"] for item in resp.json()["data"]] == [new]
    assert_signed_by(resp, http, new)


@pytest.mark.parametrize(
    "body",
    [
        # found by an audit: answered 200 "retired": 5 though nothing was retired
        {"retire": 5},
        {"retire": ["x"]},
        {"retire": ""},
        {"kind": "certificate", "mchid": SP_A},  # a certificate is shared: the mchid was dropped silently
    ],
)
def test_rotate_refuses_a_mistyped_body_and_adds_no_key(http: TestClient, body: dict[str, Any]) -> None:
    before = platform_keys(http)
    resp = http.post("/sandbox/platform-keys/rotate", json=body, headers=AUTH)
    assert resp.status_code == 400 and resp.json()["code"] == "PARAM_ERROR", resp.text
    assert platform_keys(http) == before


def test_rotate_retiring_an_unknown_key_changes_nothing(
    client_b: ApiClient, http: TestClient, world: World
) -> None:
    """Found by an audit: answered 200 "retired": "NOPE" with the new key added and nothing retired."""
    before = platform_keys(http)
    resp = http.post("/sandbox/platform-keys/rotate", json={"retire": "NOPE"}, headers=AUTH)
    assert resp.status_code == 404 and resp.json()["code"] == "RESOURCE_NOT_EXISTS"
    assert "NOPE" in resp.json()["message"]
    assert platform_keys(http) == before  # the new key was not kept either: all or nothing
    assert client_b.get(CERTS).headers["Wechatpay-Serial"] == world.platform_cert.key_id


def test_merchant_public_key_rotation(client_a: ApiClient, http: TestClient, world: World) -> None:
    resp = http.post(
        "/sandbox/platform-keys/rotate", json={"kind": "public_key", "mchid": SP_A}, headers=AUTH
    )
    assert resp.status_code == 200
    own = resp.json()["key_id"]
    assert resp.json()["mchid"] == SP_A and resp.json()["retired"] is None
    assert own.startswith("PUB_KEY_ID_") and platform_keys(http)[own]["mchid"] == SP_A
    resp = client_a.get(CERTS, check=False)
    assert_signed_by(resp, http, own)
    # another public-key merchant keeps the shared key
    assert http.post(f"/sandbox/platform-keys/{own}/retire", headers=AUTH).status_code == 200
    resp = client_a.get(CERTS)
    assert resp.headers["Wechatpay-Serial"] == world.platform_pub.key_id


def test_rotation_control_errors(http: TestClient) -> None:
    resp = http.post("/sandbox/platform-keys/rotate", json={"kind": "sm2"}, headers=AUTH)
    assert resp.status_code == 400 and resp.json()["code"] == "PARAM_ERROR"
    resp = http.post("/sandbox/platform-keys/NO_SUCH_KEY/retire", headers=AUTH)
    assert resp.status_code == 404 and resp.json()["code"] == "RESOURCE_NOT_EXISTS"


def test_platform_keys_listing(http: TestClient, world: World) -> None:
    rows = platform_keys(http)
    pub, cert = rows[world.platform_pub.key_id], rows[world.platform_cert.key_id]
    assert pub["kind"] == "public_key" and pub["certificate"] is None
    assert cert["kind"] == "certificate" and cert["certificate"] == world.platform_cert.certificate_pem
    assert "private" not in str(rows).lower()  # private keys never leave the server


def test_a_database_error_while_following_a_rotation_keeps_the_keys_held(tmp_path: Any) -> None:
    """Found in review: a request that saw the change generation move re-read the platform keys outside
    the pipeline's error handling, so a database error there was a plain-text 500. The keys held so
    far go on signing, and the next request tries again."""
    from wxpartner.sandbox.bootstrap import ensure_platform_keys
    from wxpartner.server.keyring import KeyRing
    from wxpartner.store.db import Database

    db = Database(f"sqlite:///{tmp_path / 'k.sqlite3'}")
    try:
        db.migrate()
        ensure_platform_keys(db, tmp_path)
        ring = KeyRing(db)
        ring.follow("g1")
        held = {key.key_id for key in ring.all()}
        assert len(held) == 2
        with db.write() as conn:  # the next read of the keys fails, as in an outage
            conn.exec_driver_sql("ALTER TABLE platform_keys RENAME TO platform_keys_away")
        ring.follow("g2")  # no exception
        assert {key.key_id for key in ring._keys.values()} == held
        with db.write() as conn:
            conn.exec_driver_sql("ALTER TABLE platform_keys_away RENAME TO platform_keys")
            conn.exec_driver_sql("DELETE FROM platform_keys WHERE kind = 'certificate'")
        ring.follow("g2")  # tried again, and read this time
        assert [key.row.kind for key in ring._keys.values()] == ["public_key"]
    finally:
        db.dispose()


def rotate(http: TestClient, **body: Any) -> str:
    resp = http.post("/sandbox/platform-keys/rotate", json=body, headers=AUTH)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["key_id"])


def test_a_public_key_rotation_overlaps_until_the_old_key_is_retired(
    client_a: ApiClient, http: TestClient, world: World
) -> None:
    """Found in review: a public-key merchant was answered with its newest public key whatever its
    Wechatpay-Serial named, so the moment its key was rotated every client still holding the old one
    failed to verify, with no overlap as certificates have. The key the request names (one this merchant
    may use) signs; retiring it ends the overlap."""
    old = world.platform_pub.key_id  # the shared key SP_A was answered with so far
    first = rotate(http, kind="public_key", mchid=SP_A)
    assert_signed_by(client_a.get(CERTS, check=False, wechatpay_serial=old), http, old)
    assert_signed_by(client_a.get(CERTS, check=False, wechatpay_serial=first), http, first)
    assert_signed_by(client_a.get(CERTS, check=False), http, first)  # naming none: the newest
    # its own key rotated again: both of its own keys verify until one is retired
    second = rotate(http, kind="public_key", mchid=SP_A)
    for named in (first, second):
        assert_signed_by(client_a.get(CERTS, check=False, wechatpay_serial=named), http, named)
    third = rotate(http, kind="public_key", mchid=SP_A, retire=first)  # the first retired
    resp = client_a.get(CERTS, check=False, wechatpay_serial=first)
    assert_signed_by(resp, http, third)  # retired: no longer chosen, the newest signs
    assert_signed_by(client_a.get(CERTS, check=False, wechatpay_serial=second), http, second)


def test_a_public_key_merchant_cannot_pick_another_merchants_key(
    client_a: ApiClient, http: TestClient, world: World
) -> None:
    others = rotate(http, kind="public_key", mchid=SP_C)
    for named in (others, world.platform_cert.key_id, "PUB_KEY_ID_0000000000000000000000000000"):
        resp = client_a.get(CERTS, check=False, wechatpay_serial=named)
        assert_signed_by(resp, http, world.platform_pub.key_id)


def test_callbacks_during_a_public_key_rotation_are_signed_with_either_key_until_retirement(
    app: WxPartnerApp,
    frozen: TestClient,  # noqa: F811 (the fixture imported from test_callbacks)
    receiver: Receiver,  # noqa: F811
    world: World,
) -> None:
    """Found in review: callbacks went out signed with the newest key only, so a receiver that held the
    merchant's old public key failed every callback from the rotation on. A callback names no key: during
    the overlap each one is signed with one of the merchant's keys in force, at random, as during a
    migration, and once the old key is retired only the new one signs."""
    first = rotate(frozen, kind="public_key", mchid=SP_A)
    second = rotate(frozen, kind="public_key", mchid=SP_A)
    set_notify_url(frozen, SP_A, receiver.url)

    def serials(n: int) -> set[str]:
        for _ in range(n):
            enqueue(app, SP_A)
        sent = 0
        while sent < n:
            attempts = deliver(frozen)
            assert attempts, "not every callback was delivered"
            sent += len(attempts)
        requests, receiver.requests[:] = list(receiver.requests), []
        assert len(requests) == n
        published = platform_keys(frozen)
        for r in requests:  # each verifies with the key the control API publishes for its serial
            h = {name.lower(): value for name, value in r.headers.items()}
            public = k.load_public_key(published[h["wechatpay-serial"]]["public_key"].encode())
            message = response_message(h["wechatpay-timestamp"], h["wechatpay-nonce"], r.body)
            assert verify(public, message, h["wechatpay-signature"])
        return {r.headers["Wechatpay-Serial"] for r in requests}

    # either key at random: 40 sends all with one key would happen once in 5·10^11 runs
    assert serials(40) == {first, second}
    assert frozen.post(f"/sandbox/platform-keys/{first}/retire").status_code == 200
    assert serials(8) == {second}


def test_fields_encrypted_with_the_old_public_key_during_its_rotation_get_an_answer_it_verifies(
    app: WxPartnerApp, client_a: ApiClient, http: TestClient, world: World
) -> None:
    """The key a request's encrypted fields name decrypts them and signs the answer: before, a client
    that still encrypted with the merchant's old public key had its fields read and its answer signed
    with the new key, which it cannot verify. After the retirement the old key is refused (400)."""
    from apply4subject_support import BASE, make_body, set_roles, submit

    set_roles(app, world)  # SP_A (public-key mode) may call apply4subject as a channel merchant
    old = rotate(http, kind="public_key", mchid=SP_A)  # its own key, then a rotation of it
    new = rotate(http, kind="public_key", mchid=SP_A)
    holding_old = ApiClient(http, held_world(http, world, old), SP_A)  # encrypts with and verifies by it
    resp = submit(holding_old, make_body(holding_old, "rot_enc_1"), serial=old)
    assert resp.status_code == 200, resp.text
    assert_signed_by(resp, http, old)
    assert http.post(f"/sandbox/platform-keys/{old}/retire", headers=AUTH).status_code == 200
    body = make_body(holding_old, "rot_enc_2")
    resp = holding_old.post(BASE, body, wechatpay_serial=old, check=False)
    assert resp.status_code == 400 and resp.json()["code"] == "PARAM_ERROR", resp.text
    assert "retired" in resp.json()["detail"]["issue"]
    assert_signed_by(resp, http, new)


def held_world(http: TestClient, world: World, key_id: str) -> World:
    """The test world with ``key_id`` (from the control API) as the public key its clients hold."""
    row = platform_keys(http)[key_id]
    held = PlatformKeyRow(
        key_id, "public_key", row["mchid"], "", row["public_key"], None, 0.0, 0.0, False, 0.0
    )
    return dataclasses.replace(world, platform_pub=held)


def test_a_served_public_key_rotation_with_the_sdk_and_a_third_party_peer(
    tmp_path: Path, world: World
) -> None:
    """A merchant rehearses the rotation of its WeChat Pay public key against a served server: the SDK
    and wechatpayv3 (PyPI; in public-key mode it names its key id in every request) configured with the
    old key go on verifying after the rotation, as do ones configured with the new key; a receiver that
    holds both (KeySet.add_public_key) accepts every callback of the overlap; after the retirement only
    the new key verifies."""
    core_mod = pytest.importorskip("wechatpayv3.core")
    from live import start_live_server
    from receiver import start_receiver
    from webizpay_support import link_token

    m = world.merchants[SP_A]
    ranges = f"/v3/webizpay/avail-mch-ranges?sp_mchid={SP_A}"
    server = start_live_server(tmp_path / "live", world)
    hook = start_receiver()
    clients: list[Client] = []
    try:

        def sdk(key_id: str, pem: str) -> Client:
            client = Client(
                m.mchid,
                m.serial_no,
                m.private_key_pem,
                wechatpay_public_key=pem.encode(),
                wechatpay_public_key_id=key_id,
                apiv3_key=m.apiv3_key,
                download_certificates=False,
                base_url=server.url,
            )
            clients.append(client)
            return client

        def peer(key_id: str, pem: str) -> Any:
            core = core_mod.Core(
                mchid=m.mchid,
                cert_serial_no=m.serial_no,
                private_key=m.private_key_pem,
                apiv3_key=m.apiv3_key,
                public_key=pem,
                public_key_id=key_id,
            )
            core._gate_way = server.url  # only the host moves; its signing and verifying are its own
            return core

        def answered_by(client: Client) -> str:
            resp = client.request("GET", "/v3/webizpay/avail-mch-ranges", query={"sp_mchid": SP_A})
            return str(resp.verified_by)

        def own_key() -> tuple[str, str]:  # a new public key of SP_A's own: (id, PEM)
            with server.control() as control:
                made = control.post(
                    "/sandbox/platform-keys/rotate", json={"kind": "public_key", "mchid": SP_A}
                )
                key_id = made.json()["key_id"]
                keys = control.get("/sandbox/platform-keys").json()["data"]
            return key_id, next(key["public_key"] for key in keys if key["key_id"] == key_id)

        old_id, old_pem = own_key()  # the key SP_A has been using
        sdk_old, peer_old = sdk(old_id, old_pem), peer(old_id, old_pem)
        assert answered_by(sdk_old) == old_id
        assert peer_old.request(ranges)[0] == 200

        new_id, new_pem = own_key()  # its rotation
        sdk_new, peer_new = sdk(new_id, new_pem), peer(new_id, new_pem)
        # the overlap: each client is answered with the key it names, and verifies
        assert answered_by(sdk_old) == old_id and answered_by(sdk_new) == new_id
        assert peer_old.request(ranges)[0] == 200 and peer_new.request(ranges)[0] == 200

        # callbacks of the overlap, received by a client that took the new key and keeps the old one
        sdk_old.keys.add_public_key(new_pem.encode(), new_id)
        assert sdk_old.keys.public_key_ids == [new_id, old_id]
        assert answered_by(sdk_old) == new_id  # it now names the new key
        with server.control() as control, httpx.Client(base_url=server.url, timeout=30) as http:
            put = control.put(f"/sandbox/merchants/{SP_A}/notify-url", json={"notify_url": hook.url})
            assert put.status_code == 200, put.text
            api = ApiClient(http, world, SP_A)
            for n in range(6):
                start = api.post(
                    f"/v3/webizpay/users/rot_peer_{n}/authorization-url",
                    {"sp_mchid": SP_A, "sub_mchid": SUB_A, "application_type": "H5"},
                    wechatpay_serial=old_id,
                    check=False,  # signed with SP_A's own key, which the test world does not hold
                )
                assert start.status_code == 200, start.text
                token = link_token(start.json()["authorization_url"])
                consent = control.post("/sandbox/webizpay/authorizations", json={"token": token})
                assert consent.status_code == 200, consent.text
            for _ in range(50):  # its own poll may send some first; each pass returns once they are out
                if len(hook.deliveries) >= 6:
                    break
                assert control.post("/sandbox/callbacks/deliver").status_code == 200
        assert len(hook.deliveries) == 6
        for delivery in hook.deliveries:
            assert delivery.headers["Wechatpay-Serial"] in (old_id, new_id)
            note = sdk_old.parse_notification(delivery.headers, delivery.body)
            assert note.event_type == "WEBIZPAY.AUTHORIZED"

        with server.control() as control:
            assert control.post(f"/sandbox/platform-keys/{old_id}/retire").status_code == 200
        with pytest.raises(VerificationError) as refused:  # answered with the new key, which it lacks
            answered_by(sdk(old_id, old_pem))
        assert refused.value.reason == "unknown_serial"
        with pytest.raises(Exception, match="failed to verify the signature"):
            peer_old.request(ranges)
        assert answered_by(sdk_new) == new_id and peer_new.request(ranges)[0] == 200
        assert sdk_old.keys.drop_public_key(old_id) and sdk_old.keys.public_key_ids == [new_id]
    finally:
        for client in clients:
            client.close()
        hook.stop()
        server.stop()


def merchant_row(http: TestClient, mchid: str) -> dict[str, Any]:
    resp = http.get("/sandbox/merchants", headers=AUTH)
    return next(row for row in resp.json()["data"] if row["mchid"] == mchid)


def test_a_migration_from_certificates_to_the_public_key_step_by_step(
    app: WxPartnerApp,
    client_b: ApiClient,
    http: TestClient,
    world: World,
    frozen: TestClient,  # noqa: F811
    receiver: Receiver,  # noqa: F811
) -> None:
    """The migration a merchant rehearses (spec §7): certificate -> migrating -> public_key through
    PUT /sandbox/merchants/{mchid}/key-mode, which keeps the rest of the merchant (a scenario reload of
    its entry replaced its APIv3 key and notify URL with the entry's), with what each step answers."""
    cert, pub = world.platform_cert.key_id, world.platform_pub.key_id
    set_notify_url(frozen, SP_B, receiver.url)
    before = merchant_row(http, SP_B)
    assert before["key_mode"] == "certificate"

    def switch(mode: str) -> None:
        resp = http.put(f"/sandbox/merchants/{SP_B}/key-mode", json={"key_mode": mode}, headers=AUTH)
        assert resp.status_code == 200, resp.text
        assert resp.json()["mchid"] == SP_B and resp.json()["key_mode"] == mode
        assert merchant_row(http, SP_B) == {**before, "key_mode": mode}  # nothing else of it changed

    def callback_serials(n: int) -> set[str]:
        for _ in range(n):
            enqueue(app, SP_B)
        sent = 0
        while sent < n:
            attempts = deliver(frozen)
            assert attempts, "not every callback was delivered"
            sent += len(attempts)
        requests, receiver.requests[:] = list(receiver.requests), []
        return {r.headers["Wechatpay-Serial"] for r in requests}

    # certificate mode: certificates listed, every answer signed with the certificate
    listed = client_b.get(CERTS, wechatpay_serial=pub)
    assert [item["serial_no"] for item in listed.json()["data"]] == [cert]
    assert_signed_by(listed, http, cert)
    assert callback_serials(4) == {cert}

    switch("migrating")  # the answer follows the key the request names; callbacks use either
    assert_signed_by(client_b.get(CERTS, wechatpay_serial=pub), http, pub)
    assert_signed_by(client_b.get(CERTS, wechatpay_serial=cert), http, cert)
    assert_signed_by(client_b.get(CERTS), http, cert)
    assert callback_serials(40) == {cert, pub}

    switch("public_key")  # no certificates to download any more: a signed 404
    gone = client_b.get(CERTS, wechatpay_serial=cert, check=False)
    assert gone.status_code == 404 and gone.json()["code"] == "RESOURCE_NOT_EXISTS"
    assert_signed_by(gone, http, pub)
    assert callback_serials(4) == {pub}


@pytest.mark.parametrize(
    ("body", "issue"),
    [
        ({}, "required"),
        ({"key_mode": "pubkey"}, "not an allowed value"),
        ({"key_mode": ["migrating"]}, "not an allowed value"),
        ({"key_mode": None}, "not an allowed value"),
        ({"key_mode": "migrating", "mchid": SP_A}, "unknown field"),
    ],
)
def test_a_key_mode_switch_refuses_a_bad_body_and_changes_nothing(
    http: TestClient, body: dict[str, Any], issue: str
) -> None:
    before = merchant_row(http, SP_B)
    resp = http.put(f"/sandbox/merchants/{SP_B}/key-mode", json=body, headers=AUTH)
    assert resp.status_code == 400 and resp.json()["code"] == "PARAM_ERROR", resp.text
    assert resp.json()["detail"]["issue"].startswith(issue)
    assert merchant_row(http, SP_B) == before


def test_a_key_mode_switch_for_an_unknown_merchant_is_404(http: TestClient) -> None:
    resp = http.put("/sandbox/merchants/1999999999/key-mode", json={"key_mode": "migrating"}, headers=AUTH)
    assert resp.status_code == 404 and resp.json()["code"] == "RESOURCE_NOT_EXISTS"
    assert "1999999999" in resp.json()["message"]


def test_retiring_the_last_key_a_merchant_is_answered_with_is_refused(
    client_a: ApiClient, client_b: ApiClient, http: TestClient, world: World
) -> None:
    """Found by using it: retiring the only shared public key had public-key merchants answered with a
    platform certificate, and with no certificate left either a 200 went out unsigned. Such a
    retirement is now a 409 that changes nothing; replacing the key (rotate with "retire") works."""
    pub, cert = world.platform_pub.key_id, world.platform_cert.key_id
    refused = http.post(f"/sandbox/platform-keys/{pub}/retire", headers=AUTH)
    assert refused.status_code == 409 and refused.json()["code"] == "INVALID_REQUEST", refused.text
    assert (
        f"leaves merchant {SP_A} (public_key mode) without a WeChat Pay public key"
        in refused.json()["message"]
    )
    refused = http.post(f"/sandbox/platform-keys/{cert}/retire", headers=AUTH)
    assert refused.status_code == 409 and f"merchant {SP_B} (certificate mode)" in refused.json()["message"]
    assert not any(row["retired"] for row in platform_keys(http).values())
    assert client_a.get(CERTS, check=False).headers["Wechatpay-Serial"] == pub
    assert client_b.get(CERTS).headers["Wechatpay-Serial"] == cert

    # an own key's retirement falls back to the shared key: allowed
    own = rotate(http, kind="public_key", mchid=SP_A)
    assert http.post(f"/sandbox/platform-keys/{own}/retire", headers=AUTH).status_code == 200
    # once no merchant needs certificates, the last one may go; a switch back to certificates may not
    for mchid in (SP_B, SP_C):
        switched = http.put(
            f"/sandbox/merchants/{mchid}/key-mode", json={"key_mode": "public_key"}, headers=AUTH
        )
        assert switched.status_code == 200, switched.text
    assert http.post(f"/sandbox/platform-keys/{cert}/retire", headers=AUTH).status_code == 200
    back = http.put(f"/sandbox/merchants/{SP_B}/key-mode", json={"key_mode": "certificate"}, headers=AUTH)
    assert back.status_code == 409 and "needs a valid platform certificate" in back.json()["message"]
    assert merchant_row(http, SP_B)["key_mode"] == "public_key"
    assert rotate(http, kind="certificate")  # a certificate again: now the switch goes through
    back = http.put(f"/sandbox/merchants/{SP_B}/key-mode", json={"key_mode": "certificate"}, headers=AUTH)
    assert back.status_code == 200, back.text
