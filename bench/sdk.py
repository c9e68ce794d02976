"""The client side: one W3 ``issue`` through four clients against the same running server.

- ``wxpartner.client`` (the SDK: model validation, signing, retries policy, answer verification, typed
  decode) as users get it, on its own HTTP/1.1 (client/http11.py),
- the same SDK on httpx (``transport=httpx.HTTPTransport()``, as with a caller's own httpx client or a
  proxy): the pipeline's own cost beside the hand-written call, on the same HTTP,
- a hand-written minimal call (httpx, sign, send, verify the answer's signature, ``json.loads``): the
  least a correct client can do,
- ``wechatpayv3`` 2.0.4 from PyPI (signs, sends with ``requests``, verifies the answer).

The four run interleaved, one call each per round, so a noisy neighbour slows them alike; the order
is shuffled every round (seeded) because a call that always follows the same other client always
finds the caches in the same state: in a fixed order the SDK always came after wechatpayv3 (whose
``requests`` code had just evicted httpx's) and measured 1.14–1.17 of the hand-written call, against
1.08–1.10 shuffled.
Reported per call: wall time (includes the server) and the client process's own CPU time (the
client's cost alone); ratios are what matter.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from wxpartner.protocol import constants as c
from wxpartner.protocol import keys as k
from wxpartner.protocol.authorization import Authorization
from wxpartner.protocol.messages import request_message, response_message
from wxpartner.protocol.signing import new_nonce, sign, verify

from . import endpoints as ep


def _issue_body(stamp: str, i: int) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(ep.issue_call("x", stamp, i).body)
    return body


class HandWritten:
    """The minimal correct client: sign exactly the bytes sent, verify exactly the bytes received."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.base = info["base_url"]
        self.mchid = info["mchid"]
        self.serial = info["serial_no"]
        self.key = k.load_private_key(Path(info["private_key_path"]).read_bytes())
        self.wx_key = k.load_public_key(Path(info["wechatpay_public_key_path"]).read_bytes())
        self.http = httpx.Client()

    def issue(self, employee: str, body: dict[str, Any]) -> dict[str, Any]:
        path = f"/v3/webizpay/employees/{employee}/quota-cards"
        raw = json.dumps(body, separators=(",", ":")).encode()
        ts, nonce = str(int(time.time())), new_nonce()
        sig = sign(self.key, request_message("POST", path, ts, nonce, raw))
        headers = {
            "Authorization": Authorization(self.mchid, nonce, ts, self.serial, sig).header_value(),
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": "bench-hand/1",
        }
        r = self.http.post(self.base + path, content=raw, headers=headers)
        h = r.headers
        message = response_message(h[c.H_TIMESTAMP], h[c.H_NONCE], r.content)
        if r.status_code != 200 or not verify(self.wx_key, message, h[c.H_SIGNATURE]):
            raise RuntimeError(f"hand-written issue failed: {r.status_code} {r.text}")
        result: dict[str, Any] = json.loads(r.content)
        return result

    def close(self) -> None:
        self.http.close()


def _sdk(info: dict[str, Any], **options: Any) -> Any:
    from wxpartner.client import Client

    return Client.from_connection_info(info, **options)


def _wechatpayv3(info: dict[str, Any]) -> Any:
    from wechatpayv3.core import Core  # type: ignore[import-untyped]

    core = Core(
        mchid=info["mchid"],
        cert_serial_no=info["serial_no"],
        private_key=Path(info["private_key_path"]).read_text(),
        apiv3_key=info.get("apiv3_key") or "0" * 32,
        public_key=Path(info["wechatpay_public_key_path"]).read_text(),
        public_key_id=info["wechatpay_public_key_id"],
    )
    core._gate_way = info["base_url"]  # the only way to point it elsewhere
    return core


def measure(info: dict[str, Any], employee: str, calls: int = 150) -> dict[str, Any]:
    try:  # the dev extra pins it; without it the comparison runs with two clients
        from wechatpayv3.type import RequestType  # type: ignore[import-untyped]
    except ImportError:
        RequestType = None

    stamp = f"s{int(time.time())}"
    sdk = _sdk(info)
    sdk_httpx = _sdk(info, transport=httpx.HTTPTransport())
    hand = HandWritten(info)
    wpv3 = _wechatpayv3(info) if RequestType is not None else None
    path = f"/v3/webizpay/employees/{employee}/quota-cards"

    def run_sdk(body: dict[str, Any]) -> None:
        sdk.webizpay.quota_cards.issue(employee, body)

    def run_sdk_httpx(body: dict[str, Any]) -> None:
        sdk_httpx.webizpay.quota_cards.issue(employee, body)

    def run_hand(body: dict[str, Any]) -> None:
        hand.issue(employee, body)

    def run_wpv3(body: dict[str, Any]) -> None:
        assert wpv3 is not None
        status, _ = wpv3.request(path, method=RequestType.POST, data=body)
        if status != 200:
            raise RuntimeError(f"wechatpayv3 issue failed: {status}")

    runners: dict[str, Callable[[dict[str, Any]], None]] = {
        "sdk": run_sdk,
        "sdk_on_httpx": run_sdk_httpx,
        "hand": run_hand,
    }
    if wpv3 is not None:
        runners["wechatpayv3"] = run_wpv3
    wall = dict.fromkeys(runners, 0.0)
    cpu = dict.fromkeys(runners, 0.0)
    n = 0
    order = list(runners.items())
    shuffle = random.Random(9).shuffle
    try:
        for i in range(-5, calls):  # five warm-up rounds (connections, imports, key caches)
            shuffle(order)
            for j, (name, run) in enumerate(order):
                body = _issue_body(stamp, (i + 5) * len(order) + j)
                w0, c0 = time.perf_counter(), time.process_time()
                run(body)
                if i >= 0:
                    wall[name] += time.perf_counter() - w0
                    cpu[name] += time.process_time() - c0
            n += i >= 0
    finally:
        sdk.close()
        sdk_httpx.close()
        hand.close()
    per = {name: {"wall_ms": round(wall[name] / n * 1000, 3), "cpu_ms": round(cpu[name] / n * 1000, 3)}
           for name in runners}  # fmt: skip
    out: dict[str, Any] = {
        "calls": n,
        "per_call": per,
        "sdk_vs_hand_wall": round(wall["sdk"] / wall["hand"], 3),
        "sdk_vs_hand_cpu": round(cpu["sdk"] / cpu["hand"], 3),
        "sdk_on_httpx_vs_hand_cpu": round(cpu["sdk_on_httpx"] / cpu["hand"], 3),
        "wechatpayv3_vs_sdk_wall": None,
        "wechatpayv3_vs_sdk_cpu": None,
    }
    if wpv3 is not None:
        out["wechatpayv3_vs_sdk_wall"] = round(wall["wechatpayv3"] / wall["sdk"], 3)
        out["wechatpayv3_vs_sdk_cpu"] = round(cpu["wechatpayv3"] / cpu["sdk"], 3)
    else:
        out["note"] = "wechatpayv3 is not installed (pip install -e '.[dev]'): compared two clients"
    return out
