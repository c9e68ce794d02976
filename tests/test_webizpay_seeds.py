"""The seeds' own examples (000 cancel, 001 issue, 004 revoke), sent byte for byte by the seeds'
merchants (12341234 / 43214321, loaded with a scenario) with the sandbox clock set to the seeds' 2023."""

from __future__ import annotations

from pathlib import Path

from starlette.testclient import TestClient

from support import ApiClient, MerchantKeys, World
from wxpartner.domain.merchants import KeyMode
from wxpartner.protocol import keys as k

SP, SUB = "12341234", "43214321"
EMPLOYEE = "WeBizPay_a968402a-73bb-43e2-9e1a-8371b0ca3d7c"

SCENARIO = f"""
merchants:
  - {{mchid: "{SP}", name: 企业支付服务商, certificates: [{{generate: true}}], sub_merchants: ["{SUB}"]}}
webizpay:
  employees:
    - {{sp_mchid: "{SP}", sub_mchid: "{SUB}", user_id: employee123, employee_id: wx_emp_123456}}
    - {{sp_mchid: "{SP}", sub_mchid: "{SUB}", user_id: employee456, employee_id: {EMPLOYEE}}}
"""

# seed 001, the Java example's request (Gson: compact, declaration order)
ISSUE = (
    '{"sp_mchid":"12341234","sub_mchid":"43214321","card_template_id":"template_123","amount":10000,'
    '"card_name":"报销额度卡","out_card_no":"out_card_123456","effective_end_time":"2023-12-31T23:59:59+08:00",'
    '"card_remark":"2023年1月差旅报销"}'
)
# seed 000, the curl example's body, whitespace and all
CANCEL = '{\n    "sp_mchid" : "12341234",\n    "sub_mchid" : "43214321",\n    "reason" : "商户主动作废"\n  }'
# seed 004, the curl example's body
REVOKE = '{\n    "sp_mchid" : "12341234",\n    "sub_mchid" : "43214321"\n  }'


def seed_client(control: TestClient, http: TestClient, world: World) -> ApiClient:
    control.post("/sandbox/clock", json={"set": "2023-01-01T00:00:00+08:00", "freeze": True})
    loaded = control.post("/sandbox/scenario", content=SCENARIO.encode())
    assert loaded.status_code == 200, loaded.text
    made = loaded.json()["generated_keys"][SP][0]
    key = k.load_private_key(Path(made["private_key"]).read_bytes())
    cert = Path(made["certificate"]).read_text()
    world.merchants[SP] = MerchantKeys(
        SP, key, k.private_key_pem(key), cert, made["serial_no"], KeyMode.PUBLIC_KEY
    )
    return ApiClient(http, world, SP)


def test_seed_examples_byte_for_byte(control: TestClient, http: TestClient, world: World) -> None:
    client = seed_client(control, http, world)
    try:
        issued = client.post(f"/v3/webizpay/employees/{EMPLOYEE}/quota-cards", ISSUE)
        assert issued.status_code == 200, issued.text
        card_no = issued.json()["card_no"]
        # the seed's response example, with our card_no, the request's out_card_no (the example's
        # mch_card_123456 contradicts its own request) and the begin time with its seconds
        assert issued.content.decode() == (
            '{"sp_mchid":"12341234","sub_mchid":"43214321","out_card_no":"out_card_123456",'
            f'"employee_id":"{EMPLOYEE}","card_no":"{card_no}",'
            '"effective_begin_time":"2023-01-01T00:00:00+08:00","effective_end_time":"2023-12-31T23:59:59+08:00"}'
        )

        control.post("/sandbox/clock", json={"set": "2023-12-31T23:59:58+08:00", "freeze": True})
        late = client.post(
            f"/v3/webizpay/employees/{EMPLOYEE}/quota-cards",
            ISSUE.replace("out_card_123456", "mch_card_123456").replace(
                "2023-12-31T23:59:59", "2024-06-30T23:59:59"
            ),
        )
        assert late.status_code == 200, late.text
        late_no = late.json()["card_no"]
        control.post("/sandbox/clock", json={"set": "2023-12-31T23:59:59+08:00", "freeze": True})
        cancelled = client.post(f"/v3/webizpay/employees/{EMPLOYEE}/quota-cards/{late_no}/cancel", CANCEL)
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.content.decode() == (
            '{"sp_mchid":"12341234","sub_mchid":"43214321",'
            f'"employee_id":"{EMPLOYEE}","card_no":"{late_no}",'
            '"card_state":"DISABLED","card_disabled_time":"2023-12-31T23:59:59+08:00"}'
        )

        revoked = client.post("/v3/webizpay/employee/wx_emp_123456/revoke", REVOKE)
        assert revoked.status_code == 200, revoked.text
        # the seed's example says 用户主动撤销; an API revoke is reported as 企业发起 (callback enum)
        assert revoked.content.decode() == (
            '{"sp_mchid":"12341234","sub_mchid":"43214321","user_id":"employee123",'
            '"authorization_state":"REVOKED","authorization_revoked_time":"2023-12-31T23:59:59+08:00",'
            '"reason":"企业发起"}'
        )
        # the first card ends exactly now: still usable at that instant (seed 001: unusable "在超过这个
        # 时间之后"), DISABLED because it expired one second later
        first_url = f"/v3/webizpay/employees/{EMPLOYEE}/quota-cards/{card_no}?sp_mchid={SP}&sub_mchid={SUB}"
        assert client.get(first_url).json()["card_state"] == "ACTIVE"
        control.post("/sandbox/clock", json={"advance": 1})
        first = client.get(first_url).json()
        assert first["card_state"] == "DISABLED" and first["reason"] == "有效期结束"
        assert first["card_disabled_time"] == "2023-12-31T23:59:59+08:00"
    finally:
        world.merchants.pop(SP, None)
