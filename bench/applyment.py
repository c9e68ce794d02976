"""State for A2 (query applyment): a channel merchant's submitted applyments, made through the SDK
(which downloads the platform certificates and encrypts the sensitive fields, as an integrator's
code would)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .presign import Signer

NAME = "张三"
IDNO = "110101199003070011"


def applyment_body(code: str) -> dict[str, Any]:
    """A complete enterprise submission; ENC fields in plaintext (the SDK encrypts them)."""
    return {
        "business_code": code,
        "contact_info": {
            "contact_type": "LEGAL",
            "name": NAME,
            "id_card_number": IDNO,
            "mobile": "13800138000",
        },
        "subject_info": {
            "subject_type": "SUBJECT_TYPE_ENTERPRISE",
            "business_license_info": {
                "licence_number": "914403001922038216",
                "licence_copy": "media-licence-copy",
                "merchant_name": "深圳测试科技有限公司",
                "legal_person": NAME,
                "company_address": "广东省深圳市南山区科技园",
                "licence_valid_date": '["2019-01-01","forever"]',
            },
        },
        "identification_info": {
            "identification_type": "IDENTIFICATION_TYPE_IDCARD",
            "identification_name": NAME,
            "identification_number": IDNO,
            "identification_valid_date": '["2019-01-01","2039-01-01"]',
            "identification_front_copy": "media-id-front",
        },
        "addition_info": {"confirm_mchid_list": ["1230000901"]},
    }


def submit_applyments(base_url: str, signer: Signer, apiv3_key: str, count: int, stamp: str) -> list[str]:
    """Submit ``count`` applyments as ``signer`` (a channel merchant); returns their applyment_ids."""
    from wxpartner.client import Client

    ids: list[str] = []
    with Client(
        signer.mchid, signer.serial_no, Path(signer.private_key_path), base_url=base_url, apiv3_key=apiv3_key
    ) as client:
        for i in range(count):
            answer = client.apply4subject.submit(applyment_body(f"bench{stamp}{i:04d}"))
            ids.append(str(answer.applyment_id))
    return ids
