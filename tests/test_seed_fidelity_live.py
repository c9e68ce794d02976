"""The five seed pages' own requests, sent to a real ``wxpartner serve`` over a loopback socket, byte for
byte as the seeds' clients write them (curl's header set for the curl examples, okhttp's and Go's for
the Java and Go demos: a body-less POST with no Content-Length at all, or with Content-Length 0 and
Content-Type: application/json), on both backends; each answer is held to the seed's example answer
field by field (keys and their order, JSON types, enums, time formats) and its signature verified.

tests/test_webizpay_seeds.py and tests/test_seed_fidelity.py hold the same examples in process (the
ASGI app, no socket); this file covers what only the served HTTP stack sees."""

from __future__ import annotations

import http.client
import json
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from a1_support import a1_body
from live import LiveServer, start_live_server
from support import SECOND_A, SP_A, SP_C, SUB_A, ApiClient, MerchantKeys, World, sign_request
from webizpay_support import authorize, issue_body
from wxpartner.protocol.crypto import oaep_encrypt
from wxpartner.protocol.messages import response_message
from wxpartner.protocol.signing import verify

OPENID = "oLTPCuCsfN3ABBz50VUZBNlHDbUU"  # seed 002
CURL = [("User-Agent", "curl/7.88.1"), ("Accept", "application/json")]  # curl's own header, then the seed's
OKHTTP = [("Accept-Encoding", "gzip"), ("Connection", "Keep-Alive"), ("User-Agent", "okhttp/4.12.0")]
GO = [("User-Agent", "Go-http-client/1.1"), ("Accept-Encoding", "gzip")]
SECONDS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+08:00")  # seeds 000, 001, 004
MILLIS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+08:00")  # seed 002

# The seeds' example answers (their values are the seeds' own; only the shapes are compared).
SEED_001 = {"sp_mchid": "12341234", "sub_mchid": "43214321", "out_card_no": "mch_card_123456",
            "employee_id": "WeBizPay_a968402a-73bb-43e2-9e1a-8371b0ca3d7c", "card_no": "1068019671702503425",
            "effective_begin_time": "2023-01-01T00:00+08:00", "effective_end_time": "2023-12-31T23:59:59+08:00"}  # fmt: skip
SEED_000 = {"sp_mchid": "12341234", "sub_mchid": "43214321",
            "employee_id": "WeBizPay_a968402a-73bb-43e2-9e1a-8371b0ca3d7c", "card_no": "1068019671702503425",
            "card_state": "DISABLED", "card_disabled_time": "2023-12-31T23:59:59+08:00"}  # fmt: skip
SEED_004 = {"sp_mchid": "12341234", "sub_mchid": "43214321", "user_id": "employee123",
            "authorization_state": "REVOKED", "authorization_revoked_time": "2023-12-31T23:59:59+08:00",
            "reason": "用户主动撤销"}  # fmt: skip
SEED_002 = {"create_time": "2015-05-20T13:29:35.120+08:00", "sp_openid": OPENID, "state": "DELETED",
            "sub_mchid": "1900001109", "update_time": "2015-05-21T13:29:35.120+08:00"}  # fmt: skip


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@pytest.fixture
def server(tmp_path: Path, world: World, database_url: str) -> Iterator[LiveServer]:
    # SP_C (migrating: signs with either WeChat Pay key) becomes a channel merchant for seed 003.
    extra = {"merchants": [{"mchid": SP_C, "role": "channel", "key_mode": "migrating"}]}
    live = start_live_server(tmp_path / "live", world, scenario=extra, database_url=database_url)
    yield live
    live.stop()


def send(
    server: LiveServer,
    keys: MerchantKeys,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes | None,
    *,
    length: bool = True,
) -> Answer:
    """POST ``target`` over a socket of its own with exactly these headers (Host first, Authorization
    signed over ``body`` or an empty one), a Content-Length only when ``length``."""
    signed = sign_request(keys, "POST", target, body or b"")
    host = urlsplit(server.url).netloc
    lines = [f"POST {target} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in headers)]
    lines.append(f"Authorization: {signed.headers['Authorization']}")
    if length:
        lines.append(f"Content-Length: {len(body or b'')}")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
    address = urlsplit(server.url)
    with socket.create_connection((address.hostname, address.port), timeout=15) as sock:
        sock.sendall(raw)
        resp = http.client.HTTPResponse(sock, method="POST")
        resp.begin()
        answer = Answer(resp.status, resp.headers, resp.read())
    return answer


def assert_signed(answer: Answer, world: World) -> None:
    h = answer.headers
    message = response_message(h["Wechatpay-Timestamp"], h["Wechatpay-Nonce"], answer.body)
    key = world.platform_public_key(h["Wechatpay-Serial"])
    assert verify(key, message, h["Wechatpay-Signature"]), "bad response signature"
    assert h["Wechatpay-Signature-Type"] == "WECHATPAY2-SHA256-RSA2048" and h["Request-ID"]


def assert_shape(got: dict[str, Any], seed: dict[str, Any], *, ordered: bool = True) -> None:
    """The seed's keys (in its order, when ``ordered``), each value of the seed's JSON type; times in the
    seed's format (its one time without seconds, seed 001's begin time, is a typo: README)."""
    assert (list(got) if ordered else sorted(got)) == (list(seed) if ordered else sorted(seed)), got
    for key, example in seed.items():
        assert type(got[key]) is type(example), (key, got[key])
        if key.endswith("_time"):
            assert (MILLIS if "." in example else SECONDS).fullmatch(got[key]), (key, got[key])


def test_the_seeds_requests_over_a_socket(server: LiveServer, world: World) -> None:
    sp = world.merchants[SP_A]
    serial = ("Wechatpay-Serial", world.platform_pub.key_id)
    with httpx.Client(base_url=server.url, timeout=15) as http, server.control() as control:
        client = ApiClient(http, world, SP_A)
        employee = authorize(client, control, "seedlive_user")

        # seed 001, the Java demo: okhttp's headers, Gson's compact body, okhttp's Content-Type
        body = json.dumps(issue_body("out_card_123456"), ensure_ascii=False, separators=(",", ":"))
        issued = send(
            server,
            sp,
            f"/v3/webizpay/employees/{employee}/quota-cards",
            [
                ("Accept", "application/json"),
                serial,
                ("Content-Type", "application/json; charset=utf-8"),
                *OKHTTP,
            ],
            body.encode(),
        )
        assert issued.status == 200, issued.body
        assert_signed(issued, world)
        card = issued.json()
        assert_shape(card, SEED_001)
        assert (card["sp_mchid"], card["sub_mchid"], card["out_card_no"]) == (SP_A, SUB_A, "out_card_123456")
        assert card["employee_id"] == employee and card["card_no"].isdigit()

        # seed 000, the curl example: its body as printed, whitespace and all
        cancel = f'{{\n    "sp_mchid" : "{SP_A}",\n    "sub_mchid" : "{SUB_A}",\n    "reason" : "商户主动作废"\n  }}'
        cancelled = send(
            server,
            sp,
            f"/v3/webizpay/employees/{employee}/quota-cards/{card['card_no']}/cancel",
            [*CURL, ("Content-Type", "application/json")],
            cancel.encode(),
        )
        assert cancelled.status == 200, cancelled.body
        assert_signed(cancelled, world)
        assert_shape(cancelled.json(), SEED_000)
        assert cancelled.json()["card_state"] == "DISABLED" and cancelled.json()["card_no"] == card["card_no"]

        # seed 000, the Go demo (json.Marshal's compact body) on a second card
        second = json.loads(
            send(server, sp, f"/v3/webizpay/employees/{employee}/quota-cards",
                 [*CURL, ("Content-Type", "application/json")],
                 json.dumps(issue_body("out_card_123457"), ensure_ascii=False).encode()).body
        )  # fmt: skip
        go_body = json.dumps(
            {"sp_mchid": SP_A, "sub_mchid": SUB_A, "reason": "商户主动作废"},
            ensure_ascii=False,
            separators=(",", ":"),
        )
        go = send(
            server,
            sp,
            f"/v3/webizpay/employees/{employee}/quota-cards/{second['card_no']}/cancel",
            [*GO, ("Accept", "application/json"), serial, ("Content-Type", "application/json")],
            go_body.encode(),
        )
        assert go.status == 200, go.body
        assert_shape(go.json(), SEED_000)

        # seed 004, the curl example: the singular /employee/ path
        revoke = f'{{\n    "sp_mchid" : "{SP_A}",\n    "sub_mchid" : "{SUB_A}"\n  }}'
        revoked = send(
            server, sp, f"/v3/webizpay/employee/{employee}/revoke", [*CURL, ("Content-Type", "application/json")],
            revoke.encode(),
        )  # fmt: skip
        assert revoked.status == 200, revoked.body
        assert_signed(revoked, world)
        assert_shape(revoked.json(), SEED_004)
        assert (
            revoked.json()["authorization_state"] == "REVOKED"
            and revoked.json()["user_id"] == "seedlive_user"
        )

        # seed 002: the curl example (Authorization and Accept, no body, no Content-Length at all), then
        # the Java demo (Content-Type: application/json, Wechatpay-Serial, Content-Length: 0)
        delete = (
            f"/v3/platsolution/ecommerce/recharge-employees/sub-mchid/{SECOND_A}/sp-openid/{OPENID}/delete"
        )
        for headers, length in (
            (CURL, False),
            ([("Accept", "application/json"), serial, ("Content-Type", "application/json"), *OKHTTP], True),
        ):
            added = client.post("/v3/platsolution/ecommerce/recharge-employees",
                                {"sub_mchid": SECOND_A, "sp_openid": OPENID})  # fmt: skip
            assert added.status_code == 200, added.text
            deleted = send(server, sp, delete, headers, None, length=length)
            assert deleted.status == 200, deleted.body
            assert_signed(deleted, world)
            assert_shape(deleted.json(), SEED_002, ordered=False)
            assert deleted.json()["state"] == "DELETED" and deleted.json()["sp_openid"] == OPENID

        # seed 003: the curl example's form (business_code in the path, applyment_id in the query), with
        # curl's headers and no body; then the same form as the Java demo sends it (Content-Type, Content-Length: 0)
        channel = ApiClient(http, world, SP_C)
        key_id = world.platform_pub.key_id
        for code, headers, length in (
            ("1230000003_10000", CURL, False),
            ("1230000003_10001", [("Accept", "application/json"), serial, ("Content-Type", "application/json"),
                                  *OKHTTP], True),
        ):  # fmt: skip
            sealed = a1_body(code, seal=lambda text: oaep_encrypt(world.platform_public_key(key_id), text))
            submitted = channel.post("/v3/apply4subject/applyment", sealed, wechatpay_serial=key_id)
            assert submitted.status_code == 200, submitted.text
            applyment_id = submitted.json()["applyment_id"]
            target = f"/v3/apply4subject/applyment/{code}/cancel?applyment_id={applyment_id}"
            answer = send(server, world.merchants[SP_C], target, headers, None, length=length)
            assert answer.status == 204 and answer.body == b"", answer.body
            assert answer.headers["Content-Length"] is None and answer.headers["Content-Type"] is None
            assert_signed(answer, world)
            state = channel.get(f"/v3/apply4subject/applyment?applyment_id={applyment_id}").json()
            assert state == {"applyment_state": "APPLYMENT_STATE_CANCELED"}
