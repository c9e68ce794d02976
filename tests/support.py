"""Test helpers: a pre-built sandbox world (keys made once per session) and a minimal signing client.

The client here is deliberately tiny and independent of wxpartner.client, so protocol tests do not
depend on the SDK they also test.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import rsa

from wxpartner.domain.merchants import KeyMode, Merchant, RelationKind, Role
from wxpartner.protocol import keys as k
from wxpartner.protocol.authorization import Authorization
from wxpartner.protocol.messages import canonical_url, request_message, response_message
from wxpartner.protocol.signing import new_nonce, sign, verify
from wxpartner.sandbox.material import make_platform_certificate, make_platform_public_key
from wxpartner.store import registry
from wxpartner.store.db import Database
from wxpartner.store.registry import PlatformKeyRow

SP_A = "1230000001"  # service provider / platform, public-key mode
SP_B = "1230000002"  # service provider / platform, certificate mode
SP_C = "1230000003"  # migrating
SUB_A = "1230000101"
SUB_B = "1230000102"
SECOND_A = "1230000201"
SECOND_B = "1230000202"
APIV3_KEY = "0123456789abcdef0123456789abcdef"


@dataclass
class MerchantKeys:
    mchid: str
    private_key: rsa.RSAPrivateKey
    private_key_pem: str
    certificate_pem: str
    serial_no: str
    key_mode: KeyMode
    apiv3_key: str = APIV3_KEY


@dataclass
class World:
    platform_pub: PlatformKeyRow
    platform_cert: PlatformKeyRow
    merchants: dict[str, MerchantKeys] = field(default_factory=dict)
    other_key: rsa.RSAPrivateKey | None = None  # a key no merchant registered

    def platform_public_key(self, key_id: str) -> rsa.RSAPublicKey:
        for row in (self.platform_pub, self.platform_cert):
            if row.key_id == key_id:
                return k.load_public_key(row.public_key_pem.encode())
        raise KeyError(key_id)


def make_world() -> World:
    world = World(platform_pub=make_platform_public_key(), platform_cert=make_platform_certificate())
    for mchid, mode in ((SP_A, KeyMode.PUBLIC_KEY), (SP_B, KeyMode.CERTIFICATE), (SP_C, KeyMode.MIGRATING)):
        key = k.generate_private_key()
        cert = k.issue_certificate(key, mchid)
        world.merchants[mchid] = MerchantKeys(
            mchid, key, k.private_key_pem(key), k.certificate_pem(cert), k.certificate_serial(cert), mode
        )
    world.other_key = k.generate_private_key()
    return world


def seed(db: Database, world: World) -> None:
    db.migrate()
    with db.write() as conn:
        registry.add_platform_key(conn, world.platform_pub)
        registry.add_platform_key(conn, world.platform_cert)
        for m in world.merchants.values():
            registry.upsert_merchant(
                conn,
                Merchant(m.mchid, f"Test {m.mchid}", Role.SERVICE_PROVIDER, m.apiv3_key, m.key_mode, None),
            )
            pub = k.public_key_pem(m.private_key.public_key())
            registry.add_certificate(conn, m.mchid, m.serial_no, pub, m.certificate_pem)
        for child, role in (
            (SUB_A, Role.SUB_MERCHANT),
            (SUB_B, Role.SUB_MERCHANT),
            (SECOND_A, Role.SECOND_LEVEL),
            (SECOND_B, Role.SECOND_LEVEL),
        ):
            registry.upsert_merchant(conn, Merchant(child, "", role, None, KeyMode.PUBLIC_KEY, None))
        registry.add_relation(conn, SP_A, SUB_A, RelationKind.SUB_MERCHANT)
        registry.add_relation(conn, SP_B, SUB_B, RelationKind.SUB_MERCHANT)
        registry.add_relation(conn, SP_C, SUB_A, RelationKind.SUB_MERCHANT)
        registry.add_relation(conn, SP_A, SECOND_A, RelationKind.SECOND_LEVEL)
        registry.add_relation(conn, SP_B, SECOND_B, RelationKind.SECOND_LEVEL)


def clone_sqlite(template: Path, target: Path) -> str:
    shutil.copyfile(template, target)
    return f"sqlite:///{target}"


@dataclass
class Signed:
    method: str
    url: str
    body: bytes
    headers: dict[str, str]
    message: bytes


def sign_request(
    keys: MerchantKeys,
    method: str,
    url: str,
    body: Any = None,
    *,
    timestamp: int | None = None,
    nonce: str | None = None,
    wechatpay_serial: str | None = None,
    private_key: rsa.RSAPrivateKey | None = None,
    mchid: str | None = None,
    serial_no: str | None = None,
) -> Signed:
    if body is None:
        raw = b""
    elif isinstance(body, bytes):
        raw = body
    elif isinstance(body, str):
        raw = body.encode("utf-8")
    else:
        raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    parts = urlsplit(url)
    target = canonical_url(parts.path, parts.query)
    ts = str(timestamp if timestamp is not None else int(time.time()))
    nonce_str = nonce or new_nonce()
    message = request_message(method, target, ts, nonce_str, raw)
    signature = sign(private_key or keys.private_key, message)
    auth = Authorization(mchid or keys.mchid, nonce_str, ts, serial_no or keys.serial_no, signature)
    headers = {
        "Authorization": auth.header_value(),
        "Accept": "application/json",
        "User-Agent": "wxpartner-tests/1.0",
    }
    if raw:
        headers["Content-Type"] = "application/json"
    if wechatpay_serial:
        headers["Wechatpay-Serial"] = wechatpay_serial
    return Signed(method, url, raw, headers, message)


class ApiClient:
    """Signs requests as one merchant and checks every signed response against the platform keys."""

    def __init__(self, http: httpx.Client, world: World, mchid: str) -> None:
        self.http = http
        self.world = world
        self.keys = world.merchants[mchid]

    @property
    def mchid(self) -> str:
        return self.keys.mchid

    def request(
        self, method: str, url: str, body: Any = None, *, check: bool = True, **kw: Any
    ) -> httpx.Response:
        headers_extra = kw.pop("headers", None) or {}
        signed = sign_request(self.keys, method, url, body, **kw)
        headers = {**signed.headers, **headers_extra}
        resp = self.http.request(method, url, content=signed.body or None, headers=headers)
        if check and resp.headers.get("Wechatpay-Signature"):
            assert_signed(resp, self.world)
        return resp

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("GET", url, **kw)

    def post(self, url: str, body: Any = None, **kw: Any) -> httpx.Response:
        return self.request("POST", url, body, **kw)

    def delete(self, url: str, body: Any = None, **kw: Any) -> httpx.Response:
        return self.request("DELETE", url, body, **kw)


def assert_signed(resp: httpx.Response, world: World) -> None:
    h = resp.headers
    for name in (
        "Wechatpay-Timestamp",
        "Wechatpay-Nonce",
        "Wechatpay-Signature",
        "Wechatpay-Serial",
        "Request-ID",
    ):
        assert h.get(name), f"response lacks {name}"
    assert h["Wechatpay-Signature-Type"] == "WECHATPAY2-SHA256-RSA2048"
    assert abs(int(h["Wechatpay-Timestamp"]) - time.time()) < 300
    message = response_message(h["Wechatpay-Timestamp"], h["Wechatpay-Nonce"], resp.content)
    assert verify(world.platform_public_key(h["Wechatpay-Serial"]), message, h["Wechatpay-Signature"]), (
        "bad response signature"
    )


def in_one_window(burst: Callable[[], list[int]], attempts: int = 4) -> list[int]:
    """Run ``burst`` right after a whole second begins and only accept a run that ended inside that
    same second, so every call fell into one fixed one-second window (retry otherwise)."""
    for _ in range(attempts):
        now = time.time()
        time.sleep(1 - (now % 1) + 0.01)
        start = int(time.time())
        statuses = burst()
        if int(time.time()) == start:
            return statuses
    pytest.skip("the machine is too busy to send the burst within one second")


@contextlib.contextmanager
def statements_run(db: Database, *, in_writes_only: bool = False) -> Iterator[list[str]]:
    """The SQL of every statement run on ``db`` inside the block (on every pool). ``in_writes_only``:
    only those run inside a write transaction (``Database.write``): on PostgreSQL such a transaction
    costs a BEGIN and a COMMIT round trip of its own, which a statement run in autocommit does not."""
    seen: list[str] = []

    def record(conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        if not in_writes_only or conn.get_execution_options().get("wx_write"):
            seen.append(sql)

    for engine in db.engines:
        sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        for engine in db.engines:
            sa.event.remove(engine, "before_cursor_execute", record)


def statements_in_writes(db: Database) -> contextlib.AbstractContextManager[list[str]]:
    """``statements_run`` of the write transactions only."""
    return statements_run(db, in_writes_only=True)


def inconsistent_private_key_pem() -> str:
    """A well-formed RSA private key PEM whose CRT exponent does not match the key: it parses, and
    only cryptography's consistency check (skipped by ``load_private_key(validated=True)``) refuses it."""
    good = rsa.generate_private_key(public_exponent=65537, key_size=1024).private_numbers()
    bad = rsa.RSAPrivateNumbers(
        good.p, good.q, good.d, good.dmp1 + 2, good.dmq1, good.iqmp, good.public_numbers
    ).private_key(unsafe_skip_rsa_key_validation=True)
    return k.private_key_pem(bad)
