"""The commands that sign or verify act as any demo merchant of ``connection.json``'s ``merchants``
(``--merchant channel`` / its mchid), against a real ``wxpartner serve`` on loopback."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from a1_support import a1_body
from live import Served
from wxpartner.cli import main
from wxpartner.protocol import keys as k
from wxpartner.protocol.notification import encrypt_resource, sign_notification

A4 = "/v3/apply4subject/applyment/merchants/1900000101/state"  # the channel's endpoint


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = Served(tmp_path_factory.mktemp("merchants") / "data")
    yield server
    server.stop()


def _data_dir(served: Served) -> str:
    return str(Path(served.info["private_key_path"]).parents[2])


def _run(*args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result


def _call(served: Served, *args: str, code: int = 0, data_dir: str | None = None) -> Any:
    out = _run("call", "GET", A4, "--json", "--data-dir", data_dir or _data_dir(served), *args, code=code)
    return json.loads(out.output)


@pytest.mark.slow
def test_call_signs_as_the_channel_merchant_by_name_or_mchid(served: Served) -> None:
    channel = served.info["merchants"]["channel"]
    # as the service provider (the default), the applyment family refuses the caller's role
    refused = _call(served)
    assert refused["status"] == 400 and refused["body"]["code"] == "PARAM_ERROR"
    for chosen in (
        ["--merchant", "channel"],
        ["--merchant", channel["mchid"]],
        ["--mchid", channel["mchid"]],
    ):
        answer = _call(served, *chosen)
        assert answer["status"] == 200, (chosen, answer)
        assert answer["signature_valid"] is True
        assert answer["body"] == {"authorize_state": "AUTHORIZE_STATE_UNAUTHORIZED"}
    # a flag still overrides one value: the channel's mchid with the service provider's key is refused
    mixed = _call(served, "--merchant", "channel", "--key", served.info["private_key_path"], code=1)
    assert mixed["status"] == 401 and mixed["body"]["code"] == "SIGN_ERROR"


@pytest.mark.slow
def test_call_verifies_the_channels_answer_with_the_channels_own_key_files(
    served: Served, tmp_path: Path
) -> None:
    """No sandbox token (so no control API) and no top-level WeChat Pay keys: only the channel entry's
    key files can verify its answer."""
    info = json.loads(Path(_data_dir(served), "connection.json").read_text())
    del info["sandbox_token"]
    for name in (
        "wechatpay_public_key_id",
        "wechatpay_public_key_path",
        "platform_certificate_serial",
        "platform_certificate_path",
    ):
        info[name] = None
    (tmp_path / "connection.json").write_text(json.dumps(info))
    answer = _call(served, "--merchant", "channel", data_dir=str(tmp_path))
    assert answer["status"] == 200 and answer["signature_valid"] is True, answer
    assert answer["signature"] == f"verified with {info['merchants']['channel']['wechatpay_public_key_id']}"


@pytest.mark.slow
def test_an_unknown_merchant_says_which_there_are(served: Served, tmp_path: Path) -> None:
    data_dir = _data_dir(served)
    out = _run("call", "GET", A4, "--merchant", "bogus", "--data-dir", data_dir, code=1).output
    assert "--merchant bogus: not a merchant of" in out
    assert "service_provider (1900000001), channel (1900000301)" in out
    out = _run("call", "GET", A4, "--mchid", "1999999999", "--data-dir", data_dir, code=1).output
    assert "need --serial and --key" in out and "no keys for merchant 1999999999" in out
    out = _run("call", "GET", A4, "--data-dir", str(tmp_path), code=1).output
    assert "need --mchid, --serial and --key" in out and "does not exist" in out
    out = _run("call", "GET", A4, "--merchant", "channel", "--data-dir", str(tmp_path), code=1).output
    assert "connection.json does not exist; pass --data-dir" in out
    (tmp_path / "connection.json").write_text(json.dumps({"base_url": served.url, "sandbox_token": "t"}))
    out = _run("call", "GET", A4, "--merchant", "channel", "--data-dir", str(tmp_path), code=1).output
    assert "names no merchants (a server started with --no-demo has none)" in out
    (tmp_path / "connection.json").write_text(json.dumps({"base_url": served.url, "merchants": {"x": 5}}))
    out = _run("call", "GET", A4, "--merchant", "x", "--data-dir", str(tmp_path), code=1).output
    assert "merchants is not an object of merchant entries" in out


@pytest.mark.slow
def test_sign_defaults_to_connection_json_and_signs_as_the_channel(served: Served) -> None:
    data_dir = _data_dir(served)
    signed = json.loads(
        _run(
            "sign", "--url", served.url + A4, "--merchant", "channel", "--data-dir", data_dir, "--json"
        ).output
    )
    assert 'mchid="1900000301"' in signed["authorization"]
    headers = {"Authorization": signed["authorization"], "Accept": "application/json", "User-Agent": "t"}
    resp = httpx.get(served.url + A4, headers=headers)
    assert resp.status_code == 200, resp.text
    # no flags at all: the service provider of connection.json
    plain = json.loads(_run("sign", "--url", A4, "--data-dir", data_dir, "--json").output)
    assert f'serial_no="{served.info["serial_no"]}"' in plain["authorization"]


def _channel_callback(tmp_path: Path, apiv3_key: str) -> list[str]:
    """A callback to the channel merchant: its resource encrypted with the channel's APIv3 key, signed
    with a WeChat Pay public key of our own (given with --public-key)."""
    private = k.generate_private_key()
    key_id = "PUB_KEY_ID_0100000000000000000000000001"
    resource = encrypt_resource(apiv3_key, {"applyment_id": 1}, original_type="applyment")
    body = json.dumps({"id": "N1", "event_type": "X", "resource": resource}).encode()
    signed = sign_notification(
        body, private_key=private, key_id=key_id, timestamp=int(time.time()), request_id="R1"
    )
    (tmp_path / "headers.json").write_text(json.dumps(dict(signed.headers)))
    (tmp_path / "body.json").write_bytes(body)
    (tmp_path / f"{key_id}.pem").write_text(k.public_key_pem(private.public_key()))
    return [
        "verify-callback",
        "--headers",
        str(tmp_path / "headers.json"),
        "--body",
        str(tmp_path / "body.json"),
        "--public-key",
        str(tmp_path / f"{key_id}.pem"),
        "--json",
    ]


@pytest.mark.slow
def test_verify_callback_decrypts_with_the_channels_apiv3_key(served: Served, tmp_path: Path) -> None:
    args = [*_channel_callback(tmp_path, served.info["merchants"]["channel"]["apiv3_key"])]
    args += ["--data-dir", _data_dir(served)]
    as_channel = json.loads(_run(*args, "--merchant", "channel").output)
    assert as_channel["resource"] == {"applyment_id": 1} and as_channel["signature_valid"] is True
    # the service provider's key (the default) cannot decrypt it; the error says whose key does
    as_sp = json.loads(_run(*args).output)
    assert "resource" not in as_sp
    assert "pass --merchant channel" in as_sp["decrypt_error"]


@pytest.mark.slow
def test_a_merchant_a_scenario_generated_keys_for_signs_by_its_mchid(served: Served, tmp_path: Path) -> None:
    """Found walking the README: `scenario load` printed `generated_keys` as a Python dict's repr, and
    `call --mchid <that merchant>` signed with the service provider's serial and key (401 SIGN_ERROR):
    the pair in <data-dir>/keys/<mchid>/ is now found, and the report says how to sign with it."""
    data_dir = _data_dir(served)
    scenario = tmp_path / "channel.yaml"
    scenario.write_text(
        'merchants:\n  - mchid: "1888000301"\n    role: channel\n    certificates:\n      - generate: true\n'
    )
    report = _run("scenario", "load", str(scenario), "--data-dir", data_dir).output
    assert "{'" not in report
    assert "generated key of 1888000301: serial " in report
    assert "sign as it   wxpartner call METHOD PATH --mchid 1888000301\n" in report
    for chosen in (["--mchid", "1888000301"], ["--merchant", "1888000301"]):
        answer = _call(served, *chosen)
        assert answer["status"] == 200 and answer["signature_valid"] is True, (chosen, answer)
    signed = json.loads(
        _run("sign", "--url", A4, "--mchid", "1888000301", "--data-dir", data_dir, "--json").output
    )
    assert 'mchid="1888000301"' in signed["authorization"]
    # a value that is no merchant number never names a directory
    out = _run("call", "GET", A4, "--mchid", "../1888000301", "--data-dir", data_dir, code=1).output
    assert "need --serial and --key" in out


@pytest.mark.slow
def test_scenario_load_prints_a_sections_report_as_lines(served: Served, tmp_path: Path) -> None:
    """Found walking the README: `apply4subject: {'applyment_ids': [20000000000001]}` (a Python repr);
    and the README's applyments, loaded for the demo channel, are found by its A2."""
    scenario = tmp_path / "a4.yaml"
    scenario.write_text(
        "apply4subject:\n  applyments:\n"
        '    - {mchid: "1900000301", business_code: cli_rejected, state: APPLYMENT_STATE_REJECTED,\n'
        "       reject_param: merchant_name, reject_reason: x}\n"
        '    - {mchid: "1900000001", business_code: cli_unreachable}\n'
    )
    report = _run("scenario", "load", str(scenario), "--data-dir", _data_dir(served)).output
    assert "{'" not in report and "apply4subject.applyment_ids: 2" in report
    warning = (
        "warning: apply4subject.applyments[1].mchid: 1900000001 is a service_provider: no A2 query can "
        "reach it (applyments are a channel's or an institution's)"
    )
    assert warning in report.splitlines() and "apply4subject.warnings" not in report
    path = "/v3/apply4subject/applyment?business_code=cli_rejected"
    out = _run("call", "GET", path, "--merchant", "channel", "--json", "--data-dir", _data_dir(served))
    assert json.loads(out.output)["body"]["applyment_state"] == "APPLYMENT_STATE_REJECTED"


def _a1_body(name: str, idno: str, mobile: str) -> dict[str, Any]:
    """A1 with its sensitive fields already encrypted (the values given)."""
    return a1_body("cli_a1_0001", name=name, idno=idno, mobile=mobile, confirm=["1900000901"])


@pytest.mark.slow
def test_encrypt_lets_the_channel_submit_an_applyment_from_the_shell(served: Served, tmp_path: Path) -> None:
    """Found walking the README: A1 takes RSA-OAEP ciphertexts under the merchant's WeChat Pay key with
    that key's id in Wechatpay-Serial, and nothing in the CLI made them: A1 was out of reach of `call`."""
    data_dir = _data_dir(served)
    made = json.loads(
        _run(
            "encrypt", "张三", "110101199003070011", "13800138000", "--merchant", "channel", "--json",
            "--data-dir", data_dir,
        ).output
    )  # fmt: skip
    assert made["wechatpay_serial"] == served.info["merchants"]["channel"]["wechatpay_public_key_id"]
    name, idno, mobile = made["ciphertexts"]
    body = json.dumps(_a1_body(name, idno, mobile), ensure_ascii=False)
    serial = f"Wechatpay-Serial: {made['wechatpay_serial']}"
    args = ["call", "POST", "/v3/apply4subject/applyment", "--merchant", "channel", "-H", serial, "-d", body]
    answer = json.loads(_run(*args, "--json", "--data-dir", data_dir).output)
    assert answer["status"] == 200 and answer["signature_valid"] is True, answer
    token = {"Authorization": f"Bearer {served.info['sandbox_token']}"}
    applyment = httpx.get(
        f"{served.url}/sandbox/apply4subject/applyments/{answer['body']['applyment_id']}", headers=token
    ).json()
    assert "张*" in json.dumps(applyment, ensure_ascii=False)  # the server decrypted what the CLI encrypted
    # plain output: one ciphertext a line on stdout, the key id on stderr
    plain = CliRunner().invoke(main, ["encrypt", "a", "b", "--data-dir", data_dir])
    assert plain.exit_code == 0 and len(plain.stdout.splitlines()) == 2
    assert f"Wechatpay-Serial: {served.info['wechatpay_public_key_id']}" in plain.stderr
    too_long = _run("encrypt", "x" * 215, "--data-dir", data_dir, code=2).output
    assert "encrypts at most 214" in too_long
    nowhere = _run("encrypt", "x", "--data-dir", str(tmp_path), code=1).output
    assert "names no WeChat Pay key" in nowhere and "does not exist" in nowhere


@pytest.mark.slow
def test_encrypt_with_a_platform_certificate_for_a_certificate_mode_merchant(
    served: Served, tmp_path: Path
) -> None:
    """A merchant of a scenario is in no `merchants` entry: its WeChat Pay key is given with --public-key
    (here the platform certificate, which a certificate-mode merchant's fields are under)."""
    data_dir = _data_dir(served)
    scenario = tmp_path / "cert.yaml"
    scenario.write_text(
        'merchants:\n  - mchid: "1888000302"\n    role: channel\n    key_mode: certificate\n'
        "    certificates:\n      - generate: true\n"
    )
    _run("scenario", "load", str(scenario), "--data-dir", data_dir)
    told = _run("encrypt", "x", "--mchid", "1888000302", "--data-dir", data_dir, code=1).output
    assert "names no WeChat Pay key for merchant 1888000302" in told and "--public-key" in told
    certificate = served.info["platform_certificate_path"]
    made = json.loads(
        _run(
            "encrypt", "张三", "110101199003070011", "13800138000", "--public-key", certificate, "--json"
        ).output
    )
    assert made["wechatpay_serial"] == served.info["platform_certificate_serial"]
    body = _a1_body(*made["ciphertexts"])
    body["business_code"] = "cli_a1_cert"
    args = ["call", "POST", "/v3/apply4subject/applyment", "--mchid", "1888000302", "--json"]
    args += [
        "-H",
        f"Wechatpay-Serial: {made['wechatpay_serial']}",
        "-d",
        json.dumps(body, ensure_ascii=False),
    ]
    answer = json.loads(_run(*args, "--data-dir", data_dir).output)
    assert answer["status"] == 200 and answer["signature_valid"] is True, answer


def test_sign_with_every_value_given_reads_no_connection_json(tmp_path: Path) -> None:
    """`sign --mchid --serial --key` needs no server and no data dir: a broken connection.json in the data
    dir (another project's, a half-written one) must not stop it."""
    key = k.generate_private_key()
    (tmp_path / "key.pem").write_text(k.private_key_pem(key))
    (tmp_path / "connection.json").write_text("{broken")
    args = [
        "sign",
        "--url",
        "/v3/x",
        "--mchid",
        "1230000001",
        "--serial",
        "AB",
        "--key",
        str(tmp_path / "key.pem"),
    ]
    signed = json.loads(_run(*args, "--data-dir", str(tmp_path), "--json").output)
    assert 'mchid="1230000001"' in signed["authorization"] and 'serial_no="AB"' in signed["authorization"]
    assert "not JSON" in _run("sign", "--url", "/v3/x", "--data-dir", str(tmp_path), code=1).output


@pytest.mark.slow
def test_merchant_channel_reads_an_older_files_channel_fields(served: Served, tmp_path: Path) -> None:
    """A connection.json written before `merchants` existed names the channel in channel_mchid,
    channel_serial_no and channel_private_key_path; the SDK reads them, and so does --merchant."""
    info = json.loads(Path(_data_dir(served), "connection.json").read_text())
    del info["merchants"]
    (tmp_path / "connection.json").write_text(json.dumps(info))
    for chosen in (["--merchant", "channel"], ["--mchid", info["channel_mchid"]]):
        answer = _call(served, *chosen, data_dir=str(tmp_path))
        assert answer["status"] == 200 and answer["signature_valid"] is True, (chosen, answer)
