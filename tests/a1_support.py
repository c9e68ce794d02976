"""The apply4subject submission (A1) request body, built in one place for every test that sends one.

Imports nothing of the server, so SDK, CLI, demo and peer tests can use it as cheaply as the
apply4subject tests. The sensitive fields go through ``seal``: the identity (plaintext, for a client
that encrypts them itself) or an RSA-OAEP encryption under the WeChat Pay key (apply4subject_support).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

NAME = "张三"
MOBILE = "13800138000"
IDNO = "110101199003070011"
SUB_X = "1230000901"  # a merchant number the applyment covers (confirm_mchid_list)
MERCHANT_NAME = "深圳测试科技有限公司"
ADDRESS = "广东省深圳市南山区科技园科兴科学园A栋"


def _plain(text: str) -> str:
    return text


def a1_body(
    business_code: str,
    *,
    name: str = NAME,
    idno: str = IDNO,
    mobile: str = MOBILE,
    legal_person: str = NAME,
    confirm: Sequence[str] | None = (SUB_X,),
    merchant_name: str = MERCHANT_NAME,
    identification_address: str | None = None,
    channel_id: str | None = None,
    seal: Callable[[str], str] = _plain,
) -> dict[str, Any]:
    """An A1 body for an enterprise whose legal person is the contact. ``seal`` is applied to the
    sensitive fields (contact name, ID number and mobile; identification name, number and address);
    ``confirm`` None leaves addition_info out; ``channel_id`` is set only when given."""
    body: dict[str, Any] = {
        "business_code": business_code,
        "contact_info": {
            "contact_type": "LEGAL",
            "name": seal(name),
            "id_card_number": seal(idno),
            "mobile": seal(mobile),
        },
        "subject_info": {
            "subject_type": "SUBJECT_TYPE_ENTERPRISE",
            "business_license_info": {
                "licence_number": "914403001922038216",
                "licence_copy": "media-licence-copy",
                "merchant_name": merchant_name,
                "legal_person": legal_person,
                "company_address": "广东省深圳市南山区科技园",
                "licence_valid_date": '["2019-01-01","forever"]',
            },
        },
        "identification_info": {
            "identification_type": "IDENTIFICATION_TYPE_IDCARD",
            "identification_name": seal(name),
            "identification_number": seal(idno),
            "identification_valid_date": '["2019-01-01","2039-01-01"]',
            "identification_front_copy": "media-id-front",
        },
    }
    if identification_address is not None:
        body["identification_info"]["identification_address"] = seal(identification_address)
    if confirm is not None:
        body["addition_info"] = {"confirm_mchid_list": list(confirm)}
    if channel_id is not None:
        body["channel_id"] = channel_id
    return body
