"""Helpers for the apply4subject tests: caller roles, encrypted submissions, a tiny PNG decoder."""

from __future__ import annotations

import copy
import json
import struct
import zlib
from typing import Any

import httpx
from starlette.testclient import TestClient

from a1_support import IDNO, MOBILE, NAME, SUB_X, a1_body
from support import SP_A, SP_B, SP_C, ApiClient, World
from wxpartner.domain.merchants import KeyMode, Merchant, RelationKind, Role
from wxpartner.protocol.crypto import oaep_encrypt
from wxpartner.server.app import WxPartnerApp
from wxpartner.store import registry

CHANNEL_B = "1230000301"  # a channel merchant of the institution SP_B
SUB_Y = "1230000902"  # merchant numbers covered by applyments (and SUB_X)
BASE = "/v3/apply4subject/applyment"


def set_roles(app: WxPartnerApp, world: World) -> None:
    """SP_A becomes a channel merchant, SP_B a licensed institution with channel CHANNEL_B; SP_C stays
    a service provider (who may not call apply4subject)."""
    with app.state.db.write() as conn:
        for mchid, role in ((SP_A, Role.CHANNEL), (SP_B, Role.INSTITUTION)):
            keys = world.merchants[mchid]
            registry.upsert_merchant(
                conn, Merchant(mchid, f"Test {mchid}", role, keys.apiv3_key, keys.key_mode, None)
            )
        registry.upsert_merchant(conn, Merchant(CHANNEL_B, "", Role.CHANNEL, None, KeyMode.PUBLIC_KEY, None))
        registry.add_relation(conn, SP_B, CHANNEL_B, RelationKind.CHANNEL)


def serial_for(client: ApiClient) -> str:
    """The WeChat Pay key this merchant encrypts under: public key (SP_A), certificate (SP_B)."""
    w = client.world
    return w.platform_cert.key_id if client.mchid == SP_B else w.platform_pub.key_id


def enc(client: ApiClient, text: str) -> str:
    return oaep_encrypt(client.world.platform_public_key(serial_for(client)), text)


def make_body(
    client: ApiClient,
    code: str,
    *,
    name: str = NAME,
    mobile: str = MOBILE,
    idno: str = IDNO,
    confirm: list[str] | None = None,
    merchant_name: str = "深圳测试科技有限公司",
) -> dict[str, Any]:
    return a1_body(
        code,
        name=name,
        idno=idno,
        mobile=mobile,
        legal_person=name,
        confirm=confirm if confirm is not None else [SUB_X],
        merchant_name=merchant_name,
        channel_id=CHANNEL_B if client.mchid == SP_B else None,
        seal=lambda text: enc(client, text),
    )


def submit(
    client: ApiClient, body: dict[str, Any], *, path: str = BASE, serial: str | None = ""
) -> httpx.Response:
    """POST A1; serial "" = the right key id, None = no Wechatpay-Serial header."""
    return client.post(path, body, wechatpay_serial=serial_for(client) if serial == "" else serial)


def submit_ok(client: ApiClient, code: str, **kw: Any) -> int:
    resp = submit(client, make_body(client, code, **kw))
    assert resp.status_code == 200, resp.text
    applyment_id = resp.json()["applyment_id"]
    assert isinstance(applyment_id, int)
    return int(applyment_id)


def query(client: ApiClient, **params: Any) -> httpx.Response:
    qs = "&".join(f"{k}={v}" for k, v in params.items())
    return client.get(f"{BASE}?{qs}" if qs else BASE)


def state_of(client: ApiClient, applyment_id: int) -> str:
    resp = query(client, applyment_id=applyment_id)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["applyment_state"])


def act(control: TestClient, applyment_id: int, action: str, **body: Any) -> httpx.Response:
    return control.post(f"/sandbox/apply4subject/applyments/{applyment_id}/{action}", json=body)


def act_ok(control: TestClient, applyment_id: int, action: str, **body: Any) -> dict[str, Any]:
    resp = act(control, applyment_id, action, **body)
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()
    return data


def mutate(body: dict[str, Any], pointer: str, value: Any) -> dict[str, Any]:
    """A copy of body with the JSON pointer set to value (or removed when value is ...)."""
    out = copy.deepcopy(body)
    parts = pointer.strip("/").split("/")
    node: Any = out
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
    if value is ...:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value
    return out


def png_info(data: bytes) -> tuple[int, int, list[list[bool]]]:
    """(width, height, dark pixels) of a 1-bit greyscale PNG (what segno writes), decoded by hand."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    pos, idat, ihdr = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype, chunk = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(ctype + chunk) == crc, f"bad CRC in {ctype!r}"
        if ctype == b"IHDR":
            ihdr = chunk
        elif ctype == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, color, _c, _f, interlace = struct.unpack(">IIBBBBB", ihdr)
    assert (depth, color, interlace) == (1, 0, 0), "expected 1-bit greyscale, not interlaced"
    raw = zlib.decompress(idat)
    stride = (width + 7) // 8
    rows: list[list[bool]] = []
    prev = bytes(stride)
    for y in range(height):
        ftype = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):  # PNG unfiltering with 1 byte per "pixel" (bit depth 1)
            left = line[i - 1] if i else 0
            up, ul = prev[i], (prev[i - 1] if i else 0)
            if ftype == 1:
                line[i] = (line[i] + left) & 0xFF
            elif ftype == 2:
                line[i] = (line[i] + up) & 0xFF
            elif ftype == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif ftype == 4:
                p = left + up - ul
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - ul)
                pred = left if pa <= pb and pa <= pc else (up if pb <= pc else ul)
                line[i] = (line[i] + pred) & 0xFF
            else:
                assert ftype == 0, f"unknown PNG filter {ftype}"
        prev = bytes(line)
        rows.append([not (line[x // 8] >> (7 - x % 8)) & 1 for x in range(width)])
    return width, height, rows


def modules(rows: list[list[bool]], size: int, scale: int, border: int) -> list[list[bool]]:
    return [[rows[(border + r) * scale][(border + c) * scale] for c in range(size)] for r in range(size)]


def json_of(resp: httpx.Response) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(resp.content)
    return data


__all__ = ["SP_A", "SP_B", "SP_C"]
