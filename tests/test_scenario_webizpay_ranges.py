"""The webizpay section carries the available-merchant ranges (W13–W17) with their identifiers and the
store entity-match batches (W9/W10): an export, reset and load answers W14, W16 and W10 as before, with
the same range_ids, batch_ids and times. The export left them out: after a reset and load every range
was gone and a restored card named a range W14 no longer listed."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from starlette.testclient import TestClient

from support import SP_A, SP_B, SUB_A, ApiClient
from webizpay_support import authorize, issue

RANGES = "/v3/webizpay/avail-mch-ranges"
MATCHES = "/v3/webizpay/stores/entity-matches"
ORG_1 = "91110000710926094P"
ORG_2 = "91440300708461136T"
ORG_3 = "91350100M000100Y43"


def _create_range(client: ApiClient, identifier_type: str) -> str:
    resp = client.post(RANGES, {"sp_mchid": client.mchid, "identifier_type": identifier_type})
    assert resp.status_code == 200, resp.text
    return str(resp.json()["range_id"])


def _add(client: ApiClient, range_id: str, identifier: str) -> None:
    resp = client.post(
        f"{RANGES}/{range_id}/merchant-identifiers",
        {"sp_mchid": client.mchid, "merchant_identifier": identifier},
    )
    assert resp.status_code == 200, resp.text


def _match(client: ApiClient, out_batch_id: str, codes: list[str]) -> str:
    details = [
        {"organization_code": code, "store_name": f"门店{n}", "product_type": "CODE_PAY"}
        for n, code in enumerate(codes)
    ]
    resp = client.post(
        MATCHES, {"sp_mchid": client.mchid, "out_batch_id": out_batch_id, "match_details": details}
    )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["batch_id"])


def _w10(client: ApiClient, batch_id: str) -> Any:
    resp = client.get(f"{MATCHES}/{batch_id}?sp_mchid={client.mchid}")
    assert resp.status_code == 200, resp.text
    return resp.json()


def _answers(clients: list[ApiClient], range_ids: list[tuple[ApiClient, str]]) -> Any:
    """W14 of each provider and W16 (every identifier) of each range."""
    w14 = []
    for client in clients:
        resp = client.get(f"{RANGES}?sp_mchid={client.mchid}")
        assert resp.status_code == 200, resp.text
        w14.append(resp.json())
    w16 = []
    for client, range_id in range_ids:
        resp = client.get(
            f"{RANGES}/{range_id}/merchant-identifiers?sp_mchid={client.mchid}&offset=0&limit=100"
        )
        assert resp.status_code == 200, resp.text
        w16.append(resp.json())
    return w14, w16


def test_ranges_and_match_batches_round_trip(
    client_a: ApiClient, client_b: ApiClient, control: TestClient
) -> None:
    orgs = _create_range(client_a, "ORGANIZATION_CODE")
    for org in (ORG_1, ORG_2, ORG_3):
        _add(client_a, orgs, org)
    gone = client_a.delete(f"{RANGES}/{orgs}/merchant-identifiers/{ORG_2}", {"sp_mchid": SP_A})
    assert gone.status_code == 200, gone.text
    txs = _create_range(client_a, "TRANSACTION_ID")
    _add(client_a, txs, "4200000123202306081234567890")
    other = _create_range(client_b, "ORGANIZATION_CODE")
    _add(client_b, other, ORG_3)
    done = _match(client_a, "batch_done_1", [ORG_1, "91000000000000000X"])
    _w10(client_a, done)
    completed = _w10(client_a, done)  # ACCEPTED -> IN_PROGRESS -> COMPLETED
    assert completed["state"] == "COMPLETED" and len(completed["match_results"]) == 2
    waiting = _match(client_a, "batch_wait_1", [ORG_2])
    employee_id = authorize(client_a, control, "user_range_1")
    card = issue(client_a, employee_id, "range_card_1", avail_mch_range_id=orgs)

    range_ids = [(client_a, orgs), (client_a, txs), (client_b, other)]
    before = _answers([client_a, client_b], range_ids)
    exported = control.get("/sandbox/scenario")
    assert exported.status_code == 200
    document = exported.json()
    section = document["webizpay"]
    assert [r["range_id"] for r in section["ranges"]] == [orgs, txs, other]
    assert [(i["range_id"], i["merchant_identifier"]) for i in section["range_identifiers"]] == [
        (orgs, ORG_1),
        (orgs, ORG_3),
        (txs, "4200000123202306081234567890"),
        (other, ORG_3),
    ]
    assert [(b["batch_id"], b["state"]) for b in section["match_batches"]] == [
        (done, "COMPLETED"),
        (waiting, "ACCEPTED"),
    ]
    [restored_card] = section["cards"]
    assert restored_card["avail_mch_range_id"] == orgs

    assert control.post("/sandbox/reset", json={}).status_code == 200
    assert "webizpay" not in control.get("/sandbox/scenario").json()
    loaded = control.post("/sandbox/scenario", content=exported.content)
    assert loaded.status_code == 200, loaded.text
    report = loaded.json()["webizpay"]
    assert report["range_ids"] == [orgs, txs, other] and report["batch_ids"] == [done, waiting]
    assert report["card_nos"] == [card["card_no"]]
    assert control.get("/sandbox/scenario").json() == document
    assert _answers([client_a, client_b], range_ids) == before
    assert _w10(client_a, done) == completed
    # the same file again adds nothing (no second range, identifier or batch)
    again = control.post("/sandbox/scenario", content=exported.content)
    assert again.status_code == 200, again.text
    assert control.get("/sandbox/scenario").json() == document
    assert _answers([client_a, client_b], range_ids) == before
    # and what loaded back is alive: W9 with the waiting batch's out_batch_id is its repeat, W10 moves it
    repeat = client_a.post(
        MATCHES,
        {
            "sp_mchid": SP_A,
            "out_batch_id": "batch_wait_1",
            "match_details": [
                {"organization_code": ORG_2, "store_name": "门店0", "product_type": "CODE_PAY"}
            ],
        },
    )
    assert repeat.status_code == 200 and repeat.json()["batch_id"] == waiting, repeat.text
    assert _w10(client_a, waiting)["state"] == "IN_PROGRESS"


RANGE_ID = "0f5b2c1e-7d3a-4b8e-9c6f-2a1b3c4d5e6f"
BATCH_ID = "1030000071000000000000001"  # 25 digits, as W9 makes them


def _file() -> dict[str, Any]:
    return {
        "webizpay": {
            "ranges": [
                {
                    "sp_mchid": SP_A,
                    "range_id": RANGE_ID,
                    "identifier_type": "ORGANIZATION_CODE",
                    "create_time": "2026-03-01T10:00:00.000+08:00",
                }
            ],
            "range_identifiers": [
                {
                    "range_id": RANGE_ID,
                    "merchant_identifier": ORG_1,
                    "create_time": "2026-03-01T10:00:00.000+08:00",
                }
            ],
            "match_batches": [
                {
                    "sp_mchid": SP_A,
                    "batch_id": BATCH_ID,
                    "out_batch_id": "batch_file_1",
                    "state": "COMPLETED",
                    "match_details": [
                        {"organization_code": ORG_1, "store_name": "门店", "product_type": "NONE"}
                    ],
                    "match_results": [
                        {"organization_code": ORG_1, "store_name": "门店", "has_valid_mchid": True}
                    ],
                    "create_time": "2026-03-01T10:00:00.000+08:00",
                    "update_time": "2026-03-01T10:00:20.000+08:00",
                }
            ],
            "employees": [{"sp_mchid": SP_A, "sub_mchid": SUB_A, "user_id": "user_range_2"}],
            "cards": [
                {
                    "sp_mchid": SP_A,
                    "sub_mchid": SUB_A,
                    "user_id": "user_range_2",
                    "out_card_no": "range_card_2",
                    "card_no": "1000000000000000077",
                    "amount": 1000,
                    "card_name": "差旅费用卡",
                    "effective_end_time": "2099-12-31T23:59:59+08:00",
                    "avail_mch_range_id": RANGE_ID,
                }
            ],
        }
    }


def _with(path: str, value: Any) -> dict[str, Any]:
    """_file with the value at ``path`` (webizpay.ranges[0].range_id) set, or appended at [len]."""
    data = copy.deepcopy(_file())
    *parents, last = path.replace("]", "").replace("[", ".").split(".")
    node: Any = data
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    if last.isdigit() and int(last) == len(node):
        node.append(value)
    elif last.isdigit():
        node[int(last)] = value
    elif value is _DROP:
        del node[last]
    else:
        node[last] = value
    return data


_DROP = object()
_WRONG: list[tuple[str, Any, str]] = [
    # (path set, value, the path named)
    ("webizpay.ranges[0].range_id", "a/b", "webizpay.ranges[0].range_id"),
    ("webizpay.ranges[0].identifier_type", "STORE", "webizpay.ranges[0].identifier_type"),
    ("webizpay.ranges[0].sp_mchid", "1239999999", "webizpay.ranges[0].sp_mchid"),  # no such merchant
    ("webizpay.ranges[0].create_time", "2026-13-01T00:00:00Z", "webizpay.ranges[0].create_time"),
    ("webizpay.ranges[0].note", "x", "webizpay.ranges[0].note"),
    ("webizpay.ranges[1]", _file()["webizpay"]["ranges"][0], "webizpay.ranges[1].range_id"),  # twice
    (
        "webizpay.range_identifiers[0].merchant_identifier",
        "4200000123",
        "webizpay.range_identifiers[0].merchant_identifier",
    ),
    ("webizpay.range_identifiers[0].range_id", "no-such-range", "webizpay.range_identifiers[0].range_id"),
    (
        "webizpay.range_identifiers[0].create_time",
        "2026-03-01T09:59:59.999+08:00",  # before its range
        "webizpay.range_identifiers[0].create_time",
    ),
    (
        "webizpay.range_identifiers[1]",
        _file()["webizpay"]["range_identifiers"][0],
        "webizpay.range_identifiers[1].merchant_identifier",
    ),
    ("webizpay.match_batches[0].state", "DONE", "webizpay.match_batches[0].state"),
    ("webizpay.match_batches[0].state", "ACCEPTED", "webizpay.match_batches[0].match_results"),  # has results
    ("webizpay.match_batches[0].match_results", _DROP, "webizpay.match_batches[0].match_results"),
    (
        "webizpay.match_batches[0].match_results",
        [{"organization_code": ORG_2, "store_name": "门店", "has_valid_mchid": True}],
        "webizpay.match_batches[0].match_results[0]",
    ),
    ("webizpay.match_batches[0].match_results", [], "webizpay.match_batches[0].match_results"),
    (
        "webizpay.match_batches[0].match_results",
        [{"organization_code": ORG_1, "store_name": "门店", "has_valid_mchid": "yes"}],
        "webizpay.match_batches[0].match_results[0].has_valid_mchid",
    ),
    (
        "webizpay.match_batches[0].match_details",
        [{"organization_code": ORG_1, "store_name": "门店", "product_type": "NONE", "x": 1}],
        "webizpay.match_batches[0].match_details[0].x",
    ),
    (
        "webizpay.match_batches[0].update_time",
        "2026-03-01T09:59:59.000+08:00",
        "webizpay.match_batches[0].update_time",
    ),
    ("webizpay.match_batches[0].out_batch_id", "b1", "webizpay.match_batches[0].out_batch_id"),  # < 6
    ("webizpay.match_batches[0].batch_id", "", "webizpay.match_batches[0].batch_id"),
    ("webizpay.match_batches[0].sp_mchid", "1239999999", "webizpay.match_batches[0].sp_mchid"),
    (
        "webizpay.match_batches[1]",
        {**_file()["webizpay"]["match_batches"][0], "out_batch_id": "batch_file_2"},
        "webizpay.match_batches[1].batch_id",
    ),
    (
        "webizpay.match_batches[1]",
        {**_file()["webizpay"]["match_batches"][0], "batch_id": BATCH_ID[:-1] + "9"},
        "webizpay.match_batches[1].out_batch_id",
    ),
    ("webizpay.cards[0].avail_mch_range_id", "no-such-range", "webizpay.cards[0].avail_mch_range_id"),
]


def test_the_file_loads(control: TestClient) -> None:
    loaded = control.post("/sandbox/scenario", json=_file())
    assert loaded.status_code == 200, loaded.text
    section = control.get("/sandbox/scenario").json()["webizpay"]
    assert section["ranges"] == _file()["webizpay"]["ranges"]
    assert section["match_batches"] == _file()["webizpay"]["match_batches"]


@pytest.mark.parametrize(
    ("path", "value", "field"),
    _WRONG,
    ids=[f"{p.removeprefix('webizpay.')}={str(v)[:20]}" for p, v, _ in _WRONG],
)
def test_a_wrong_range_or_batch_is_refused_naming_its_path(
    control: TestClient, path: str, value: Any, field: str
) -> None:
    refused = control.post("/sandbox/scenario", json=_with(path, value))
    assert refused.status_code == 400, refused.text
    body = refused.json()
    assert (body["code"], body["detail"]["field"]) == ("SCENARIO_ERROR", field), body
    assert body["message"].startswith(f"{field}: "), body
    assert "webizpay" not in control.get("/sandbox/scenario").json()  # nothing written


def test_a_range_id_of_another_provider_is_taken(control: TestClient) -> None:
    assert control.post("/sandbox/scenario", json=_file()).status_code == 200
    theirs = _with("webizpay.ranges[0].sp_mchid", SP_B)
    del theirs["webizpay"]["cards"]
    refused = control.post("/sandbox/scenario", json=theirs)
    assert refused.status_code == 400, refused.text
    assert refused.json()["detail"]["field"] == "webizpay.ranges[0].range_id"
