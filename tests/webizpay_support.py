"""Helpers for the enterprise-payment tests: authorize an employee, issue a card, read queued callbacks."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from urllib.parse import urlsplit

import httpx
import sqlalchemy as sa

from support import SP_A, SUB_A, ApiClient
from wxpartner.protocol.times import format_rfc3339
from wxpartner.server.app import WxPartnerApp
from wxpartner.store.outbox_tables import callback_notifications

SEED_EMPLOYEE = "WeBizPay_a968402a-73bb-43e2-9e1a-8371b0ca3d7c"


def future(seconds: float = 30 * 86400, now: dt.datetime | None = None) -> str:
    return format_rfc3339((now or dt.datetime.now(dt.UTC)) + dt.timedelta(seconds=seconds))


def start_url(
    client: ApiClient, user_id: str, *, sp: str = SP_A, sub: str = SUB_A, app_type: str = "H5"
) -> Any:
    return client.post(
        f"/v3/webizpay/users/{user_id}/authorization-url",
        {"sp_mchid": sp, "sub_mchid": sub, "application_type": app_type},
    )


def authorize(
    client: ApiClient, control: httpx.Client, user_id: str, *, sp: str = SP_A, sub: str = SUB_A
) -> str:
    """W1, then the employee consents with the link's token (the control API: an in-process TestClient
    or a served process's). Returns employee_id."""
    resp = start_url(client, user_id, sp=sp, sub=sub)
    assert resp.status_code == 200, resp.text
    token = link_token(resp.json()["authorization_url"])
    done = control.post("/sandbox/webizpay/authorizations", json={"token": token})
    assert done.status_code == 200, done.text
    return str(done.json()["employee_id"])


def link_token(url: str) -> str:
    query = urlsplit(url).query
    return query.split("token=", 1)[1]


def issue_body(out_card_no: str, *, sp: str = SP_A, sub: str = SUB_A, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "sp_mchid": sp,
        "sub_mchid": sub,
        "card_template_id": "template_123",
        "amount": 10000,
        "card_name": "报销额度卡",
        "out_card_no": out_card_no,
        "effective_end_time": future(),
        "card_remark": "2023年1月差旅报销",
    }
    body.update(over)
    return {k: v for k, v in body.items() if v is not None}


def issue(client: ApiClient, employee_id: str, out_card_no: str, **over: Any) -> dict[str, Any]:
    resp = client.post(f"/v3/webizpay/employees/{employee_id}/quota-cards", issue_body(out_card_no, **over))
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def payment_token(client: ApiClient, employee_id: str, card_no: str) -> str:
    """W7 for an H5 page: the payment link's token."""
    resp = client.get(
        f"/v3/webizpay/employees/{employee_id}/quota-cards/{card_no}/payment-url"
        f"?sp_mchid={SP_A}&sub_mchid={SUB_A}&application_type=H5"
    )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["payment_url"].split("token=", 1)[1])


def get_card(client: ApiClient, employee_id: str, card_no: str, *, sp: str = SP_A, sub: str = SUB_A) -> Any:
    return client.get(
        f"/v3/webizpay/employees/{employee_id}/quota-cards/{card_no}?sp_mchid={sp}&sub_mchid={sub}"
    )


def events(app: WxPartnerApp, event_type: str) -> list[dict[str, Any]]:
    t = callback_notifications
    with app.state.db.read() as conn:
        rows = conn.execute(
            sa.select(t.c.mchid, t.c.resource_json, t.c.summary)
            .where(t.c.event_type == event_type)
            .order_by(t.c.create_time)
        ).all()
    return [{"mchid": r[0], "summary": r[2], **json.loads(r[1])} for r in rows]


def assert_param_error(resp: Any, field: str) -> dict[str, Any]:
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["code"] == "PARAM_ERROR", body
    assert body["detail"]["field"] == field, body
    return dict(body)
