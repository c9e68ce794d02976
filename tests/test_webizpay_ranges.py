"""webizpay W13–W17: available-merchant ranges and their merchant identifiers, over real signed HTTP."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from support import SP_A, SP_B, ApiClient

RANGES = "/v3/webizpay/avail-mch-ranges"
ORG_1 = "91110000710926094P"
ORG_2 = "91440300708461136T"
ORG_3 = "91350100M000100Y43"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def idents(range_id: str) -> str:
    return f"{RANGES}/{range_id}/merchant-identifiers"


def create(client: ApiClient, identifier_type: str = "ORGANIZATION_CODE") -> str:
    resp = client.post(RANGES, {"sp_mchid": client.mchid, "identifier_type": identifier_type})
    assert resp.status_code == 200, resp.text
    return str(resp.json()["range_id"])


def add(client: ApiClient, range_id: str, identifier: str) -> httpx.Response:
    return client.post(idents(range_id), {"sp_mchid": client.mchid, "merchant_identifier": identifier})


def listing(client: ApiClient, range_id: str, query: str = "offset=0&limit=100") -> httpx.Response:
    return client.get(f"{idents(range_id)}?sp_mchid={client.mchid}&{query}")


def assert_error(resp: httpx.Response, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    assert body["code"] == code, body
    assert body["message"]
    if field is not None:
        assert body["detail"]["field"] == field, body
    assert resp.headers.get("Wechatpay-Signature"), "error answers are signed too"
    return body


def test_create_and_list_ranges_in_creation_order(client_a: ApiClient) -> None:
    resp = client_a.post(RANGES, {"sp_mchid": SP_A, "identifier_type": "ORGANIZATION_CODE"})
    assert resp.status_code == 200, resp.text
    assert resp.headers["Wechatpay-Signature"]
    first = resp.json()["range_id"]
    assert UUID.match(first)
    second = create(client_a, "TRANSACTION_ID")
    listed = client_a.get(f"{RANGES}?sp_mchid={SP_A}")
    assert listed.status_code == 200, listed.text
    assert listed.json() == {
        "sp_mchid": SP_A,
        "range_list": [
            {"range_id": first, "identifier_type": "ORGANIZATION_CODE"},
            {"range_id": second, "identifier_type": "TRANSACTION_ID"},
        ],
    }


def test_ranges_are_isolated_between_merchants(client_a: ApiClient, client_b: ApiClient) -> None:
    range_a = create(client_a)
    assert add(client_a, range_a, ORG_1).status_code == 200
    empty = client_b.get(f"{RANGES}?sp_mchid={SP_B}")
    assert empty.status_code == 200 and empty.json() == {"sp_mchid": SP_B, "range_list": []}
    # SP_B cannot see, extend, list or shrink SP_A's range: it does not exist for SP_B.
    assert_error(add(client_b, range_a, ORG_2), 404, "RESOURCE_NOT_EXISTS")
    assert_error(listing(client_b, range_a), 404, "RESOURCE_NOT_EXISTS")
    resp = client_b.delete(f"{idents(range_a)}/{ORG_1}", {"sp_mchid": SP_B})
    assert_error(resp, 404, "RESOURCE_NOT_EXISTS")
    # ... and SP_A's data is untouched.
    assert listing(client_a, range_a).json()["data"] == [ORG_1]


def test_sp_mchid_must_be_the_signer(client_a: ApiClient) -> None:
    body = {"sp_mchid": SP_B, "identifier_type": "ORGANIZATION_CODE"}
    err = assert_error(client_a.post(RANGES, body), 403, "NO_AUTH")
    assert SP_B in err["message"]
    assert_error(client_a.get(f"{RANGES}?sp_mchid={SP_B}"), 403, "NO_AUTH")
    range_id = create(client_a)
    resp = client_a.post(idents(range_id), {"sp_mchid": SP_B, "merchant_identifier": ORG_1})
    assert_error(resp, 403, "NO_AUTH")
    assert_error(client_a.delete(f"{idents(range_id)}/{ORG_1}", {"sp_mchid": SP_B}), 403, "NO_AUTH")


def test_create_range_validation(client_a: ApiClient) -> None:
    assert_error(
        client_a.post(RANGES, {"sp_mchid": SP_A, "identifier_type": "MCHID"}),
        400,
        "PARAM_ERROR",
        "/identifier_type",
    )
    assert_error(
        client_a.post(RANGES, {"identifier_type": "TRANSACTION_ID"}), 400, "PARAM_ERROR", "/sp_mchid"
    )
    assert_error(
        client_a.post(RANGES, {"sp_mchid": "1" * 33, "identifier_type": "TRANSACTION_ID"}),
        400,
        "PARAM_ERROR",
        "/sp_mchid",
    )
    assert_error(client_a.get(RANGES), 400, "PARAM_ERROR", "sp_mchid")
    # Nothing was created by the refused calls.
    assert client_a.get(f"{RANGES}?sp_mchid={SP_A}").json()["range_list"] == []


def test_add_identifier_is_idempotent_and_typed(client_a: ApiClient) -> None:
    org_range = create(client_a, "ORGANIZATION_CODE")
    first = add(client_a, org_range, ORG_1)
    assert first.status_code == 200, first.text
    assert first.json() == {"range_id": org_range}
    again = add(client_a, org_range, ORG_1)
    assert again.status_code == 200 and again.json() == {"range_id": org_range}
    assert listing(client_a, org_range).json()["data"] == [ORG_1]

    # The identifier must fit the range's type.
    assert_error(add(client_a, org_range, "4200000123202306081234567890X"), 400, "PARAM_ERROR")
    assert_error(add(client_a, org_range, "abc"), 400, "PARAM_ERROR", "/merchant_identifier")
    tx_range = create(client_a, "TRANSACTION_ID")
    assert add(client_a, tx_range, "4200000123202306081234567890").status_code == 200
    assert_error(add(client_a, tx_range, ORG_1), 400, "PARAM_ERROR", "/merchant_identifier")
    assert_error(add(client_a, tx_range, "9" * 65), 400, "PARAM_ERROR", "/merchant_identifier")
    resp = client_a.post(idents(tx_range), {"sp_mchid": SP_A})
    assert_error(resp, 400, "PARAM_ERROR", "/merchant_identifier")


def test_unknown_range_is_not_found(client_a: ApiClient) -> None:
    missing = "89f5123e-5ad4-4e0e-89b1-63ced0c798c5"
    assert_error(add(client_a, missing, ORG_1), 404, "RESOURCE_NOT_EXISTS")
    unknown = listing(client_a, missing)
    assert_error(unknown, 404, "RESOURCE_NOT_EXISTS")
    # each language once (the label was repeated whole: "可用商户范围 … (available-merchant range)不存在 (…)")
    assert unknown.json()["message"] == (
        f"可用商户范围 {missing}不存在 (available-merchant range {missing} does not exist)"
    )
    resp = client_a.delete(f"{idents(missing)}/{ORG_1}", {"sp_mchid": SP_A})
    assert_error(resp, 404, "RESOURCE_NOT_EXISTS")
    assert_error(listing(client_a, "r" * 65), 400, "PARAM_ERROR", "range_id")


def test_list_identifiers_pages(client_a: ApiClient) -> None:
    range_id = create(client_a, "TRANSACTION_ID")
    ids = [f"42000001232023060812345678{i:02d}" for i in range(5)]
    for ident in ids:
        assert add(client_a, range_id, ident).status_code == 200
    page = listing(client_a, range_id, "offset=1&limit=2")
    assert page.status_code == 200, page.text
    assert page.json() == {"offset": 1, "limit": 2, "count": 2, "total_count": 5, "data": ids[1:3]}
    tail = listing(client_a, range_id, "offset=4&limit=10").json()
    assert tail["count"] == 1 and tail["data"] == ids[4:] and tail["total_count"] == 5
    beyond = listing(client_a, range_id, "offset=10&limit=10").json()
    assert beyond == {"offset": 10, "limit": 10, "count": 0, "total_count": 5, "data": []}
    # limit: documented default 100 when absent; at most 500.
    default = listing(client_a, range_id, "offset=0").json()
    assert default["limit"] == 100 and default["count"] == 5
    assert_error(listing(client_a, range_id, "offset=0&limit=501"), 400, "PARAM_ERROR", "limit")
    assert_error(listing(client_a, range_id, "offset=0&limit=0"), 400, "PARAM_ERROR", "limit")
    assert_error(listing(client_a, range_id, "offset=-1&limit=10"), 400, "PARAM_ERROR", "offset")
    assert_error(listing(client_a, range_id, "offset=x&limit=10"), 400, "PARAM_ERROR", "offset")
    assert_error(listing(client_a, range_id, "limit=10"), 400, "PARAM_ERROR", "offset")


def test_delete_identifier_with_signed_json_body(client_a: ApiClient) -> None:
    range_id = create(client_a)
    for ident in (ORG_1, ORG_2, ORG_3):
        assert add(client_a, range_id, ident).status_code == 200
    resp = client_a.delete(f"{idents(range_id)}/{ORG_2}", {"sp_mchid": SP_A})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"range_id": range_id}
    assert resp.headers["Wechatpay-Signature"]
    assert listing(client_a, range_id).json()["data"] == [ORG_1, ORG_3]
    # Deleting it again: it is no longer there.
    again = client_a.delete(f"{idents(range_id)}/{ORG_2}", {"sp_mchid": SP_A})
    assert_error(again, 404, "RESOURCE_NOT_EXISTS")
    # The body is required (DELETE with a JSON body).
    assert_error(client_a.delete(f"{idents(range_id)}/{ORG_1}"), 400, "PARAM_ERROR", "/")
    assert_error(client_a.delete(f"{idents(range_id)}/{ORG_1}", {}), 400, "PARAM_ERROR", "/sp_mchid")
    assert listing(client_a, range_id).json()["total_count"] == 2
    # A re-added identifier goes to the end of the list.
    assert add(client_a, range_id, ORG_2).status_code == 200
    assert listing(client_a, range_id).json()["data"] == [ORG_1, ORG_3, ORG_2]


def test_wrong_method_is_refused(client_a: ApiClient) -> None:
    resp = client_a.request("PUT", RANGES, {"sp_mchid": SP_A})
    assert resp.status_code == 405
    assert "GET" in resp.headers["Allow"] and "POST" in resp.headers["Allow"]


def test_sandbox_reset_of_one_merchant(client_a: ApiClient, client_b: ApiClient, control: TestClient) -> None:
    range_a = create(client_a)
    add(client_a, range_a, ORG_1)
    range_b = create(client_b)
    add(client_b, range_b, ORG_1)
    resp = control.post("/sandbox/reset", json={"mchid": SP_A})
    assert resp.status_code == 200, resp.text
    assert client_a.get(f"{RANGES}?sp_mchid={SP_A}").json()["range_list"] == []
    assert_error(listing(client_a, range_a), 404, "RESOURCE_NOT_EXISTS")
    assert listing(client_b, range_b).json()["data"] == [ORG_1]


@pytest.mark.slow
def test_delete_with_body_over_a_real_socket(live_server: Any, world: Any) -> None:
    """A DELETE with a JSON body survives a real HTTP server (the body is signed and must arrive)."""
    with httpx.Client(base_url=live_server.url) as http:
        client = ApiClient(http, world, SP_A)
        range_id = create(client)
        assert add(client, range_id, ORG_1).status_code == 200
        resp = client.delete(f"{idents(range_id)}/{ORG_1}", {"sp_mchid": SP_A})
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"range_id": range_id}
        assert listing(client, range_id).json()["total_count"] == 0
