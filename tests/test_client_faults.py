"""Retries, timeouts and failover against the real server's fault injection (sandbox fault rules and the
per-request ``Wechatpay-Sandbox-Fault`` header), over a loopback port to a real ``wxpartner serve``
process (``faults_over_loopback``, run by test_client_operations.py on its server) and in-process: what
is retried, what is never repeated, and that nothing is done twice."""

from __future__ import annotations

import time
from typing import Any

import anyio
import httpx
import pytest
from starlette.testclient import TestClient

from live import LiveServer, free_port
from support import SP_A, SUB_A, World
from webizpay_support import future, link_token
from wxpartner.client import (
    NO_RETRIES,
    AsyncClient,
    Client,
    NotFoundError,
    RateLimitedError,
    RetryPolicy,
    ServerError,
    TransportError,
    VerificationError,
)
from wxpartner.server.families import ROUTE_MODULES

pytestmark = pytest.mark.skipif("wxpartner.server.ops" not in ROUTE_MODULES, reason="no fault injection")

FAST = RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_max=0.05)
FAULT = "Wechatpay-Sandbox-Fault"
RANGE = {"sp_mchid": SP_A, "identifier_type": "TRANSACTION_ID"}


def keys(world: World) -> dict[str, Any]:
    return {
        "wechatpay_public_key": world.platform_pub.public_key_pem,
        "wechatpay_public_key_id": world.platform_pub.key_id,
    }


def client(world: World, base_url: str, **kw: Any) -> Client:
    m = world.merchants[SP_A]
    kw.setdefault("retry", FAST)
    kw.setdefault("timeout", 10)
    return Client(SP_A, m.serial_no, m.private_key, base_url=base_url, **keys(world), **kw)


def attempts(ctl: httpx.Client, operation: str) -> list[dict[str, Any]]:
    """What the server's journal saw for one operation (every attempt, faulted ones included)."""
    resp = ctl.get("/sandbox/journal", params={"mchid": SP_A, "operation": operation, "limit": 100})
    assert resp.status_code == 200, resp.text
    return list(resp.json()["data"])


def journaled(ctl: httpx.Client, operation: str, count: int) -> list[dict[str, Any]]:
    """The journal's rows of one operation once it has ``count`` of them: an attempt whose answer the
    client gave up on is journaled when the server has sent it, its work done (instead of sleeping
    for as long as the LATENCY rule holds it, and hoping)."""
    deadline = time.monotonic() + 10
    while len(seen := attempts(ctl, operation)) < count:
        assert time.monotonic() < deadline, (operation, count, seen)
        time.sleep(0.02)
    return seen


def add_rule(ctl: httpx.Client, kind: str, operation: str, **rule: Any) -> None:
    resp = ctl.post("/sandbox/faults", json={"kind": kind, "operation": operation, "mchid": SP_A, **rule})
    assert resp.status_code == 201, resp.text


def employee(c: Client, ctl: httpx.Client, user_id: str) -> str:
    link = c.webizpay.users.authorization_url(
        user_id, {"sp_mchid": SP_A, "sub_mchid": SUB_A, "application_type": "H5"}
    )
    done = ctl.post("/sandbox/webizpay/authorizations", json={"token": link_token(link.authorization_url)})
    assert done.status_code == 200, done.text
    return str(done.json()["employee_id"])


def card_body(out_card_no: str) -> dict[str, Any]:
    return {
        "sp_mchid": SP_A, "sub_mchid": SUB_A, "card_template_id": "template_123", "amount": 10000,
        "card_name": "报销额度卡", "out_card_no": out_card_no, "effective_end_time": future(),
    }  # fmt: skip


def faults_over_loopback(server: LiveServer, world: World) -> None:
    """Run by tests/test_client_operations.py on its loopback server (one server start per backend)."""
    ctl = server.control()
    assert ctl.post("/sandbox/reset", json={}).status_code == 200
    assert ctl.delete("/sandbox/journal").status_code in (200, 204)
    with client(world, server.url) as c:
        # 500 SYSTEM_ERROR on W13: raised, not repeated. Each W13 creates a range (no caller key), and a
        # 500 may follow a commit, so "retry with the same parameters" could make a second range; the
        # caller checks (W14) and repeats. The sandbox's fault comes before the handler: nothing made.
        add_rule(ctl, "SYSTEM_ERROR", "webizpay.create_avail_mch_range", count=1)
        with pytest.raises(ServerError) as failed:
            c.webizpay.ranges.create(RANGE)
        assert "not retried: webizpay.create_avail_mch_range is not idempotent" in str(failed.value)
        assert [e["status"] for e in attempts(ctl, "webizpay.create_avail_mch_range")] == [500]
        assert c.webizpay.ranges.list(sp_mchid=SP_A).range_list == []
        # 429 FREQUENCY_LIMITED turns a request away unhandled: retried for any call, done once.
        add_rule(ctl, "FREQUENCY_LIMITED", "webizpay.create_avail_mch_range", count=1)
        add_rule(ctl, "FREQUENCY_LIMITED", "webizpay.list_avail_mch_ranges", count=2)
        created = c.webizpay.ranges.create(RANGE)
        assert [e["status"] for e in attempts(ctl, "webizpay.create_avail_mch_range")][::-1] == [
            500,
            429,
            200,
        ]
        assert [r.range_id for r in c.webizpay.ranges.list(sp_mchid=SP_A).range_list] == [created.range_id]
        assert [e["status"] for e in attempts(ctl, "webizpay.list_avail_mch_ranges")][::-1] == [
            200, 429, 429, 200
        ]  # fmt: skip
        # 503 SERVICE_UNAVAILABLE likewise (a server's "not handled"): the create is repeated, one range.
        add_rule(ctl, "SERVICE_UNAVAILABLE", "webizpay.create_avail_mch_range", count=1)
        second = c.webizpay.ranges.create(RANGE)
        assert [e["status"] for e in attempts(ctl, "webizpay.create_avail_mch_range")][:2] == [200, 503]
        listed = [r.range_id for r in c.webizpay.ranges.list(sp_mchid=SP_A).range_list]
        assert listed == [created.range_id, second.range_id]

        # A dropped connection after the request left: a non-idempotent create is NOT repeated ...
        add_rule(ctl, "DROP_CONNECTION", "webizpay.create_avail_mch_range", count=1)
        with pytest.raises(TransportError) as info:
            c.webizpay.ranges.create(RANGE)
        assert info.value.sent is True and "may have taken effect" in str(info.value)
        assert len(attempts(ctl, "webizpay.create_avail_mch_range")) == 6  # one more, no repeat

        # ... an idempotent issue (same out_card_no) is, and yields one card.
        emp = employee(c, ctl, "user_fault")
        add_rule(ctl, "DROP_CONNECTION", "webizpay.issue_quota_card", count=1)
        dropped = card_body("card_drop")
        card = c.webizpay.quota_cards.issue(emp, dropped)
        assert len(attempts(ctl, "webizpay.issue_quota_card")) == 2
        # A 500 on the issue (keyed by out_card_no) is retried with the same parameters: one card.
        add_rule(ctl, "SYSTEM_ERROR", "webizpay.issue_quota_card", count=1)
        assert c.webizpay.quota_cards.issue(emp, dropped).card_no == card.card_no
        assert [e["status"] for e in attempts(ctl, "webizpay.issue_quota_card")][:2] == [200, 500]

        # A read timeout while the server is still working (the call's own timeout=; the client
        # allows 10 s): the create is not repeated, and the server's late success means exactly one
        # new range; the idempotent issue is repeated and the out_card_no makes both one card.
        add_rule(ctl, "LATENCY", "webizpay.create_avail_mch_range", count=1, latency_ms=800)
        add_rule(ctl, "LATENCY", "webizpay.issue_quota_card", count=1, latency_ms=800)
        with pytest.raises(TransportError) as info:
            c.webizpay.ranges.create(RANGE, timeout=httpx.Timeout(5, read=0.3))
        assert info.value.sent is True and str(info.value).startswith("webizpay.create_avail_mch_range: POST")
        assert "nothing received within 0.3 s (the read timeout, from this call's timeout=)" in str(
            info.value
        )
        again = c.webizpay.quota_cards.issue(emp, card_body("card_slow"), timeout=httpx.Timeout(5, read=0.3))
        # the abandoned requests have finished server-side once both are journaled
        assert journaled(ctl, "webizpay.create_avail_mch_range", 7)[0]["status"] == 200
        assert len(journaled(ctl, "webizpay.issue_quota_card", 6)) == 6
        assert len(c.webizpay.ranges.list(sp_mchid=SP_A).range_list) == 3  # two, then the slow one
        by_out = c.webizpay.quota_cards.get_by_out_card_no(emp, "card_slow", sp_mchid=SP_A, sub_mchid=SUB_A)
        assert by_out.card_no == again.card_no and again.card_no != card.card_no

        # W17 deletes the identifier named in its path: repeated after an answer that never came. The
        # first attempt deleted it (its answer held back past the read timeout), so the repeat is
        # answered 404 naming the identifier: the SDK returns the delete's success, not that 404 (it
        # raised TransportError and never repeated, as a repeat "would turn the success into an error").
        c.webizpay.ranges.add_identifier(created.range_id, {"sp_mchid": SP_A, "merchant_identifier": "4200"})
        assert c.webizpay.ranges.list_identifiers(created.range_id, sp_mchid=SP_A).data == ["4200"]
        add_rule(ctl, "LATENCY", "webizpay.delete_merchant_identifier", count=1, latency_ms=800)
        with client(world, server.url, timeout=httpx.Timeout(5, read=0.3)) as impatient:
            done = impatient.webizpay.ranges.delete_identifier(created.range_id, "4200", {"sp_mchid": SP_A})
        assert done.range_id == created.range_id
        deleted = journaled(ctl, "webizpay.delete_merchant_identifier", 2)  # the held answer, once sent
        assert sorted(e["status"] for e in deleted) == [200, 404]
        assert c.webizpay.ranges.list_identifiers(created.range_id, sp_mchid=SP_A).data == []

        # W8 and W15 change state named by the call itself (a relation's terminal REVOKED, an
        # identifier that is its own key in the range): a repeat after an answer that never came adds
        # nothing. The first revoke is done (its answer held back past the read timeout), the repeat
        # answers the same REVOKED with the original time, one REVOKED callback; one identifier.
        revoked_user = employee(c, ctl, "user_revoke_slow")
        add_rule(ctl, "LATENCY", "webizpay.revoke_authorization", count=1, latency_ms=800)
        add_rule(ctl, "LATENCY", "webizpay.add_merchant_identifier", count=1, latency_ms=800)
        slow = httpx.Timeout(5, read=0.3)
        revoked = c.webizpay.employees.revoke(
            revoked_user, {"sp_mchid": SP_A, "sub_mchid": SUB_A}, timeout=slow
        )
        c.webizpay.ranges.add_identifier(
            created.range_id, {"sp_mchid": SP_A, "merchant_identifier": "4300"}, timeout=slow
        )
        assert [e["status"] for e in journaled(ctl, "webizpay.revoke_authorization", 2)] == [200, 200]
        assert len(journaled(ctl, "webizpay.add_merchant_identifier", 3)) == 3
        state = c.webizpay.users.authorization_state("user_revoke_slow", sp_mchid=SP_A, sub_mchid=SUB_A)
        [relation] = state.employee_list or []
        assert relation.authorization_state == revoked.authorization_state == "REVOKED"
        assert relation.authorization_revoked_time == revoked.authorization_revoked_time
        events = ctl.get("/sandbox/callbacks", params={"mchid": SP_A, "event_type": "WEBIZPAY.REVOKED"})
        assert len(events.json()["data"]) == 1, events.text
        assert c.webizpay.ranges.list_identifiers(created.range_id, sp_mchid=SP_A).data == ["4300"]
        # What real WeChat Pay answers a repeated revoke is not documented: a refusal of a repeat
        # says that the earlier attempt may have taken effect (here a 500 then the 404 of an unknown
        # relation; the sandbox's fault comes before the handler).
        add_rule(ctl, "SYSTEM_ERROR", "webizpay.revoke_authorization", count=1)
        with pytest.raises(NotFoundError) as refused:
            c.webizpay.employees.revoke("WeBizPay_unknown", {"sp_mchid": SP_A, "sub_mchid": SUB_A})
        assert refused.value.after_ambiguous == "attempt 1: 500 SYSTEM_ERROR"
        assert (
            "this answers a repeat of webizpay.revoke_authorization; attempt 1: 500 SYSTEM_ERROR and "
            in str(refused.value)
        )

    # Failover: the primary port is closed; the backup (the live server) gets the request once.
    closed = f"http://127.0.0.1:{free_port()}"
    with client(world, closed, backup_url=server.url, retry=NO_RETRIES) as c:
        created = c.webizpay.ranges.create(RANGE)  # never reached the primary: safe even to create

    async def failover_async() -> None:
        m = world.merchants[SP_A]
        async with AsyncClient(
            SP_A, m.serial_no, m.private_key, base_url=closed, backup_url=server.url, retry=NO_RETRIES,
            timeout=10, **keys(world),
        ) as ac:  # fmt: skip
            listed = await ac.webizpay.ranges.list(sp_mchid=SP_A)
            assert created.range_id in [r.range_id for r in listed.range_list]
            add_rule(ctl, "SYSTEM_ERROR", "webizpay.list_avail_mch_ranges", count=5)
            with pytest.raises(ServerError):  # an answer, not a reason to fail over; no retries here
                await ac.webizpay.ranges.list(sp_mchid=SP_A)

    anyio.run(failover_async)
    assert ctl.delete("/sandbox/faults").status_code in (200, 204)
    ctl.close()


# -- in-process: the per-request fault header ------------------------------------------------------------
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("fault", "outcome"),
    [
        ("SYSTEM_ERROR", ServerError),
        ("FREQUENCY_LIMITED", RateLimitedError),
        ("BAD_SIGNATURE", VerificationError),
        ("SIGNATURE_PROBE", VerificationError),
    ],
)
def test_fault_header_outcomes_sync_and_async(
    http: TestClient, app: Any, world: World, fault: str, outcome: type[Exception]
) -> None:
    """Every attempt carries the header: retryable faults are retried until attempts run out (three
    journal entries), forged answers are refused at once (one)."""
    m = world.merchants[SP_A]
    c = client(world, "http://testserver", http_client=http)
    with pytest.raises(outcome):
        c.request("GET", "/v3/webizpay/avail-mch-ranges", query={"sp_mchid": SP_A}, headers={FAULT: fault})

    async def main() -> None:
        async with AsyncClient(
            SP_A, m.serial_no, m.private_key, base_url="http://testserver", retry=FAST,
            transport=httpx.ASGITransport(app=app), **keys(world),
        ) as ac:  # fmt: skip
            with pytest.raises(outcome):
                await ac.request(
                    "GET", "/v3/webizpay/avail-mch-ranges", query={"sp_mchid": SP_A}, headers={FAULT: fault}
                )

    anyio.run(main)
    http.headers["Authorization"] = "Bearer test-token-0123456789"
    seen = attempts(http, "webizpay.list_avail_mch_ranges")
    expected = 3 if outcome in (ServerError, RateLimitedError) else 1
    assert len(seen) == 2 * expected


def test_w17_is_repeated_and_a_repeat_finding_the_identifier_gone_is_its_success(
    http: TestClient, app: Any, world: World
) -> None:
    """W17 deletes the identifier its path names, so a repeat adds nothing: it is repeated after a 500
    like W15 (it was raised as ServerError, never repeated). The repeat of a delete that took effect is
    answered 404 naming ``merchant_identifier``: that is the delete's success, the range's id returned.
    A 404 naming the range (no such range) is still raised, marked ``after_ambiguous``, and so is a 404
    answering a first attempt."""
    ctl = {"Authorization": "Bearer test-token-0123456789"}

    def rule_500() -> None:
        body = {"kind": "SYSTEM_ERROR", "operation": "webizpay.delete_merchant_identifier", "count": 1}
        assert http.post("/sandbox/faults", json={**body, "mchid": SP_A}, headers=ctl).status_code == 201

    def statuses() -> list[int]:
        params = {"mchid": SP_A, "operation": "webizpay.delete_merchant_identifier", "limit": 100}
        return [e["status"] for e in http.get("/sandbox/journal", params=params, headers=ctl).json()["data"]]

    sp = {"sp_mchid": SP_A}
    c = client(world, "http://testserver", http_client=http)
    rng = c.webizpay.ranges.create(RANGE).range_id
    c.webizpay.ranges.add_identifier(rng, {**sp, "merchant_identifier": "4200"})
    rule_500()
    assert c.webizpay.ranges.delete_identifier(rng, "4200", sp).range_id == rng
    assert statuses() == [200, 500]
    assert c.webizpay.ranges.list_identifiers(rng, sp_mchid=SP_A).data == []
    rule_500()  # the repeat finds the identifier gone: what the delete asks for holds
    assert c.webizpay.ranges.delete_identifier(rng, "4200", sp).range_id == rng
    assert statuses()[:2] == [404, 500]
    rule_500()
    with pytest.raises(NotFoundError) as unknown_range:
        c.webizpay.ranges.delete_identifier("no-such-range", "4200", sp)
    assert unknown_range.value.after_ambiguous == "attempt 1: 500 SYSTEM_ERROR"
    assert unknown_range.value.detail == {"field": "range_id", "location": "path"}
    with pytest.raises(NotFoundError) as first:  # no repeat: the 404 is the answer
        c.webizpay.ranges.delete_identifier(rng, "4200", sp)
    assert first.value.after_ambiguous is None
    assert first.value.detail == {"field": "merchant_identifier", "location": "path"}

    async def main() -> None:
        m = world.merchants[SP_A]
        async with AsyncClient(
            SP_A, m.serial_no, m.private_key, base_url="http://testserver", retry=FAST,
            transport=httpx.ASGITransport(app=app), **keys(world),
        ) as ac:  # fmt: skip
            await ac.webizpay.ranges.add_identifier(rng, {**sp, "merchant_identifier": "4300"})
            rule_500()
            assert (await ac.webizpay.ranges.delete_identifier(rng, "4300", sp)).range_id == rng
            assert (await ac.webizpay.ranges.list_identifiers(rng, sp_mchid=SP_A)).data == []

    anyio.run(main)
