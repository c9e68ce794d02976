"""A notify_url can only ever name an http(s) receiver: the URLs that would make the server read a
local file or run a script are refused wherever a notify_url is set (the control API, a scenario), and
nothing is stored. Redirects are never followed (test_callbacks_answers.py)."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from support import SP_A

LOCAL = [
    "file:///etc/passwd",
    "FILE:///etc/passwd",
    "file://localhost/etc/passwd",
    "http:///etc/passwd",  # no host
    "data:text/plain,hello",
    "javascript:alert(1)",
    "gopher://127.0.0.1:70/x",
    "/etc/passwd",
    "//127.0.0.1/notify",
]


def _stored(control: TestClient) -> str | None:
    rows = {m["mchid"]: m for m in control.get("/sandbox/merchants").json()["data"]}
    value = rows[SP_A].get("notify_url")
    return None if value is None else str(value)


@pytest.mark.parametrize("url", LOCAL)
def test_a_notify_url_that_is_not_http_is_refused(control: TestClient, url: str) -> None:
    before = _stored(control)
    resp = control.put(f"/sandbox/merchants/{SP_A}/notify-url", json={"notify_url": url})
    assert resp.status_code == 400, resp.text
    assert resp.json()["code"] == "PARAM_ERROR"
    scenario = {"merchants": [{"mchid": SP_A, "role": "service_provider", "notify_url": url}]}
    loaded = control.post("/sandbox/scenario", content=json.dumps(scenario))
    assert loaded.status_code == 400, loaded.text
    assert _stored(control) == before
