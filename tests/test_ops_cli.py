"""CLI commands against a real in-process server (the click commands get the TestClient as transport)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from starlette.testclient import TestClient

from conftest import SANDBOX_TOKEN
from support import APIV3_KEY, SP_A, SP_B, World
from wxpartner.cli import main
from wxpartner.protocol import keys as k
from wxpartner.protocol.notification import encrypt_resource, sign_notification
from wxpartner.sandbox.material import make_merchant_keys  # noqa: F401  (keeps the import path honest)


@pytest.fixture
def data_dir(tmp_path: Path, world: World, http: TestClient) -> Path:
    d = tmp_path / "cli"
    d.mkdir()
    m = world.merchants[SP_B]
    key = d / "apiclient_key.pem"
    key.write_text(m.private_key_pem)
    (d / "connection.json").write_text(
        json.dumps(
            {
                "base_url": "http://testserver",
                "mchid": SP_B,
                "serial_no": m.serial_no,
                "private_key_path": str(key),
                "apiv3_key": m.apiv3_key,
                "sandbox_token": SANDBOX_TOKEN,
            }
        )
    )
    return d


@pytest.fixture
def run(http: TestClient, data_dir: Path) -> Any:
    runner = CliRunner()

    def invoke(*args: str, code: int = 0) -> Result:
        result = runner.invoke(
            main, [*args, "--data-dir", str(data_dir)], obj={"http": http}, catch_exceptions=False
        )
        assert result.exit_code == code, result.output
        return result

    return invoke


def as_json(result: Result) -> Any:
    return json.loads(result.output)


def test_clock_show_set_freeze_advance(run: Any) -> None:
    shown = as_json(run("clock", "--json"))
    assert shown["frozen"] is False
    frozen = as_json(run("clock", "--freeze", "--json"))
    assert frozen["frozen"] is True
    moved = as_json(run("clock", "--advance", "2h", "--json"))
    assert moved["now_ts"] == frozen["now_ts"] + 7200
    at = as_json(run("clock", "--set", "2031-05-06T07:08:09+08:00", "--json"))
    assert at["now"].startswith("2031-05-06T07:08:09")
    assert "frozen" in run("clock").output
    assert as_json(run("clock", "--thaw", "--json"))["frozen"] is False
    run("clock", "--advance", "soon", code=2)


def test_reset(run: Any) -> None:
    assert as_json(run("reset", "--mchid", SP_A, "--json")) == {"reset": SP_A}
    assert "reset: all" in run("reset", "--yes").output


def test_scenario_export_and_load(run: Any, tmp_path: Path) -> None:
    out = tmp_path / "scn.yaml"
    run("scenario", "export", "--out", str(out))
    data = yaml.safe_load(out.read_text())
    assert SP_A in {m["mchid"] for m in data["merchants"]}
    data["merchants"].append({"mchid": "1230009999", "name": "New one", "role": "sub_merchant"})
    out.write_text(yaml.safe_dump(data))
    loaded = as_json(run("scenario", "load", str(out), "--json"))
    assert loaded["loaded"] is True
    exported = as_json(run("scenario", "export", "--json"))
    assert "1230009999" in {m["mchid"] for m in exported["merchants"]}
    bad = tmp_path / "bad.yaml"
    bad.write_text("merchants: [{mchid: ''}]")
    assert "SCENARIO_ERROR" in run("scenario", "load", str(bad), code=1).output


def test_faults_add_list_clear_and_call(run: Any) -> None:
    rule = as_json(
        run("faults", "add", "SYSTEM_ERROR", "--operation", "certificates.*", "--count", "1", "--json")
    )
    assert rule["kind"] == "SYSTEM_ERROR" and rule["remaining"] == 1
    listed = as_json(run("faults", "list", "--json"))["data"]
    assert [r["id"] for r in listed] == [rule["id"]]
    assert rule["id"] in run("faults", "list").output
    failed = as_json(run("call", "GET", "/v3/certificates", "--json"))
    assert failed["status"] == 500 and failed["body"]["code"] == "SYSTEM_ERROR" and failed["signature_valid"]
    ok = as_json(run("call", "GET", "/v3/certificates", "--json"))
    assert ok["status"] == 200 and ok["signature_valid"] is True
    assert as_json(run("faults", "clear", rule["id"], "--json"))["deleted"] is True
    run("faults", "add", "LATENCY", "--latency-ms", "5")
    assert as_json(run("faults", "clear", "--json"))["deleted"] == 1
    assert "NOPE" in run("faults", "add", "NOPE", code=1).output


def test_call_pretty_and_bad_signature_exit_code(run: Any) -> None:
    out = run("call", "GET", "/v3/certificates").output
    assert "200" in out and "verified with" in out and "encrypt_certificate" in out
    tampered = run("call", "GET", "/v3/certificates", "--fault", "BAD_SIGNATURE", "--json", code=1)
    assert as_json(tampered)["signature_valid"] is False
    probe = run("call", "GET", "/v3/certificates", "--fault", "SIGNATURE_PROBE", "--json", code=1)
    assert "probe" in as_json(probe)["signature"]
    run("call", "POST", "/v3/certificates", "--data", "{not json", code=2)


def test_journal_list_and_entry(run: Any, http: TestClient, world: World) -> None:
    from support import ApiClient

    bad = ApiClient(http, world, SP_A).get("/v3/certificates", private_key=world.other_key, check=False)
    rows = as_json(run("journal", "--failed", "--json"))["data"]
    assert rows[0]["request_id"] == bad.headers["Request-ID"]
    entry = as_json(run("journal", bad.headers["Request-ID"], "--json"))
    assert entry["expected_message"].startswith("GET\n/v3/certificates\n")
    pretty = run("journal", bad.headers["Request-ID"]).output
    assert "expected string-to-sign" in pretty and "/v3/certificates\\n" in pretty
    assert "request journal" in run("journal", "--mchid", SP_A).output


def test_control_commands_need_a_token(http: TestClient, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["faults", "list", "--data-dir", str(tmp_path)], obj={"http": http})
    assert result.exit_code == 1 and "no sandbox token" in result.output
    wrong = CliRunner().invoke(
        main, ["faults", "list", "--data-dir", str(tmp_path), "--token", "nope"], obj={"http": http}
    )
    assert wrong.exit_code == 1 and "401" in wrong.output


def _callback(world: World, tmp_path: Path, *, tamper: bool = False) -> tuple[Path, Path, Path]:
    resource = encrypt_resource(APIV3_KEY, {"out_trade_no": "T1", "amount": 100}, original_type="transaction")
    body = json.dumps(
        {
            "id": "N1",
            "event_type": "TRANSACTION.SUCCESS",
            "resource_type": "encrypt-resource",
            "resource": resource,
        },
        separators=(",", ":"),
    ).encode()
    row = world.platform_pub
    signed = sign_notification(
        body,
        private_key=k.load_private_key(row.private_key_pem.encode()),
        key_id=row.key_id,
        timestamp=int(time.time()),
        request_id="RID-1",
    )
    headers = tmp_path / "headers.txt"
    headers.write_text("".join(f"{n}: {v}\n" for n, v in signed.headers.items()))
    body_file = tmp_path / "body.json"
    body_file.write_bytes(body.replace(b"N1", b"N2") if tamper else body)
    key_file = tmp_path / f"{row.key_id}.pem"
    key_file.write_text(row.public_key_pem)
    return headers, body_file, key_file


def test_verify_callback_offline(world: World, tmp_path: Path) -> None:
    headers, body, key = _callback(world, tmp_path)
    runner = CliRunner()
    args = [
        "verify-callback",
        "--headers",
        str(headers),
        "--body",
        str(body),
        "--public-key",
        str(key),
        "--apiv3-key",
        APIV3_KEY,
        "--data-dir",
        str(tmp_path),
    ]
    result = runner.invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["signature_valid"] is True and data["resource"] == {"out_trade_no": "T1", "amount": 100}
    assert data["event_type"] == "TRANSACTION.SUCCESS" and abs(data["timestamp_age_seconds"]) < 60
    pretty = runner.invoke(main, args)
    assert "decrypted resource" in pretty.output and "out_trade_no" in pretty.output
    wrong_key = runner.invoke(
        main, [*args[:-4], "--apiv3-key", "f" * 32, "--data-dir", str(tmp_path), "--json"]
    )
    assert "cannot decrypt" in json.loads(wrong_key.output)["decrypt_error"]


def test_verify_callback_rejects_a_tampered_body(world: World, tmp_path: Path) -> None:
    headers, body, key = _callback(world, tmp_path, tamper=True)
    as_obj = tmp_path / "headers.json"
    as_obj.write_text(json.dumps(dict(line.split(": ", 1) for line in headers.read_text().splitlines())))
    result = CliRunner().invoke(
        main,
        [
            "verify-callback",
            "--headers",
            str(as_obj),
            "--body",
            str(body),
            "--public-key",
            str(key),
            "--data-dir",
            str(tmp_path),
            "--json",
        ],
    )
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["signature_valid"] is False and "does not verify" in data["signature"]
    assert data["decrypt_error"].startswith("no APIv3 key")


def test_scenario_carries_fault_rules(run: Any, tmp_path: Path) -> None:
    scn = tmp_path / "faults.yaml"
    scn.write_text("faults:\n  - kind: FREQUENCY_LIMITED\n    operation: 'certificates.*'\n    count: 2\n")
    assert as_json(run("scenario", "load", str(scn), "--json"))["faults"] == 1
    exported = as_json(run("scenario", "export", "--json"))
    assert exported["faults"] == [{"kind": "FREQUENCY_LIMITED", "operation": "certificates.*", "count": 2}]
    assert as_json(run("call", "GET", "/v3/certificates", "--json"))["status"] == 429
    scn.write_text("faults:\n  - kind: EXPLODE\n")
    assert "faults[0]" in run("scenario", "load", str(scn), code=1).output
