"""The ``wxpartner`` CLI: ``serve --json`` as a real subprocess on a fresh data dir, ``keys`` and ``sign``."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from live import Served, free_port, served_port, stop_process
from support import SP_B, World, assert_signed
from wxpartner.cli import main
from wxpartner.protocol import keys as k
from wxpartner.protocol.authorization import parse_authorization
from wxpartner.protocol.messages import response_message
from wxpartner.protocol.signing import verify

CANCEL_PATH = "/v3/webizpay/employees/WeBizPay_a968402a-73bb-43e2-9e1a-8371b0ca3d7c/quota-cards/1068019671702503425/cancel"
CANCEL_BODY = '{"sp_mchid":"12341234","sub_mchid":"43214321","reason":"商户主动作废"}'


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    server = Served(tmp_path / "data")
    yield server
    server.stop()


def _cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.slow
def test_serve_json_first_run_prints_everything_a_client_needs(served: Served, tmp_path: Path) -> None:
    info = served.info
    assert info["base_url"] == served.url
    assert info["mchid"] == "1900000001" and info["key_mode"] == "public_key"
    assert len(info["apiv3_key"]) == 32
    assert info["wechatpay_public_key_id"].startswith("PUB_KEY_ID_")
    assert info["sandbox_token"] and info["sandbox_api"] == served.url + "/sandbox"
    assert info["sub_mchid"] and info["second_level_mchid"]
    for name in (
        "private_key_path",
        "certificate_path",
        "wechatpay_public_key_path",
        "platform_certificate_path",
    ):
        assert Path(info[name]).is_file(), name
    key_text = Path(info["private_key_path"]).read_text()
    assert key_text.startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8
    assert k.certificate_serial(k.load_certificate(Path(info["certificate_path"]))) == info["serial_no"]
    assert json.loads((tmp_path / "data" / "connection.json").read_text()) == info

    # a request signed by `wxpartner sign` with the printed settings is accepted and answered signed
    signed = json.loads(
        _cli(
            "sign",
            "--url",
            info["base_url"] + "/v3/certificates",
            "--mchid",
            info["mchid"],
            "--serial",
            info["serial_no"],
            "--key",
            info["private_key_path"],
            "--json",
        )
    )
    resp = httpx.get(
        served.url + "/v3/certificates",
        headers={
            "Authorization": signed["authorization"],
            "Accept": "application/json",
            "User-Agent": "cli-test",
        },
    )
    assert resp.status_code == 404  # public-key mode: no platform certificates, but a signed answer
    assert resp.headers["Wechatpay-Serial"] == info["wechatpay_public_key_id"]
    public = k.load_public_key(Path(info["wechatpay_public_key_path"]))
    msg = response_message(resp.headers["Wechatpay-Timestamp"], resp.headers["Wechatpay-Nonce"], resp.content)
    assert verify(public, msg, resp.headers["Wechatpay-Signature"])

    # the control API opens with the printed token only
    token = {"Authorization": f"Bearer {info['sandbox_token']}"}
    assert httpx.get(served.url + "/sandbox/merchants", headers=token).status_code == 200
    assert httpx.get(served.url + "/sandbox/merchants").status_code == 401

    # a second run on the same data dir keeps every setting (bootstrap is idempotent)
    served.stop()
    again = Served(tmp_path / "data")
    try:
        for key in ("mchid", "serial_no", "apiv3_key", "wechatpay_public_key_id", "sandbox_token"):
            assert again.info[key] == info[key], key
    finally:
        again.stop()


@pytest.mark.slow
def test_serve_no_demo_writes_the_connection_file_the_other_commands_read(tmp_path: Path) -> None:
    """`serve --no-demo` printed "(also written to <data-dir>/connection.json ...)" but wrote nothing, so
    every operations command (`wxpartner clock`, `journal`, ...) on that data dir said "no sandbox token"."""
    data_dir = tmp_path / "data"
    server = Served(data_dir, "--no-demo", "--token", "no-demo-token")
    try:
        assert server.info == {"base_url": server.url, "sandbox_token": "no-demo-token"}
        path = data_dir / "connection.json"
        assert json.loads(path.read_text()) == server.info
        assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds the sandbox token
        shown = json.loads(_cli("clock", "--data-dir", str(data_dir), "--json"))  # over loopback
        assert shown["frozen"] is False and "now" in shown
    finally:
        server.stop()


def _serve_printout(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """What `serve` prints for people (no --json), up to its last line; the server is stopped then."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wxpartner.cli",
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**{k: v for k, v in os.environ.items() if k != "WXPARTNER_SANDBOX_TOKEN"}, **(env or {})},
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        while not lines or not lines[-1].startswith("(also written"):
            line = proc.stdout.readline().decode()
            assert line, "".join(lines)
            lines.append(line)
    finally:
        stop_process(proc)
    return "".join(lines)


@pytest.mark.slow
def test_serve_does_not_print_back_the_token_it_was_given(tmp_path: Path) -> None:
    """A service's stdout is its log (systemd, docker: the README's deployment recipe exports
    WXPARTNER_SANDBOX_TOKEN): the token it was given went there in clear. A generated one is still
    printed (nobody knows it otherwise), and connection.json holds either."""
    given = _serve_printout(tmp_path / "a", "--no-demo", "--token", "given-Secret-token-1")
    assert "given-Secret-token-1" not in given
    assert "sandbox_token" in given and "--token / WXPARTNER_SANDBOX_TOKEN" in given
    from_env = _serve_printout(
        tmp_path / "b", "--no-demo", env={"WXPARTNER_SANDBOX_TOKEN": "env-Secret-token-2"}
    )
    assert "env-Secret-token-2" not in from_env
    assert (
        json.loads((tmp_path / "b" / "connection.json").read_text())["sandbox_token"] == "env-Secret-token-2"
    )
    generated = _serve_printout(tmp_path / "c", "--no-demo")
    token = json.loads((tmp_path / "c" / "connection.json").read_text())["sandbox_token"]
    assert token and token in generated


@pytest.mark.slow
def test_serve_names_its_merchants_and_the_file_it_wrote_for_people(tmp_path: Path) -> None:
    """Found walking the README: `make serve` printed `merchants` as a Python dict's repr (a screen wide
    line of `{'service_provider': {'mchid': ...`), and "(also written to <data-dir>/connection.json)"
    without saying where that is."""
    printed = _serve_printout(tmp_path / "d")
    (merchants,) = [line for line in printed.splitlines() if line.split()[:1] == ["merchants"]]
    assert "{" not in merchants and "service_provider (1900000001), channel (1900000301)" in merchants
    assert "--merchant NAME" in merchants
    assert f"(also written to {tmp_path / 'd' / 'connection.json'};" in printed


@pytest.mark.slow
def test_serve_after_rotating_the_demo_merchants_own_public_key_names_a_file_it_wrote(
    tmp_path: Path,
) -> None:
    """Found walking the README (rotation, then a restart): connection.json named the merchant's own new
    public key, platform/PUB_KEY_ID_....pem, but only shared keys were written there, so
    Client.from_connection_info failed with FileNotFoundError."""
    from wxpartner.client import Client

    data_dir = tmp_path / "data"
    first = Served(data_dir)
    try:
        rotated = httpx.post(
            first.url + "/sandbox/platform-keys/rotate",
            json={"kind": "public_key", "mchid": first.info["mchid"]},
            headers={"Authorization": f"Bearer {first.info['sandbox_token']}"},
        ).json()["key_id"]
    finally:
        first.stop()
    server = Served(data_dir)  # the restart: the merchant's own key is now the one to verify with
    try:
        info = server.info
        assert info["wechatpay_public_key_id"] == rotated
        assert Path(info["wechatpay_public_key_path"]).is_file()
        with Client.from_connection_info(info) as client:
            query = {"sp_mchid": info["mchid"], "sub_mchid": info["sub_mchid"][0]}
            answer = client.request("GET", "/v3/webizpay/users/user_0001/authorization-state", query=query)
        assert answer.status == 200 and answer.verified_by == rotated
    finally:
        server.stop()


@pytest.mark.slow
def test_serve_keeps_its_secrets_owner_only_under_a_loose_umask(tmp_path: Path) -> None:
    """The audit's case: under umask 022, connection.json (token, APIv3 key) and the database (every
    key) were 0644; only apiclient_key.pem was 0600."""
    data_dir = tmp_path / "fresh" / "data"
    server = Served(data_dir, umask=0o022)
    try:
        database = data_dir / "wxpartner.sqlite3"
        owner_only = [
            data_dir / "connection.json",
            database,
            database.with_name(database.name + "-wal"),  # the server holds connections: both exist
            database.with_name(database.name + "-shm"),
            Path(server.info["private_key_path"]),
        ]
        modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in [data_dir, *owner_only]}
        assert modes == {"data": "0o700", **{p.name: "0o600" for p in owner_only}}
    finally:
        server.stop()


@pytest.mark.slow
def test_serve_with_bad_scenario_fails_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text('merchants:\n  - mchid: "1888000001"\n  - mchid: "1888000002"\n    key_mode: sm2\n')
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "wxpartner.cli",
            "serve",
            "--data-dir",
            str(tmp_path / "d"),
            "--scenario",
            str(bad),
            "--port",
            "0",
        ],
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode != 0
    err = proc.stderr.decode()
    assert f"scenario {bad}: merchants[1].key_mode" in err
    assert proc.stdout == b""
    from wxpartner.store import registry
    from wxpartner.store.db import Database, sqlite_url_for

    db = Database(sqlite_url_for(tmp_path / "d"))
    with db.read() as conn:
        assert registry.get_merchant(conn, "1888000001") is None  # nothing loaded
    db.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["postgresql", "postgresql-query", "sqlite"])
def test_serve_with_a_database_it_cannot_use_fails_in_one_line(tmp_path: Path, kind: str) -> None:
    """Found walking the README's deployment recipe: an unreachable or unusable database (here: nothing
    listening, a directory that does not exist) stopped `serve` with a Python traceback. The password
    is not shown, after the user name nor as libpq's ``?password=`` (that one was)."""
    port = free_port()
    url = {
        "postgresql": f"postgresql://wxpartner:s3cret-pw@127.0.0.1:{port}/wxpartner",
        "postgresql-query": f"postgresql://wxpartner@127.0.0.1:{port}/wxpartner?password=s3cret-pw",
        "sqlite": f"sqlite:///{tmp_path / 'missing' / 'dir' / 'x.sqlite3'}",
    }[kind]
    args = ["serve", "--data-dir", str(tmp_path / "d"), "--port", "0", "--database-url", url]
    proc = subprocess.run(
        [sys.executable, "-m", "wxpartner.cli", *args],
        capture_output=True,
        timeout=60,
    )
    err = proc.stderr.decode()
    assert proc.returncode == 1 and proc.stdout == b"", err
    assert "Traceback" not in err and "s3cret-pw" not in err, err
    shown = url.replace("s3cret-pw", "***")
    reason = "unable to open database file" if kind == "sqlite" else "Connection refused"
    assert err.startswith(f"Error: cannot use the database {shown}: ") and reason in err, err
    assert err.count("\n") == 1


def test_keys_pkcs8_and_pkcs1(tmp_path: Path) -> None:
    info = json.loads(_cli("keys", "--mchid", "1888000001", "--out", str(tmp_path / "a"), "--json"))
    key_path, cert_path = Path(info["private_key"]), Path(info["certificate"])
    assert key_path.name == "apiclient_key.pem" and cert_path.name == "apiclient_cert.pem"
    assert key_path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert key_path.stat().st_mode & 0o077 == 0
    cert = k.load_certificate(cert_path)
    assert k.certificate_serial(cert) == info["serial_no"] and len(info["serial_no"]) == 40
    assert k.load_private_key(key_path).public_key().public_numbers() == cert.public_key().public_numbers()

    info1 = json.loads(
        _cli("keys", "--mchid", "1888000001", "--out", str(tmp_path / "b"), "--pkcs1", "--json")
    )
    assert Path(info1["private_key"]).read_text().startswith("-----BEGIN RSA PRIVATE KEY-----")

    text = _cli("keys", "--mchid", "1888000001", "--out", str(tmp_path / "c"))
    assert "serial_no:" in text and "scenario entry:" in text and "certificate:" in text


def _write_key(world: World, tmp_path: Path) -> Path:
    path = tmp_path / "apiclient_key.pem"
    path.write_text(world.merchants[SP_B].private_key_pem)
    return path


def test_sign_reproduces_spec_vector(world: World, tmp_path: Path) -> None:
    key = _write_key(world, tmp_path)
    body_file = tmp_path / "body.json"
    body_file.write_bytes(CANCEL_BODY.encode())
    common = [
        "--mchid",
        "1900000001",
        "--serial",
        "1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C",
        "--key",
        str(key),
        "--timestamp",
        "1747280000",
        "--nonce",
        "593BEC0C930BF1AFEB40B4A08C8FB242",
        "--json",
    ]
    for body in (CANCEL_BODY, "@" + str(body_file)):
        out = json.loads(
            _cli(
                "sign",
                "-X",
                "post",
                "--url",
                "https://api.mch.weixin.qq.com" + CANCEL_PATH,
                "--body",
                body,
                *common,
            )
        )
        assert out["sha256"] == "010cd0e3db749920e972dcbee592e7a7f2ff1fcab3dc26b50a5ef5cdeee6bed0"
        assert out["message_length"] == 234
        assert hashlib.sha256(out["message"].encode()).hexdigest() == out["sha256"]
        assert out["message_escaped"].endswith("\\n") and "\n" not in out["message_escaped"]
        auth = parse_authorization(out["authorization"])
        assert (auth.mchid, auth.timestamp, auth.nonce_str) == (
            "1900000001",
            "1747280000",
            "593BEC0C930BF1AFEB40B4A08C8FB242",
        )
        assert verify(world.merchants[SP_B].private_key.public_key(), out["message"].encode(), auth.signature)

    query = json.loads(
        _cli(
            "sign",
            "--url",
            "/v3/webizpay/users/employee123/authorization-state?sp_mchid=12341234&sub_mchid=43214321",
            *common,
        )
    )
    assert query["sha256"] == "26481e15ce4a58718c33a18174e66186b2f889937f4eead7c3cb16b0f1ef2ada"

    text = _cli("sign", "--url", "/v3/certificates", *common[:-1])
    assert (
        "string to sign" in text
        and "GET\\n/v3/certificates\\n1747280000\\n" in text
        and "Authorization: WECHATPAY2" in text
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sign_output_is_accepted_by_the_server(http: TestClient, world: World, tmp_path: Path) -> None:
    m = world.merchants[SP_B]
    key = _write_key(world, tmp_path)
    out = json.loads(
        _cli(
            "sign",
            "--url",
            "/v3/certificates?algorithm_type=RSA",
            "--mchid",
            m.mchid,
            "--serial",
            m.serial_no,
            "--key",
            str(key),
            "--json",
        )
    )
    headers = {"Authorization": out["authorization"], "Accept": "application/json", "User-Agent": "cli"}
    resp = http.get("/v3/certificates?algorithm_type=RSA", headers=headers)
    assert resp.status_code == 200, resp.text
    assert_signed(resp, world)
    # and when it is not (wrong URL), the explanation shows what the server built
    out = json.loads(
        _cli(
            "sign",
            "--url",
            "/v3/certificates",
            "--mchid",
            m.mchid,
            "--serial",
            m.serial_no,
            "--key",
            str(key),
            "--json",
        )
    )
    resp = http.get(
        "/v3/certificates?algorithm_type=RSA", headers={**headers, "Authorization": out["authorization"]}
    )
    assert resp.status_code == 401
    expected = out["message"].replace("/v3/certificates\n", "/v3/certificates?algorithm_type=RSA\n", 1)
    assert resp.json()["detail"]["sign_information"]["truncated_sign_message"] == expected


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["--port", "99999"], 2, "is not in the range 0<=x<=65535"),
        (["--workers", "0"], 2, "is not in the range x>=1"),
        (["--time-window", "-5"], 2, "is not in the range x>=1"),  # every request would be refused
        (["--log-level", "bogus"], 2, "'bogus' is not one of"),  # was a KeyError traceback from uvicorn
        (["--database-url", "not a url"], 1, "cannot use the database (unreadable URL): Could not parse"),
        (
            ["--database-url", "postgresql://u:pw@localhost:abc/db"],
            1,
            "cannot use the database (unreadable URL)",
        ),
        (["--database-url", "postgresql+psycopg://nobody@127.0.0.1:1/x"], 1, "Connection refused"),
        (["--data-dir", "{file}/data"], 1, "cannot write to the data dir: "),
        (["--scenario", "{binary}"], 1, "is not UTF-8 text"),
        # found in the CLI audit: each of these printed the settings as "serving" (and rewrote
        # connection.json) before failing in uvicorn, an ssl.SSLError traceback for the certificate
        (["--port", "{taken}"], 3, "Address already in use (another server there? pass another --port)"),
        (["--host", "nonexistent.invalid"], 3, "--host must be an address of this machine"),
        (["--tls-cert", "{file}", "--tls-key", "{file}"], 1, "not a PEM certificate chain"),
        (["--token", "tök en"], 2, "printable ASCII without spaces"),  # no client could send it
        (["--public-base-url", "not a url"], 2, "an http:// or https:// URL"),
    ],
)
def test_serve_refuses_bad_settings_without_a_traceback(
    tmp_path: Path, args: list[str], code: int, fragment: str
) -> None:
    """Found in the sandbox audit: a port past 65535 started a server that said it listened there, a
    negative --time-window refused every request, and a bad database URL, an unreachable database, a
    data dir that cannot be created or a scenario that is not UTF-8 ended in a traceback."""
    import socket

    (tmp_path / "file").write_text("")
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        values = {
            "file": str(tmp_path / "file"),
            "binary": str(tmp_path / "binary.yaml"),
            "taken": str(taken.getsockname()[1]),
        }
        given = [a.format(**values) for a in args]
        if "--data-dir" not in given:
            given += ["--data-dir", str(tmp_path / "data")]
        if "--port" not in given:  # not 8080, which anything on the machine may hold
            given += ["--port", "0"]
        result = CliRunner().invoke(main, ["serve", *given], catch_exceptions=False)
    assert result.exit_code == code, result.output
    assert fragment in result.output and "Traceback" not in result.output
    assert "is serving" not in result.output


def test_serve_without_the_postgres_extra_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found walking the README: with a postgresql:// URL and no psycopg, `serve` said "No module named
    'psycopg' (this build serves sqlite:///FILE and postgresql://...)", which names the URL it was
    given as served. It now names the extra to install."""
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as on a host installed without [postgres]
    args = ["serve", "--data-dir", str(tmp_path / "d"), "--port", "0"]
    args += ["--database-url", "postgresql://u@127.0.0.1:1/x"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 1, result.output
    assert "the PostgreSQL driver is not installed: pip install 'wxpartner[postgres]'" in result.output
    assert "Traceback" not in result.output and "is serving" not in result.output


def test_keys_prints_a_scenario_entry_that_loads_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found in the sandbox audit: the entry named the certificate relative to the current directory,
    but a scenario's paths are relative to the scenario file: pasted into a file elsewhere, it could not
    be read. It now names the certificate's absolute path."""
    from wxpartner.sandbox import scenario
    from wxpartner.store.db import Database

    monkeypatch.chdir(tmp_path)
    text = _cli("keys", "--mchid", "1888000001", "--out", "made")
    entry, sign_as = text.split("scenario entry:\n", 1)[1].split("\n\n", 1)
    # and the flags that sign as it once loaded (a newcomer had to find the serial and key path again)
    serial = k.certificate_serial(k.load_certificate((tmp_path / "made" / "apiclient_cert.pem").read_bytes()))
    assert (
        f"wxpartner call METHOD PATH --mchid 1888000001 --serial {serial} "
        f"--key {tmp_path / 'made' / 'apiclient_key.pem'}" in sign_as
    )
    elsewhere = tmp_path / "scenarios" / "s.yaml"
    elsewhere.parent.mkdir()
    elsewhere.write_text("merchants:\n" + entry)
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    db.migrate()
    try:
        assert scenario.load_scenario_file(db, elsewhere, data_dir=tmp_path)["merchants"] == 1
    finally:
        db.dispose()


def test_sign_warns_when_the_server_would_refuse_the_header(world: World, tmp_path: Path) -> None:
    """Found in the sandbox audit: `sign --timestamp abc` or a 70-character --nonce printed a header the
    server refuses as malformed, and `--url v3/x` a message no request line can carry, without a word."""
    key = str(_write_key(world, tmp_path))
    common = ["sign", "--mchid", SP_B, "--serial", "AB", "--key", key]
    for extra, problem in (
        (["--url", "/v3/x", "--timestamp", "abc"], "timestamp must be decimal Unix seconds"),
        (["--url", "/v3/x", "--nonce", "n" * 70], "nonce_str must be 1-64 printable ASCII"),
        (["--url", "v3/x"], "does not start with '/'"),
        # an empty value was replaced by the default without a word (session 17's list)
        (["--url", "/v3/x", "--timestamp", ""], "empty parameter 'timestamp'"),
        (["--url", "/v3/x", "--nonce", ""], "empty parameter 'nonce_str'"),
    ):
        result = CliRunner().invoke(main, [*common, *extra, "--json"], catch_exceptions=False)
        assert result.exit_code == 0
        assert problem in json.loads(result.stdout)["authorization_problem"]
        assert "warning: the server would refuse this request: " in result.stderr
    fine = CliRunner().invoke(main, [*common, "--url", "/v3/x", "--json"], catch_exceptions=False)
    assert json.loads(fine.stdout)["authorization_problem"] is None and not fine.stderr


def test_openapi_prints_the_document_the_server_serves(http: TestClient, tmp_path: Path) -> None:
    served = http.get("/openapi.json").json()
    url = served["servers"][0]["url"]
    printed = json.loads(_cli("openapi", "--server-url", url))
    assert printed == served
    assert "/v3/webizpay/employees/{employee_id}/quota-cards" in printed["paths"]
    out = tmp_path / "openapi.json"
    _cli("openapi", "--server-url", url, "-o", str(out))
    assert json.loads(out.read_text()) == served
    result = CliRunner().invoke(main, ["openapi", "-o", str(tmp_path / "no" / "dir.json")])
    assert result.exit_code == 1 and "cannot write it" in result.output


@pytest.mark.slow
def test_ctrl_c_stops_serve_with_workers_without_tracebacks(tmp_path: Path) -> None:
    """Found in the CLI audit: Ctrl-C (SIGINT to the terminal's whole process group) on `serve --workers
    2` printed a KeyboardInterrupt traceback from every worker, while importing or after uvicorn's
    graceful stop re-raised it. Now workers leave SIGINT to the supervisor, which stops them."""
    import os
    import signal
    import time

    args = [sys.executable, "-m", "wxpartner.cli", "serve", "--port", "0", "--workers", "2"]
    proc = subprocess.Popen(
        [*args, "--data-dir", str(tmp_path / "data"), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own group, as a terminal's foreground job
    )
    try:
        assert proc.stdout is not None
        port = served_port(json.loads(proc.stdout.readline()))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        time.sleep(1.0)  # the second worker too
        os.killpg(proc.pid, signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0
    assert b"Traceback" not in err and b"KeyboardInterrupt" not in err, err.decode(errors="replace")


def test_help_names_the_environment_and_the_defaults() -> None:
    """Found in the CLI audit: --data-dir, --url, --token and --database-url read environment variables
    that no --help named (a stale one exported in the shell silently won), and --key of call and bills
    did not say it defaults to connection.json."""
    for command in (["clock"], ["call"], ["bills"], ["journal"], ["faults", "add"], ["verify-callback"]):
        text = " ".join(_cli(*command, "--help").split())
        for var in ("WXPARTNER_DATA_DIR", "WXPARTNER_URL", "WXPARTNER_SANDBOX_TOKEN"):
            assert f"env var: {var}" in text, (command, var)
    for command in (["call"], ["bills"], ["sign"]):
        text = " ".join(_cli(*command, "--help").split())
        assert "private key PEM (default: the merchant's in connection.json)" in text, command
        assert "--merchant NAME|MCHID" in text, command
    serve = " ".join(_cli("serve", "--help").split())
    assert "env var: WXPARTNER_DATABASE_URL" in serve and "env var: WXPARTNER_SANDBOX_TOKEN" in serve


def test_serve_reads_the_data_dir_the_other_commands_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README: every command finds connection.json in --data-dir, "or WXPARTNER_DATA_DIR; written by
    `wxpartner serve`". serve's --data-dir did not read the variable: with it exported, serve wrote
    ./.wxpartner while clock, call, journal … looked in the variable's directory."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("merchants: 5\n")  # refused after the data dir is set up: no server is started
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # where the default, ./.wxpartner, would go
    result = CliRunner().invoke(
        main,
        ["serve", "--no-demo", "--token", "t", "--scenario", str(bad)],
        env={"WXPARTNER_DATA_DIR": str(tmp_path / "exported")},
    )
    assert result.exit_code == 1 and "scenario" in result.output, result.output
    assert (tmp_path / "exported" / "wxpartner.sqlite3").is_file()
    assert not (cwd / ".wxpartner").exists()
    assert "env var: WXPARTNER_DATA_DIR" in " ".join(_cli("serve", "--help").split())


# Run as the console script does: its entry point's target, named by the installed metadata, with a real
# SIGINT sent while the commands are being imported (a meta-path finder sends it at one module's import).
_INTERRUPTED_IMPORT = """
import importlib, importlib.metadata, os, signal, sys

class CtrlC:
    def find_spec(self, name, path, target=None):
        if name == "wxpartner.cli.serve":
            os.kill(os.getpid(), signal.SIGINT)
        return None

(script,) = importlib.metadata.entry_points(group="console_scripts", name="wxpartner")
module, _, attr = script.value.partition(":")
# A terminal's Ctrl-C meets Python's own handler; a job started with & (CI, nohup) inherits SIGINT
# ignored, and Python then installs none: the signal did nothing and --help was printed.
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.meta_path.insert(0, CtrlC())
sys.argv = ["wxpartner", "--help"]
sys.exit(getattr(importlib.import_module(module), attr)())
"""


def test_a_ctrl_c_while_the_cli_starts_prints_no_traceback() -> None:
    """Session 17's list: a Ctrl-C in the first few hundred milliseconds (importing the commands) ended in
    a KeyboardInterrupt traceback from the script's import line."""
    done = subprocess.run(
        [sys.executable, "-c", _INTERRUPTED_IMPORT], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1 and done.stderr.strip() == "Aborted!", done.stderr
    assert done.stdout == ""


def test_every_command_and_option_says_what_it_is() -> None:
    """Found walking the CLI: sixteen options (`serve --host`, `journal --code`, `callbacks list --state`,
    `verify-callback --headers`, …) had no --help text, and `faults --help` listed the fault kinds from a
    copy that lacked SERVICE_UNAVAILABLE."""
    import click

    from wxpartner.domain.faults import FaultKind

    silent = []

    def walk(command: click.Command, name: str) -> None:
        if not command.help:
            silent.append(name)
        if isinstance(command, click.Group):
            ctx = click.Context(command)
            for sub_name in command.list_commands(ctx):  # the top group imports its commands on demand
                sub = command.get_command(ctx, sub_name)
                assert sub is not None, sub_name
                walk(sub, f"{name} {sub_name}")
            return
        silent.extend(
            f"{name} {param.opts[0]}"
            for param in command.params
            if isinstance(param, click.Option) and not param.help
        )

    walk(main, "wxpartner")
    assert silent == []
    top = " ".join(_cli("--help").split())  # where to start, for someone who typed `wxpartner`
    assert "Start with `wxpartner serve`" in top and "--merchant channel" in top
    for command in (["faults"], ["faults", "add"]):
        text = " ".join(_cli(*command, "--help").split())
        assert all(kind.value in text for kind in FaultKind), command
