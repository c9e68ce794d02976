"""The pytest plugin used the way an integrator would: no conftest, only the wxpartner_* fixtures (the
``pytest11`` entry point registers them), plus a separate pytest session with the ini options."""

from __future__ import annotations

import json
import os
import socket
import statistics
import textwrap
import time
from pathlib import Path

import anyio
import pytest

from wxpartner.client import NO_RETRIES, AsyncClient, Client, ServerError, TransportError, VerificationError
from wxpartner.client.given_http import library_of
from wxpartner.models import webizpay as w
from wxpartner.testing import WxPartnerServer

pytest_plugins = ["pytester"]


# -- an integrator's own code and its tests ------------------------------------------------------------------
def issue_travel_card(
    client: Client, employee_id: str, sub_mchid: str, amount: int
) -> w.IssueQuotaCardResponse:
    """Stands for the code under test: it only knows the SDK."""
    return client.webizpay.quota_cards.issue(
        employee_id,
        {
            "sp_mchid": client.mchid, "sub_mchid": sub_mchid, "card_template_id": "template_123",
            "amount": amount, "card_name": "差旅额度卡", "out_card_no": f"travel_{employee_id[-6:]}",
            "effective_end_time": "2099-12-31T23:59:59+08:00",
        },
    )  # fmt: skip


def test_three_lines(wxpartner_client: Client) -> None:
    created = wxpartner_client.webizpay.ranges.create(
        {"sp_mchid": wxpartner_client.mchid, "identifier_type": "TRANSACTION_ID"}
    )
    assert [
        r.range_id for r in wxpartner_client.webizpay.ranges.list(sp_mchid=wxpartner_client.mchid).range_list
    ] == [created.range_id]


def test_scenario_then_own_code(wxpartner_server: WxPartnerServer, wxpartner_client: Client) -> None:
    sub = wxpartner_server.info["sub_mchid"][0]
    employee = {
        "sp_mchid": wxpartner_server.mchid,
        "sub_mchid": sub,
        "user_id": "user_travel",
        "employee_id": "WeBizPay_travel1",
    }
    wxpartner_server.load_scenario({"webizpay": {"employees": [employee]}})
    card = issue_travel_card(wxpartner_client, "WeBizPay_travel1", sub, 50000)
    got = wxpartner_client.webizpay.quota_cards.get(
        "WeBizPay_travel1", card.card_no, sp_mchid=wxpartner_client.mchid, sub_mchid=sub
    )
    assert got.card_state == "ACTIVE" and got.amount == 50000


def test_state_is_reset_between_tests(wxpartner_server: WxPartnerServer, wxpartner_client: Client) -> None:
    """Business data, clock offset and fault rules go; merchants and keys stay. Reset time is printed
    (goal <= 20 ms), not asserted: the machine's load is not the plugin's behaviour."""
    sp = wxpartner_client.mchid
    assert wxpartner_client.webizpay.ranges.list(sp_mchid=sp).range_list == []  # earlier tests made some
    times = []
    for _ in range(5):
        wxpartner_client.webizpay.ranges.create({"sp_mchid": sp, "identifier_type": "TRANSACTION_ID"})
        wxpartner_server.advance_clock(3600)
        wxpartner_server.inject_fault("SYSTEM_ERROR", count=100, operation="webizpay.get_quota_card")
        started = time.perf_counter()
        wxpartner_server.reset()
        times.append(time.perf_counter() - started)
        assert wxpartner_client.webizpay.ranges.list(sp_mchid=sp).range_list == []
        assert abs(wxpartner_server.control.get("/sandbox/clock").json()["offset_seconds"]) < 1
        assert wxpartner_server.control.get("/sandbox/faults").json()["data"] == []
    print(
        f"\nwxpartner reset: median {statistics.median(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms"
    )


def test_reset_leaves_no_journal_and_no_auto_policy(
    wxpartner_server: WxPartnerServer, wxpartner_client: Client
) -> None:
    """Found in the sandbox audit: the README says only merchants and keys survive a reset, but a test's
    requests stayed in the journal (the next test's journal assertions saw them) and an applyment auto
    policy set by one test approved the next test's applyments."""
    control = wxpartner_server.control
    wxpartner_client.webizpay.ranges.list(sp_mchid=wxpartner_client.mchid)
    assert (
        control.put(
            "/sandbox/apply4subject/auto-policy", json={"outcome": "approve", "after_queries": 1}
        ).status_code
        == 200
    )
    assert control.get("/sandbox/journal").json()["data"]
    wxpartner_server.reset()
    assert control.get("/sandbox/journal").json()["data"] == []
    assert control.get("/sandbox/apply4subject/auto-policy").json() == {"auto_policy": None}


def test_a_scenario_file_reads_paths_beside_it(wxpartner_server: WxPartnerServer, tmp_path: Path) -> None:
    """Found in the sandbox audit: load_scenario(Path) posted the text to the control API, which reads
    files only inside the server's data dir, so the README's "paths relative to the scenario file with
    the pytest plugin" failed with "cannot read certs/apiclient_cert.pem"."""
    from wxpartner.sandbox.material import make_merchant_keys

    made = make_merchant_keys("1777000001", tmp_path / "certs")
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(
        'merchants:\n  - mchid: "1777000001"\n    certificates:\n      - certificate: certs/apiclient_cert.pem\n'
        "faults:\n  - {kind: SYSTEM_ERROR, count: 1}\n"
    )
    assert wxpartner_server.load_scenario(scenario) == {"loaded": True, "merchants": 1, "faults": 1}
    listed = {m["mchid"]: m for m in wxpartner_server.control.get("/sandbox/merchants").json()["data"]}
    assert listed["1777000001"]["certificates"] == [{"serial_no": made.serial_no, "revoked": False}]
    with wxpartner_server.client(retry=NO_RETRIES) as client, pytest.raises(ServerError):
        client.webizpay.ranges.list(sp_mchid=client.mchid)  # the file's fault applies at once
    scenario.write_text(
        'merchants:\n  - mchid: "1777000002"\n    certificates:\n      - certificate: nope.pem\n'
    )
    with pytest.raises(AssertionError, match=r"cannot read nope\.pem"):
        wxpartner_server.load_scenario(scenario)


def test_clock_and_faults(wxpartner_server: WxPartnerServer, wxpartner_client: Client) -> None:
    before = wxpartner_server.control.get("/sandbox/clock").json()["now_ts"]
    wxpartner_server.advance_clock(86400)
    assert wxpartner_server.control.get("/sandbox/clock").json()["now_ts"] - before >= 86400 - 5
    wxpartner_server.inject_fault("SYSTEM_ERROR", count=1)
    assert wxpartner_client.webizpay.ranges.list(sp_mchid=wxpartner_client.mchid).range_list == []  # retried
    wxpartner_server.inject_fault("SYSTEM_ERROR", count=5)
    with pytest.raises(ServerError):
        wxpartner_client.webizpay.ranges.list(sp_mchid=wxpartner_client.mchid)


def test_async_client(wxpartner_async_client: AsyncClient) -> None:
    async def main() -> None:
        async with wxpartner_async_client as client:
            listed = await client.webizpay.ranges.list(sp_mchid=client.mchid)
            assert listed.range_list == []

    anyio.run(main)


def test_loopback_port(wxpartner_live_server: WxPartnerServer) -> None:
    assert wxpartner_live_server.live_url and wxpartner_live_server.live_url.startswith("http://127.0.0.1:")
    with wxpartner_live_server.client(live=True) as client:
        client.webizpay.ranges.create({"sp_mchid": client.mchid, "identifier_type": "ORGANIZATION_CODE"})
        # the same database behind both doors
        assert len(wxpartner_live_server.client().webizpay.ranges.list(sp_mchid=client.mchid).range_list) == 1
        wxpartner_live_server.inject_fault("DROP_CONNECTION", count=1)
        with pytest.raises(TransportError) as info:  # the answer never came: creating is not repeated
            client.webizpay.ranges.create({"sp_mchid": client.mchid, "identifier_type": "ORGANIZATION_CODE"})
        assert info.value.sent is True
        assert len(client.webizpay.ranges.list(sp_mchid=client.mchid).range_list) == 1


def test_the_loopback_port_answers_as_serve_does(wxpartner_live_server: WxPartnerServer) -> None:
    """The same HTTP layer as ``wxpartner serve``: header names in WeChat Pay's case on the wire."""
    port = int(str(wxpartner_live_server.live_url).rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"GET /v3/certificates HTTP/1.1\r\nHost: x\r\nAccept: */*\r\nUser-Agent: t/1\r\nConnection: close\r\n\r\n"
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head = answer.partition(b"\r\n\r\n")[0]
    assert head.startswith(b"HTTP/1.1 401 ") and b"\r\nRequest-ID: 08" in head, head
    assert b"\r\nContent-Type: application/json; charset=utf-8\r\n" in head, head


def test_async_client_over_the_loopback_port(wxpartner_live_server: WxPartnerServer) -> None:
    async def main() -> None:
        async with wxpartner_live_server.async_client(live=True) as client:
            created = await client.webizpay.ranges.create(
                {"sp_mchid": client.mchid, "identifier_type": "TRANSACTION_ID"}
            )
            listed = await client.webizpay.ranges.list(sp_mchid=client.mchid)
            assert [r.range_id for r in listed.range_list] == [created.range_id]

    anyio.run(main)


def test_client_from_the_connection_file(wxpartner_server: WxPartnerServer) -> None:
    """What ``wxpartner serve`` writes for a developer works as is (here with the in-process transport)."""
    path = wxpartner_server.data_dir / "connection.json"
    with Client.from_connection_info(path, http_client=wxpartner_server.http) as client:
        assert client.mchid == wxpartner_server.mchid and client.keys.public is not None
        assert client.webizpay.ranges.list(sp_mchid=client.mchid).range_list == []
    # A serve --tls file names its authority; beside the caller's own HTTP that context is left out
    # (it would not be in force), so the file still works as is.
    info = {**json.loads(path.read_text()), "tls_ca_path": str(wxpartner_server.data_dir / "no-ca.pem")}
    with Client.from_connection_info(info, http_client=wxpartner_server.http) as client:
        assert client.tls_context is None
        assert client.webizpay.ranges.list(sp_mchid=client.mchid).range_list == []


# -- a separate pytest session: entry point, ini scenario re-loaded after every reset ---------------------------
def test_ini_scenario_in_a_user_project(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        """
        [pytest]
        wxpartner_scenario = scenario.yaml
        """
    )
    pytester.makefile(
        ".yaml",
        scenario=textwrap.dedent(
            """
            webizpay:
              employees:
                - {sp_mchid: "1900000001", sub_mchid: "1900000101", user_id: "user_ini_1", employee_id: "WeBizPay_ini"}
            faults:
              - {kind: SYSTEM_ERROR, operation: webizpay.list_avail_mch_ranges, count: 1}
            """
        ),
    )
    pytester.makepyfile(
        textwrap.dedent(
            """
            import pytest

            @pytest.mark.parametrize("n", [1, 2])
            def test_each_test_sees_the_scenario(wxpartner_server, wxpartner_client, n):
                assert len(wxpartner_server.control.get("/sandbox/faults").json()["data"]) == 1
                state = wxpartner_client.webizpay.users.authorization_state(
                    "user_ini_1", sp_mchid="1900000001", sub_mchid="1900000101")
                assert [e.employee_id for e in state.employee_list] == ["WeBizPay_ini"]
                wxpartner_client.webizpay.employees.revoke(
                    "WeBizPay_ini", {"sp_mchid": "1900000001", "sub_mchid": "1900000101"})
            """
        )
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_the_in_process_client_runs_on_the_library_starlette_chose(wxpartner_server: WxPartnerServer) -> None:
    """Starlette's TestClient is an httpx2 client once httpx2 is installed (test_httpx2.py runs this
    module so), an httpx one otherwise; the SDK sends through either."""
    expected = "httpx2" if os.environ.get("WXPARTNER_TEST_HTTPX2") == "1" else "httpx"
    assert library_of(wxpartner_server.http).__name__ == expected


def test_a_clock_move_settles_every_card_it_expires(wxpartner_server: WxPartnerServer) -> None:
    """advance_clock promises that on return every card past its end is DISABLED with its callback
    queued; the settle made one sweep batch of 200 cards, so the 201st and later stayed ACTIVE and
    silent until later background rounds (200 more every 2 s)."""
    from wxpartner.sandbox.bootstrap import DEMO_SUB

    sp, n = wxpartner_server.mchid, 230
    end = time.strftime("%Y-%m-%dT%H:%M:%S+08:00", time.gmtime(time.time() + 8 * 3600 + 86400))
    employees = [
        {
            "sp_mchid": sp,
            "sub_mchid": DEMO_SUB,
            "user_id": f"user_{i:03d}",
            "employee_id": f"WeBizPay_{i:03d}",
        }
        for i in range(n)
    ]
    cards = [
        {"sp_mchid": sp, "sub_mchid": DEMO_SUB, "user_id": f"user_{i:03d}", "out_card_no": f"card_{i:03d}",
         "amount": 100, "card_name": "card", "effective_end_time": end}
        for i in range(n)
    ]  # fmt: skip
    wxpartner_server.load_scenario({"webizpay": {"employees": employees, "cards": cards}})
    wxpartner_server.advance_clock(3 * 86400)
    queued = wxpartner_server.control.get(
        "/sandbox/callbacks", params={"event_type": "WEBIZPAY.QUOTACARDEXPIRED", "limit": 1}
    )
    assert queued.json()["total_count"] == n


def test_clients_made_after_a_rotation_verify_with_the_keys_in_force(tmp_path: Path) -> None:
    """``rotate_platform_key`` changed which key signs, but ``info`` kept naming the session's first
    key: every client made afterwards (``client()``, ``async_client()``, ``live_info``) failed with
    ``unknown_serial``, in this test and in every later one (keys survive the per-test reset). A
    server of its own, so the session's keys stay as they are."""
    server = WxPartnerServer(tmp_path / "data")
    try:
        before = server.client()
        held = before.keys.public_key_ids[0]
        shared = server.rotate_platform_key("public_key")
        answer = before.request("GET", "/v3/webizpay/avail-mch-ranges", query={"sp_mchid": before.mchid})
        assert answer.verified_by == held  # the overlap: answered with the key it names
        server.retire_platform_key(held)
        with before, pytest.raises(VerificationError) as stale:  # holds the keys it was given
            before.webizpay.ranges.list(sp_mchid=before.mchid)
        assert stale.value.reason == "unknown_serial" and str(stale.value).endswith(
            "; base_url is not WeChat Pay's: if it is a wxpartner server, GET /sandbox/platform-keys lists "
            "the keys it signs with, and a restart of wxpartner serve writes them into connection.json (the "
            f"pytest plugin's rotate_platform_key updates its info); Wechatpay-Serial={shared} (Request-ID "
            f"{stale.value.request_id})"
        )
        assert server.info["merchants"]["service_provider"]["wechatpay_public_key_id"] == shared
        with Client.from_connection_info(server.info, base_url="https://api.mch.weixin.qq.com") as real:
            assert real.keys.unknown_hint == ""  # WeChat Pay's own host: no sandbox hint
        with server.client() as client:
            answer = client.request("GET", "/v3/webizpay/avail-mch-ranges", query={"sp_mchid": client.mchid})
            assert answer.verified_by == shared
        own = server.rotate_platform_key("public_key", mchid=server.mchid)
        assert server.info["wechatpay_public_key_id"] == own
        assert server.info["merchants"]["channel"]["wechatpay_public_key_id"] == shared

        async def main() -> None:
            async with server.async_client() as ac:
                answer = await ac.request(
                    "GET", "/v3/webizpay/avail-mch-ranges", query={"sp_mchid": ac.mchid}
                )
                assert answer.verified_by == own

        anyio.run(main)
        with server.client(merchant="channel") as channel:
            assert channel.apply4subject.merchant_state("1900000101").authorize_state
    finally:
        server.close()


def test_a_migration_rehearsed_with_the_plugin(tmp_path: Path) -> None:
    """set_key_mode walks the demo merchant through a migration; a client made at each step from
    ``info`` verifies that step's answers, and one made at the start (certificates only) goes on
    verifying while migrating (it names no public key, so it is answered with the certificate)."""
    server = WxPartnerServer(tmp_path / "data")
    try:
        assert server.set_key_mode("certificate") == "public_key"
        entry = server.info["merchants"]["service_provider"]
        assert entry["key_mode"] == "certificate" and entry["wechatpay_public_key_id"] is None
        cert = entry["platform_certificate_serial"]
        ranges = {"sp_mchid": server.mchid}
        with server.client() as on_certificates:
            answer = on_certificates.request("GET", "/v3/webizpay/avail-mch-ranges", query=ranges)
            assert answer.verified_by == cert
            assert server.set_key_mode("migrating") == "certificate"
            answer = on_certificates.request("GET", "/v3/webizpay/avail-mch-ranges", query=ranges)
            assert answer.verified_by == cert
        entry = server.info["merchants"]["service_provider"]
        pub = entry["wechatpay_public_key_id"]
        assert entry["platform_certificate_serial"] == cert and pub.startswith("PUB_KEY_ID_")
        with server.client() as both:  # it names its public key: answered with it
            assert both.request("GET", "/v3/webizpay/avail-mch-ranges", query=ranges).verified_by == pub
        assert server.set_key_mode("public_key") == "migrating"
        with server.client() as on_public_key:
            answer = on_public_key.request("GET", "/v3/webizpay/avail-mch-ranges", query=ranges)
            assert answer.verified_by == pub
            assert on_public_key.keys.certificate_serials == []
    finally:
        server.close()
