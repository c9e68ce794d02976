"""Schema fuzzing: schemathesis drives every operation of the server's own OpenAPI document with
generated requests (valid and invalid), each signed as a registered merchant, and checks that no answer
is a 5xx, that every answer matches the documented schema, status and content type, and that every
refusal is a WeChat error body.

`make test` runs a bounded number of examples per operation; `make soak` raises it
(WXPARTNER_FUZZ_EXAMPLES) to several thousand requests in all.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.testclient import TestClient

import wxpartner.server.families  # noqa: F401  (registers every operation)
from support import SP_A, SUB_A, World, seed, sign_request
from wxpartner.server.app import create_app
from wxpartner.server.openapi import build
from wxpartner.server.operations import REGISTRY
from wxpartner.server.settings import Settings
from wxpartner.store.db import Database, sqlite_url_for

SCHEMA = schemathesis.openapi.from_dict(build(REGISTRY))
EXAMPLES = int(os.environ.get("WXPARTNER_FUZZ_EXAMPLES", "8"))
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]


@pytest.fixture(scope="module")
def fuzz_http(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz")
    url = sqlite_url_for(data_dir)
    db = Database(url)
    seed(db, world)
    app = create_app(Settings(data_dir=str(data_dir), database_url=url, sandbox_token="fuzz"), db)
    with TestClient(app, base_url="http://testserver", raise_server_exceptions=True) as client:
        yield client
    db.dispose()


def _steer(value: Any, rng: random.Random) -> Any:
    """Half of the cases address the signer's own merchants, so generated requests get past the
    tenancy checks and reach the business rules instead of all stopping at NO_AUTH."""
    if isinstance(value, dict) and rng.random() < 0.5:
        out = dict(value)
        if "sp_mchid" in out:
            out["sp_mchid"] = SP_A
        if "sub_mchid" in out:
            out["sub_mchid"] = SUB_A
        return out
    return value


@SCHEMA.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_survives_generated_requests(case: Any, fuzz_http: TestClient, world: World) -> None:
    rng = random.Random(case.id)
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    url = httpx.URL(kwargs["url"], params=kwargs.get("params") or None)
    if "sub_mchid" in (case.path_parameters or {}) and rng.random() < 0.5:
        case.path_parameters["sub_mchid"] = SUB_A
        kwargs = case.as_transport_kwargs(base_url="http://testserver")
        url = httpx.URL(kwargs["url"], params=kwargs.get("params") or None)
    if "json" in kwargs:
        body: bytes = json.dumps(_steer(kwargs["json"], rng), ensure_ascii=False).encode()
    else:
        body = kwargs.get("content") or b""
    target = url.raw_path.decode("ascii")
    signed = sign_request(world.merchants[SP_A], case.method, target, body)
    headers = {k: v for k, v in kwargs["headers"].items() if k.lower() not in {"authorization", "accept"}}
    headers.update(signed.headers)
    resp = fuzz_http.request(case.method, url, content=body or None, headers=headers)
    assert resp.status_code < 500, f"{case.method} {target} -> {resp.status_code} {resp.text[:300]}"
    if resp.status_code >= 400:
        err = resp.json()
        assert set(err) <= {"code", "message", "detail"} and err["code"] and err["message"], err
    case.validate_response(resp, checks=CHECKS)
