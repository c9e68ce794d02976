"""The README's (and docs/'s) code examples run: every ```python block against a real server on loopback
with the `.wxpartner/connection.json` that serving writes, every ```yaml scenario section through the real
scenario loader into what `make serve` leaves (a fresh database with the demo merchants), and every
```json body through the code or model it shows. An example that rots fails here, not in a reader's hands.

A block that cannot run alone is marked `<!-- docs-test: fragment -->` on the line before its fence and
skipped; their number is capped, so the marker stays the exception. The examples name no backend, so
this runs on SQLite only (the plugin's default database)."""

from __future__ import annotations

import contextlib
import datetime as dt
import inspect
import json
import re
import shlex
import shutil
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from pydantic import BaseModel

from wxpartner.cli import main as cli
from wxpartner.client import Client
from wxpartner.client.notifications import _event_models
from wxpartner.domain.merchants import KeyMode, Merchant, Role
from wxpartner.models import webizpay as w
from wxpartner.models.recharge import RechargeEmployee
from wxpartner.protocol import keys as k
from wxpartner.protocol.times import parse_rfc3339
from wxpartner.sandbox.bootstrap import bootstrap, connection_info
from wxpartner.sandbox.material import make_platform_certificate
from wxpartner.sandbox.scenario import export_scenario, load_scenario_file
from wxpartner.server.callbacks import build_body
from wxpartner.server.operations import REGISTRY, Router
from wxpartner.server.settings import Settings
from wxpartner.store import outbox, registry
from wxpartner.store.db import Database
from wxpartner.testing import TOKEN, WxPartnerServer

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)")
MARK = re.compile(r"^<!-- docs-test: ([\w-]+) -->$")
HEADING = re.compile(r"^#{1,6} (.+)$")
FRAGMENT = "fragment"
# Blocks that truly cannot run alone (the three framework recipes side by side, a server-internal
# decorator). Raising this needs a reason: prefer making the example complete.
MAX_FRAGMENTS = 2
# The address `make serve` listens on by default; examples that name it get the test server's port.
DEFAULT_BASE_URL = "http://127.0.0.1:8080"


@dataclass(frozen=True)
class Example:
    doc: str
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    heading: str  # the nearest heading above the block
    ordinal: int  # 1 for the heading's first block of this language, 2 for its second...
    mark: str | None

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"


def _examples(doc: Path) -> list[Example]:
    found: list[Example] = []
    lines = doc.read_text().splitlines()
    heading, i = "", 0
    seen: dict[tuple[str, str], int] = {}
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if fence is None:
            if m := HEADING.match(lines[i]):
                heading = m.group(1).strip()
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        mark = MARK.match(lines[i - 1]) if i else None
        text = "\n".join(lines[i + 1 : end]) + "\n"
        lang = fence.group(1)
        ordinal = seen[heading, lang] = seen.get((heading, lang), 0) + 1
        found.append(Example(doc.name, i + 1, lang, text, heading, ordinal, mark.group(1) if mark else None))
        i = end + 1
    return found


EXAMPLES = [e for doc in DOCS for e in _examples(doc)]


def examples(lang: str) -> list[Example]:
    return [e for e in EXAMPLES if e.lang == lang]


def test_blocks_are_found_and_fragments_stay_few() -> None:
    assert len(examples("python")) >= 7 and len(examples("yaml")) >= 5 and examples("json")
    marks = {e.mark for e in EXAMPLES} - {None}
    assert marks <= {FRAGMENT}, f"unknown docs-test marks: {marks}"
    fragments = [e.id for e in EXAMPLES if e.mark == FRAGMENT]
    assert len(fragments) <= MAX_FRAGMENTS, fragments
    assert all(e.lang == "python" for e in EXAMPLES if e.mark == FRAGMENT)


# -- ```python: run for real ---------------------------------------------------------------------------------
@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WxPartnerServer]:
    """What `make serve` gives a user: a server on a loopback port, and in the working directory the
    `.wxpartner/connection.json` naming it (written by the function `serve` writes it with)."""
    server = WxPartnerServer(tmp_path / ".wxpartner")
    try:
        url = server.serve()
        server.info = connection_info(server.db, server.data_dir, url, TOKEN)
        monkeypatch.chdir(tmp_path)
        yield server
    finally:
        server.close()


def _consent(server: WxPartnerServer, user_id: str) -> None:
    """What the tour's curl does: the sandbox consents for the employee."""
    body = {"sp_mchid": server.mchid, "sub_mchid": server.info["sub_mchid"][0], "user_id": user_id}
    resp = server.control.post("/sandbox/webizpay/authorizations", json=body)
    assert resp.status_code == 200, resp.text


def _tour(server: WxPartnerServer) -> dict[str, Any]:
    _consent(server, "demo_user")
    return {}


def _quick_start(server: WxPartnerServer) -> dict[str, Any]:
    """A merchant's own files in the working directory, and the sandbox told about them: the example's
    serial, public key id, APIv3 key and employee are the ones it names."""
    cwd = Path.cwd()
    merchant, platform = k.generate_private_key(), k.generate_private_key()
    (cwd / "apiclient_key.pem").write_text(k.private_key_pem(merchant))
    (cwd / "pub_key.pem").write_text(k.public_key_pem(platform.public_key()))
    scenario = {
        "platform_keys": [
            {
                "kind": "public_key",
                "key_id": "PUB_KEY_ID_0119000000012025000000000000000000",
                "private_key": k.private_key_pem(platform),
                "mchid": server.mchid,
            }
        ],
        "merchants": [
            {
                "mchid": server.mchid,
                "apiv3_key": "0123456789abcdef0123456789abcdef",
                "sub_merchants": ["1900000101"],
                "certificates": [
                    {
                        "serial_no": "3775B6A45ACD588826D15E583A95F5DD********",
                        "public_key": k.public_key_pem(merchant.public_key()),
                    }
                ],
            }
        ],
        "webizpay": {
            "employees": [
                {
                    "sp_mchid": server.mchid,
                    "sub_mchid": "1900000101",
                    "user_id": "quick_start_user",
                    "employee_id": "WeBizPay_a968402a-73bb-43e2-9e1a-8371b0ca3d7c",
                }
            ]
        },
    }
    (cwd / "scenario.yaml").write_text(yaml.safe_dump(scenario))
    server.load_scenario(cwd / "scenario.yaml")
    return {}


def _plugin(server: WxPartnerServer) -> dict[str, Any]:
    """`my_app` is the user's code under test; here it stands for it with the SDK call it would make."""

    def issue_travel_card(client: Client, employee_id: str, amount: int) -> w.IssueQuotaCardResponse:
        return client.webizpay.quota_cards.issue(
            employee_id,
            {
                "sp_mchid": client.mchid, "sub_mchid": "1900000101", "card_template_id": "template_123",
                "amount": amount, "card_name": "差旅费用卡", "out_card_no": "travel_0001",
                "effective_end_time": "2099-12-31T23:59:59+08:00",
            },
        )  # fmt: skip

    my_app = types.ModuleType("my_app")
    my_app.issue_travel_card = issue_travel_card  # type: ignore[attr-defined]
    return {"my_app": my_app}


# By the heading an example stands under (and which of its python blocks it is): what the prose before
# it says is in place, and names the example uses without defining them.
PREPARE: dict[tuple[str, int], Callable[[WxPartnerServer], dict[str, Any]]] = {
    ("A five-minute tour", 1): _tour,
    ("Quick start", 1): _quick_start,
    ("Testing your code: the pytest plugin", 1): _plugin,
}


def _tour_then(server: WxPartnerServer, namespace: dict[str, Any]) -> None:
    """The prose after the tour: past the card's end the card is DISABLED and the expiry is queued."""
    server.advance_clock(40 * 86400)  # `wxpartner clock --advance 40d`
    with server.client() as client:
        card = client.webizpay.quota_cards.get(
            namespace["employee_id"], namespace["card"].card_no, sp_mchid=server.mchid, sub_mchid="1900000101"
        )
    assert card.card_state == "DISABLED" and card.card_disabled_time
    events = server.control.get("/sandbox/callbacks", params={"event_type": "WEBIZPAY.QUOTACARDEXPIRED"})
    assert events.json()["total_count"] == 1


# What the prose after an example says follows from it.
THEN: dict[tuple[str, int], Callable[[WxPartnerServer, dict[str, Any]], None]] = {
    ("A five-minute tour", 1): _tour_then,
}


def _fixtures(server: WxPartnerServer, stack: contextlib.ExitStack) -> dict[str, Any]:
    """The plugin's fixtures by name, for the `test_*` functions an example defines."""
    return {
        "wxpartner_server": server,
        "wxpartner_live_server": server,
        "wxpartner_client": stack.enter_context(server.client()),
    }


@pytest.mark.parametrize("example", examples("python"), ids=lambda e: e.id)
def test_python_example_runs(
    example: Example, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    code = compile(example.text, example.id, "exec")  # a fragment still has to be Python
    if example.mark == FRAGMENT:
        pytest.skip("marked as a fragment")
    sandbox: WxPartnerServer = request.getfixturevalue("sandbox")
    namespace: dict[str, Any] = {"__name__": "__docs_example__"}
    if (prepare := PREPARE.get((example.heading, example.ordinal))) is not None:
        namespace.update(prepare(sandbox))
    assert sandbox.live_url is not None
    if DEFAULT_BASE_URL in example.text:
        code = compile(example.text.replace(DEFAULT_BASE_URL, sandbox.live_url), example.id, "exec")
    exec(code, namespace)
    tests = [f for name, f in namespace.items() if name.startswith("test_") and inspect.isfunction(f)]
    with contextlib.ExitStack() as stack:
        fixtures = _fixtures(sandbox, stack)
        for test in tests:  # an example that is a test module: run its tests with the plugin's fixtures
            test(**{name: fixtures[name] for name in inspect.signature(test).parameters})
    if (then := THEN.get((example.heading, example.ordinal))) is not None:
        then(sandbox, namespace)
    # every request the example made arrived verified and was answered 2xx (the journal records them)
    journal = sandbox.control.get("/sandbox/journal", params={"limit": 100}).json()["data"]
    assert journal, "the example made no APIv3 request"
    assert all(entry["status"] < 300 for entry in journal), journal
    del capsys  # printed output is the example's own business; captured so the run stays quiet


# -- ```yaml: load through the scenario loader ------------------------------------------------------------------
def _key_files(scenario_dir: Path) -> None:
    """The files the full example names, made as a user would: `wxpartner keys` for the merchant's
    certificate, WeChat Pay's own keys as files kept from an earlier run."""
    out = scenario_dir / "keys" / "1900000001"
    result = CliRunner().invoke(cli, ["keys", "--mchid", "1900000001", "--out", str(out)])
    assert result.exit_code == 0, result.output
    old = k.generate_private_key()
    (scenario_dir / "keys" / "old_public.pem").write_text(k.public_key_pem(old.public_key()))
    platform = scenario_dir / "platform"
    platform.mkdir()
    (platform / "pub_key_private.pem").write_text(k.private_key_pem(k.generate_private_key()))
    cert = make_platform_certificate()
    (platform / "cert_private.pem").write_text(cert.private_key_pem)
    assert cert.certificate_pem is not None
    (platform / "wechatpay_cert.pem").write_text(cert.certificate_pem)


@pytest.fixture(scope="module")
def served_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir as `make serve` leaves it (migrated, platform keys, demo merchants): copied per example."""
    data_dir = tmp_path_factory.mktemp("served") / ".wxpartner"
    db = Database(Settings(data_dir=str(data_dir)).resolved_database_url())
    bootstrap(db, data_dir, token=TOKEN)
    with db.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    db.dispose()
    return data_dir


@pytest.mark.parametrize("example", examples("yaml"), ids=lambda e: e.id)
def test_yaml_scenario_loads(example: Example, served_state: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / ".wxpartner"
    shutil.copytree(served_state, data_dir)
    scenario_dir = tmp_path / "scenario"
    scenario_dir.mkdir()
    if "platform_keys:" in example.text:
        _key_files(scenario_dir)
    path = scenario_dir / "scenario.yaml"
    path.write_text(example.text)
    db = Database(Settings(data_dir=str(data_dir)).resolved_database_url())
    try:
        load_scenario_file(db, path, data_dir=data_dir)  # what `serve --scenario` does
        exported = export_scenario(db)
        with db.read() as conn:
            platform_keys = {r.key_id for r in registry.list_platform_keys(conn)}
    finally:
        db.dispose()
    declared = yaml.safe_load(example.text)
    merchants = {m["mchid"] for m in exported["merchants"]}
    for merchant in declared.get("merchants", []):
        assert merchant["mchid"] in merchants
        for kind in ("sub_merchants", "second_level_merchants"):
            assert set(merchant.get(kind, [])) <= merchants
    assert {p["key_id"] for p in declared.get("platform_keys", []) if "key_id" in p} <= platform_keys
    for section in set(declared) - {"version", "merchants", "platform_keys"}:
        assert exported.get(section), f"{section} declared but nothing of it exported"
    # an applyment is found only by its caller's A2, and only a channel or institution may call: one
    # loaded for the service provider (as this README's example was) could never be queried
    roles = {m["mchid"]: m.get("role") for m in exported["merchants"]}
    for applyment in (declared.get("apply4subject") or {}).get("applyments", []):
        assert roles.get(applyment["mchid"]) in ("channel", "institution"), applyment


# -- ```json, and JSON bodies shown inline: checked against the code and models they show --------------------------
def _callback_body(shown: dict[str, Any]) -> None:
    """The callback POST body: the fields, and their order, that the outbox really sends."""
    claim = outbox.Claim(
        id=shown["id"], mchid="1900000001", event_type=shown["event_type"], summary=shown["summary"],
        resource={"employee_id": "WeBizPay_1"}, original_type=shown["resource"]["original_type"],
        create_time=1747280000.0, sends=0, send_limit=10, owner="docs",
    )  # fmt: skip
    merchant = Merchant(
        "1900000001", "", Role.SERVICE_PROVIDER, "0123456789abcdef0123456789abcdef", KeyMode.PUBLIC_KEY, None
    )
    sent = json.loads(build_body(merchant, claim))
    assert list(shown) == list(sent)
    assert list(shown["resource"]) == list(sent["resource"])
    for fixed in ("resource_type",):
        assert shown[fixed] == sent[fixed]
    for fixed in ("original_type", "algorithm", "associated_data"):
        assert shown["resource"][fixed] == sent["resource"][fixed]
    assert len(shown["resource"]["nonce"]) == len(sent["resource"]["nonce"])
    assert shown["event_type"] in _event_models()
    assert parse_rfc3339(shown["create_time"]).utcoffset() == dt.timedelta(hours=8)


# By heading (and ordinal among the heading's json blocks): how to check what the block shows.
JSON_CHECKS: dict[tuple[str, int], Callable[[dict[str, Any]], None]] = {
    ("What is sent", 1): _callback_body,
}


@pytest.mark.parametrize("example", examples("json"), ids=lambda e: e.id)
def test_json_example_is_what_the_code_sends(example: Example) -> None:
    check = JSON_CHECKS.get((example.heading, example.ordinal))
    assert check is not None, f"{example.id} ({example.heading}): add how to check it to JSON_CHECKS"
    check(json.loads(example.text))


# Business bodies shown inline in prose, by the text just before them: the model they are.
INLINE_MODELS: dict[str, type[BaseModel]] = {
    "RechargeEmployee is exactly the seed's shape:": RechargeEmployee
}


def test_inline_bodies_match_their_models() -> None:
    text = (ROOT / "README.md").read_text()
    for lead, model in INLINE_MODELS.items():
        m = re.search(re.escape(lead) + r"\s*`(\{[^`]*\})`", text)
        assert m is not None, f"no inline JSON after {lead!r}"
        body = json.loads(m.group(1))
        assert model.model_validate(body).model_dump(mode="json", exclude_none=True) == body


def _call_lines() -> list[tuple[str, list[str]]]:
    """`wxpartner call METHOD PATH ...` in the shell blocks, as argument lists."""
    found = []
    for example in examples("sh") + examples("bash"):
        for line in example.text.replace("\\\n", " ").splitlines():
            args = shlex.split(line, comments=True)
            if len(args) > 1 and args[0].endswith("wxpartner") and args[1] == "call":
                found.append((example.id, args[2:]))
    return found


def test_call_bodies_are_valid_requests() -> None:
    """A body sent with `wxpartner call` is one the operation's own request model accepts."""
    from wxpartner.server import families  # noqa: F401  (registers every operation)

    router = Router(REGISTRY)
    calls = _call_lines()
    assert calls
    for where, args in calls:
        method, path = args[0], args[1]
        op, _, _ = router.match(method, path.split("?")[0])
        assert op is not None, f"{where}: {method} {path} is no operation"
        data = args[args.index("-d") + 1] if "-d" in args else None
        if op.body_model is not None:
            assert data is not None, f"{where}: {op.op_id} takes a body"
            op.body_model.model_validate_json(data)
