"""What a person gets from `make serve`: a fresh data dir, `wxpartner serve` as a real process, and the
SDK configured from the connection.json it writes, driving every family with the demo merchants — the
service provider (webizpay, recharge as platform merchant) and the channel merchant (apply4subject)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from a1_support import a1_body
from test_cli import Served
from wxpartner.client import Client

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = Served(tmp_path_factory.mktemp("demo") / "data")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def info(served: Served) -> dict[str, Any]:
    data_dir = Path(served.info["private_key_path"]).parents[2]
    written: dict[str, Any] = json.loads((data_dir / "connection.json").read_text())
    assert written == served.info  # the file and the --json line agree
    return written


def _control(served: Served, info: dict[str, Any], path: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = httpx.post(
        f"{served.url}/sandbox{path}", json=body, headers={"Authorization": f"Bearer {info['sandbox_token']}"}
    )
    assert resp.status_code == 200, resp.text
    out: dict[str, Any] = resp.json()
    return out


def test_service_provider_authorizes_issues_and_cancels(served: Served, info: dict[str, Any]) -> None:
    sp, sub = info["mchid"], info["sub_mchid"][0]
    with Client.from_connection_info(info) as client:
        link = client.webizpay.users.authorization_url(
            "demo_user_1", {"sp_mchid": sp, "sub_mchid": sub, "application_type": "H5"}
        )
        assert link.authorization_url
        consent = {"sp_mchid": sp, "sub_mchid": sub, "user_id": "demo_user_1"}
        _control(served, info, "/webizpay/authorizations", consent)
        state = client.webizpay.users.authorization_state("demo_user_1", sp_mchid=sp, sub_mchid=sub)
        [relation] = state.employee_list or []
        assert relation.authorization_state == "AUTHORIZED"
        employee_id = relation.employee_id
        end = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).astimezone(dt.timezone(dt.timedelta(hours=8)))
        card = client.webizpay.quota_cards.issue(
            employee_id,
            {
                "sp_mchid": sp,
                "sub_mchid": sub,
                "card_template_id": "template_123",
                "amount": 10000,
                "card_name": "差旅费用卡",
                "out_card_no": "demo_card_0001",
                "effective_end_time": end.isoformat(timespec="seconds"),
            },
        )
        got = client.webizpay.quota_cards.get(employee_id, card.card_no, sp_mchid=sp, sub_mchid=sub)
        assert got.card_state == "ACTIVE" and got.amount == 10000
        client.webizpay.quota_cards.cancel(
            employee_id, card.card_no, {"sp_mchid": sp, "sub_mchid": sub, "reason": "demo"}
        )
        got = client.webizpay.quota_cards.get(employee_id, card.card_no, sp_mchid=sp, sub_mchid=sub)
        assert got.card_state == "DISABLED"


def test_platform_merchant_manages_recharge_employees(info: dict[str, Any]) -> None:
    second = info["second_level_mchid"][0]
    with Client.from_connection_info(info) as client:
        added = client.recharge_employees.add({"sub_mchid": second, "sp_openid": "oDemoOpenid0001"})
        assert added.state == "EFFECTIVE"
        listed = client.recharge_employees.list(second)
        assert [e.sp_openid for e in listed.employees or []] == ["oDemoOpenid0001"]
        assert client.recharge_employees.delete(second, "oDemoOpenid0001").state == "DELETED"


def test_channel_merchant_submits_queries_and_cancels_an_applyment(info: dict[str, Any]) -> None:
    assert info["channel_mchid"] and info["channel_serial_no"]
    with Client.from_connection_info(
        {
            **info,
            "mchid": info["channel_mchid"],
            "serial_no": info["channel_serial_no"],
            "private_key_path": info["channel_private_key_path"],
        }
    ) as client:
        # plaintext here: the SDK encrypts the sensitive fields for the server's public key
        body = a1_body("DEMO_APPLY_0001", mobile="13900000000", confirm=[info["sub_mchid"][0]])
        submitted = client.apply4subject.submit(body)
        result = client.apply4subject.get(business_code="DEMO_APPLY_0001")
        assert submitted.applyment_id > 0
        assert result.applyment_state in ("APPLYMENT_STATE_WAITTING_FOR_AUDIT", "APPLYMENT_STATE_EDITTING")
        assert client.apply4subject.cancel(applyment_id=submitted.applyment_id) is None
        assert client.apply4subject.get(applyment_id=submitted.applyment_id).applyment_state == (
            "APPLYMENT_STATE_CANCELED"
        )
