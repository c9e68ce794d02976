"""Every one of the 24 operations through the SDK against the real server, four ways: in-process
(Starlette TestClient / httpx ASGI transport) and over a loopback port (a real ``wxpartner serve``
process, which then also serves the fault-injection run of test_client_faults.py), each with ``Client``
and ``AsyncClient``, on SQLite and PostgreSQL. The server's request
journal proves each operation arrived, was verified and answered 2xx."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from starlette.testclient import TestClient

from a1_support import a1_body
from live import LiveServer, start_live_server
from support import APIV3_KEY, SECOND_A, SP_A, SUB_A, World
from test_client_faults import faults_over_loopback
from webizpay_support import future, link_token
from wxpartner.client import AsyncClient, Client, RetryPolicy
from wxpartner.client.resources import apply4subject, recharge, webizpay
from wxpartner.models import webizpay as w
from wxpartner.server.app import WxPartnerApp
from wxpartner.server.families import ROUTE_MODULES

ALL_OPERATIONS = {op.op_id for op in webizpay.OPERATIONS + recharge.OPERATIONS + apply4subject.OPERATIONS}
FAST = RetryPolicy(max_attempts=2, backoff_base=0.01, backoff_max=0.02)


class Blocking:
    """Drives an ``AsyncClient`` from this (sync) test through a portal: every resource method is
    awaited in the portal's event loop, so the async code path runs exactly as a user's ``await``."""

    def __init__(self, target: Any, portal: BlockingPortal) -> None:
        self._target = target
        self._portal = portal

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if callable(attr):

            def call(*args: Any, **kwargs: Any) -> Any:
                async def run() -> Any:
                    return await attr(*args, **kwargs)

                return self._portal.call(run)

            return call
        if isinstance(attr, str | int | float | type(None)):
            return attr
        return Blocking(attr, self._portal)


def _day(offset: int) -> str:
    return (dt.date.today() + dt.timedelta(days=offset)).isoformat()


def _applyment(code: str) -> dict[str, Any]:
    return a1_body(code)


def make_channel(ctl: httpx.Client) -> None:
    """apply4subject is for channel merchants / institutions: make SP_A one (webizpay and recharge do
    not look at the role)."""
    spec = {
        "merchants": [{"mchid": SP_A, "role": "channel", "key_mode": "public_key", "apiv3_key": APIV3_KEY}]
    }
    resp = ctl.post("/sandbox/scenario", json=spec)
    assert resp.status_code == 200, resp.text


def exercise_all_operations(client: Any, ctl: httpx.Client, tag: str) -> None:
    """W1–W17, R1–R3, A1–A4 with ``client`` (a ``Client`` or a ``Blocking(AsyncClient)``), checking the
    typed answers. ``tag`` keeps the business keys of several runs against one server apart."""
    from apply4subject_support import NAME, SUB_X

    wz = client.webizpay
    sp, sub = SP_A, SUB_A
    user = f"user_{tag}"

    # W1, W2: authorization
    link = wz.users.authorization_url(user, {"sp_mchid": sp, "sub_mchid": sub, "application_type": "H5"})
    assert isinstance(link, w.AuthorizationUrlResponse) and link.authorization_url
    consent = ctl.post("/sandbox/webizpay/authorizations", json={"token": link_token(link.authorization_url)})
    assert consent.status_code == 200, consent.text
    employee_id = str(consent.json()["employee_id"])
    state = wz.users.authorization_state(user, sp_mchid=sp, sub_mchid=sub)
    assert [e.employee_id for e in state.employee_list or []] == [employee_id]

    # W3–W8: quota cards and revocation
    body = w.IssueQuotaCardRequest(
        sp_mchid=sp, sub_mchid=sub, card_template_id="template_123", amount=10000,
        card_name="报销额度卡", out_card_no=f"card_{tag}", effective_end_time=future(),
    )  # fmt: skip
    card = wz.quota_cards.issue(employee_id, body)
    assert isinstance(card, w.IssueQuotaCardResponse) and card.out_card_no == f"card_{tag}"
    assert wz.quota_cards.issue(employee_id, body).card_no == card.card_no  # safe to repeat
    got = wz.quota_cards.get(employee_id, card.card_no, sp_mchid=sp, sub_mchid=sub)
    assert isinstance(got, w.QuotaCard) and got.card_state == "ACTIVE" and got.amount == 10000
    by_out = wz.quota_cards.get_by_out_card_no(employee_id, f"card_{tag}", sp_mchid=sp, sub_mchid=sub)
    assert by_out.card_no == card.card_no
    pay = wz.quota_cards.payment_url(
        employee_id, card.card_no, sp_mchid=sp, sub_mchid=sub, application_type="H5"
    )
    assert pay.payment_url
    cancelled = wz.quota_cards.cancel(
        employee_id, card.card_no, {"sp_mchid": sp, "sub_mchid": sub, "reason": "离职"}
    )
    assert cancelled.card_state == "DISABLED"
    revoked = wz.employees.revoke(employee_id, w.RevokeAuthorizationRequest(sp_mchid=sp, sub_mchid=sub))
    assert revoked.authorization_state == "REVOKED" and revoked.user_id == user

    # W9, W10: store entity matching
    batch = wz.stores.create_entity_match(
        {"sp_mchid": sp, "out_batch_id": f"batch_{tag}",
         "match_details": [{"organization_code": "91440300MA5EXAMPLE", "store_name": "店", "product_type": "CODE_PAY"}]}
    )  # fmt: skip
    assert wz.stores.get_entity_match(batch.batch_id, sp_mchid=sp).batch_id == batch.batch_id

    # W11, W12: bills (and the signed file download)
    proof = wz.bills.apply_proof(
        {"sp_mchid": sp, "sub_mchid": sub, "start_date": _day(-5), "end_date": _day(-3),
         "out_operation_id": f"proof_{tag}"}
    )  # fmt: skip
    assert proof.out_operation_id == f"proof_{tag}" and proof.download_url
    assert wz.bills.download(proof.download_url)
    bill = wz.bills.apply_trade_bill({"sp_mchid": sp, "sub_mchid": sub, "date": _day(-2), "type": "QYZFALL"})
    assert bill.download_url

    # W13–W17: available-merchant ranges
    created = wz.ranges.create({"sp_mchid": sp, "identifier_type": "ORGANIZATION_CODE"})
    assert created.range_id in [r.range_id for r in wz.ranges.list(sp_mchid=sp).range_list]
    ident = f"9144030{tag.upper():0>11}"[:18]
    wz.ranges.add_identifier(created.range_id, {"sp_mchid": sp, "merchant_identifier": ident})
    assert wz.ranges.list_identifiers(created.range_id, sp_mchid=sp, offset=0, limit=10).data == [ident]
    gone = wz.ranges.delete_identifier(created.range_id, ident, {"sp_mchid": sp})
    assert gone.range_id == created.range_id
    assert wz.ranges.list_identifiers(created.range_id, sp_mchid=sp).data == []

    # R1–R3: recharge employees of the second-level merchant
    openid = f"oLTPCuCsfN3ABBz50VUZBNl{tag:_<5}"[:28]
    added = client.recharge_employees.add({"sub_mchid": SECOND_A, "sp_openid": openid})
    assert added.state == "EFFECTIVE"
    assert openid in [e.sp_openid for e in client.recharge_employees.list(SECOND_A).employees or []]
    assert client.recharge_employees.delete(SECOND_A, openid).state == "DELETED"

    # A1–A4: applyments (sensitive fields encrypted by the SDK)
    code = f"{sp}_{tag}"
    submitted = client.apply4subject.submit(_applyment(code))
    stored = ctl.get(f"/sandbox/apply4subject/applyments/{submitted.applyment_id}")
    assert stored.status_code == 200 and NAME in stored.text  # decrypted server-side under the named key
    state_a = client.apply4subject.get(applyment_id=submitted.applyment_id)
    assert state_a.applyment_state.startswith("APPLYMENT_STATE_")
    assert client.apply4subject.get(business_code=code).applyment_state == state_a.applyment_state
    assert client.apply4subject.cancel(business_code=code) is None  # 204
    assert (
        client.apply4subject.get(applyment_id=submitted.applyment_id).applyment_state
        == "APPLYMENT_STATE_CANCELED"
    )
    merchant = client.apply4subject.merchant_state(SUB_X)
    assert merchant.authorize_state.startswith("AUTHORIZE_STATE_")


def journaled_operations(ctl: httpx.Client, user_agent_prefix: str = "wxpartner/") -> set[str]:
    """Operation ids the server journaled for SP_A with a 2xx answer and a verified signature."""
    resp = ctl.get("/sandbox/journal", params={"mchid": SP_A, "limit": 500})
    assert resp.status_code == 200, resp.text
    return {
        str(e["operation"])
        for e in resp.json()["data"]
        if 200 <= int(e["status"]) < 300 and str(e.get("user_agent") or "").startswith(user_agent_prefix)
    }


def check_coverage(ctl: httpx.Client) -> None:
    missing = ALL_OPERATIONS - journaled_operations(ctl)  # the SDK and the server share op ids
    assert not missing, f"operations the SDK never completed against the server: {sorted(missing)}"
    assert len(ALL_OPERATIONS) == 24


@pytest.fixture
def portal() -> Iterator[BlockingPortal]:
    with start_blocking_portal() as p:
        yield p


def sync_client(world: World, base_url: str, **kw: Any) -> Client:
    m = world.merchants[SP_A]
    return Client(
        SP_A, m.serial_no, m.private_key, base_url=base_url, retry=FAST,
        wechatpay_public_key=world.platform_pub.public_key_pem,
        wechatpay_public_key_id=world.platform_pub.key_id, **kw,
    )  # fmt: skip


def async_client(world: World, base_url: str, **kw: Any) -> AsyncClient:
    m = world.merchants[SP_A]
    return AsyncClient(
        SP_A, m.serial_no, m.private_key, base_url=base_url, retry=FAST,
        wechatpay_public_key=world.platform_pub.public_key_pem,
        wechatpay_public_key_id=world.platform_pub.key_id, **kw,
    )  # fmt: skip


def run_both(
    world: World,
    ctl: httpx.Client,
    portal: BlockingPortal,
    make_sync: Callable[[], Client],
    make_async: Callable[[], AsyncClient],
) -> None:
    make_channel(ctl)
    with make_sync() as client:
        exercise_all_operations(client, ctl, "s1")
    check_coverage(ctl)
    assert ctl.delete("/sandbox/journal").status_code in (200, 204)
    aclient = make_async()
    try:
        exercise_all_operations(Blocking(aclient, portal), ctl, "a1")
    finally:
        portal.call(aclient.aclose)
    check_coverage(ctl)


def test_all_operations_in_process(
    app: WxPartnerApp, http: TestClient, control: TestClient, world: World, portal: BlockingPortal
) -> None:
    run_both(
        world,
        control,
        portal,
        lambda: sync_client(world, "http://testserver", http_client=http),
        lambda: async_client(world, "http://testserver", transport=httpx.ASGITransport(app=app)),
    )


@pytest.mark.slow
def test_all_operations_then_faults_over_loopback(
    tmp_path: Path, world: World, database_url: str, portal: BlockingPortal
) -> None:
    live: LiveServer = start_live_server(tmp_path / "live", world, database_url=database_url)
    try:
        with live.control() as ctl:
            run_both(
                world,
                ctl,
                portal,
                lambda: sync_client(world, live.url, timeout=10),
                lambda: async_client(world, live.url, timeout=10),
            )
        if "wxpartner.server.ops" in ROUTE_MODULES:
            faults_over_loopback(live, world)  # retries, timeouts, failover (test_client_faults.py)
    finally:
        live.stop()
