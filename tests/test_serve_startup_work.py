"""What `wxpartner serve` does not need to do at start-up (issue 9): import the other commands' modules
(the SDK client and its models, scenario's YAML loader), SQLAlchemy's PostgreSQL dialect on SQLite,
httpx before a callback is sent, rich to print its settings,
load a merchant's PEM private key more than once per start, or run cryptography's RSA key check
(primality tests) on the demo keys. Counts and module names, not times."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from live import kill_group, served_port, stop_process
from test_callbacks_tls import https_receiver, plain_receiver
from wxpartner.cli import main
from wxpartner.protocol import keys as k
from wxpartner.sandbox import bootstrap as boot
from wxpartner.sandbox import material, tls
from wxpartner.store import outbox
from wxpartner.store.db import Database, sqlite_url_for

# Modules of other commands: none is imported by serve's path (the CLI, serve, the server it starts).
NOT_FOR_SERVE = [
    "wxpartner.client",
    "wxpartner.cli.bills",
    "wxpartner.cli.call",
    "wxpartner.cli.scenario",
    "wxpartner.cli._apiv3",
    "wxpartner.cli.openapi",
]


def test_serve_path_imports_no_other_command() -> None:
    code = (
        "import sys, click\n"
        "from wxpartner.cli import main\n"
        "main.get_command(click.Context(main), 'serve')\n"
        "import wxpartner.server.app, wxpartner.server.workers, wxpartner.sandbox.bootstrap, uvicorn\n"
        f"print(sorted(m for m in {NOT_FOR_SERVE!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_help_still_lists_every_command_with_its_short_help() -> None:
    ctx = click.Context(main)
    names = main.list_commands(ctx)
    assert {"serve", "bills", "call", "scenario", "verify-callback", "sign"} <= set(names)
    result = subprocess.run(
        [sys.executable, "-m", "wxpartner.cli", "--help"], capture_output=True, text=True, check=True
    )
    for name in names:
        command = main.get_command(ctx, name)
        assert command is not None
        short = command.get_short_help_str(limit=45)
        assert any(line.split()[:1] == [name] and short[:20] in line for line in result.stdout.splitlines())


def test_a_warm_start_loads_each_merchant_key_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bootstrap then connection.json's info read each demo merchant's key pair up to 3 times (the keys
    check, the top level, its merchants entry): 6 PEM private key loads per start, tens of ms each."""
    db = Database(f"sqlite:///{tmp_path / 'wx.db'}")
    try:
        token = boot.bootstrap(db, tmp_path, token="", demo=True, scenario=None)
        first = boot.connection_info(db, tmp_path, "http://127.0.0.1:1", token)
        loaded: list[Path] = []
        real = k.load_private_key

        def counted(path: Path, *args: object, **kwargs: object) -> object:
            loaded.append(Path(path))
            return real(path, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(k, "load_private_key", counted)
        boot.bootstrap(db, tmp_path, token="", demo=True, scenario=None)
        again = boot.connection_info(db, tmp_path, "http://127.0.0.1:1", token)
        assert again == first
        # this process read them already (the first start): none is loaded again while unchanged
        assert loaded == []
        # a key replaced on disk is read again: its pair no longer matches the registered certificate
        sp_key = tmp_path / "keys" / boot.DEMO_SP / "apiclient_key.pem"
        other = tmp_path / "keys" / boot.DEMO_CHANNEL / "apiclient_key.pem"
        replacement = sp_key.with_suffix(".new")
        replacement.write_bytes(other.read_bytes())
        replacement.replace(sp_key)
        registered = [{"serial_no": first["serial_no"], "revoked": False}]
        assert boot.local_serial(tmp_path, boot.DEMO_SP, registered) is None
        assert loaded == [sp_key]
    finally:
        db.dispose()


# `wxpartner serve ARGS`, which writes the names of the modules it imported when it exits
_SERVE_LISTING_MODULES = (
    "import atexit, json, sys\n"
    "out = sys.argv.pop(1)\n"
    "atexit.register(lambda: open(out, 'w').write(json.dumps(sorted(sys.modules))))\n"
    "from wxpartner.cli import main\n"
    "main(sys.argv[1:], prog_name='wxpartner')\n"
)


# what a test does with a serve once it answers: a client of its base URL, its --json settings
WhileServing = Callable[[httpx.Client, dict[str, Any]], None]


def _modules_of_a_serve(tmp_path: Path, *extra: str, then: WhileServing | None = None) -> set[str]:
    """The modules a real ``serve`` (SQLite in ``tmp_path/data``) imported by the time it had answered
    /healthz and then the control API (and ``then`` had run), and stopped at a Ctrl-C."""
    listing = tmp_path / "modules.json"
    listing.unlink(missing_ok=True)
    args = ["serve", "--data-dir", str(tmp_path / "data"), "--port", "0", "--json", *extra]
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVE_LISTING_MODULES, str(listing), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read().decode()[-2000:]
        info = json.loads(line)
        url = f"http://127.0.0.1:{served_port(info)}"
        with httpx.Client(base_url=url, timeout=10) as client:
            while True:  # until it answers (or has exited)
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
                    time.sleep(0.02)
            auth = {"Authorization": f"Bearer {info['sandbox_token']}"}
            assert client.get("/sandbox/clock", headers=auth).status_code == 200
            if then is not None:
                then(client, info)
        stop_process(proc)
        assert proc.returncode == 0, proc.stderr.read().decode()[-2000:]
    finally:
        kill_group(proc)
    return set(json.loads(listing.read_text()))


def test_a_sqlite_serve_imports_neither_the_postgresql_dialect_nor_yaml(tmp_path: Path) -> None:
    """SQLAlchemy's PostgreSQL dialect (≈ 35 ms of CPU) came with statements built at import for
    PostgreSQL only (the change word's upsert, the one-statement W3/A1/R1) and a partial index's
    ``postgresql_where``; PyYAML (≈ 15 ms) with the scenario module, which reads YAML only when a
    scenario is loaded."""
    _modules_of_a_serve(tmp_path)  # the first start: keys made, schema migrated (Alembic knows PostgreSQL)
    modules = _modules_of_a_serve(tmp_path)  # a warm start
    assert "wxpartner.server.app" in modules
    assert {m for m in modules if m.startswith("sqlalchemy.dialects.postgresql")} == set()
    assert "yaml" not in modules
    # a scenario at start is read as YAML still
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(
        "merchants:\n  - mchid: '1900009901'\n    name: Loaded at start\n    role: service_provider\n"
    )
    assert "yaml" in _modules_of_a_serve(tmp_path, "--scenario", str(scenario))


def test_a_start_checks_the_demo_keys_without_rsa_primality_tests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new process (nothing cached) checks each demo merchant's key pair in the data dir: cryptography's
    RSA check costs ≈ 40 ms a key, nearly all of it testing p and q for primality; the pair's numbers
    are checked instead (material._numbers_consistent), and a damaged key is still not used."""
    db = Database(f"sqlite:///{tmp_path / 'wx.db'}")
    try:
        token = boot.bootstrap(db, tmp_path, token="", demo=True, scenario=None)
        first = boot.connection_info(db, tmp_path, "http://127.0.0.1:1", token)
        loads: list[bool] = []
        real = k.load_private_key

        def spied(path: Path, *args: object, validated: bool = False) -> rsa.RSAPrivateKey:
            loads.append(validated)
            return real(path, *args, validated=validated)  # type: ignore[arg-type]

        monkeypatch.setattr(k, "load_private_key", spied)
        monkeypatch.setattr(material, "_PAIR_SERIALS", {})  # as in a new process
        boot.bootstrap(db, tmp_path, token="", demo=True, scenario=None)
        assert boot.connection_info(db, tmp_path, "http://127.0.0.1:1", token) == first
        assert loads == [True, True]  # the channel merchant's and the service provider's, no RSA check

        # a key whose private exponent was damaged (its public half still the certificate's) is not used:
        # the merchant gets a new pair, as it did when cryptography's check refused the key
        key_path = tmp_path / "keys" / boot.DEMO_SP / "apiclient_key.pem"
        numbers = real(key_path).private_numbers()
        damaged = rsa.RSAPrivateNumbers(
            numbers.p,
            numbers.q,
            numbers.d + 2 * (numbers.p - 1),  # still odd, < n; d·e no longer 1 mod lcm(p-1, q-1)
            numbers.dmp1,
            numbers.dmq1,
            numbers.iqmp,
            numbers.public_numbers,
        ).private_key(unsafe_skip_rsa_key_validation=True)
        key_path.write_text(k.private_key_pem(damaged))
        boot.bootstrap(db, tmp_path, token="", demo=True, scenario=None)
        again = boot.connection_info(db, tmp_path, "http://127.0.0.1:1", token)
        assert again["serial_no"] not in ("", first["serial_no"])
        assert real(key_path).public_key().public_numbers() != numbers.public_numbers
    finally:
        db.dispose()


# rich and httpx (and httpcore under it), ≈ 55 ms of a warm start's CPU together
NOT_UNTIL_NEEDED = ("httpx", "httpcore", "rich")


def _not_until_needed(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] in NOT_UNTIL_NEEDED}


def test_a_sqlite_serve_that_sent_no_callback_imports_neither_httpx_nor_rich(tmp_path: Path) -> None:
    """httpx came with the callback sender (server/callbacks.py, callback_network.py) and the CLI's HTTP
    helpers (cli/_http.py, for the token's check), rich with cli/_output.py (for ``visible``): serve
    prints its settings with click. ``--notify-ca-file`` is still read at start, without httpx."""
    _modules_of_a_serve(tmp_path)  # the first start
    modules = _modules_of_a_serve(tmp_path)  # a warm start
    assert "wxpartner.server.app" in modules and "wxpartner.server.callbacks" in modules
    assert _not_until_needed(modules) == set()
    authority = tls.ensure_tls(tmp_path / "private-ca", "127.0.0.1")
    modules = _modules_of_a_serve(tmp_path, "--notify-ca-file", str(authority.ca_path))
    assert _not_until_needed(modules) == set()


def test_a_serve_imports_httpx_when_it_sends_a_callback_over_http_and_https(tmp_path: Path) -> None:
    """A fresh process's first send imports the sender: the demo service provider's callback to an http://
    receiver and the channel merchant's to an https:// one behind the authority of --notify-ca-file
    (read at start, before httpx was imported) are both delivered, signed, in one pass."""
    authority = tls.ensure_tls(tmp_path / "private-ca", "127.0.0.1")
    _modules_of_a_serve(tmp_path)  # the first start: the demo merchants made
    delivered: list[dict[str, Any]] = []
    with (
        https_receiver(authority.certificate_path, authority.key_path) as secure,
        plain_receiver() as plain,
    ):

        def send(client: httpx.Client, info: dict[str, Any]) -> None:
            auth = {"Authorization": f"Bearer {info['sandbox_token']}"}
            urls = {boot.DEMO_SP: plain.url, boot.DEMO_CHANNEL: secure.url}
            for mchid, url in urls.items():
                resp = client.put(
                    f"/sandbox/merchants/{mchid}/notify-url", json={"notify_url": url}, headers=auth
                )
                assert resp.status_code == 200, resp.text
            db = Database(sqlite_url_for((tmp_path / "data").resolve()), pool_size=1)
            try:
                with db.write() as conn:
                    for mchid in urls:
                        outbox.enqueue(
                            conn,
                            mchid=mchid,
                            event_type="WEBIZPAY.REVOKED",
                            summary="",
                            resource={},
                            now=time.time(),
                        )
            finally:
                db.dispose()
            # sends what is due, and waits for a send the background pass has in flight
            assert client.post("/sandbox/callbacks/deliver", headers=auth).status_code == 200
            for mchid in urls:
                page = client.get("/sandbox/callbacks", params={"mchid": mchid}, headers=auth).json()
                delivered.extend(page["data"])

        modules = _modules_of_a_serve(tmp_path, "--notify-ca-file", str(authority.ca_path), then=send)
        assert sorted((n["mchid"], n["state"]) for n in delivered) == [
            (boot.DEMO_SP, "delivered"),
            (boot.DEMO_CHANNEL, "delivered"),
        ], delivered
        for received in (plain.requests, secure.requests):
            assert len(received) == 1
            assert received[0].headers["Wechatpay-Signature"]
            assert json.loads(received[0].body)["resource_type"] == "encrypt-resource"
    assert {"httpx", "httpcore"} <= modules
