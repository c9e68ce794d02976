"""Authorization edge cases beyond test_verification_matrix.py: the scheme and the parameter names are
case-sensitive, optional whitespace around the commas is whitespace, a nonce reused with another body
under a valid signature is a replay that changes nothing, and a nonce is the merchant's own."""

from __future__ import annotations

import time
from typing import Any

import pytest
from starlette.testclient import TestClient

from support import SECOND_A, SP_A, ApiClient, World, sign_request

RECHARGE = "/v3/platsolution/ecommerce/recharge-employees"
LIST = f"{RECHARGE}/sub-mchid/{SECOND_A}"


def _send(http: TestClient, world: World, mutate: Any) -> dict[str, Any]:
    signed = sign_request(world.merchants[SP_A], "GET", LIST)
    headers = {**signed.headers, "Authorization": mutate(signed.headers["Authorization"])}
    resp = http.get(LIST, headers=headers)
    return {"status": resp.status_code, **resp.json()}


@pytest.mark.parametrize(
    ("mutate", "issue"),
    [
        (lambda a: a.replace("WECHATPAY2-SHA256-RSA2048", "wechatpay2-sha256-rsa2048"), "unsupported scheme"),
        (lambda a: a.replace("mchid=", "MCHID=", 1), "unknown parameter 'MCHID'"),
        (lambda a: a.replace("signature=", "Signature="), "unknown parameter 'Signature'"),
        (lambda a: a + ",", "malformed parameter"),
        (lambda a: a.replace('",', '" ,', 1).replace('mchid="', 'mchid= "', 1), "malformed parameter"),
        (lambda a: a.replace('mchid="', "mchid='", 1), "malformed parameter"),
    ],
)
def test_variants_of_the_grammar_are_sign_errors(
    http: TestClient, world: World, mutate: Any, issue: str
) -> None:
    body = _send(http, world, mutate)
    assert body["status"] == 401 and body["code"] == "SIGN_ERROR", body
    assert issue in body["detail"]["detail"]["issue"], body


def test_whitespace_around_the_commas_is_whitespace(http: TestClient, world: World) -> None:
    assert _send(http, world, lambda a: a.replace(",", ",\t "))["status"] == 200
    assert _send(http, world, lambda a: a.replace(",", " , "))["status"] == 200


def test_a_nonce_reused_with_another_body_changes_nothing(client_a: ApiClient, http: TestClient) -> None:
    first = client_a.post(
        RECHARGE, {"sub_mchid": SECOND_A, "sp_openid": "oFirstOpenid"}, nonce="reused-nonce-1"
    )
    assert first.status_code == 200, first.text
    again = client_a.post(
        RECHARGE, {"sub_mchid": SECOND_A, "sp_openid": "oSecondOpenid"}, nonce="reused-nonce-1"
    )
    assert again.status_code == 401 and again.json()["detail"]["field"] == "nonce_str", again.text
    listed = client_a.get(LIST)
    assert [e["sp_openid"] for e in listed.json()["employees"]] == ["oFirstOpenid"], listed.text


def test_a_captured_request_respelled_is_no_new_request(client_a: ApiClient, world: World) -> None:
    """The signature covers the timestamp as sent: "00<seconds>" names the same second, but a captured
    request respelled so (to look new) no longer verifies."""
    signed = sign_request(world.merchants[SP_A], "GET", LIST)
    auth = signed.headers["Authorization"]
    stamp = auth.split('timestamp="')[1].split('"')[0]
    assert abs(int(stamp) - time.time()) < 300
    replayed = {
        **signed.headers,
        "Authorization": auth.replace(f'timestamp="{stamp}"', f'timestamp="00{stamp}"'),
    }
    resp = client_a.http.get(LIST, headers=replayed)
    assert resp.status_code == 401 and resp.json()["detail"]["detail"]["issue"] == "sign not match", resp.text
