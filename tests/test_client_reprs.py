"""What ``repr`` of the SDK's objects shows: the family and group objects named which merchant and
server they call and what they offer (they were a bare ``<…Webizpay object at 0x…>``), and the trusted
keys their ids; never key material (an APIv3 key, a private key, a public key's PEM)."""

from __future__ import annotations

from typing import Any

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


@pytest.mark.parametrize("kind", [Client, AsyncClient])
def test_every_bound_operation_says_which_operation_it_runs(
    world: World, kind: type[Client] | type[AsyncClient]
) -> None:
    """``repr(client.webizpay.ranges.delete_identifier)`` was ``<function Ranges.delete_identifier at
    0x…>``: now the operation id, method and path, the method's name and its client; ``help()`` shows
    its parameters, its docstring and the method, path and retry rule; async ones stay coroutine
    functions. Every operation of every family is found in the operation table."""
    import inspect
    import pydoc

    from wxpartner.client.operations import Resource, operation_names
    from wxpartner.client.resources import apply4subject, recharge, webizpay

    m = world.merchants[SP_A]
    client = kind(SP_A, m.serial_no, m.private_key_pem, apiv3_key=APIV3_KEY, base_url=ORIGIN)
    owner = f"{kind.__name__}(mchid={SP_A!r}, base_url={ORIGIN!r})"
    delete = client.webizpay.ranges.delete_identifier
    assert repr(delete) == (
        "<operation webizpay.delete_merchant_identifier: DELETE "
        "/v3/webizpay/avail-mch-ranges/{range_id}/merchant-identifiers/{merchant_identifier} "
        f"(Ranges.delete_identifier of {owner})>"
    )
    shown = pydoc.render_doc(delete, renderer=pydoc.plaintext)
    compact = "".join(shown.split())  # Python 3.13's pydoc puts a long signature's parameters on lines
    assert "delete_identifier(range_id:str,merchant_identifier:str,request:" in compact
    assert "W17: remove an identifier" in shown
    assert (
        "DELETE /v3/webizpay/avail-mch-ranges/{range_id}/merchant-identifiers/{merchant_identifier}" in shown
    )
    assert inspect.iscoroutinefunction(delete) is (kind is AsyncClient)
    tables = {op.op_id: op for module in (webizpay, recharge, apply4subject) for op in module.OPERATIONS}
    groups = [getattr(client.webizpay, name) for name in client.webizpay._GROUPS]
    resources: list[Resource[Any]] = [*groups, client.recharge_employees, client.apply4subject]
    seen = set()
    for resource in resources:
        for name in operation_names(type(resource)):
            bound = getattr(resource, name)
            [op] = bound.operations
            text = repr(bound)
            assert text.startswith(f"<operation {op.op_id}: {op.method} {op.template} (") and owner in text
            assert f"{op.method} {op.template}" in (bound.__doc__ or "")
            seen.add(op.op_id)
    assert set(tables) <= seen, set(tables) - seen
    if isinstance(client, AsyncClient):
        anyio.run(client.aclose)
    else:
        client.close()
