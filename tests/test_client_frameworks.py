"""The callback recipes of the README's SDK section for Flask and Django, run verbatim on a callback the
server's outbox really delivered (captured byte for byte by a loopback receiver): the raw body verifies,
the framework's parsed-and-re-serialized JSON does not."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from receiver import Delivery, Receiver, start_receiver
from support import APIV3_KEY, SP_A, SUB_A, World
from webizpay_support import link_token
from wxpartner.client import Client, Notification, VerificationError
from wxpartner.models import webizpay as w
from wxpartner.server.families import ROUTE_MODULES

pytestmark = [
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
    pytest.mark.skipif("wxpartner.server.control_callbacks" not in ROUTE_MODULES, reason="no callbacks"),
]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = start_receiver()
    yield rec
    rec.stop()


@pytest.fixture
def delivered(
    http: TestClient, control: TestClient, world: World, receiver: Receiver
) -> tuple[Client, Delivery]:
    """A WEBIZPAY.AUTHORIZED callback produced and delivered by the server, and the merchant's client."""
    assert (
        control.put(f"/sandbox/merchants/{SP_A}/notify-url", json={"notify_url": receiver.url}).status_code
        == 200
    )
    m = world.merchants[SP_A]
    client = Client(
        SP_A, m.serial_no, m.private_key, base_url="http://testserver", http_client=http, apiv3_key=APIV3_KEY,
        wechatpay_public_key=world.platform_pub.public_key_pem, wechatpay_public_key_id=world.platform_pub.key_id,
    )  # fmt: skip
    link = client.webizpay.users.authorization_url(
        "user_framework", {"sp_mchid": SP_A, "sub_mchid": SUB_A, "application_type": "H5"}
    )
    consent = control.post(
        "/sandbox/webizpay/authorizations", json={"token": link_token(link.authorization_url)}
    )
    assert consent.status_code == 200, consent.text
    assert control.post("/sandbox/callbacks/deliver").status_code == 200
    assert len(receiver.deliveries) == 1
    return client, receiver.deliveries[0]


def check(event: Notification) -> None:
    assert event.event_type == "WEBIZPAY.AUTHORIZED"
    assert isinstance(event.resource, w.AuthorizedEvent) and event.resource.user_id == "user_framework"


def test_flask_recipe(delivered: tuple[Client, Delivery]) -> None:
    flask = pytest.importorskip("flask")
    client, cb = delivered
    app = flask.Flask(__name__)
    events: list[Notification] = []

    @app.post("/wxpay/notify")
    def notify() -> Any:
        request = flask.request
        try:
            events.append(client.parse_notification(request.headers, request.get_data()))  # not request.json
        except VerificationError:
            return "", 401
        return "", 204

    @app.post("/wxpay/notify-wrong")
    def notify_wrong() -> Any:  # what integrators write, and why their verification fails
        request = flask.request
        try:
            client.parse_notification(request.headers, json.dumps(request.get_json()))
        except VerificationError as exc:
            return exc.reason, 401
        return "", 204

    web = app.test_client()
    headers = {k: v for k, v in cb.headers.items() if k.lower() not in ("host", "content-length")}
    assert web.post("/wxpay/notify", data=cb.body, headers=headers).status_code == 204
    check(events[0])
    wrong = web.post("/wxpay/notify-wrong", data=cb.body, headers=headers)
    assert (wrong.status_code, wrong.get_data(as_text=True)) == (401, "bad_signature")


def test_django_recipe(delivered: tuple[Client, Delivery]) -> None:
    pytest.importorskip("django")
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(DEBUG=False, ALLOWED_HOSTS=["*"], USE_TZ=True)
        django.setup()
    from django.http import HttpRequest, HttpResponse
    from django.test import RequestFactory

    client, cb = delivered
    events: list[Notification] = []

    def notify(request: HttpRequest) -> HttpResponse:
        try:
            events.append(client.parse_notification(request.headers, request.body))  # not json.loads(...)
        except VerificationError:
            return HttpResponse(status=401)
        return HttpResponse(status=204)

    meta = {
        "HTTP_" + k.upper().replace("-", "_"): v
        for k, v in cb.headers.items()
        if k.lower() not in ("host", "content-length", "content-type")
    }
    request = RequestFactory().post("/wxpay/notify", data=cb.body, content_type="application/json", **meta)
    assert notify(request).status_code == 204
    check(events[0])
    tampered = RequestFactory().post(
        "/wxpay/notify",
        data=json.dumps(json.loads(cb.body)).encode(),
        content_type="application/json",
        **meta,
    )
    assert notify(tampered).status_code == 401
