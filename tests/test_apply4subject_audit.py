"""The controllable audit of apply4subject: control API transitions, the qrcode PNG and the confirmation
page it leads to, the automatic policy (sandbox clock / query count), scenario section and reset."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
import segno
from starlette.testclient import TestClient

from apply4subject_support import (
    BASE,
    CHANNEL_B,
    SUB_X,
    SUB_Y,
    act,
    act_ok,
    modules,
    png_info,
    query,
    set_roles,
    state_of,
    submit_ok,
)
from support import SP_A, SP_B, SP_C, ApiClient, World
from wxpartner.domain.apply4subject import ACTIONS, AUDIT, CONFIRM_CONTACT, FREEZE_REASON, StepRefused
from wxpartner.domain.clock import MAX_CLOCK_TS
from wxpartner.server import apply4subject_flow as flow
from wxpartner.server.app import WxPartnerApp
from wxpartner.store.apply4subject_repo import Apply4SubjectRepo


@pytest.fixture
def chan(app: WxPartnerApp, world: World, client_a: ApiClient) -> ApiClient:
    set_roles(app, world)
    return client_a


def _result(client: ApiClient, applyment_id: int) -> dict[str, Any]:
    resp = query(client, applyment_id=applyment_id)
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()
    return data


def _authorize_state(client: ApiClient, sub: str) -> str:
    resp = client.get(f"{BASE}/merchants/{sub}/state")
    assert resp.status_code == 200, resp.text
    return str(resp.json()["authorize_state"])


def test_control_api_needs_the_token(http: TestClient) -> None:
    resp = http.post("/sandbox/apply4subject/applyments/1/approve", json={})
    assert resp.status_code == 401


def test_every_transition_and_its_qrcode(chan: ApiClient, control: TestClient) -> None:
    applyment_id = submit_ok(chan, "flow_1", confirm=[SUB_X, SUB_Y])
    assert "qrcode_data" not in _result(chan, applyment_id)
    view = act_ok(control, applyment_id, "approve")
    assert view["applyment_state"] == "APPLYMENT_STATE_WAITTING_FOR_CONFIRM_CONTACT"
    got = _result(chan, applyment_id)
    assert got["applyment_state"] == "APPLYMENT_STATE_WAITTING_FOR_CONFIRM_CONTACT"
    assert got["qrcode_data"] and len(got["qrcode_data"]) <= 30000
    act_ok(control, applyment_id, "confirm_contact")
    got = _result(chan, applyment_id)
    assert got["applyment_state"] == "APPLYMENT_STATE_WAITTING_FOR_CONFIRM_LEGALPERSON" and got["qrcode_data"]
    act_ok(control, applyment_id, "confirm_legalperson")
    got = _result(chan, applyment_id)
    assert got["applyment_state"] == "APPLYMENT_STATE_PASSED" and got["qrcode_data"]
    assert "reject_param" not in got and "reject_reason" not in got
    assert _authorize_state(chan, SUB_X) == "AUTHORIZE_STATE_UNAUTHORIZED"
    act_ok(control, applyment_id, "authorize")
    assert _authorize_state(chan, SUB_X) == _authorize_state(chan, SUB_Y) == "AUTHORIZE_STATE_AUTHORIZED"
    assert _result(chan, applyment_id)["applyment_state"] == "APPLYMENT_STATE_PASSED"


def test_reject_carries_param_and_reason(chan: ApiClient, control: TestClient) -> None:
    applyment_id = submit_ok(chan, "rej_1")
    resp = act(control, applyment_id, "reject", reject_param="merchant_name")
    assert resp.status_code == 400  # a rejection needs both
    act_ok(
        control,
        applyment_id,
        "reject",
        reject_param="merchant_name",
        reject_reason="公司名称与工商局登记不一致",
    )
    assert _result(chan, applyment_id) == {
        "applyment_state": "APPLYMENT_STATE_REJECTED",
        "reject_param": "merchant_name",
        "reject_reason": "公司名称与工商局登记不一致",
    }


def test_freeze_returns_code_and_reason(chan: ApiClient, control: TestClient) -> None:
    applyment_id = submit_ok(chan, "frz_1")
    act_ok(control, applyment_id, "freeze", reject_reason="该主体已入驻")
    got = _result(chan, applyment_id)
    assert got["applyment_state"] == "APPLYMENT_STATE_FREEZED"
    assert got["reject_reason"] == "该主体已入驻" and got["qrcode_data"]
    act_ok(control, applyment_id, "authorize")
    assert _authorize_state(chan, SUB_X) == "AUTHORIZE_STATE_AUTHORIZED"


def test_pass_with_merchant_authorized_in_one_step(chan: ApiClient, control: TestClient) -> None:
    applyment_id = submit_ok(chan, "pass_1", confirm=[])
    act_ok(control, applyment_id, "pass", authorize=True, sub_mchids=[SUB_Y])
    assert state_of(chan, applyment_id) == "APPLYMENT_STATE_PASSED"
    assert _authorize_state(chan, SUB_Y) == "AUTHORIZE_STATE_AUTHORIZED"


# Found by a mutation audit: pass and reject were tried only from WAITTING_FOR_AUDIT.
FROM_CONFIRMATION = [
    (["approve"], "pass", "APPLYMENT_STATE_PASSED"),
    (["approve", "confirm_contact"], "pass", "APPLYMENT_STATE_PASSED"),
    (["approve"], "reject", "APPLYMENT_STATE_REJECTED"),
    (["approve", "confirm_contact"], "reject", "APPLYMENT_STATE_REJECTED"),
]


def test_pass_and_reject_from_either_confirmation_step(chan: ApiClient, control: TestClient) -> None:
    for n, (steps, action, state) in enumerate(FROM_CONFIRMATION):
        applyment_id = submit_ok(chan, f"conf_{n}")
        for step in steps:
            act_ok(control, applyment_id, step)
        act_ok(control, applyment_id, action, reject_param="p", reject_reason="r")
        assert state_of(chan, applyment_id) == state, (steps, action)


ILLEGAL = [
    ([], "confirm_contact"),
    ([], "authorize"),
    (["approve"], "freeze"),
    (["pass"], "reject"),
    (["reject"], "approve"),
]


def test_illegal_transitions_are_refused(chan: ApiClient, control: TestClient) -> None:
    for n, (steps, illegal) in enumerate(ILLEGAL):
        applyment_id = submit_ok(chan, f"ill_{n}")
        for step in steps:
            extra = {"reject_param": "p", "reject_reason": "r"} if step == "reject" else {}
            act_ok(control, applyment_id, step, **extra)
        before = state_of(chan, applyment_id)
        resp = act(control, applyment_id, illegal, reject_param="p", reject_reason="r")
        assert resp.status_code == 409, (illegal, resp.text)
        assert resp.json()["code"] == "INVALID_REQUEST"
        # the state and the way out, as the business API's cancel refusal names them
        sources = ", ".join(sorted(ACTIONS[illegal].sources))
        assert resp.json()["detail"] == {
            "state": before,
            "issue": f"{illegal} is possible only from {sources}",
        }
        assert state_of(chan, applyment_id) == before
    unknown = act(control, applyment_id, "teleport")
    assert unknown.status_code == 400 and unknown.json()["code"] == "INVALID_REQUEST", unknown.text
    assert unknown.json()["detail"] == {
        "field": "action",
        "location": "path",
        "value": "teleport",
        "issue": unknown.json()["message"],
    }
    assert act(control, applyment_id, "pass", sub_mchids=["not-digits"]).status_code == 400
    # str.isdigit() takes these; no merchant number is written with them (A4 refuses them too)
    for odd in ("1900000²", "１９００００００１", "١٩٠٠"):
        assert act(control, applyment_id, "pass", sub_mchids=[odd]).status_code == 400, odd
    assert act(control, 99999999999999, "approve").status_code == 404
    assert act(control, "99999999999999999999", "approve").status_code == 400  # type: ignore[arg-type]


def test_the_state_is_checked_before_what_the_step_needs(chan: ApiClient, control: TestClient) -> None:
    """Rejecting a PASSED applyment (final) is an illegal move, 409, with or without reasons; it answered
    400 "reject needs reject_param and reject_reason" when they were left out, as if giving them would
    have worked. authorize was checked in this order already; a value no step takes is still 400 first."""
    passed = submit_ok(chan, "final_1", confirm=[])
    act_ok(control, passed, "pass")
    for body in ({}, {"reject_param": "p"}, {"reject_reason": "r"}):
        resp = act(control, passed, "reject", **body)
        assert resp.status_code == 409 and resp.json()["code"] == "INVALID_REQUEST", (body, resp.text)
        assert resp.json()["detail"]["state"] == "APPLYMENT_STATE_PASSED"
    in_audit = submit_ok(chan, "final_2", confirm=[])
    for step in ("authorize", "confirm_contact"):  # nothing to authorize, and not in a state for it
        assert act(control, in_audit, step).status_code == 409, step
    resp = act(control, in_audit, "reject")  # the move fits: what it needs is missing
    assert resp.status_code == 400 and "reject needs reject_param" in resp.json()["message"], resp.text
    assert act(control, passed, "reject", reject_param="p" * 257).status_code == 400
    assert state_of(chan, passed) == "APPLYMENT_STATE_PASSED" and state_of(chan, in_audit) == AUDIT


def test_an_action_body_is_taken_as_written(chan: ApiClient, control: TestClient) -> None:
    """Found using the control API: {"authorize": "yes"} (or "false", or 1) was taken as true, and
    {"authorize": true} with a step that does not reach PASSED answered 200 and authorized nothing; an
    unknown field was refused as "Extra inputs are not permitted", naming it only in the detail."""
    applyment_id = submit_ok(chan, "body_1")
    for loose in ("yes", "false", 1):
        resp = act(control, applyment_id, "pass", authorize=loose)
        assert resp.status_code == 400 and resp.json()["detail"]["field"] == "authorize", (loose, resp.text)
    resp = act(control, applyment_id, "approve", authorize=True)
    assert resp.status_code == 400 and "authorize: true goes with a step" in resp.json()["message"], resp.text
    resp = act(control, applyment_id, "approve", reject_reasn="x")
    assert resp.status_code == 400, resp.text
    assert resp.json()["message"].startswith("unknown field(s): reject_reasn; known: reject_param")
    assert state_of(chan, applyment_id) == AUDIT
    act_ok(control, applyment_id, "approve")
    act_ok(control, applyment_id, "confirm_contact")
    act_ok(control, applyment_id, "confirm_legalperson", authorize=True)  # reaches PASSED: authorizes
    assert _authorize_state(chan, SUB_X) == "AUTHORIZE_STATE_AUTHORIZED"


def test_qrcode_is_a_png_of_the_confirmation_url(chan: ApiClient, control: TestClient) -> None:
    applyment_id = submit_ok(chan, "png_1")
    view = act_ok(control, applyment_id, "approve")
    url = view["confirm_url"]
    assert re.fullmatch(r"http://127\.0\.0\.1:8080/apply4subject/confirm/[A-Za-z0-9_-]{32}", url), url
    png = base64.b64decode(_result(chan, applyment_id)["qrcode_data"], validate=True)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    width, height, rows = png_info(png)
    expected = segno.make(url, error="m")
    size = expected.symbol_size(scale=1, border=0)[0]
    assert width == height == (size + 8) * 4
    # Decode the pixels back to modules and compare with the QR symbol of the URL.
    assert modules(rows, size, scale=4, border=4) == [[bool(v) for v in row] for row in expected.matrix]


def test_confirmation_page_drives_the_flow(chan: ApiClient, control: TestClient, http: TestClient) -> None:
    applyment_id = submit_ok(chan, "page_1")
    url = act_ok(control, applyment_id, "approve")["confirm_url"]
    path = url.split("8080", 1)[1]
    page = http.get(path)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "APPLYMENT_STATE_WAITTING_FOR_CONFIRM_CONTACT" in page.text
    assert "13800138000" not in page.text and "张*" in page.text
    # A stale form (wrong step) changes nothing.
    stale = http.post(path, data={"step": "confirm_legalperson"}, follow_redirects=False)
    assert stale.status_code == 303
    assert state_of(chan, applyment_id) == "APPLYMENT_STATE_WAITTING_FOR_CONFIRM_CONTACT"
    for step, after in (
        ("confirm_contact", "APPLYMENT_STATE_WAITTING_FOR_CONFIRM_LEGALPERSON"),
        ("confirm_legalperson", "APPLYMENT_STATE_PASSED"),
    ):
        resp = http.post(path, data={"step": step})
        assert resp.status_code == 200 and after in resp.text
        assert state_of(chan, applyment_id) == after
    assert _authorize_state(chan, SUB_X) == "AUTHORIZE_STATE_UNAUTHORIZED"
    resp = http.post(path, data={"step": "authorize"})
    assert resp.status_code == 200 and "AUTHORIZE_STATE_AUTHORIZED" in resp.text
    assert _authorize_state(chan, SUB_X) == "AUTHORIZE_STATE_AUTHORIZED"
    assert http.get("/apply4subject/confirm/not-a-token").status_code == 404
    # The note after a step is shown only as this server wrote it: a link cannot make the page say more.
    noted = http.post(path, data={"step": "confirm_contact"}, follow_redirects=False)
    assert noted.status_code == 303 and "sig=" in noted.headers["location"]
    assert "nothing to confirm" in http.get(noted.headers["location"]).text
    lure = "请扫码添加客服微信领取补贴"
    assert lure not in http.get(path, params={"note": lure}).text
    # a NUL was a 500 on PostgreSQL (it cannot compare one); no code holds one
    assert http.get("/apply4subject/confirm/a%00b").status_code == 404
    assert http.post("/apply4subject/confirm/a%00b", data={"step": "authorize"}).status_code == 404


def test_auto_policy_after_queries(chan: ApiClient, control: TestClient) -> None:
    resp = control.put("/sandbox/apply4subject/auto-policy", json={"outcome": "approve", "after_queries": 3})
    assert resp.status_code == 200 and resp.json()["auto_policy"]["after_queries"] == 3
    applyment_id = submit_ok(chan, "auto_q")
    results = [_result(chan, applyment_id) for _ in range(4)]
    assert [r["applyment_state"] for r in results] == [
        "APPLYMENT_STATE_WAITTING_FOR_AUDIT",
        "APPLYMENT_STATE_WAITTING_FOR_AUDIT",
        "APPLYMENT_STATE_WAITTING_FOR_CONFIRM_CONTACT",
        "APPLYMENT_STATE_WAITTING_FOR_CONFIRM_CONTACT",
    ]
    # the policy's reject_param/reject_reason (defaults here) belong to a rejection only: not kept either
    assert "reject_param" not in results[-1] and "reject_reason" not in results[-1]
    view = control.get(f"/sandbox/apply4subject/applyments/{applyment_id}").json()
    assert (view["reject_param"], view["reject_reason"]) == (None, None)


def test_after_queries_counts_the_queries_made_under_the_policy(chan: ApiClient, control: TestClient) -> None:
    """A user setting after_queries: 3 expects the third query from then on to move the applyment;
    queries made before (here five, with no policy) used to count, and the next query moved it."""
    applyment_id = submit_ok(chan, "queried_before")
    for _ in range(5):
        assert state_of(chan, applyment_id) == "APPLYMENT_STATE_WAITTING_FOR_AUDIT"
    resp = control.put("/sandbox/apply4subject/auto-policy", json={"outcome": "approve", "after_queries": 3})
    assert resp.status_code == 200, resp.text
    assert control.get(f"/sandbox/apply4subject/applyments/{applyment_id}").json()["query_count"] == 0
    states = [state_of(chan, applyment_id) for _ in range(3)]
    assert states == [AUDIT, AUDIT, CONFIRM_CONTACT]
    # setting a policy again starts the count again, for every applyment still in audit
    other = submit_ok(chan, "queried_before_2")
    assert [state_of(chan, other) for _ in range(2)] == [AUDIT, AUDIT]
    assert (
        control.put(
            "/sandbox/apply4subject/auto-policy", json={"outcome": "approve", "after_queries": 2}
        ).status_code
        == 200
    )
    assert [state_of(chan, other) for _ in range(2)] == [AUDIT, CONFIRM_CONTACT]


def test_auto_policy_after_sandbox_seconds(chan: ApiClient, control: TestClient) -> None:
    policy = {
        "outcome": "reject",
        "after_seconds": 3600,
        "reject_param": "licence_copy",
        "reject_reason": "模糊",
    }
    assert control.put("/sandbox/apply4subject/auto-policy", json=policy).status_code == 200
    assert control.post("/sandbox/clock", json={"freeze": True}).status_code == 200
    applyment_id = submit_ok(chan, "auto_s")
    assert control.post("/sandbox/clock", json={"advance": 3599}).status_code == 200
    assert state_of(chan, applyment_id) == "APPLYMENT_STATE_WAITTING_FOR_AUDIT"
    assert control.post("/sandbox/clock", json={"advance": 1}).status_code == 200  # waited exactly 3600 s
    assert _result(chan, applyment_id) == {
        "applyment_state": "APPLYMENT_STATE_REJECTED",
        "reject_param": "licence_copy",
        "reject_reason": "模糊",
    }


def test_auto_policy_pass_and_authorize(chan: ApiClient, control: TestClient) -> None:
    policy = {"outcome": "pass", "after_queries": 1, "authorize": True}
    assert control.put("/sandbox/apply4subject/auto-policy", json=policy).status_code == 200
    applyment_id = submit_ok(chan, "auto_p")
    assert state_of(chan, applyment_id) == "APPLYMENT_STATE_PASSED"
    assert _authorize_state(chan, SUB_X) == "AUTHORIZE_STATE_AUTHORIZED"
    assert control.delete("/sandbox/apply4subject/auto-policy").json() == {"auto_policy": None}
    other = submit_ok(chan, "auto_p2")
    assert state_of(chan, other) == "APPLYMENT_STATE_WAITTING_FOR_AUDIT"


@pytest.mark.parametrize("given", [None, "请联系人扫码授权（沙箱）"])
def test_auto_policy_freeze_keeps_a_reason(chan: ApiClient, control: TestClient, given: str | None) -> None:
    """A FREEZED applyment shows its reject_reason (spec §2), however it was frozen: the auto policy's
    own reason, else the same default as the control action's freeze."""
    policy: dict[str, Any] = {"outcome": "freeze", "after_queries": 1}
    if given is not None:
        policy["reject_reason"] = given
    assert control.put("/sandbox/apply4subject/auto-policy", json=policy).status_code == 200
    frozen = _result(chan, submit_ok(chan, "auto_f"))
    assert frozen["applyment_state"] == "APPLYMENT_STATE_FREEZED" and "reject_param" not in frozen
    assert frozen["reject_reason"] == (given or FREEZE_REASON) and frozen["qrcode_data"]
    assert control.delete("/sandbox/apply4subject/auto-policy").status_code == 200
    by_hand = submit_ok(chan, "hand_f")
    assert control.post(f"/sandbox/apply4subject/applyments/{by_hand}/freeze", json={}).status_code == 200
    assert _result(chan, by_hand)["reject_reason"] == FREEZE_REASON


BAD_POLICIES: list[dict[str, Any]] = [
    {"outcome": "explode", "after_queries": 1},
    {"outcome": "approve"},
    {"after_queries": 0},
    {"after_seconds": "x"},
    # found by an audit: a 500 each (an unhashable outcome; waits no answer can show as a number)
    {"outcome": ["approve"], "after_queries": 1},
    {"after_seconds": 1e300},
    {"after_seconds": 10**400},
    # found by a mutation audit: none of these limits was tried
    {"after_seconds": -1},
    {"after_seconds": MAX_CLOCK_TS + 1},
    {"after_queries": 1, "authorize": "yes"},
    {"after_queries": 1, "reject_param": ""},
    {"after_queries": 1, "reject_param": "p" * 257},
    {"after_queries": 1, "reject_param": 7},
    {"after_queries": 1, "reject_reason": ""},
    {"after_queries": 1, "reject_reason": "r" * 1025},
    {"after_queries": 1, "reject_reason": ["r"]},
]


def test_auto_policy_validation(control: TestClient) -> None:
    for bad in BAD_POLICIES:
        resp = control.put("/sandbox/apply4subject/auto-policy", json=bad)
        assert resp.status_code == 400 and resp.json()["code"] == "PARAM_ERROR", bad
    for raw in ('{"after_seconds": Infinity}', '{"after_seconds": NaN}'):
        resp = control.put("/sandbox/apply4subject/auto-policy", content=raw)
        assert resp.status_code == 400 and "after_seconds must be a number" in resp.json()["message"], raw
    assert control.get("/sandbox/apply4subject/auto-policy").json() == {"auto_policy": None}
    for edge in (
        {"outcome": "reject", "after_seconds": 0, "reject_param": "p" * 256, "reject_reason": "r" * 1024},
        {"after_seconds": MAX_CLOCK_TS},
    ):
        resp = control.put("/sandbox/apply4subject/auto-policy", json=edge)
        assert resp.status_code == 200, (edge, resp.text)
        kept = resp.json()["auto_policy"]
        assert {k: kept[k] for k in edge} == edge and kept["authorize"] is False  # not asked for


def test_authorizations_control_grant_and_revoke(chan: ApiClient, control: TestClient) -> None:
    body = {"mchid": SP_A, "sub_mchid": SUB_Y}
    assert control.post("/sandbox/apply4subject/authorizations", json=body).status_code == 200
    assert _authorize_state(chan, SUB_Y) == "AUTHORIZE_STATE_AUTHORIZED"
    assert control.request("DELETE", "/sandbox/apply4subject/authorizations", json=body).status_code == 200
    assert _authorize_state(chan, SUB_Y) == "AUTHORIZE_STATE_UNAUTHORIZED"
    for odd in ("1900000²", "１９００００００１"):  # str.isdigit() takes them; A4 never could ask for them
        refused = control.post(
            "/sandbox/apply4subject/authorizations", json={"mchid": SP_A, "sub_mchid": odd}
        )
        assert refused.status_code == 400, refused.text


SCENARIO = f"""
apply4subject:
  auto_policy: {{outcome: approve, after_queries: 5}}
  applyments:
    - mchid: "{SP_A}"
      business_code: seeded_rejected
      state: APPLYMENT_STATE_REJECTED
      reject_param: merchant_name
      reject_reason: 名称不一致
    - mchid: "{SP_A}"
      business_code: seeded_passed
      state: APPLYMENT_STATE_PASSED
      confirm_mchid_list: ["{SUB_X}"]
      authorized: true
"""


def test_scenario_section_export_and_reset(chan: ApiClient, control: TestClient) -> None:
    resp = control.post("/sandbox/scenario", content=SCENARIO.encode())
    assert resp.status_code == 200, resp.text
    assert query(chan, business_code="seeded_rejected").json() == {
        "applyment_state": "APPLYMENT_STATE_REJECTED",
        "reject_param": "merchant_name",
        "reject_reason": "名称不一致",
    }
    passed = query(chan, business_code="seeded_passed").json()
    assert passed["applyment_state"] == "APPLYMENT_STATE_PASSED" and passed["qrcode_data"]
    assert _authorize_state(chan, SUB_X) == "AUTHORIZE_STATE_AUTHORIZED"
    exported = control.get("/sandbox/scenario").json()["apply4subject"]
    assert exported["auto_policy"]["after_queries"] == 5
    assert {a["business_code"] for a in exported["applyments"]} == {"seeded_rejected", "seeded_passed"}
    bad = control.post("/sandbox/scenario", content=b"apply4subject:\n  applyments: [{mchid: x}]\n")
    assert bad.status_code == 400 and "apply4subject" in bad.json()["message"]
    assert control.post("/sandbox/reset", json={"mchid": SP_A}).status_code == 200
    assert query(chan, business_code="seeded_passed").status_code == 404
    assert _authorize_state(chan, SUB_X) == "AUTHORIZE_STATE_UNAUTHORIZED"


def test_a_scenario_round_trip_keeps_what_the_auto_policy_reads(chan: ApiClient, control: TestClient) -> None:
    """An export loaded back (after a reset, or onto the same sandbox) behaves as the sandbox did: an
    applyment queried twice under after_queries: 3 moves at its next query, one that waited 400 of
    after_seconds: 600 moves 200 s later. The export lost both (query_count, state_since), and loading
    the same policy again started every count in audit anew."""
    policy = {"outcome": "approve", "after_queries": 3, "after_seconds": 600}
    assert control.post("/sandbox/clock", json={"set": 1_800_000_000.1234, "freeze": True}).status_code == 200
    assert control.put("/sandbox/apply4subject/auto-policy", json=policy).status_code == 200
    queried = submit_ok(chan, "rt_queried")
    submit_ok(chan, "rt_waited")
    assert [state_of(chan, queried) for _ in range(2)] == [AUDIT, AUDIT]
    assert control.post("/sandbox/clock", json={"advance": 400}).status_code == 200
    exported = control.get("/sandbox/scenario").json()
    entries = {a["business_code"]: a for a in exported["apply4subject"]["applyments"]}
    assert entries["rt_queried"]["query_count"] == 2 and "query_count" not in entries["rt_waited"]
    assert entries["rt_waited"]["state_since"] == "2027-01-15T16:00:00.123+08:00"

    def count(applyment_id: int) -> int:
        return int(control.get(f"/sandbox/apply4subject/applyments/{applyment_id}").json()["query_count"])

    # loaded onto the same sandbox: the same policy again changes nothing
    assert control.post("/sandbox/scenario", json=exported).status_code == 200
    assert count(queried) == 2
    assert control.post("/sandbox/reset", json={}).status_code == 200
    loaded = control.post("/sandbox/scenario", json=exported)
    assert loaded.status_code == 200, loaded.text
    ids = dict(zip(["rt_queried", "rt_waited"], loaded.json()["apply4subject"]["applyment_ids"], strict=True))
    assert count(ids["rt_queried"]) == 2
    assert state_of(chan, ids["rt_queried"]) == CONFIRM_CONTACT  # its third query under the policy
    assert control.post("/sandbox/clock", json={"advance": 199}).status_code == 200
    assert (
        control.get(f"/sandbox/apply4subject/applyments/{ids['rt_waited']}").json()["applyment_state"]
        == AUDIT
    )
    moved = control.post("/sandbox/clock", json={"advance": 1}).json()
    assert moved["settled"]["applyments_advanced"] == 1, moved
    assert state_of(chan, ids["rt_waited"]) == CONFIRM_CONTACT


def test_a_scenario_entry_takes_the_control_api_view_s_names_and_times(
    chan: ApiClient, control: TestClient
) -> None:
    """The control API's view names the state as A2 does, applyment_state, and also state (the name of
    its ?state= filter and of a scenario entry); its times are Unix seconds. A scenario entry takes
    either name and either time, so an entry written from the view loads as the applyment was (it was
    refused: applyment_state was an unknown field)."""
    assert control.post("/sandbox/clock", json={"set": 1_800_000_000.25, "freeze": True}).status_code == 200
    applyment_id = submit_ok(chan, "from_view")
    view = control.get(f"/sandbox/apply4subject/applyments/{applyment_id}").json()
    assert view["state"] == view["applyment_state"] == AUDIT and view["state_since"] == 1_800_000_000.25
    listed = control.get("/sandbox/apply4subject/applyments", params={"state": AUDIT}).json()["data"]
    assert [a["state"] for a in listed] == [AUDIT]
    assert control.post("/sandbox/reset", json={}).status_code == 200
    entry = {k: view[k] for k in ("mchid", "business_code", "applyment_state", "state_since")}
    loaded = control.post("/sandbox/scenario", json={"apply4subject": {"applyments": [entry]}})
    assert loaded.status_code == 200, loaded.text
    again = control.get(
        f"/sandbox/apply4subject/applyments/{loaded.json()['apply4subject']['applyment_ids'][0]}"
    )
    assert again.json()["state"] == AUDIT and again.json()["state_since"] == 1_800_000_000.25
    passed = {**entry, "business_code": "from_view_2", "applyment_state": "APPLYMENT_STATE_CANCELED"}
    loaded = control.post("/sandbox/scenario", json={"apply4subject": {"applyments": [passed]}})
    assert loaded.status_code == 200, loaded.text
    assert query(chan, business_code="from_view_2").json()["applyment_state"] == "APPLYMENT_STATE_CANCELED"
    both = {**entry, "business_code": "from_view_3", "state": "APPLYMENT_STATE_PASSED"}
    refused = control.post("/sandbox/scenario", json={"apply4subject": {"applyments": [both]}})
    assert refused.status_code == 400, refused.text
    assert refused.json()["message"].startswith("apply4subject.applyments[0]: "), refused.text
    assert "differ" in refused.json()["message"]
    assert query(chan, business_code="from_view_3").status_code == 404


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ({"state_since": "yesterday"}, "applyments[0].state_since: expected RFC 3339"),
        ({"state_since": -1}, "applyments[0].state_since: must be between 1970 and 9999"),
        ({"query_count": -1}, "applyments[0].query_count: Input should be greater than or equal to 0"),
        ({"query_count": 1.5}, "applyments[0].query_count: Input should be a valid integer"),
        # found using the scenario files: each loaded (true as 1970-01-01T08:00:01, "5" as 5)
        ({"query_count": "5"}, "applyments[0].query_count: Input should be a valid integer"),
        ({"state_since": True}, "applyments[0].state_since"),
        ({"authorized": "yes"}, "applyments[0].authorized: Input should be a valid boolean"),
    ],
)
def test_a_scenario_applyment_progress_is_checked(
    chan: ApiClient, control: TestClient, given: dict[str, Any], problem: str
) -> None:
    entry = {"mchid": SP_A, "business_code": "progress", **given}
    resp = control.post("/sandbox/scenario", json={"apply4subject": {"applyments": [entry]}})
    assert resp.status_code == 400 and resp.json()["code"] == "SCENARIO_ERROR", resp.text
    assert resp.json()["message"].startswith(f"apply4subject.{problem}"), resp.text
    assert query(chan, business_code="progress").status_code == 404


def test_a_scenario_applyment_no_query_can_reach_is_said(chan: ApiClient, control: TestClient) -> None:
    """A2 answers channels and institutions only: an applyment stored under a service provider (as the
    README's example once did) or an unknown merchant could never be queried. The load says so, and
    still loads it (older exports hold such rows)."""
    section = {
        "applyments": [
            {"mchid": SP_A, "business_code": "reachable"},
            {"mchid": SP_C, "business_code": "under_a_service_provider"},
            {"mchid": "1239999999", "business_code": "under_no_merchant"},
        ]
    }
    resp = control.post("/sandbox/scenario", json={"apply4subject": section})
    assert resp.status_code == 200, resp.text
    report = resp.json()["apply4subject"]
    assert len(report["applyment_ids"]) == 3
    assert report["warnings"] == [
        f"applyments[1].mchid: {SP_C} is a service_provider: no A2 query can reach it "
        "(applyments are a channel's or an institution's)",
        "applyments[2].mchid: 1239999999 is not a registered merchant: no A2 query can reach it",
    ]
    assert query(chan, business_code="reachable").status_code == 200
    only_reachable = control.post(
        "/sandbox/scenario", json={"apply4subject": {"applyments": section["applyments"][:1]}}
    )
    assert "warnings" not in only_reachable.json()["apply4subject"]


@pytest.mark.parametrize(
    ("path", "body", "fragment"),
    [
        (
            "/sandbox/apply4subject/auto-policy",
            {"outcom": "reject", "after_queries": 1},
            "unknown field(s): outcom",
        ),
        (
            "/sandbox/apply4subject/auto-policy",
            {"after_queries": 1, "authorize": "false"},
            "authorize must be",
        ),
        (
            "/sandbox/apply4subject/authorizations",
            {"mchid": SP_A, "sub_mchid": "1900000109", "x": 1},
            "unknown",
        ),
    ],
)
def test_a_misspelt_audit_control_field_changes_nothing(
    control: TestClient, path: str, body: dict[str, object], fragment: str
) -> None:
    """Found in the sandbox audit: {"outcom": "reject"} set a policy that approves (the default outcome),
    and "authorize": "false" authorized."""
    resp = control.put(path, json=body) if path.endswith("auto-policy") else control.post(path, json=body)
    assert resp.status_code == 400 and resp.json()["code"] == "PARAM_ERROR", resp.text
    assert fragment in resp.json()["message"]
    assert control.get("/sandbox/apply4subject/auto-policy").json() == {"auto_policy": None}
    assert control.get("/sandbox/apply4subject/authorizations").json()["data"] == []
    section = "apply4subject:\n  auto_policy: {outcom: reject, after_queries: 1}\n"
    refused = control.post("/sandbox/scenario", content=section.encode())
    assert refused.status_code == 400 and "unknown field(s): outcom" in refused.json()["message"]


def test_a_step_overtaken_by_another_names_the_state_it_met(
    chan: ApiClient, control: TestClient, app: WxPartnerApp
) -> None:
    """A step read in one state whose write finds another (a concurrent step won) is refused with the
    state it found, not the stale one it was read in."""
    applyment_id = submit_ok(chan, "race_1")
    with app.state.db.write() as conn:
        repo = Apply4SubjectRepo(conn)
        stale = repo.by_id(applyment_id)
        assert stale is not None and stale.state == AUDIT
    act_ok(control, applyment_id, "approve")  # the other step wins
    with app.state.db.write() as conn, pytest.raises(StepRefused) as refused:
        flow.apply_action(Apply4SubjectRepo(conn), stale, "freeze", flow.business_now(conn))
    assert "changed meanwhile" in str(refused.value)
    assert refused.value.detail == {
        "state": CONFIRM_CONTACT,
        "issue": "freeze is possible only from " + AUDIT,
    }
    assert state_of(chan, applyment_id) == CONFIRM_CONTACT


def test_a_scenario_applyment_keeps_the_reasons_its_state_shows(chan: ApiClient, control: TestClient) -> None:
    """A scenario's applyment follows the rule every other path does (``kept_reasons``): a FREEZED one
    without a reason showed none (the freeze action and the auto policy give FREEZE_REASON), a REJECTED
    one without param and reason answered A2 with neither (the reject action refuses that), and a
    reason given for a state that does not show it was stored anyway (the control API listed a PASSED
    applyment with a reject_reason). The load says what it dropped."""
    section = {
        "applyments": [
            {"mchid": SP_A, "business_code": "frozen", "state": "APPLYMENT_STATE_FREEZED"},
            {"mchid": SP_A, "business_code": "rejected", "state": "APPLYMENT_STATE_REJECTED"},
            {
                "mchid": SP_A,
                "business_code": "passed",
                "state": "APPLYMENT_STATE_PASSED",
                "reject_param": "merchant_name",
                "reject_reason": "名称不一致",
            },
        ]
    }
    resp = control.post("/sandbox/scenario", json={"apply4subject": section})
    assert resp.status_code == 200, resp.text
    assert resp.json()["apply4subject"]["warnings"] == [
        "applyments[2]: reject_param and reject_reason are kept in APPLYMENT_STATE_REJECTED "
        "(reject_reason also in APPLYMENT_STATE_FREEZED): dropped for APPLYMENT_STATE_PASSED"
    ]
    frozen = query(chan, business_code="frozen").json()
    assert frozen["reject_reason"] == FREEZE_REASON
    rejected = query(chan, business_code="rejected").json()
    assert rejected["reject_param"] == "merchant_name" and rejected["reject_reason"]
    listed = {a["business_code"]: a for a in control.get("/sandbox/apply4subject/applyments").json()["data"]}
    assert listed["passed"]["reject_param"] is None and listed["passed"]["reject_reason"] is None


def test_a_scenario_authorizes_only_what_the_authorize_step_could(
    chan: ApiClient, control: TestClient
) -> None:
    """``authorized: true`` authorized the listed merchant numbers whatever the applyment's state: one
    still in audit made them AUTHORIZED (A4) though nothing had passed, which the authorize step refuses
    (only from PASSED or FREEZED); and with no confirm_mchid_list it authorized nothing, silently.
    Both are refused now, naming the entry, and nothing of the scenario is loaded."""
    for entry, fragment in (
        (
            {"business_code": "in_audit", "confirm_mchid_list": [SUB_X], "authorized": True},
            "apply4subject.applyments[0].authorized: authorize is possible only from",
        ),
        (
            {"business_code": "no_numbers", "state": "APPLYMENT_STATE_PASSED", "authorized": True},
            "apply4subject.applyments[0].authorized: no confirm_mchid_list to authorize",
        ),
    ):
        resp = control.post(
            "/sandbox/scenario", json={"apply4subject": {"applyments": [{"mchid": SP_A, **entry}]}}
        )
        assert resp.status_code == 400, resp.text
        assert fragment in resp.json()["message"], resp.json()["message"]
        assert query(chan, business_code=str(entry["business_code"])).status_code == 404
    assert _authorize_state(chan, SUB_X) == "AUTHORIZE_STATE_UNAUTHORIZED"


def test_a_scenario_entry_for_an_existing_business_code_says_it_changed_nothing(
    chan: ApiClient, control: TestClient
) -> None:
    """Loading a scenario again with an applyment's state changed left the stored one as it was,
    silently: the caller's A2 then answered the old state. The load keeps it (a scenario loads onto
    what is there) and says so."""
    first = {"applyments": [{"mchid": SP_A, "business_code": "again"}]}
    assert (
        "warnings"
        not in control.post("/sandbox/scenario", json={"apply4subject": first}).json()["apply4subject"]
    )
    assert (
        "warnings"
        not in control.post("/sandbox/scenario", json={"apply4subject": first}).json()["apply4subject"]
    )
    changed = {"applyments": [{"mchid": SP_A, "business_code": "again", "state": "APPLYMENT_STATE_PASSED"}]}
    report = control.post("/sandbox/scenario", json={"apply4subject": changed}).json()["apply4subject"]
    assert report["warnings"] == [
        "applyments[0].business_code: again exists in APPLYMENT_STATE_WAITTING_FOR_AUDIT and was left as it is "
        "(POST /sandbox/reset first to load it anew)"
    ]
    assert (
        query(chan, business_code="again").json()["applyment_state"] == "APPLYMENT_STATE_WAITTING_FOR_AUDIT"
    )


def test_an_auto_policy_authorize_that_could_never_happen_is_said(control: TestClient) -> None:
    """``authorize: true`` completes the authorization only with ``outcome: pass`` (the one outcome that
    reaches PASSED); with approve, reject or freeze the PUT answered 200 and echoed it, and no merchant
    number was ever authorized. The PUT refuses it now; a scenario (older exports may hold one) loads
    the policy without it and warns."""
    for outcome in ("approve", "reject", "freeze"):
        resp = control.put(
            "/sandbox/apply4subject/auto-policy",
            json={"outcome": outcome, "after_queries": 1, "authorize": True},
        )
        assert resp.status_code == 400, resp.text
        assert resp.json()["code"] == "PARAM_ERROR"
        assert "authorize: true needs outcome pass" in resp.json()["message"]
    assert control.get("/sandbox/apply4subject/auto-policy").json() == {"auto_policy": None}
    policy = {"outcome": "approve", "after_queries": 1, "authorize": True}
    loaded = control.post("/sandbox/scenario", json={"apply4subject": {"auto_policy": policy}})
    assert loaded.status_code == 200, loaded.text
    assert loaded.json()["apply4subject"]["warnings"] == [
        "auto_policy.authorize: authorize: true needs outcome pass (the only outcome that reaches "
        "APPLYMENT_STATE_PASSED), not approve: loaded as false"
    ]
    kept = control.get("/sandbox/apply4subject/auto-policy").json()["auto_policy"]
    assert kept["outcome"] == "approve" and kept["authorize"] is False


def test_an_authorize_step_with_no_merchant_number_is_refused(
    chan: ApiClient, control: TestClient, http: TestClient
) -> None:
    """An applyment without confirm_mchid_list: the authorize step (control API, confirmation page) and
    a pass with authorize answered as done and authorized nothing, so the next A4 said UNAUTHORIZED
    with no hint why. Now 400 naming sub_mchids (the page says it), and the pass does not happen."""
    passed = submit_ok(chan, "nothing_listed", confirm=[])
    act_ok(control, passed, "pass")
    resp = act(control, passed, "authorize")
    assert resp.status_code == 400, resp.text
    assert resp.json()["code"] == "PARAM_ERROR" and "sub_mchids" in resp.json()["message"]
    in_audit = submit_ok(chan, "nothing_listed_2", confirm=[])
    resp = act(control, in_audit, "pass", authorize=True)
    assert resp.status_code == 400, resp.text
    assert state_of(chan, in_audit) == "APPLYMENT_STATE_WAITTING_FOR_AUDIT"
    path = act_ok(control, passed, "authorize", sub_mchids=[SUB_Y])["confirm_url"].split("8080", 1)[1]
    assert _authorize_state(chan, SUB_Y) == "AUTHORIZE_STATE_AUTHORIZED"
    page = http.post(path, data={"step": "authorize"})
    assert page.status_code == 200 and "no merchant number to authorize" in page.text


def test_the_confirmation_page_offers_no_authorize_with_nothing_to_authorize(
    chan: ApiClient, control: TestClient, http: TestClient
) -> None:
    """A PASSED applyment without confirm_mchid_list: the page showed the authorize button, and pressing
    it only said there was nothing to authorize. Now the button is disabled with that reason; numbers
    the control API's authorize step added (sub_mchids) are listed, and then the page says it is done."""
    passed = submit_ok(chan, "nothing_to_press", confirm=[])
    path = act_ok(control, passed, "pass")["confirm_url"].split("8080", 1)[1]
    page = http.get(path)
    assert page.status_code == 200
    assert '<form method="post"' not in page.text
    assert re.search(r"<button[^>]*disabled[^>]*>", page.text)
    assert "no merchant number to authorize" in page.text
    act_ok(control, passed, "authorize", sub_mchids=[SUB_Y])
    page = http.get(path)
    assert f"<code>{SUB_Y}</code>: " in page.text and "AUTHORIZE_STATE_AUTHORIZED" in page.text
    assert "authorization complete" in page.text and "<button" not in page.text
    # with numbers listed, the button is there until each is authorized
    listed = submit_ok(chan, "something_to_press", confirm=[SUB_X])
    path = act_ok(control, listed, "pass")["confirm_url"].split("8080", 1)[1]
    assert '<form method="post"' in http.get(path).text
    assert "authorization complete" in http.post(path, data={"step": "authorize"}).text


def test_a_scenario_channel_id_a1_would_refuse_is_said(chan: ApiClient, control: TestClient) -> None:
    """A1 takes an institution's channel_id only for one of its channel merchants, and a channel
    merchant's only when it names itself; a scenario entry breaking that loads (older exports stored
    channel_id unchecked) with a warning naming the entry."""
    section = {
        "applyments": [
            {"mchid": SP_B, "business_code": "inst_own", "channel_id": CHANNEL_B},
            {"mchid": SP_B, "business_code": "inst_foreign", "channel_id": "1239999999"},
            {"mchid": SP_B, "business_code": "inst_none"},
            {"mchid": SP_A, "business_code": "chan_self", "channel_id": SP_A},
            {"mchid": SP_A, "business_code": "chan_other", "channel_id": CHANNEL_B},
        ]
    }
    resp = control.post("/sandbox/scenario", json={"apply4subject": section})
    assert resp.status_code == 200, resp.text
    report = resp.json()["apply4subject"]
    assert len(report["applyment_ids"]) == 5
    assert report["warnings"] == [
        f"applyments[1].channel_id: 1239999999 is not a channel merchant of the institution {SP_B} "
        "(A1: 403 NO_AUTH); loaded as given",
        "applyments[2].channel_id: an institution's applyment names its channel merchant "
        "(A1 refuses none: 400 PARAM_ERROR); loaded as given",
        f"applyments[4].channel_id: a channel merchant names no channel_id or its own, not {CHANNEL_B} "
        "(A1: 400 PARAM_ERROR); loaded as given",
    ]


def test_the_control_list_filters_by_state_and_refuses_what_it_does_not_read(
    chan: ApiClient, control: TestClient
) -> None:
    """?state= (the dashboard's filter) was ignored, and a script asking for the PASSED applyments got
    every one; so was any misspelt parameter (?mchd=)."""
    waiting = submit_ok(chan, "listed_waiting")
    passed = submit_ok(chan, "listed_passed")
    act_ok(control, passed, "pass")
    url = "/sandbox/apply4subject/applyments"
    only = control.get(url, params={"state": "APPLYMENT_STATE_PASSED"}).json()["data"]
    assert [a["applyment_id"] for a in only] == [passed]
    in_audit = control.get(url, params={"state": AUDIT, "mchid": SP_A}).json()["data"]
    assert [a["applyment_id"] for a in in_audit] == [waiting]
    for params, field in (({"state": "PASSED"}, "state"), ({"mchd": SP_A}, "mchd")):
        resp = control.get(url, params=params)
        assert resp.status_code == 400, resp.text
        assert resp.json()["code"] == "PARAM_ERROR" and resp.json()["detail"]["field"] == field


def test_an_empty_auto_policy_put_is_refused_not_a_removal(control: TestClient) -> None:
    """A PUT of {} (or null) removed the policy and answered null: a script whose body went missing lost
    its policy silently. DELETE removes it."""
    url = "/sandbox/apply4subject/auto-policy"
    assert control.put(url, json={"outcome": "approve", "after_queries": 2}).status_code == 200
    for body in (b"{}", b"null"):
        resp = control.put(url, content=body, headers={"content-type": "application/json"})
        assert resp.status_code == 400, resp.text
        assert resp.json()["code"] == "PARAM_ERROR" and "DELETE" in resp.json()["message"]
    assert control.get(url).json()["auto_policy"]["after_queries"] == 2
    assert control.delete(url).json() == {"auto_policy": None}


def test_an_authorization_no_a4_could_see_is_refused(chan: ApiClient, control: TestClient) -> None:
    """POST /sandbox/apply4subject/authorizations granted for any mchid: one misspelt, or a service
    provider's (which may not call A4), answered AUTHORIZED and no A4 query ever said so."""
    url = "/sandbox/apply4subject/authorizations"
    for mchid, said in (("1239999999", "not a registered merchant"), (SP_C, "is a service_provider")):
        resp = control.post(url, json={"mchid": mchid, "sub_mchid": SUB_Y})
        assert resp.status_code == 400, resp.text
        assert resp.json()["detail"]["field"] == "mchid" and said in resp.json()["message"]
    assert control.get(url).json()["data"] == []
    assert control.post(url, json={"mchid": SP_A, "sub_mchid": SUB_Y}).status_code == 200


def test_a_scenario_authorization_no_a4_could_see_is_said(chan: ApiClient, control: TestClient) -> None:
    """As the control API's POST refuses it, a scenario's authorization for a merchant that cannot call
    A4 is said (and loaded: older exports may hold one)."""
    section = {
        "authorizations": [
            {"mchid": SP_A, "sub_mchid": SUB_X},
            {"mchid": SP_C, "sub_mchid": SUB_Y},
        ]
    }
    resp = control.post("/sandbox/scenario", json={"apply4subject": section})
    assert resp.status_code == 200, resp.text
    assert resp.json()["apply4subject"]["warnings"] == [
        f"authorizations[1].mchid: {SP_C} is a service_provider: no A4 query can see it"
    ]
    assert _authorize_state(chan, SUB_X) == "AUTHORIZE_STATE_AUTHORIZED"
