"""CLI commands against a real in-process server (the click commands get the TestClient as transport)."""

from __future__ import annotations

import ast
import datetime as dt
import json
import re
import time
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner, Result
from starlette.testclient import TestClient

from conftest import SANDBOX_TOKEN
from support import APIV3_KEY, SECOND_A, SP_A, SP_B, SUB_A, World, in_one_window
from wxpartner.cli import main
from wxpartner.cli._http import Target
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
    back = as_json(run("clock", "--freeze", "--real", "--json"))  # real first, then frozen there
    assert back["frozen"] is True and back["offset_seconds"] == 0 and abs(back["now_ts"] - time.time()) < 5
    back = as_json(run("clock", "--real", "--json"))
    assert back["frozen"] is False and back["offset_seconds"] == 0
    assert "Invalid value for '--advance': 'soon'" in run("clock", "--advance", "soon", code=2).output


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


def test_a_scenario_the_server_cannot_parse_shows_its_error_on_lines(run: Any, tmp_path: Path) -> None:
    """Found walking the README: the server's YAML error (several lines, with a pointer under the
    column) was printed as one line with literal \\n in it. Its lines are kept, indented under the
    first, so a line of the message cannot pass for one of the CLI's own."""
    bad = tmp_path / "broken.yaml"
    bad.write_text("merchants: [{mchid: 1230009999}\n  - x\n")
    out = run("scenario", "load", str(bad), code=1).output
    first, *rest = out.rstrip("\n").split("\n")
    assert first.startswith("Error: 400 SCENARIO_ERROR") and "\\n" not in out, out
    assert rest and all(line.startswith("  ") for line in rest), out
    assert any(line.strip() == "^" for line in rest), out  # YAML's pointer under the column


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


def test_call_fail_gives_an_error_answer_its_own_exit_status(run: Any) -> None:
    """Found scripting the README: `wxpartner call … && next` went on after a 400 or 404 (exit status 0
    for any answer whose signature verifies); --fail makes a verified error answer exit 22, as curl's."""
    assert run("call", "GET", "/v3/certificates", "--fail").exit_code == 0  # 200
    missing = run(
        "call", "GET", "/v3/webizpay/employees/WeBizPay_none/quota-cards/1", "--fail", "--json", code=22
    )
    assert as_json(missing)["status"] >= 400 and as_json(missing)["signature_valid"] is True
    run("call", "GET", "/v3/webizpay/employees/WeBizPay_none/quota-cards/1")  # without it: 0, as before
    tampered = run("call", "GET", "/v3/certificates", "--fault", "BAD_SIGNATURE", "--fail", "--json", code=1)
    assert as_json(tampered)["signature_valid"] is False  # a bad signature still wins: 1


def test_an_unknown_wechat_pay_key_says_why_the_servers_keys_were_not_asked(run: Any, data_dir: Path) -> None:
    """Found walking the README (a rotation, then `call` with a stale exported token): the verdict was a
    bare "unknown WeChat Pay key 'PUB_KEY_ID_…'", with the control API's 401 swallowed."""
    refused = as_json(run("call", "GET", "/v3/certificates", "--token", "stale-token", "--json", code=1))
    assert refused["signature"].startswith("unknown WeChat Pay key ")
    assert "the control API did not list the server's keys (401 " in refused["signature"]
    info = json.loads((data_dir / "connection.json").read_text())
    del info["sandbox_token"]
    (data_dir / "connection.json").write_text(json.dumps(info))
    untold = as_json(run("call", "GET", "/v3/certificates", "--json", code=1))
    assert "no sandbox token to ask the control API" in untold["signature"]


def test_journal_list_and_entry(run: Any, http: TestClient, world: World) -> None:
    from support import ApiClient

    bad = ApiClient(http, world, SP_A).get("/v3/certificates", private_key=world.other_key, check=False)
    rows = as_json(run("journal", "--failed", "--json"))["data"]
    assert rows[0]["request_id"] == bad.headers["Request-ID"]
    entry = as_json(run("journal", bad.headers["Request-ID"], "--json"))
    assert entry["expected_message"].startswith("GET\n/v3/certificates\n")
    pretty = run("journal", bad.headers["Request-ID"]).output
    assert "expected string-to-sign" in pretty and "/v3/certificates\\n" in pretty
    listed = run("journal", "--mchid", SP_A).output
    assert "request journal" in listed
    assert time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(rows[0]["at"])) in listed  # the date too


def test_a_string_to_sign_shows_a_bodys_own_backslashes_doubled(
    run: Any, http: TestClient, world: World, tmp_path: Path, data_dir: Path
) -> None:
    """A JSON body's own escape (the two characters \\n) showed as the \\n that ends a line does, in
    the journal's expected string-to-sign and in `sign`'s: a body and its line ends could not be told
    apart. The body's backslash is doubled now; --json gives the text as it is."""
    from support import ApiClient

    bad = ApiClient(http, world, SP_A).post(
        "/v3/apply4subject/applyment", {"a": "x\ny"}, private_key=world.other_key, check=False
    )
    entry = as_json(run("journal", bad.headers["Request-ID"], "--json"))
    assert entry["expected_message"].endswith('{"a":"x\\ny"}\n')  # --json: the text as it is
    pretty = run("journal", bad.headers["Request-ID"]).output
    assert '"x\\\\ny"}\\n' in pretty, pretty
    body = tmp_path / "body.json"
    body.write_bytes(b'{"a":"x\\ny\\xff"}\xff')
    sign = [
        "sign",
        "--url",
        "/v3/x",
        "--mchid",
        SP_A,
        "--serial",
        "AB",
        "--key",
        str(data_dir / "apiclient_key.pem"),
    ]
    shown = _no_traceback([*sign, "--body", "@" + str(body)], 0)
    assert '{"a":"x\\\\ny\\\\xff"}\\xff\\n' in shown, shown  # the body's text, then a byte, then the line end
    as_data = json.loads(_no_traceback([*sign, "--body", "@" + str(body), "--json"], 0))
    assert as_data["message"].endswith('{"a":"x\\ny\\xff"}\\xff\n')  # as before: backslashreplace


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


@pytest.mark.parametrize(
    ("what", "content", "said"),
    [
        ("headers", b'{"Wechatpay-Serial": ', "is not a JSON object"),
        ("headers", b"\xff\xfeWechatpay-Serial: x\n", "not UTF-8 text"),
        ("public_key", b"not a PEM", "not a WeChat Pay public key or platform certificate PEM"),
        ("apiv3_key", b"short", "32 printable ASCII characters"),
    ],
)
def test_verify_callback_refuses_bad_input_with_a_message(
    world: World, tmp_path: Path, what: str, content: bytes, said: str
) -> None:
    """Found by an audit: each of these was a Python traceback."""
    headers, body, key = _callback(world, tmp_path)
    apiv3_key = APIV3_KEY
    if what == "headers":
        headers.write_bytes(content)
    elif what == "public_key":
        key.write_bytes(content)
    else:
        apiv3_key = content.decode()
    result = CliRunner().invoke(
        main,
        [
            "verify-callback",
            "--headers",
            str(headers),
            "--body",
            str(body),
            "--public-key",
            str(key),
            "--apiv3-key",
            apiv3_key,
            "--data-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    assert said in result.output and "Traceback" not in result.output


def test_verify_callback_tells_a_wrong_key_from_a_malformed_resource(world: World, tmp_path: Path) -> None:
    """A resource without its nonce was reported as "KeyError: cannot decrypt with this APIv3 key";
    a Wechatpay-Timestamp of non-ASCII digits ("²") was a traceback."""
    headers, body, key = _callback(world, tmp_path)
    data = json.loads(body.read_bytes())
    del data["resource"]["nonce"]
    body.write_bytes(json.dumps(data).encode())
    headers.write_text(headers.read_text().replace("Wechatpay-Timestamp: ", "Wechatpay-Timestamp: ²"))
    args = ["verify-callback", "--headers", str(headers), "--body", str(body), "--public-key", str(key)]
    result = CliRunner().invoke(
        main, [*args, "--apiv3-key", APIV3_KEY, "--data-dir", str(tmp_path), "--json"]
    )
    assert result.exit_code == 1, result.output
    out = json.loads(result.output)
    assert out["signature_valid"] is False and out["timestamp_age_seconds"] is None
    assert out["decrypt_error"] == "resource lacks 'nonce': not an encrypted WeChat Pay resource"


def test_scenario_load_reads_the_pem_files_beside_the_file_as_serve_does(
    run: Any, tmp_path: Path, http: TestClient
) -> None:
    """Found walking the README: a scenario naming `certificates: [{certificate: certs/sp.pem}]` beside it
    loads with `serve --scenario`, but `scenario load` sent the text and the server, which reads paths
    inside its own data dir only, answered `cannot read certs/sp.pem`."""
    folder = tmp_path / "mine"
    result = CliRunner().invoke(main, ["keys", "--mchid", "1230008888", "--out", str(folder / "certs")])
    assert result.exit_code == 0, result.output
    serial = k.certificate_serial(k.load_certificate((folder / "certs" / "apiclient_cert.pem").read_bytes()))
    platform = k.generate_private_key()
    (folder / "platform.pem").write_text(k.private_key_pem(platform))
    scenario = folder / "scenario.yaml"
    scenario.write_text(
        "platform_keys:\n"
        "  - {kind: public_key, key_id: PUB_KEY_ID_0123000088880000, private_key: platform.pem}\n"
        "merchants:\n"
        '  - mchid: "1230008888"\n'
        "    certificates: [{certificate: certs/apiclient_cert.pem}]\n"
        "webizpay:\n"
        '  templates: [{sp_mchid: "1230008888", card_template_id: t1, card_rule: SINGLE, refund_rule: RETURN}]\n'
    )
    for extra in ([], ["--batch", "1"]):
        assert as_json(run("scenario", "load", str(scenario), "--json", *extra))["loaded"] is True, extra
    merchants = http.get("/sandbox/merchants", headers={"Authorization": f"Bearer {SANDBOX_TOKEN}"}).json()
    (mine,) = [m for m in merchants["data"] if m["mchid"] == "1230008888"]
    assert [c["serial_no"] for c in mine["certificates"]] == [serial]
    keys = http.get("/sandbox/platform-keys", headers={"Authorization": f"Bearer {SANDBOX_TOKEN}"}).json()
    assert "PUB_KEY_ID_0123000088880000" in {row["key_id"] for row in keys["data"]}
    # a path that is no file here is sent as written: the server's answer names it, as before
    scenario.write_text('merchants:\n  - mchid: "1230008888"\n    certificates: [{certificate: gone.pem}]\n')
    assert "cannot read gone.pem" in run("scenario", "load", str(scenario), code=1).output
    # sections of the wrong shape are the server's to refuse, with or without --batch (no traceback here)
    scenario.write_text(
        "platform_keys: 5\nmerchants: [{mchid: '1230008888', certificates: [{certificate: 5}]}, 7]\n"
    )
    for extra in ([], ["--batch", "1"]):
        assert "SCENARIO_ERROR" in run("scenario", "load", str(scenario), *extra, code=1).output


def test_scenario_load_in_batches_refuses_an_unquoted_time_as_a_whole_load_does(
    run: Any, tmp_path: Path
) -> None:
    """Found walking the README's recharge section: YAML reads an unquoted create_time as a datetime;
    the server refuses it in a whole file (times are text), but `--batch` (JSON pieces) ended in
    `TypeError: Object of type datetime is not JSON serializable`. And a first batch that fails said
    "batches 1-0 are loaded"."""
    scenario = tmp_path / "times.yaml"
    scenario.write_text(
        "recharge_employees:\n"
        f'  - {{sub_mchid: "{SECOND_A}", mchid: "{SP_A}", employees: [{{sp_openid: oUnquoted, state: DELETED,\n'
        "      create_time: 2025-05-20T13:29:35+08:00}]}\n"
    )
    assert "SCENARIO_ERROR" in run("scenario", "load", str(scenario), code=1).output
    batched = run("scenario", "load", str(scenario), "--batch", "1", code=1).output
    assert "batch 1 of 1 failed" in batched and "nothing is loaded" in batched
    assert 'quote it ("2025-05-20T13:29:35+08:00")' in batched
    scenario.write_text(
        scenario.read_text().replace("2025-05-20T13:29:35+08:00", '"2025-05-20T13:29:35+08:00"')
    )
    assert as_json(run("scenario", "load", str(scenario), "--json", "--batch", "1"))["loaded"] is True


def test_scenario_carries_fault_rules(run: Any, tmp_path: Path) -> None:
    scn = tmp_path / "faults.yaml"
    scn.write_text("faults:\n  - kind: FREQUENCY_LIMITED\n    operation: 'certificates.*'\n    count: 2\n")
    assert as_json(run("scenario", "load", str(scn), "--json"))["faults"] == 1
    exported = as_json(run("scenario", "export", "--json"))
    assert exported["faults"] == [{"kind": "FREQUENCY_LIMITED", "operation": "certificates.*", "count": 2}]
    assert as_json(run("call", "GET", "/v3/certificates", "--json"))["status"] == 429
    scn.write_text("faults:\n  - kind: EXPLODE\n")
    assert "faults[0]" in run("scenario", "load", str(scn), code=1).output


def test_scenario_load_in_batches_with_progress_on_stderr(run: Any, tmp_path: Path) -> None:
    from support import SECOND_A

    scn = tmp_path / "big.yaml"
    data = {
        "version": 1,
        "merchants": [{"mchid": f"12300077{i:02d}", "name": f"Bulk {i}"} for i in range(5)],
        "recharge_employees": [{"sub_mchid": SECOND_A, "employees": ["oBulk1"]}],
        "faults": [{"kind": "LATENCY", "latency_ms": 1, "operation": "nothing.matches"}],
    }
    scn.write_text(yaml.safe_dump(data))
    result = run("scenario", "load", str(scn), "--batch", "2", "--progress", "--json")
    report = json.loads(result.stdout)  # stdout is one JSON document: progress went to stderr
    assert report["batches"] == 5 and report["merchants"] == 5 and report["faults"] == 1
    assert "loading big.yaml" in result.stderr and "7/7" in result.stderr
    exported = as_json(run("scenario", "export", "--json"))
    assert {f"12300077{i:02d}" for i in range(5)} <= {m["mchid"] for m in exported["merchants"]}
    quiet = run("scenario", "load", str(scn), "--json")  # no terminal, no --progress: no bar
    assert quiet.stderr == "" and json.loads(quiet.stdout)["merchants"] == 5
    assert "loaded" in run("scenario", "load", str(scn), "--batch", "3").output
    data["faults"] = [{"kind": "EXPLODE"}]
    scn.write_text(yaml.safe_dump(data))
    failed = run("scenario", "load", str(scn), "--batch", "2", code=1)
    assert "batch 4 of 5 failed" in failed.output and "batches 1-3 are loaded" in failed.output
    run("scenario", "load", str(scn), "--batch", "0", code=2)


def test_scenario_batches_keep_order_and_split_nested_sections() -> None:
    from wxpartner.cli.scenario import scenario_batches

    data = {
        "webizpay": {"templates": [1, 2, 3], "employees": [4], "auto": {"x": 1}},
        "version": 1,
        "merchants": [1, 2, 3],
        "platform_keys": [9],
    }
    pieces = scenario_batches(data, 2)
    assert [n for n, _ in pieces] == [1, 2, 1, 1, 2, 1, 1]
    assert pieces[0][1] == {"version": 1, "platform_keys": [9]}
    assert pieces[1][1] == {"version": 1, "merchants": [1, 2]}
    assert pieces[3][1] == {"version": 1, "webizpay": {"auto": {"x": 1}}}
    assert pieces[4][1] == {"version": 1, "webizpay": {"templates": [1, 2]}}
    assert pieces[6][1] == {"version": 1, "webizpay": {"employees": [4]}}


def test_bills_generates_a_csv_per_day_with_progress(
    run: Any, http: TestClient, control: TestClient, world: World, tmp_path: Path
) -> None:
    import datetime as dt

    from support import SUB_B, ApiClient
    from webizpay_support import authorize, issue

    client = ApiClient(http, world, SP_B)
    emp = authorize(client, control, "bill_employee", sp=SP_B, sub=SUB_B)
    card = issue(client, emp, "bill_card", sp=SP_B, sub=SUB_B)
    paid = control.post("/sandbox/webizpay/payments", json={"card_no": card["card_no"], "amount": 321})
    assert paid.status_code == 200, paid.text
    now = control.post("/sandbox/clock", json={"advance": 86400}).json()["now_ts"]
    today = dt.datetime.fromtimestamp(now, dt.timezone(dt.timedelta(hours=8))).date()
    paid_day = today - dt.timedelta(days=1)
    out = tmp_path / "bills"
    args = ["bills", "--sub-mchid", SUB_B, "--from", str(paid_day - dt.timedelta(days=1))]
    result = run(*args, "--to", str(paid_day), "--out", str(out), "--progress", "--json")
    report = json.loads(result.stdout)
    assert report["written"] == 2 and report["failed"] == 0
    assert "2/2" in result.stderr and "trade bills of" in result.stderr
    quiet_day, busy_day = report["bills"]
    assert paid.json()["transaction_id"] in Path(busy_day["path"]).read_text()
    assert paid.json()["transaction_id"] not in Path(quiet_day["path"]).read_text()
    assert busy_day["signature"].startswith("verified with") and busy_day["lines"] > quiet_day["lines"]
    # today is not over yet: that day fails, the command says so and exits 1
    partial = run(
        "bills",
        "--sub-mchid",
        SUB_B,
        "--from",
        str(paid_day),
        "--to",
        str(today),
        "--out",
        str(out),
        "--json",
        code=1,
    )
    assert json.loads(partial.stdout)["failed"] == 1 and "PARAM_ERROR" in partial.stdout
    # ... and says why: WeChat's message alone ("only the last three months") fits no day of that range
    error = json.loads(partial.stdout)["bills"][-1]["error"]
    assert "; /date must be between " in error and f"and {paid_day} (a finished day)" in error, error
    pretty = run("bills", "--sub-mchid", SUB_B, "--from", str(paid_day), "--out", str(out)).output
    assert "trade bills of" in pretty and "QYZFALL" in pretty
    run("bills", "--sub-mchid", SUB_B, "--from", "2026-13-01", code=2)
    run("bills", "--sub-mchid", SUB_B, "--from", "2026-01-02", "--to", "2026-01-01", code=2)
    # found in the sandbox audit: `call` printed a CSV answer as one quoted JSON string full of \n
    body = json.dumps({"sp_mchid": SP_B, "sub_mchid": SUB_B, "date": str(paid_day), "type": "QYZFALL"})
    applied = as_json(run("call", "POST", "/v3/webizpay/bill/trade-bill", "-d", body, "--json"))
    csv = run("call", "GET", applied["body"]["download_url"]).output
    txid = paid.json()["transaction_id"]
    assert f"`{txid}" in csv or f"{txid}," in csv
    assert "\\n" not in csv and '"交易时间' not in csv  # lines as lines, not a JSON string
    # found in the CLI audit: a file that could not be written was a traceback; now that day fails
    blocked = tmp_path / "blocked"
    (blocked / f"QYZFALL_{SUB_B}_{paid_day}.csv").mkdir(parents=True)
    refused = run(
        "bills", "--sub-mchid", SUB_B, "--from", str(paid_day), "--out", str(blocked), "--json", code=1
    )
    assert "cannot write" in json.loads(refused.stdout)["bills"][0]["error"]


def test_callbacks_list_show_deliver_redeliver(run: Any, control: TestClient, app: Any) -> None:
    from receiver import start_receiver
    from wxpartner.store import outbox

    rec = start_receiver()
    try:
        control.put(f"/sandbox/merchants/{SP_B}/notify-url", json={"notify_url": rec.url})
        now = control.get("/sandbox/clock").json()["now_ts"]
        with app.state.db.write() as conn:
            nid = outbox.enqueue(
                conn,
                mchid=SP_B,
                event_type="WEBIZPAY.REVOKED",
                summary="解除授权",
                resource={"x": 1},
                now=now,
            )
        listed = as_json(run("callbacks", "list", "--state", "pending", "--json"))
        assert [n["id"] for n in listed["data"]] == [nid] and listed["total_count"] == 1
        assert "no attempt yet" in run("callbacks", "list").output
        control.put(f"/sandbox/merchants/{SP_B}/notify-url", json={"notify_url": None})
        assert "waiting: no notify_url" in run("callbacks", "list").output  # says why it is not sent
        control.put(f"/sandbox/merchants/{SP_B}/notify-url", json={"notify_url": rec.url})
        sent = as_json(run("callbacks", "deliver", "--json"))["attempts"]
        assert [(a["id"], a["status"], a["state"]) for a in sent] == [(nid, 200, "delivered")]
        assert len(rec.deliveries) == 1
        assert "nothing was due" in run("callbacks", "deliver").output
        shown = as_json(run("callbacks", "show", nid, "--json"))
        assert shown["resource"] == {"x": 1} and shown["attempts"][0]["status"] == 200
        shown_text = run("callbacks", "show", nid).output
        assert "attempt #1 200" in shown_text
        # for people: times as dates and absent values as '-' (they were 1799115309.0 and None)
        assert "None" not in shown_text and re.search(
            r"^create_time: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$", shown_text, re.M
        )
        rec.status = 500
        again = run("callbacks", "redeliver", nid).output
        assert nid in again and "#2 500" in again and len(rec.deliveries) == 2
        assert "#2 500" in run("callbacks", "list", "--mchid", SP_B).output
        assert as_json(run("callbacks", "list", "--mchid", SP_A, "--json"))["data"] == []
        # found in the sandbox audit: past the last page it said "no callbacks" although there were
        assert "no callbacks at offset 5 (1 in all)" in run("callbacks", "list", "--offset", "5").output
        assert "404" in run("callbacks", "show", "nope", code=1).output
        # An id is sent as one path segment: "a?b" was sent as id "a" with a query, "a#b" as "a".
        assert "no callback notification a?b" in run("callbacks", "show", "a?b", code=1).output
        assert "no callback notification a#b" in run("callbacks", "redeliver", "a#b", code=1).output
    finally:
        rec.stop()


def _no_traceback(args: list[str], code: int) -> str:
    """Found in the sandbox audit: each of these ended in a Python traceback (exit status 1 by accident)."""
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.output


def test_bad_files_and_values_are_clear_errors(run: Any, tmp_path: Path, data_dir: Path) -> None:
    binary = tmp_path / "binary.dat"
    binary.write_bytes(b"\xff\xfe{}")
    not_key = tmp_path / "not_key.pem"
    not_key.write_text("hello")
    missing = str(tmp_path / "missing.json")
    key = str(data_dir / "apiclient_key.pem")
    sign = ["sign", "--url", "/v3/x", "--mchid", SP_A, "--serial", "AB"]
    assert "cannot read it: No such file" in _no_traceback([*sign, "--key", key, "--body", "@" + missing], 1)
    assert "not an unencrypted PEM RSA private key" in _no_traceback([*sign, "--key", str(not_key)], 1)
    signed = _no_traceback([*sign, "--key", key, "--body", "@" + str(binary)], 0)  # shown, not decoded
    assert "\\xff\\xfe{}\\n" in signed

    assert "cannot read it" in run("call", "POST", "/v3/certificates", "-d", "@" + missing, code=1).output
    assert (
        "PEM RSA private key" in run("call", "GET", "/v3/certificates", "--key", str(not_key), code=1).output
    )
    assert "expected 'Name: value'" in run("call", "GET", "/v3/certificates", "-H", "bogus", code=2).output
    assert "printable ASCII" in run("call", "GET", "/v3/certificates", "-H", "X-A: é", code=2).output

    assert "not UTF-8 text" in run("scenario", "load", str(binary), code=1).output
    nowhere = str(tmp_path / "no" / "such" / "dir" / "x.yaml")
    assert "cannot write it" in run("scenario", "export", "--out", nowhere, code=1).output
    assert "not in the range" in run("journal", "--limit", "0", code=2).output

    headers = tmp_path / "headers.json"
    headers.write_text('{"Wechatpay-Serial": ')
    body = tmp_path / "body.json"
    body.write_text("{}")
    verify = ["verify-callback", "--headers", str(headers), "--body", str(body)]
    assert "not valid JSON" in run(*verify, code=1).output
    headers.write_text('["not", "an object"]')
    assert "a JSON object of header names" in run(*verify, code=1).output
    headers.write_text('{"Wechatpay-Serial": "x"}')
    assert "not a PEM RSA public key" in run(*verify, "--public-key", str(not_key), code=1).output

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "connection.json").write_text("{broken")
    assert "not JSON" in _no_traceback(["clock", "--data-dir", str(broken)], 1)
    (broken / "connection.json").write_text("[]")
    assert "not a JSON object" in _no_traceback(["call", "GET", "/v3/x", "--data-dir", str(broken)], 1)


def test_keys_refuses_a_non_merchant_number_and_keeps_an_existing_pair(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found in the sandbox audit: an empty --mchid was a traceback, and a second run silently replaced
    a (possibly registered) private key."""
    out = tmp_path / "keys"
    assert "1 to 32 digits" in _no_traceback(["keys", "--mchid", "", "--out", str(out)], 2)
    assert "1 to 32 digits" in _no_traceback(["keys", "--mchid", "../x", "--out", str(out)], 2)
    # found in the CLI audit: an empty --out (an unset variable) wrote the pair into the current directory
    monkeypatch.chdir(tmp_path)
    assert "pass --out . for the current directory" in _no_traceback(
        ["keys", "--mchid", SP_A, "--out", ""], 2
    )
    _no_traceback(["keys", "--mchid", SP_A, "--out", str(out)], 0)
    first = (out / "apiclient_key.pem").read_bytes()
    assert "pass --force" in _no_traceback(["keys", "--mchid", SP_A, "--out", str(out)], 1)
    assert (out / "apiclient_key.pem").read_bytes() == first
    _no_traceback(["keys", "--mchid", SP_A, "--out", str(out), "--force"], 0)
    assert (out / "apiclient_key.pem").read_bytes() != first
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert "cannot write the key files" in _no_traceback(
        ["keys", "--mchid", SP_A, "--out", str(blocked / "x")], 1
    )


def test_ids_cannot_reach_another_endpoint(run: Any, http: TestClient, world: World) -> None:
    """Found in the sandbox audit: ids went into the control URL unencoded, so `faults clear ../journal`
    cleared the request journal (and `journal 'a?b'` looked up 'a')."""
    from support import ApiClient

    ApiClient(http, world, SP_A).get("/v3/certificates")
    rule = as_json(run("faults", "add", "LATENCY", "--latency-ms", "1", "--json"))
    before = as_json(run("journal", "--json"))["data"]
    assert before
    assert "404" in run("faults", "clear", "../journal", code=1).output
    assert "404" in run("callbacks", "show", "../faults", code=1).output
    assert "not a rule id" in run("faults", "clear", "..", code=2).output
    assert "no journal entry a?b" in run("journal", "a?b", code=1).output
    assert as_json(run("journal", "--json"))["data"][-1]["id"] == before[-1]["id"]  # nothing cleared
    assert [r["id"] for r in as_json(run("faults", "list", "--json"))["data"]] == [rule["id"]]


def test_call_signs_the_path_and_query_it_sends(run: Any) -> None:
    """Found in the sandbox audit: `call` signed the path as typed while httpx sent it with a leading '/'
    and percent-encoded, so a path without '/' or a query with a space or non-ASCII got 401 SIGN_ERROR
    (and, found in review, a '..' segment, which httpx resolves)."""
    paths = (
        "v3/certificates",
        "/v3/certificates?note=a b",
        "/v3/certificates?note=差旅",
        "/v3/x/../certificates",
    )
    for path in paths:
        answer = as_json(run("call", "GET", path, "--json"))
        assert answer["status"] == 200 and answer["signature_valid"] is True, (path, answer)


def test_text_from_merchants_and_users_is_printed_not_read_as_markup(
    run: Any, control: TestClient, app: Any, tmp_path: Path
) -> None:
    """Found in the sandbox audit: a merchant's callback answer, a path or a file name holding '[/]'
    made the CLI exit with a rich MarkupError traceback (and '[bold]' in them vanished)."""
    from receiver import start_receiver
    from wxpartner.store import outbox

    rec = start_receiver()
    try:
        control.put(f"/sandbox/merchants/{SP_B}/notify-url", json={"notify_url": rec.url})
        now = control.get("/sandbox/clock").json()["now_ts"]
        with app.state.db.write() as conn:
            nid = outbox.enqueue(
                conn, mchid=SP_B, event_type="WEBIZPAY.REVOKED", summary="x", resource={"x": 1}, now=now
            )
        rec.status, rec.answer = 500, b'{"code":"FAIL","message":"[/] down [bold]now"}'
        assert "[/] down [bold]now" in run("callbacks", "redeliver", nid).output
        assert "[/] down [bold]now" in run("callbacks", "show", nid).output
    finally:
        rec.stop()
    assert "merchant [/]x is not registered" in run("reset", "--mchid", "[/]x", "--yes", code=1).output
    out = tmp_path / "[bold]scn.yaml"
    assert "[bold]scn.yaml" in run("scenario", "export", "--out", str(out)).output
    assert "/v3/x[/]y" in run("call", "GET", "/v3/x[/]y", code=1).output


def test_verify_callback_reads_any_timestamp_and_an_empty_scenario_loads_in_batches(
    run: Any, tmp_path: Path
) -> None:
    """Found in the sandbox audit: a Wechatpay-Timestamp of '²' (isdigit() but not int()) was a
    traceback, a future one read "-90s ago"; an empty scenario file loaded without --batch but was
    refused with it."""
    body = tmp_path / "body.json"
    body.write_text("{}")
    headers = tmp_path / "headers.json"
    verify = ("verify-callback", "--headers", str(headers), "--body", str(body))
    headers.write_text(json.dumps({"Wechatpay-Timestamp": "²", "Wechatpay-Signature": "x"}))
    out = run(*verify, code=1).output
    assert "unknown WeChat Pay key" in out and "timestamp:" not in out  # not a timestamp: no age
    headers.write_text(
        json.dumps({"Wechatpay-Timestamp": str(int(time.time()) + 900), "Wechatpay-Signature": "x"})
    )
    out = run(*verify, code=1).output
    assert "s in the future (more than 5 minutes off)" in out
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert as_json(run("scenario", "load", str(empty), "--batch", "5", "--json"))["batches"] == 0


def test_a_control_refusal_shows_its_detail(http: TestClient, data_dir: Path) -> None:
    """The CLI's control client prints a refusal's detail (which field, value, state) after its message;
    it printed status, code and message only."""
    target = Target({"http": http}, str(data_dir), "", "")
    body = {"sp_mchid": SP_B, "sub_mchid": "1999999999", "user_id": "emp_99"}
    with pytest.raises(click.ClickException) as refused:
        target.control("POST", "/webizpay/authorizations", json=body)
    assert refused.value.message == (
        "400 PARAM_ERROR: 1999999999 is not a sub-merchant of " + SP_B + ' (detail: {"field": "/sub_mchid", '
        '"issue": "not a sub-merchant", "location": "body", "value": "1999999999"})'
    )
    with pytest.raises(click.ClickException) as plain:  # no detail, nothing added
        target.control("POST", "/callbacks/999999/redeliver")
    assert plain.value.message.startswith("404 RESOURCE_NOT_EXISTS: ") and "detail" not in plain.value.message


def test_a_plain_parameter_refusal_shows_its_detail_too(run: Any) -> None:
    """A parameter the control API refuses (params.bad) names its field, location, issue and value in its
    detail, and the CLI prints it; the message alone said it before."""
    out = run("faults", "add", "NOPE", code=1).output
    assert out.rstrip().endswith(
        ' (detail: {"field": "kind", "issue": "unknown fault kind", "location": "body", "value": "NOPE"})'
    )
    assert "400 PARAM_ERROR: unknown fault 'NOPE'" in out


def test_bad_urls_tokens_methods_and_settings_are_clear_errors(tmp_path: Path, data_dir: Path) -> None:
    """Found in the CLI audit: each of these was a Python traceback (or printed the token in an httpx
    error), and a refused connection did not say what to check."""
    from live import free_port

    token = ["--token", "t0ken"]
    assert "is not a URL" in _no_traceback(["clock", "--url", "http://[::1", *token], 1)
    assert "expected http://HOST:PORT" in _no_traceback(["clock", "--url", "ftp://x", *token], 1)
    assert "is not a URL" in _no_traceback(
        ["call", "GET", "/v3/x", "--data-dir", str(data_dir), "--url", "http://[::1"], 1
    )
    assert "is not a request path" in _no_traceback(
        ["call", "GET", "http://[::1/v3/x", "--data-dir", str(data_dir)], 2
    )
    key = str(data_dir / "apiclient_key.pem")
    assert "is not a URL" in _no_traceback(
        ["sign", "--url", "http://[::1", "--mchid", SP_A, "--serial", "AB", "--key", key], 2
    )
    for bad in ("é", "a\nsecret"):
        out = _no_traceback(["clock", "--token", bad, "--url", "http://127.0.0.1:1"], 1)
        assert "printable ASCII without spaces" in out and "secret" not in out
    assert "printable ASCII" in _no_traceback(
        ["call", "GET", "/v3/x", "--data-dir", str(data_dir), "--fault", "é"], 2
    )
    assert "not an HTTP method" in _no_traceback(["call", "G T", "/v3/x", "--data-dir", str(data_dir)], 2)
    signed = _no_traceback(
        ["sign", "-X", "G T", "--url", "/v3/x", "--mchid", SP_A, "--serial", "AB", "--key", key], 0
    )
    assert "not an HTTP method" in signed  # the warning on stderr (CliRunner mixes it in)

    down = f"http://127.0.0.1:{free_port()}"
    assert "is `wxpartner serve` running there?" in _no_traceback(["clock", "--url", down, *token], 1)
    assert "is `wxpartner serve` running there?" in _no_traceback(
        ["call", "GET", "/v3/x", "--data-dir", str(data_dir), "--url", down], 1
    )
    missing = tmp_path / "nowhere"
    assert f"{missing / 'connection.json'} does not exist" in _no_traceback(
        ["clock", "--data-dir", str(missing)], 1
    )
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "connection.json").write_text('{"mchid": 5, "serial_no": 6, "private_key_path": 7}')
    assert "mchid is not a string" in _no_traceback(["call", "GET", "/v3/x", "--data-dir", str(odd)], 1)


def test_empty_ids_and_values_are_refused_not_widened(run: Any, tmp_path: Path) -> None:
    """Found in the CLI audit: `faults clear "$ID"` with an empty $ID deleted every rule, `reset --yes
    --mchid ''` reset every merchant, `journal ''` listed the journal; `clock --set ²` and `faults add
    --probability nan` were tracebacks; `scenario load --batch` of a file without any list section
    loaded nothing and exited 0 where the plain load refuses it."""
    rule = as_json(run("faults", "add", "LATENCY", "--latency-ms", "1", "--json"))
    assert "'' is not a rule id" in run("faults", "clear", "", code=2).output
    assert [r["id"] for r in as_json(run("faults", "list", "--json"))["data"]] == [rule["id"]]
    assert "is not a Request-ID" in run("journal", "", code=2).output
    assert (
        "Invalid value for '--mchid': an empty merchant number"
        in run("reset", "--yes", "--mchid", "", code=2).output
    )
    # ... and a merchant that does not exist (a typo) is named, not reported as reset
    assert (
        "merchant 1999999999 is not registered"
        in run("reset", "--yes", "--mchid", "1999999999", code=1).output
    )
    assert "Traceback" not in run("clock", "--set", "²", code=1).output
    for odd in ("nan", "inf", "0", "2"):
        assert "Traceback" not in run("faults", "add", "SYSTEM_ERROR", "--probability", odd, code=2).output
    assert as_json(run("faults", "list", "--json"))["data"] == [rule]
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("merchants: 5\n")
    plain = run("scenario", "load", str(scalar), code=1).output
    assert (
        "SCENARIO_ERROR" in plain
        and "SCENARIO_ERROR" in run("scenario", "load", str(scalar), "--batch", "1", code=1).output
    )


def test_scenario_export_is_owner_only_and_whole(run: Any, tmp_path: Path) -> None:
    """Found in the CLI audit: scenario export --out wrote every merchant's APIv3 key to a file anyone
    could read (0644 under umask 022), and writes truncated the file in place first, so a Ctrl-C or a
    failure mid-write left it empty or half-written."""
    import os
    import stat

    from wxpartner.sandbox.material import write_secret

    out = tmp_path / "export" / "scn.yaml"
    out.parent.mkdir()
    out.write_text("old")
    run("scenario", "export", "--out", str(out))
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and "apiv3_key" in out.read_text()
    before = out.read_text()
    with pytest.raises(UnicodeEncodeError):  # fails mid-write: the old file stays whole
        write_secret(out, "new\udc80")
    assert out.read_text() == before and os.listdir(out.parent) == ["scn.yaml"]


def test_long_values_a_wrong_token_and_a_tilde_data_dir(
    run: Any, http: TestClient, data_dir: Path, tmp_path: Path
) -> None:
    """Found in the CLI audit: an id or filter too long for a URL was an httpx.InvalidURL traceback; a
    refused token did not say where it came from (a stale WXPARTNER_SANDBOX_TOKEN silently overrides
    connection.json); '~' in WXPARTNER_DATA_DIR (or --data-dir=~/x, which the shell leaves alone)
    was a directory named '~'."""
    long = "a" * 100_000
    assert "a value given is too long" in run("journal", long, code=1).output
    assert "a value given is too long" in run("journal", "--code", long, code=1).output
    refused = run("clock", "--token", "wrong", code=1).output
    assert "401" in refused and "the token sent came from --token or WXPARTNER_SANDBOX_TOKEN" in refused
    home = tmp_path / "home"
    (home / "srv").mkdir(parents=True)
    (home / "srv" / "connection.json").write_text((data_dir / "connection.json").read_text())
    result = CliRunner().invoke(
        main,
        ["clock", "--json"],
        obj={"http": http},
        env={"HOME": str(home), "WXPARTNER_DATA_DIR": "~/srv"},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "now" in json.loads(result.output)


def test_scenario_export_json_writes_the_servers_answer_as_it_arrives(
    run: Any, http: TestClient, tmp_path: Path
) -> None:
    """--json copied the answer through json.loads and an indented json.dumps: for 100,000 applyments
    and as many recharge employees 17.6 s and 476 MB. It writes the server's bytes as they arrive now
    (owner-only, whole or not at all)."""
    answer = http.get("/sandbox/scenario", headers={"Authorization": f"Bearer {SANDBOX_TOKEN}"}).content
    out = tmp_path / "scn.json"
    run("scenario", "export", "--json", "--out", str(out))
    assert out.read_bytes() == answer and out.stat().st_mode & 0o777 == 0o600
    assert run("scenario", "export", "--json").stdout_bytes == answer + b"\n"
    nowhere = str(tmp_path / "no" / "such" / "dir" / "x.json")
    assert "cannot write it" in run("scenario", "export", "--json", "--out", nowhere, code=1).output


def test_clock_says_what_the_move_settled(run: Any, http: TestClient) -> None:
    now = as_json(run("clock", "--json"))["now_ts"]
    end = dt.datetime.fromtimestamp(now + 3600, dt.UTC).isoformat(timespec="seconds")
    person = {"sp_mchid": SP_A, "sub_mchid": SUB_A, "user_id": "settled_user"}
    section = {
        "employees": [person],
        "cards": [
            {**person, "out_card_no": "settled_1", "amount": 1, "card_name": "卡", "effective_end_time": end}
        ],
    }
    loaded = http.post(
        "/sandbox/scenario", json={"webizpay": section}, headers={"Authorization": f"Bearer {SANDBOX_TOKEN}"}
    )
    assert loaded.status_code == 200, loaded.text
    assert "settled: 1 quota card expired\n" in run("clock", "--advance", "2h").output  # not "1 quota cards"
    assert "settled" not in run("clock", "--advance", "2h").output  # nothing owed: nothing said
    # two at once: the plural
    now = as_json(run("clock", "--json"))["now_ts"]
    end = dt.datetime.fromtimestamp(now + 3600, dt.UTC).isoformat(timespec="seconds")
    cards = [
        {**person, "out_card_no": f"settled_{i}", "amount": 1, "card_name": "卡", "effective_end_time": end}
        for i in (2, 3)
    ]
    loaded = http.post(
        "/sandbox/scenario",
        json={"webizpay": {"cards": cards}},
        headers={"Authorization": f"Bearer {SANDBOX_TOKEN}"},
    )
    assert loaded.status_code == 200, loaded.text
    assert "settled: 2 quota cards expired\n" in run("clock", "--advance", "2h").output


def test_summaries_count_in_the_singular_for_one(run: Any) -> None:
    """A count of one takes the singular ("deleted 1 rule", not "1 rule(s)")."""
    run("faults", "add", "SYSTEM_ERROR", "--operation", "nothing.matches.this")
    assert "deleted 1 rule\n" in run("faults", "clear").output
    run("faults", "add", "SYSTEM_ERROR", "--operation", "nothing.matches.this")
    run("faults", "add", "SYSTEM_ERROR", "--operation", "nothing.matches.that")
    assert "deleted 2 rules\n" in run("faults", "clear").output


def test_callbacks_list_pages_by_after(run: Any, control: TestClient, app: Any) -> None:
    """--after takes the next_after a page answered (printed as the way to the next page)."""
    from wxpartner.store import outbox

    now = control.get("/sandbox/clock").json()["now_ts"]
    with app.state.db.write() as conn:
        ids = [
            outbox.enqueue(
                conn, mchid=SP_B, event_type="WEBIZPAY.REVOKED", summary="s", resource={}, now=now + i
            )
            for i in range(3)
        ]
    first = run("callbacks", "list", "--limit", "2")
    cursor = first.output.split("next page: --after ")[1].split()[0]
    second = as_json(run("callbacks", "list", "--limit", "2", "--after", cursor, "--json"))
    assert [n["id"] for n in second["data"]] == ids[:1] and second["next_after"] is None
    assert (
        "1 callback after the cursor, of 3"
        in run("callbacks", "list", "--limit", "2", "--after", cursor).output
    )
    assert "PARAM_ERROR" in run("callbacks", "list", "--after", "nonsense", code=1).output


def test_call_says_and_waits_for_a_retry_after(settings: Any, world: World, data_dir: Path) -> None:
    """A rate-limited answer names its wait (Retry-After: 1): ``call`` says it, and ``--retries``
    waits it and repeats the call signed afresh; an injected 429 names none and is not repeated."""
    import dataclasses

    from apply4subject_support import BASE, set_roles
    from wxpartner.server.app import create_app

    app = create_app(dataclasses.replace(settings, extra={"apply4subject_rate_limits": {"query": 1}}))
    set_roles(app, world)
    runner = CliRunner()
    path = f"{BASE}?business_code=NONE1"
    try:
        with TestClient(app, base_url="http://testserver") as http:

            def call(*args: str) -> Result:
                return runner.invoke(
                    main,
                    ["call", "GET", path, *args, "--data-dir", str(data_dir)],
                    obj={"http": http},
                    catch_exceptions=False,
                )

            def limited() -> tuple[Result, Result]:
                return call("--json"), call()

            first, second = in_one_window(limited)  # type: ignore[arg-type]
            assert json.loads(first.stdout)["status"] == 404
            assert "429" in second.stdout and "Retry-After: 1 s" in second.stdout
            shown = in_one_window(lambda: [json.loads(call("--json").stdout) for _ in range(2)])  # type: ignore[misc]
            assert shown[1]["status"] == 429 and shown[1]["retry_after"] == 1.0
            for _ in range(4):  # the first call takes the window's one query, the second waits for the next
                time.sleep(1 - time.time() % 1 + 0.01)
                call("--json")
                waited = call("--json", "--retries", "2")
                if "waiting" in waited.stderr:
                    break
            assert json.loads(waited.stdout)["status"] == 404  # the window passed: answered
            assert "429 FREQUENCY_LIMITED: waiting 1 s as its Retry-After asks" in waited.stderr
            time.sleep(1 - time.time() % 1 + 0.01)  # a window of its own: the limit does not answer first
            injected = call("--json", "--retries", "2", "--fault", "FREQUENCY_LIMITED")
            assert json.loads(injected.stdout)["retry_after"] is None and "waiting" not in injected.stderr
    finally:
        app.state.db.dispose()


def test_a_refused_serial_no_names_the_merchants_certificates(
    run: Any, http: TestClient, world: World
) -> None:
    """A request signed with a serial_no that is none of the merchant's certificates (the platform
    certificate's, the usual mix-up): the journal entry said only that it is not registered; it lists
    what the merchant has, in the control API, the CLI and the dashboard's explanation. The CLI
    showed the entry's time as Unix seconds."""
    from support import ApiClient

    platform_serial = world.platform_pub.key_id
    bad = ApiClient(http, world, SP_A).get("/v3/certificates", serial_no=platform_serial, check=False)
    assert bad.status_code == 401 and bad.json()["detail"]["field"] == "serial_no"
    rid = bad.headers["Request-ID"]
    entry = as_json(run("journal", rid, "--json"))
    assert entry["merchant_certificates"] == [
        {"serial_no": world.merchants[SP_A].serial_no, "revoked": False}
    ]
    pretty = run("journal", rid).output
    assert f"certificates of {SP_A} (what serial_no may name): {world.merchants[SP_A].serial_no}" in pretty
    assert time.strftime("at: %Y-%m-%d %H:%M:%S UTC", time.gmtime(entry["at"])) in pretty
    http.post("/dashboard/login", data={"token": SANDBOX_TOKEN})
    page = http.get(f"/dashboard/journal/{rid}").text
    assert 'id="merchant-certificates"' in page and world.merchants[SP_A].serial_no in page
    ok = ApiClient(http, world, SP_A).get("/v3/certificates", private_key=world.other_key, check=False)
    assert "merchant_certificates" not in as_json(run("journal", ok.headers["Request-ID"], "--json"))


def _table_row(output: str, row_id: int) -> str:
    """The table line of the journal row ``row_id``."""
    return next(line for line in output.splitlines() if re.match(rf"│ {row_id} +│", line))


def test_the_journal_table_marks_a_claimed_mchid_and_pages(
    settings: Any, world: World, data_dir: Path
) -> None:
    """Found using the CLI on a sandbox under a flood of forged requests: `wxpartner journal` listed a
    request whose signature was not verified under the mchid it claimed exactly as a verified one
    (only --json and one entry said mchid_verified: false), the journal's note of the requests it left
    out as a request "- -" with status "dropped", and a busy journal past its newest 1000 rows could
    not be read at all (no --before; no --verification to leave the claims out)."""
    from wxpartner.server.app import create_app

    settings.extra.update(journal_unverified_burst=3, journal_unverified_rate=0.001)  # none refilled
    app = create_app(settings)
    with TestClient(app, base_url="http://testserver") as http:
        _claimed_rows_and_pages(http, world, data_dir)
    app.state.db.dispose()


def _claimed_rows_and_pages(http: TestClient, world: World, data_dir: Path) -> None:
    from support import ApiClient

    def run(*args: str) -> Result:
        result = CliRunner().invoke(main, [*args, "--data-dir", str(data_dir)], obj={"http": http})
        assert result.exit_code == 0, result.output
        return result

    a = ApiClient(http, world, SP_A)
    assert a.get("/v3/certificates", check=False).status_code == 404  # verified: public-key mode
    for _ in range(3 + 5):  # anyone: A's mchid, a key that is not A's
        assert a.get("/v3/certificates", private_key=world.other_key, check=False).status_code == 401
    rows = as_json(run("journal", "--limit", "1000", "--json"))["data"]
    verified = next(r for r in rows if r["mchid_verified"])
    forged = next(r for r in rows if r["verification"] == "refused" and r["operation"] == "certificates.list")
    # at most one note a second: on a loaded machine the five left out may be noted in two rows
    notes = [r for r in rows if r["operation"] == "journal.unverified_skipped"]
    note = notes[0]
    listed = run("journal", "--limit", "1000").output
    assert f"│ {SP_A} (claimed) " in _table_row(listed, forged["id"])
    assert re.search(rf"│ {SP_A} +│", _table_row(listed, verified["id"]))  # no mark
    assert "(claimed): the mchid the request's Authorization header claims; its signature was not" in listed
    assert sum(int(n["message"].split()[0]) for n in notes) == 5 and "note NOT_JOURNALED" in listed
    assert all(f"{n['message'].split()[0]} unverified requests not journaled" in listed for n in notes)
    assert "- -" not in listed and "dropped" not in listed
    ok_only = run("journal", "--verification", "ok")
    assert "(claimed)" not in ok_only.output
    assert re.search(rf"│ {SP_A} +│", _table_row(ok_only.output, verified["id"]))
    entry = run("journal", forged["request_id"]).output
    assert f"mchid: {SP_A} (claimed): its signature was not verified" in entry
    assert f"mchid: {SP_A}\n" in run("journal", verified["request_id"]).output

    first = run("journal", "--limit", "2").output
    before = int(first.split("older entries: --before ")[1].split()[0])
    assert before == rows[1]["id"]
    page = as_json(run("journal", "--limit", "2", "--before", str(before), "--json"))["data"]
    assert [r["id"] for r in page] == [r["id"] for r in rows[2:4]]
    assert "older entries" not in run("journal", "--limit", "1000").output  # all of it: no next page
    assert note["mchid_verified"] is False


def test_callbacks_list_shows_the_last_attempt_of_each(run: Any, control: TestClient, app: Any) -> None:
    """Found using the CLI on a busy sandbox: a notification that failed all ten sends listed each
    attempt with its error in one cell, a row a screen high; now the last, and how many (every one:
    callbacks show)."""
    from receiver import start_receiver
    from wxpartner.store import outbox

    rec = start_receiver()
    rec.status, rec.answer = 500, b"down #"
    try:
        control.put(f"/sandbox/merchants/{SP_B}/notify-url", json={"notify_url": rec.url})
        now = control.get("/sandbox/clock").json()["now_ts"]
        with app.state.db.write() as conn:
            nid = outbox.enqueue(
                conn, mchid=SP_B, event_type="WEBIZPAY.REVOKED", summary="s", resource={}, now=now
            )
        for _ in range(3):
            run("callbacks", "redeliver", nid)
    finally:
        rec.stop()
    listed = run("callbacks", "list").output
    assert "#3 500" in listed and "HTTP 500: down # (last of 3)" in listed and "#1 500" not in listed
    assert "last attempt" in listed
    shown = run("callbacks", "show", nid).output
    assert all(f"attempt #{n} 500" in shown for n in (1, 2, 3))


def test_scenario_export_writes_pem_text_line_for_line(run: Any, tmp_path: Path) -> None:
    """Found exporting a sandbox's scenario to edit it: every certificate and key was a quoted YAML
    scalar with a blank line between any two of its lines (twice as long, unlike its PEM file); now a
    literal block, which loads back to the same text."""
    out = tmp_path / "scn.yaml"
    run("scenario", "export", "--out", str(out))
    text = out.read_text()
    assert "certificate: |\n      -----BEGIN CERTIFICATE-----\n      MII" in text
    assert "'-----BEGIN" not in text and "\n\n" not in text
    assert yaml.safe_load(text) == as_json(run("scenario", "export", "--json"))
    assert as_json(run("scenario", "load", str(out), "--json"))["loaded"] is True


def test_visible_escapes_what_a_terminal_acts_on_and_nothing_else() -> None:
    """The one helper every printed value from outside goes through (cli/_output.py)."""
    from wxpartner.cli._output import visible

    plain = "商户 1900000001 ａ\u3000b\u00a0[/] é 👍"  # CJK, full-width and no-break spaces: shown
    assert visible(plain) == plain
    assert visible("a\x1b[2J\x07\x7f\x9b\x85b") == "a\\x1b[2J\\x07\\x7f\\x9b\\x85b"
    assert visible("x\u202ey\u2066z\u200b\u2028\ufeff") == "x\\u202ey\\u2066z\\u200b\\u2028\\ufeff"
    assert visible("one\r\ntwo\tthree\n") == "one\\r\\ntwo\\tthree\\n"  # a value is one line
    assert visible("a,b\r\nc\td\x1b\n", lines=True) == "a,b\nc\td\\x1b\n"  # a text of lines keeps them
    assert visible("\ud800x") == "\\ud800x"  # a lone surrogate: UTF-8 cannot print it


def test_visible_is_unambiguous_a_backslash_is_doubled() -> None:
    """The text \\x1b (four characters) showed as an escaped ESC does: whoever reads a value could not
    tell what the server sent. A backslash is doubled, escaped text or not, as Python writes it."""
    from wxpartner.cli._output import visible

    assert visible("\\x1b") == "\\\\x1b" != visible("\x1b") == "\\x1b"
    assert visible("C:\\keys\\n") == "C:\\\\keys\\\\n" != visible("C:\\keys\n")
    assert visible("a\\tb\tc\\\n", lines=True) == "a\\\\tb\tc\\\\\n"
    assert visible("\udcff", undecodable=True) == "\\xff" != visible("\\xff", undecodable=True)
    # each shown text reads back to the one given, as a Python string literal
    for text in ("\\x1b", "\x1b", "\\\x1b", "a\\nb\n\u202e\\", "\\\\"):
        assert ast.literal_eval(f'"{visible(text)}"') == text, text


def test_pretty_json_escapes_them_and_stays_the_json_of_the_same_data(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from wxpartner.cli._output import print_json

    data = {"message": "x\x1b[2J\x9b\u202e\U000e0001 商户\n", "n": [1, None]}
    print_json(data)
    shown = capsys.readouterr().out
    assert "\\u009b\\u202e\\udb40\\udc01 商户\\n" in shown  # a tag character: its surrogate pair
    assert json.loads(shown) == data


def test_faults_list_shows_each_rules_note(run: Any) -> None:
    """Found using the CLI on a shared sandbox: `faults add --note` says the note is shown with the
    rule, but `faults list` had no column for it (only --json had it): whose rule it was went unseen."""
    run("faults", "add", "SYSTEM_ERROR", "--operation", "webizpay.*", "--note", "ticket 42: Li's test")
    run("faults", "add", "LATENCY", "--latency-ms", "5")
    listed = run("faults", "list").output
    assert "┃ note " in listed and "ticket 42: Li's test" in listed
    latency = next(line for line in listed.splitlines() if "LATENCY" in line)
    assert re.search(r"│ 5 +│ 0 +│ +│$", latency.rstrip())  # no note: blank, not "any"


def test_scenario_load_reports_what_the_webizpay_section_loaded(run: Any, tmp_path: Path) -> None:
    """Each list the webizpay section had is in the report, as the other sections' counts and ids are:
    templates counted, employees, cards and spends by the ids the sandbox gave them (it said nothing
    of the section: an employee_id left out to be generated could not be learnt from the load)."""
    end = "2030-12-31T23:59:59+08:00"
    person = {"sp_mchid": SP_A, "sub_mchid": SUB_A, "user_id": "reported_user"}
    section = {
        "templates": [{"sp_mchid": SP_A, "card_template_id": "tpl_reported", "card_rule": "MULTIPLE"}],
        "employees": [person],
        "cards": [
            {
                **person,
                "out_card_no": f"reported_{i}",
                "amount": 100,
                "card_name": "卡",
                "effective_end_time": end,
            }
            for i in (1, 2)
        ],
        "spends": [{"sp_mchid": SP_A, "sub_mchid": SUB_A, "out_card_no": "reported_1", "amount": 1}],
    }
    scn = tmp_path / "webizpay.yaml"
    scn.write_text(yaml.safe_dump({"webizpay": section}, allow_unicode=True))
    report = as_json(run("scenario", "load", str(scn), "--json"))["webizpay"]
    assert report["templates"] == 1
    assert len(report["employee_ids"]) == 1 and report["employee_ids"][0].startswith("WeBizPay")
    assert len(report["card_nos"]) == 2 and len(report["transaction_ids"]) == 1
    text = run("scenario", "load", str(scn)).output
    assert f"webizpay.employee_ids: {report['employee_ids'][0]}" in text  # the same employee again
    assert f"webizpay.card_nos: {', '.join(report['card_nos'])}" in text  # the same cards (W3 is idempotent)
    assert "webizpay.templates: 1" in text
    # in batches of one entry: the section's lists join, as counts add up
    batched = as_json(run("scenario", "load", str(scn), "--batch", "1", "--json"))["webizpay"]
    assert batched["templates"] == 1 and batched["card_nos"] == report["card_nos"]
    assert batched["employee_ids"] == report["employee_ids"] and len(batched["transaction_ids"]) == 1
    only_templates = tmp_path / "templates.yaml"
    only_templates.write_text(yaml.safe_dump({"webizpay": {"templates": section["templates"]}}))
    assert as_json(run("scenario", "load", str(only_templates), "--json"))["webizpay"] == {"templates": 1}


def test_a_spend_with_its_out_trade_no_is_loaded_once(run: Any, tmp_path: Path) -> None:
    """Loading the same file twice changes nothing: a spend that names its out_trade_no is paid once
    (each load paid it again, with another PAYMENTSUCCESS queued); another amount under it is refused."""
    end = "2030-12-31T23:59:59+08:00"
    person = {"sp_mchid": SP_A, "sub_mchid": SUB_A, "user_id": "spent_once"}
    card = {
        **person,
        "out_card_no": "spent_once_1",
        "amount": 100,
        "card_name": "卡",
        "effective_end_time": end,
    }
    spend = {
        "sp_mchid": SP_A,
        "sub_mchid": SUB_A,
        "out_card_no": "spent_once_1",
        "amount": 7,
        "out_trade_no": "once_1",
    }
    scn = tmp_path / "spends.yaml"
    scn.write_text(yaml.safe_dump({"webizpay": {"employees": [person], "cards": [card], "spends": [spend]}}))
    first = as_json(run("scenario", "load", str(scn), "--json"))["webizpay"]["transaction_ids"]
    second = as_json(run("scenario", "load", str(scn), "--json"))["webizpay"]["transaction_ids"]
    assert first == second and len(first) == 1
    scn.write_text(yaml.safe_dump({"webizpay": {"spends": [{**spend, "amount": 8}]}}))
    refused = run("scenario", "load", str(scn), code=1).output
    assert (
        "webizpay.spends[0]: out_trade_no once_1 of card spent_once_1 was paid already with amount 7"
        in refused
    )
