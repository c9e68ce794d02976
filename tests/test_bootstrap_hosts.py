"""README "Deployment at scale": every host runs the same `wxpartner serve` on one database, each with its
own data dir. Every host must print (and write to its connection.json) settings that work: a serial
whose private key is in that host's data dir, the database's APIv3 key, the one set of platform keys.
Before: a host that found the demo merchant made by another host named a private key it did not have
(every request it signed: 401 SIGN_ERROR), and hosts started together each created the demo merchant
(one kept an APIv3 key the database no longer had) and could each add platform keys."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from conftest import BACKENDS
from live import Served
from pg import PgServer, create_database, drop_database
from wxpartner.cli import main
from wxpartner.protocol import keys as k


def _signs_with_its_own_key(data_dir: Path, url: str, mchid: str, serial: str, key_path: str) -> None:
    cert = k.load_certificate((data_dir / "keys" / mchid / "apiclient_cert.pem").read_bytes())
    assert k.certificate_serial(cert) == serial
    key = k.load_private_key(Path(key_path).read_bytes())
    assert k.public_key_pem(key.public_key()) == k.public_key_pem(k.certificate_public_key(cert))
    # a request signed with the printed settings is verified (404: no platform certificates in
    # public-key mode, a signed answer whose signature `call` checks: exit status 0)
    args = ["call", "GET", "/v3/certificates", "--data-dir", str(data_dir), "--url", url, "--json"]
    args += ["--mchid", mchid, "--serial", serial, "--key", key_path]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert (answer["status"], answer["body"]["code"]) == (404, "RESOURCE_NOT_EXISTS"), answer


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_hosts_on_one_database_each_print_settings_that_sign(
    backend: str, tmp_path: Path, pg_server: PgServer | None
) -> None:
    name = f"wx_hosts_{os.getpid()}"
    if backend == "sqlite":  # one host, one database file, two data dirs
        url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    elif pg_server is None:
        pytest.skip("PostgreSQL is not installed here (apt-get install postgresql); .ci/run installs it")
    else:  # an empty database, as after `createdb`
        url = create_database(pg_server, name)
    dirs = [tmp_path / "host_a", tmp_path / "host_b"]
    token = ("--token", "one-token-for-all-hosts", "--database-url", url)
    servers: list[Served] = []
    try:
        # started at the same moment, as the README's recipe runs on every host (SQLite: two data dirs
        # sharing one database file take turns on a lock file beside it)
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(Served, d, *token) for d in dirs]
        servers = [f.result() for f in futures if f.exception() is None]  # stopped below, even if
        for f in futures:  # the other one failed to start
            f.result()
        infos = [s.info for s in servers]
        for info, data_dir in zip(infos, dirs, strict=True):
            assert json.loads((data_dir / "connection.json").read_text()) == info
        with httpx.Client(headers={"Authorization": "Bearer one-token-for-all-hosts"}) as control:
            merchants = control.get(servers[0].url + "/sandbox/scenario").json()["merchants"]
            keys = control.get(servers[1].url + "/sandbox/platform-keys").json()["data"]
        apiv3 = {m["mchid"]: m.get("apiv3_key") for m in merchants}
        for info in infos:  # the keys the database holds, whichever host made them
            assert info["apiv3_key"] == apiv3[info["mchid"]]
        assert sorted(r["kind"] for r in keys) == ["certificate", "public_key"]
        assert {i["wechatpay_public_key_id"] for i in infos} == {
            r["key_id"] for r in keys if r["kind"] == "public_key"
        }
        for server, info, data_dir in zip(servers, infos, dirs, strict=True):
            _signs_with_its_own_key(
                data_dir, server.url, info["mchid"], info["serial_no"], info["private_key_path"]
            )
            _signs_with_its_own_key(
                data_dir,
                server.url,
                info["channel_mchid"],
                info["channel_serial_no"],
                info["channel_private_key_path"],
            )
        assert infos[0]["serial_no"] != infos[1]["serial_no"]  # one certificate of the merchant per host

        # a restart on the same data dir reuses its key (no new certificate)
        servers[1].stop()
        servers[1] = Served(dirs[1], *token)
        assert servers[1].info["serial_no"] == infos[1]["serial_no"]
        assert servers[1].info["channel_serial_no"] == infos[1]["channel_serial_no"]

        # its certificate revoked, a restart gets a new key pair: never the other host's serial beside
        # this host's key (found in review: every request it signed was SIGN_ERROR)
        with httpx.Client(headers={"Authorization": "Bearer one-token-for-all-hosts"}) as control:
            revoked = control.post(f"{servers[0].url}/sandbox/certificates/{infos[1]['serial_no']}/revoke")
            assert revoked.status_code == 200, revoked.text
        servers[1].stop()
        servers[1] = Served(dirs[1], *token)
        again = servers[1].info
        assert again["serial_no"] not in (infos[0]["serial_no"], infos[1]["serial_no"])
        _signs_with_its_own_key(
            dirs[1], servers[1].url, again["mchid"], again["serial_no"], again["private_key_path"]
        )
    finally:
        for server in servers:
            server.stop()
        if backend != "sqlite" and pg_server is not None:
            drop_database(pg_server, name)
