"""What ``repr`` of the SDK's objects shows: the family and group objects named which merchant and
server they call and what they offer (they were a bare ``<…Webizpay object at 0x…>``), and the trusted
keys their ids; never key material (an APIv3 key, a private key, a public key's PEM)."""

from __future__ import annotations

import anyio
import pytest

from support import APIV3_KEY, SP_A, World
from wxpartner.client import AsyncClient, Client

ORIGIN = "http://127.0.0.1:9"  # nothing is sent: repr only


def secrets_of(world: World) -> list[str]:
    m = world.merchants[SP_A]
    return [APIV3_KEY, m.private_key_pem.splitlines()[1], world.platform_pub.public_key_pem.splitlines()[1]]


@pytest.mark.parametrize("kind", [Client, AsyncClient])
def test_families_groups_and_keys_say_what_they_are(
    world: World, kind: type[Client] | type[AsyncClient]
) -> None:
    m = world.merchants[SP_A]
    client = kind(
        SP_A,
        m.serial_no,
        m.private_key_pem,
        wechatpay_public_key=world.platform_pub.public_key_pem,
        wechatpay_public_key_id=world.platform_pub.key_id,
        platform_certificates=[world.platform_cert.certificate_pem],
        apiv3_key=APIV3_KEY,
        base_url=ORIGIN,
    )
    owner = f"{kind.__name__}(mchid={SP_A!r}, base_url={ORIGIN!r})"
    shown = {
        "webizpay": repr(client.webizpay),
        "quota_cards": repr(client.webizpay.quota_cards),
        "ranges": repr(client.webizpay.ranges),
        "recharge": repr(client.recharge_employees),
        "apply4subject": repr(client.apply4subject),
        "keys": repr(client.keys),
        "config": repr(client.config),
    }
    assert shown["webizpay"] == (
        f"<Webizpay of {owner}: users, quota_cards, employees, stores, bills, ranges>"
    )
    assert shown["quota_cards"] == (
        f"<QuotaCards of {owner}: issue, get, get_by_out_card_no, cancel, payment_url>"
    )
    assert shown["ranges"] == (
        f"<Ranges of {owner}: create, list, add_identifier, list_identifiers, identifiers, delete_identifier>"
    )
    assert shown["recharge"] == f"<RechargeEmployees of {owner}: add, list, delete>"
    assert shown["apply4subject"] == f"<Apply4Subject of {owner}: submit, get, cancel, merchant_state>"
    assert shown["keys"] == (
        f"KeySet(public_key_id={world.platform_pub.key_id!r}, "
        f"certificate_serials=[{world.platform_cert.key_id!r}], time_window=300)"
    )
    assert "KeySet(public_key_id=" in shown["config"]  # was <…KeySet object at 0x…>
    for name, text in shown.items():
        assert " at 0x" not in text, text
        for secret in secrets_of(world):
            assert secret not in text, (name, text)
    if isinstance(client, AsyncClient):
        anyio.run(client.aclose)
    else:
        client.close()
