"""Keys in real use, in-process: certificate refresh on an unknown serial is done once however many
threads or tasks race for it; several merchants (each key mode) in one process; a server-produced
callback for a certificate-mode merchant parsed by the FastAPI/Starlette recipe of the docs; errors
that say which key, which serial and which bytes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from support import APIV3_KEY, SP_A, SP_B, SP_C, SUB_B, World
from webizpay_support import link_token
from wxpartner.client import AsyncClient, Client, Notification, RetryPolicy, SignError, VerificationError
from wxpartner.models import webizpay as w
from wxpartner.server.app import WxPartnerApp
from wxpartner.server.families import ROUTE_MODULES

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
FAST = RetryPolicy(max_attempts=2, backoff_base=0.01, backoff_max=0.02)
BASE = "http://testserver"


def options(world: World, mchid: str) -> dict[str, Any]:
    """SP_A: public key; SP_B: certificates downloaded with the APIv3 key; SP_C: both."""
    kw: dict[str, Any] = {"base_url": BASE, "retry": FAST, "refresh_backoff": 0}
    if mchid in (SP_A, SP_C):
        kw.update(
            wechatpay_public_key=world.platform_pub.public_key_pem,
            wechatpay_public_key_id=world.platform_pub.key_id,
        )
    if mchid in (SP_B, SP_C):
        kw["apiv3_key"] = APIV3_KEY
    return kw


def downloads_of(app: WxPartnerApp) -> list[str]:
    seen: list[str] = []
    app.state.observers.append(lambda ctx, req, resp, rid, op_id, *rest: seen.append(op_id))
    return seen


def rotate(control: TestClient) -> str:
    resp = control.post("/sandbox/platform-keys/rotate", json={"kind": "certificate"})
    assert resp.status_code == 200, resp.text
    return str(resp.json()["key_id"])


@SQLITE_ONLY
def test_threads_racing_after_a_rotation_refresh_once(
    app: WxPartnerApp, http: TestClient, control: TestClient, world: World
) -> None:
    seen = downloads_of(app)
    m = world.merchants[SP_B]
    client = Client(SP_B, m.serial_no, m.private_key, http_client=http, **options(world, SP_B))
    client.webizpay.users.authorization_state("user_0001", sp_mchid=SP_B, sub_mchid=SUB_B)
    assert seen.count("certificates.list") == 1
    new_serial = rotate(control)
    barrier = threading.Barrier(8)
    verified: list[str | None] = []
    errors: list[BaseException] = []

    def call() -> None:
        barrier.wait()
        try:
            resp = client.request("GET", "/v3/webizpay/avail-mch-ranges", query={"sp_mchid": SP_B})
            verified.append(resp.verified_by)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert verified == [new_serial] * 8
    assert seen.count("certificates.list") == 2  # one refresh for eight callers


@SQLITE_ONLY
def test_tasks_racing_for_certificates_download_once(
    app: WxPartnerApp, http: TestClient, control: TestClient, world: World
) -> None:
    seen = downloads_of(app)
    m = world.merchants[SP_B]

    async def main() -> None:
        async with AsyncClient(
            SP_B, m.serial_no, m.private_key, transport=httpx.ASGITransport(app=app), **options(world, SP_B)
        ) as client:

            async def call() -> None:
                state = await client.webizpay.users.authorization_state(
                    "user_0001", sp_mchid=SP_B, sub_mchid=SUB_B
                )
                assert state.user_id == "user_0001"

            async with anyio.create_task_group() as tg:  # first use: nothing downloaded yet
                for _ in range(8):
                    tg.start_soon(call)
            assert seen.count("certificates.list") == 1
            new_serial = await anyio.to_thread.run_sync(rotate, control)
            async with anyio.create_task_group() as tg:  # an unknown serial seen by 8 tasks at once
                for _ in range(8):
                    tg.start_soon(call)
            assert seen.count("certificates.list") == 2
            assert new_serial in client.keys.certificate_serials

    anyio.run(main)


@SQLITE_ONLY
def test_several_merchants_in_one_process(app: WxPartnerApp, http: TestClient, world: World) -> None:
    """One client per merchant, no global state: three key modes side by side, concurrently."""
    clients = {
        mchid: Client(
            mchid,
            world.merchants[mchid].serial_no,
            world.merchants[mchid].private_key,
            http_client=http,
            **options(world, mchid),
        )
        for mchid in (SP_A, SP_B, SP_C)
    }
    results: dict[str, str | None] = {}

    def call(mchid: str) -> None:
        resp = clients[mchid].request("GET", "/v3/webizpay/avail-mch-ranges", query={"sp_mchid": mchid})
        results[mchid] = resp.verified_by
        assert resp.json()["sp_mchid"] == mchid

    threads = [threading.Thread(target=call, args=(mchid,)) for mchid in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {
        SP_A: world.platform_pub.key_id,
        SP_B: world.platform_cert.key_id,
        SP_C: world.platform_pub.key_id,  # Wechatpay-Serial named the public key
    }
    assert clients[SP_A].keys.certificate_serials == []  # SP_B's download did not leak into SP_A
    assert clients[SP_B].keys.public is None


# -- a server-produced callback through the documented FastAPI/Starlette recipe ------------------------------
@pytest.fixture
def starlette_receiver(
    app: WxPartnerApp, world: World
) -> Iterator[tuple[str, list[Notification], list[BaseException]]]:
    """The docs' recipe, verbatim: ``await request.body()`` handed to ``AsyncClient.parse_notification``
    (certificate mode: the callback's serial is unknown until the client downloads certificates)."""
    events: list[Notification] = []
    refusals: list[BaseException] = []
    m = world.merchants[SP_B]
    aclient = AsyncClient(
        SP_B, m.serial_no, m.private_key, transport=httpx.ASGITransport(app=app), **options(world, SP_B)
    )

    async def notify(request: Request) -> Response:
        raw = await request.body()
        try:  # what a framework's parsed-and-re-serialized JSON would give: refused
            await aclient.parse_notification(request.headers, json.dumps(json.loads(raw)).encode())
        except VerificationError as exc:
            refusals.append(exc)
        try:
            events.append(await aclient.parse_notification(request.headers, raw))
        except VerificationError:
            return Response(status_code=401)
        return Response(status_code=204)

    receiver = Starlette(routes=[Route("/wxpay/notify", notify, methods=["POST"])])
    server = uvicorn.Server(
        uvicorn.Config(receiver, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        anyio.run(anyio.sleep, 0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/wxpay/notify", events, refusals
    server.should_exit = True
    thread.join(5)


@pytest.mark.skipif("wxpartner.server.control_callbacks" not in ROUTE_MODULES, reason="no callbacks")
@SQLITE_ONLY
def test_server_callback_parsed_by_the_starlette_recipe(
    http: TestClient,
    control: TestClient,
    world: World,
    starlette_receiver: tuple[str, list[Notification], list[BaseException]],
) -> None:
    url, events, refusals = starlette_receiver
    assert control.put(f"/sandbox/merchants/{SP_B}/notify-url", json={"notify_url": url}).status_code == 200
    m = world.merchants[SP_B]
    client = Client(SP_B, m.serial_no, m.private_key, http_client=http, **options(world, SP_B))
    link = client.webizpay.users.authorization_url(
        "user_cb", {"sp_mchid": SP_B, "sub_mchid": SUB_B, "application_type": "H5"}
    )
    consent = control.post(
        "/sandbox/webizpay/authorizations", json={"token": link_token(link.authorization_url)}
    )
    assert consent.status_code == 200, consent.text
    delivered = control.post("/sandbox/callbacks/deliver")
    assert delivered.status_code == 200, delivered.text
    assert len(events) == 1, delivered.text
    event = events[0]
    assert event.event_type == "WEBIZPAY.AUTHORIZED" and event.verified_by == world.platform_cert.key_id
    assert isinstance(event.resource, w.AuthorizedEvent)
    assert event.resource.employee_id == consent.json()["employee_id"] and event.resource.user_id == "user_cb"
    assert [getattr(r, "reason", None) for r in refusals] == ["bad_signature"]


# -- errors that say which key, which serial, which bytes ----------------------------------------------------
@SQLITE_ONLY
def test_errors_name_the_key_the_serial_and_the_signed_bytes(http: TestClient, world: World) -> None:
    m = world.merchants[SP_A]
    client = Client(SP_A, m.serial_no, m.private_key, http_client=http, **options(world, SP_A))
    with pytest.raises(VerificationError) as info:
        client.request(
            "GET", "/v3/webizpay/avail-mch-ranges", query={"sp_mchid": SP_A},
            headers={"Wechatpay-Sandbox-Fault": "BAD_SIGNATURE"},
        )  # fmt: skip
    err = info.value
    assert err.reason == "bad_signature" and err.serial == world.platform_pub.key_id
    assert err.key == f"WeChat Pay public key {world.platform_pub.key_id}"
    assert err.message is not None and err.message.endswith(b"\n") and err.message.count(b"\n") == 3
    assert "signed message" in str(err) and err.request_id and err.request_id in str(err)

    assert world.other_key is not None
    wrong = Client(SP_A, m.serial_no, world.other_key, http_client=http, **options(world, SP_A))
    with pytest.raises(SignError) as refused:
        wrong.webizpay.ranges.list(sp_mchid=SP_A)
    assert refused.value.status == 401 and refused.value.code == "SIGN_ERROR" and refused.value.request_id


def test_callback_verification_errors_list_the_trusted_keys(world: World) -> None:
    m = world.merchants[SP_C]
    client = Client(SP_C, m.serial_no, m.private_key, download_certificates=False, **options(world, SP_C))
    client.keys.add_certificates([world.platform_cert.certificate_pem])
    body = b'{"id":"x"}'
    headers = {
        "Wechatpay-Serial": "ABCDEF", "Wechatpay-Signature": "c2ln", "Wechatpay-Nonce": "n",
        "Wechatpay-Timestamp": str(int(client.config.clock())),
    }  # fmt: skip
    with pytest.raises(VerificationError) as info:
        client.parse_notification(headers, body)
    text = str(info.value)
    assert info.value.reason == "unknown_serial" and "'ABCDEF'" in text
    assert world.platform_pub.key_id in text and world.platform_cert.key_id in text
    client.close()


@pytest.mark.skipif("wxpartner.server.ops" not in ROUTE_MODULES, reason="no fault injection")
@SQLITE_ONLY
def test_failing_certificate_download_never_breaks_a_public_key_merchant(
    http: TestClient, control: TestClient, world: World
) -> None:
    """/v3/certificates answering 500 (or 404) must not break start-up or calls verified by the public
    key; the reason is kept and shown when a certificate really is needed."""
    rule = control.post("/sandbox/faults", json={"kind": "SYSTEM_ERROR", "operation": "certificates.list"})
    assert rule.status_code == 201, rule.text
    m = world.merchants[SP_C]
    client = Client(SP_C, m.serial_no, m.private_key, http_client=http, **options(world, SP_C))
    assert client.refresh_certificates() == []
    resp = client.request("GET", "/v3/webizpay/avail-mch-ranges", query={"sp_mchid": SP_C})
    assert resp.verified_by == world.platform_pub.key_id
    with pytest.raises(VerificationError) as info:  # a callback signed by a certificate we cannot fetch
        client.parse_notification(
            {"Wechatpay-Serial": world.platform_cert.key_id, "Wechatpay-Signature": "c2ln",
             "Wechatpay-Nonce": "n", "Wechatpay-Timestamp": str(int(client.config.clock()))},
            b"{}",
        )  # fmt: skip
    assert info.value.reason == "unknown_serial" and "500 SYSTEM_ERROR" in str(info.value)


# -- a man in the middle: genuine server answers, altered on the way -------------------------------------------
Answer = tuple[int, dict[str, str], bytes]


def _plain(headers: httpx.Headers) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in ("content-length", "content-encoding")}


class Mitm(httpx.BaseTransport):
    """Forwards to the real in-process server, then alters its genuine answer."""

    def __init__(self, upstream: httpx.Client, alter: Callable[[Answer], Answer]) -> None:
        self.upstream, self.alter = upstream, alter

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        # by its method and URL, not as the Request object: the in-process client may be an httpx2 one
        r = self.upstream.request(
            request.method, str(request.url), headers=request.headers.raw, content=request.content
        )
        status, headers, body = self.alter((r.status_code, _plain(r.headers), r.content))
        return httpx.Response(status, headers=headers, content=body)


class AsyncMitm(httpx.AsyncBaseTransport):
    def __init__(self, upstream: httpx.AsyncBaseTransport, alter: Callable[[Answer], Answer]) -> None:
        self.upstream, self.alter = upstream, alter

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        r = await self.upstream.handle_async_request(request)
        await r.aread()
        status, headers, body = self.alter((r.status_code, _plain(r.headers), r.content))
        return httpx.Response(status, headers=headers, content=body)


def _tamper(a: Answer) -> Answer:
    return a[0], a[1], a[2].replace(b'"sp_mchid"', b'"sp_mchid" ')


def _serial(a: Answer) -> Answer:
    return a[0], {**a[1], "wechatpay-serial": "PUB_KEY_ID_0000000000000000000000000000"}, a[2]


def _probe(a: Answer) -> Answer:
    return a[0], {**a[1], "wechatpay-signature": "WECHATPAY/SIGNTEST/" + a[1]["wechatpay-signature"]}, a[2]


def _unsigned(a: Answer) -> Answer:
    return a[0], {k: v for k, v in a[1].items() if k != "wechatpay-signature"}, a[2]


def _retimed(a: Answer) -> Answer:  # a fresher-looking timestamp, still inside the window
    return a[0], {**a[1], "wechatpay-timestamp": str(int(a[1]["wechatpay-timestamp"]) + 60)}, a[2]


MITM = [
    (_tamper, "bad_signature"),
    (_serial, "unknown_serial"),
    (_probe, "probe"),
    (_unsigned, "missing_header"),
    (_retimed, "bad_signature"),  # the timestamp is signed too
]


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("alter", "reason"), MITM, ids=["tampered", "serial", "probe", "unsigned", "retimed"]
)
def test_altered_server_answers_are_refused_sync_and_async(
    app: WxPartnerApp, http: TestClient, world: World, alter: Callable[[Answer], Answer], reason: str
) -> None:
    m = world.merchants[SP_C]
    query = {"sp_mchid": SP_C}
    sync = Client(
        SP_C,
        m.serial_no,
        m.private_key,
        http_client=httpx.Client(transport=Mitm(http, alter)),
        **options(world, SP_C),
    )
    with pytest.raises(VerificationError) as info:
        sync.request("GET", "/v3/webizpay/avail-mch-ranges", query=query)
    assert info.value.reason == reason

    async def main() -> None:
        transport = AsyncMitm(httpx.ASGITransport(app=app), alter)
        async with AsyncClient(
            SP_C, m.serial_no, m.private_key, transport=transport, **options(world, SP_C)
        ) as ac:
            with pytest.raises(VerificationError) as ainfo:
                await ac.request("GET", "/v3/webizpay/avail-mch-ranges", query=query)
            assert ainfo.value.reason == reason

    anyio.run(main)


@SQLITE_ONLY
def test_genuine_answer_replayed_later_is_stale(http: TestClient, world: World) -> None:
    """A replay keeps the genuine timestamp: the signature holds, the ±300 s window refuses it."""
    captured: list[Answer] = []
    m = world.merchants[SP_A]
    recorder = Mitm(http, lambda a: captured.append(a) or a)  # type: ignore[func-returns-value]
    live = Client(
        SP_A, m.serial_no, m.private_key, http_client=httpx.Client(transport=recorder), **options(world, SP_A)
    )
    live.request("GET", "/v3/webizpay/avail-mch-ranges", query={"sp_mchid": SP_A})
    status, headers, body = captured[0]
    replay = httpx.MockTransport(lambda request: httpx.Response(status, headers=headers, content=body))
    later = Client(
        SP_A, m.serial_no, m.private_key, http_client=httpx.Client(transport=replay),
        clock=lambda: time.time() + 301, **options(world, SP_A),
    )  # fmt: skip
    with pytest.raises(VerificationError) as info:
        later.request("GET", "/v3/webizpay/avail-mch-ranges", query={"sp_mchid": SP_A})
    assert info.value.reason == "stale_timestamp" and "s behind local time" in str(info.value)
    now = Client(
        SP_A, m.serial_no, m.private_key, http_client=httpx.Client(transport=replay), **options(world, SP_A)
    )
    assert now.request("GET", "/v3/x").verified_by == world.platform_pub.key_id  # the same bytes, in time


@SQLITE_ONLY
def test_rotated_public_key_is_named_in_the_error(
    app: WxPartnerApp, http: TestClient, control: TestClient, world: World
) -> None:
    """A new WeChat Pay public key: no certificate download can help, and the error says what to do.
    (While the old key is in force, the client is answered with the key it names: retired here.)"""
    seen = downloads_of(app)
    body = {"kind": "public_key", "retire": world.platform_pub.key_id}
    resp = control.post("/sandbox/platform-keys/rotate", json=body)
    assert resp.status_code == 200, resp.text
    new_id = str(resp.json()["key_id"])
    m = world.merchants[SP_A]
    client = Client(
        SP_A, m.serial_no, m.private_key, http_client=http, apiv3_key=APIV3_KEY, **options(world, SP_A)
    )
    with pytest.raises(VerificationError) as info:  # the server signs with the new key
        client.request("GET", "/v3/webizpay/avail-mch-ranges", query={"sp_mchid": SP_A})
    err = info.value
    assert err.reason == "unknown_serial" and err.serial == new_id
    assert "wechatpay_public_key" in str(err) and world.platform_pub.key_id in str(err)
    assert seen.count("certificates.list") == 0  # /v3/certificates never lists public keys
