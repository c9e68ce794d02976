"""``wxpartner serve --tls``: HTTPS under the data dir's own authority, for WeChat Pay's host names.

The files (sandbox/tls.py) are checked on disk; the server over real TLS on loopback with the SDK, the
CLI and a raw handshake per host name; and, where this runs as root with iproute2, unmodified clients
that hard-code ``https://api.mch.weixin.qq.com`` (wechatpayv3, wechatpay-node-v3, and the SDK with its
default base URL and failover host) reach it inside a network namespace whose hosts file points those
names at loopback.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import yaml
from click.testing import CliRunner
from cryptography import x509

from live import free_port, stop_process, world_scenario
from peers_support import PEERS, npm_peer_ready
from support import SP_B, World
from wxpartner.cli import main as cli
from wxpartner.sandbox import tls

pytestmark = pytest.mark.slow

# -- the files ----------------------------------------------------------------------------------------


def _san(path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {*san.get_values_for_type(x509.DNSName), *map(str, san.get_values_for_type(x509.IPAddress))}


def test_the_authority_is_made_once_and_the_server_certificate_renewed_from_it(tmp_path: Path) -> None:
    files = tls.ensure_tls(tmp_path, "127.0.0.1")
    ca, chain = files.ca_path.read_bytes(), files.certificate_path.read_bytes()
    assert _san(files.certificate_path) >= {
        "api.mch.weixin.qq.com",
        "api2.mch.weixin.qq.com",
        "localhost",
        "127.0.0.1",
        "::1",
    }
    for secret in (files.key_path, tmp_path / "tls" / "ca-key.pem"):
        assert secret.stat().st_mode & 0o777 == 0o600
    # The chain: the server's certificate, issued by the authority clients trust, then the authority.
    leaf, issuer = x509.load_pem_x509_certificates(chain)
    leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(ca))
    assert issuer == x509.load_pem_x509_certificate(ca)

    tls.ensure_tls(tmp_path, "127.0.0.1")  # a restart: nothing changes
    assert (files.ca_path.read_bytes(), files.certificate_path.read_bytes()) == (ca, chain)

    tls.ensure_tls(tmp_path, "wx.test")  # another host served on: named too, same authority
    assert "wx.test" in _san(files.certificate_path) and files.ca_path.read_bytes() == ca
    renewed = files.certificate_path.read_bytes()

    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=tls.SERVER_DAYS) - tls.RENEW_BEFORE
    tls.ensure_tls(tmp_path, "wx.test", now=soon)  # near its end: issued again, still the same authority
    assert files.certificate_path.read_bytes() != renewed and files.ca_path.read_bytes() == ca

    files.key_path.write_text("not a key")  # a broken key: a new pair, never a start that fails later
    tls.ensure_tls(tmp_path, "wx.test", now=soon)
    leaf = x509.load_pem_x509_certificate(files.certificate_path.read_bytes())
    assert tls._load_pair(files.certificate_path, files.key_path) is not None
    assert leaf.not_valid_after_utc > soon


def test_host_names_are_spelt_one_way(tmp_path: Path) -> None:
    assert tls.names_for("0.0.0.0") == [*tls.API_HOSTS, *tls.LOOPBACK]
    assert tls.names_for("0:0::1") == [*tls.API_HOSTS, *tls.LOOPBACK]  # that is ::1
    assert tls.names_for("WX.Test")[-1] == "wx.test"


# -- the server over TLS -------------------------------------------------------------------------------


class TlsServer:
    def __init__(self, data_dir: Path, *extra: str, prefix: tuple[str, ...] = (), port: int = 0) -> None:
        self.port = port or free_port()
        self.data_dir = data_dir
        args = [*prefix, sys.executable, "-m", "wxpartner.cli", "serve", "--port", str(self.port)]
        self.proc = subprocess.Popen(
            [*args, "--data-dir", str(data_dir), "--json", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read().decode() if self.proc.stderr else ""
            raise AssertionError(f"serve printed nothing: {err[-2000:]}")
        self.info: dict[str, Any] = json.loads(line)

    def wait_ready(self, context: ssl.SSLContext) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if (
                    httpx.get(self.info["base_url"] + "/healthz", verify=context, timeout=1).status_code
                    == 200
                ):
                    return
            except httpx.TransportError as exc:  # not listening yet, or a worker still loading the app
                if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                    raise
                time.sleep(0.05)
        raise AssertionError("server not ready")

    def stop(self) -> None:
        stop_process(self.proc)


def _trusting(ca_path: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_path)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    server = TlsServer(tmp_path_factory.mktemp("tls"), "--tls", "--workers", "2")  # each worker serves TLS
    try:
        server.wait_ready(_trusting(server.info["tls_ca_path"]))
        yield server
    finally:  # a server that never became ready is stopped too
        server.stop()


def test_serve_tls_answers_https_under_its_authority(served: TlsServer) -> None:
    info = served.info
    assert info["base_url"] == f"https://127.0.0.1:{served.port}"
    assert info["tls_ca_path"] == str((served.data_dir / "tls" / "ca.pem").resolve())
    assert json.loads((served.data_dir / "connection.json").read_text())["tls_ca_path"] == info["tls_ca_path"]
    # Links handed out carry the scheme clients reach us by.
    assert info["dashboard"].startswith("https://")
    # Not trusted by default (certifi's roots): the authority is the data dir's own.
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(info["base_url"] + "/healthz", verify=ssl.create_default_context(), timeout=5)
    # Plain HTTP on the port is not served.
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{served.port}/healthz", timeout=5)


@pytest.mark.parametrize("name", [*tls.API_HOSTS, "localhost"])
def test_the_certificate_verifies_for_each_wechat_pay_host(served: TlsServer, name: str) -> None:
    """What a client that resolves api.mch.weixin.qq.com to this host checks: the name, by SNI."""
    context = _trusting(served.info["tls_ca_path"])
    with (
        socket.create_connection(("127.0.0.1", served.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=name) as conn,
    ):
        conn.sendall(f"GET /healthz HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := conn.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200") and b'"ok"' in answer


def test_another_host_name_is_refused_by_the_client(served: TlsServer) -> None:
    context = _trusting(served.info["tls_ca_path"])
    with (
        socket.create_connection(("127.0.0.1", served.port), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"),
    ):
        context.wrap_socket(raw, server_hostname="api.mch.example.com")


def test_the_sdk_and_the_cli_reach_it(served: TlsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from wxpartner.client import AsyncClient, Client

    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    info = served.data_dir / "connection.json"
    sp, sub = served.info["mchid"], served.info["sub_mchid"][0]
    # from_connection_info trusts the authority connection.json names (tls_context), on both clients.
    with Client.from_connection_info(info) as client:
        assert client.tls_context is not None
        state = client.webizpay.users.authorization_state("tls_user", sp_mchid=sp, sub_mchid=sub)
        assert not state.employee_list  # a user who never authorised: a verified answer, nobody in it

    async def async_state() -> Any:
        async with AsyncClient.from_connection_info(info) as client:
            return await client.webizpay.users.authorization_state("tls_user", sp_mchid=sp, sub_mchid=sub)

    assert not anyio.run(async_state).employee_list
    # Given the same settings without that context, the SDK trusts as httpx does: not this authority.
    with (
        Client.from_connection_info(info, tls_context=None) as untrusting,
        pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        untrusting.webizpay.users.authorization_state("tls_user", sp_mchid=sp, sub_mchid=sub)
    # The CLI's operations commands trust it too.
    result = CliRunner().invoke(cli, ["clock", "--data-dir", str(served.data_dir)])
    assert result.exit_code == 0, result.output
    assert "running" in result.output


def test_tls_cert_and_key_go_together(tmp_path: Path) -> None:
    files = tls.ensure_tls(tmp_path, "127.0.0.1")
    result = CliRunner().invoke(
        cli, ["serve", "--data-dir", str(tmp_path / "d"), "--tls-cert", str(files.certificate_path)]
    )
    assert result.exit_code == 2 and "--tls-cert and --tls-key go together" in result.output


def test_serve_with_the_callers_own_certificate(tmp_path: Path) -> None:
    own = tls.ensure_tls(tmp_path / "own", "127.0.0.1")  # any certificate and key the caller has
    server = TlsServer(
        tmp_path / "d", "--tls-cert", str(own.certificate_path), "--tls-key", str(own.key_path)
    )
    try:
        assert server.info["base_url"].startswith("https://") and "tls_ca_path" not in server.info
        assert not (tmp_path / "d" / "tls").exists()  # no authority of its own is made
        server.wait_ready(_trusting(str(own.ca_path)))
    finally:
        server.stop()


# -- unmodified clients, the real host names ------------------------------------------------------------


def _netns_ready() -> str | None:
    if os.geteuid() != 0:
        return "needs root (a network namespace and its hosts file)"
    if shutil.which("ip") is None:
        return "needs iproute2's ip"
    return None


@pytest.fixture
def netns() -> Iterator[str]:
    """A network namespace of its own loopback whose /etc/hosts (ip netns exec bind-mounts
    /etc/netns/NAME/hosts over it) sends WeChat Pay's API hosts there; port 443 is free inside."""
    why = _netns_ready()
    if why:
        pytest.skip(why)
    name = f"wxp-{uuid.uuid4().hex[:8]}"
    etc = Path("/etc/netns") / name
    etc.mkdir(parents=True)
    try:
        (etc / "hosts").write_text(
            "127.0.0.1 localhost\n" + "".join(f"127.0.0.1 {host}\n" for host in tls.API_HOSTS)
        )
        made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
        if made.returncode != 0:  # a container without the privilege: say so rather than fail
            pytest.skip(f"ip netns add: {made.stderr.strip()}")
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
        shutil.rmtree(etc, ignore_errors=True)


# Runs inside the namespace: unmodified clients with their built-in host names; only trust is configured
# (REQUESTS_CA_BUNDLE for requests, SSL_CERT_FILE for httpx and the SDK's own HTTP).
_CLIENTS = textwrap.dedent(
    """
    import json, sys, time
    config = json.load(sys.stdin)
    out = {}
    from wechatpayv3 import WeChatPay, WeChatPayType
    for attempt in range(200):  # the server is starting in the same namespace
        try:
            pay = WeChatPay(
                wechatpay_type=WeChatPayType.NATIVE, mchid=config["mchid"], private_key=config["key"],
                cert_serial_no=config["serial"], apiv3_key=config["apiv3_key"], appid="wx0000000000000000",
            )
            break
        except Exception as exc:
            time.sleep(0.1)
    else:
        raise SystemExit(f"wechatpayv3 never reached the server: {exc!r}")
    out["wechatpayv3_gateway"] = pay._core._gate_way
    out["wechatpayv3_certificates"] = sorted(format(c.serial_number, "X") for c in pay._core._certificates)
    status, text = pay._core.request("/v3/certificates")  # verified by its own verifier
    out["wechatpayv3_status"] = status

    from wxpartner.client import Client
    client = Client(
        config["mchid"], config["serial"], config["key"], apiv3_key=config["apiv3_key"], failover=True
    )
    response = client.request("GET", "/v3/certificates")
    out["sdk_base_url"] = client.config.base_url
    out["sdk_status"] = response.status
    out["sdk_verified_by"] = response.verified_by
    print(json.dumps(out))
    """
)


# The npm peer with its own transport (superagent) and built-in host: downloads and decrypts the
# platform certificates (tests/test_peers.py drives the rest of it through a loopback transport).
_NODE_CLIENT = """
const WxPay = require('wechatpay-node-v3');
const cfg = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const pay = new WxPay({appid: 'wx0000000000000000', mchid: cfg.mchid, serial_no: cfg.serial,
  publicKey: Buffer.from(cfg.certificate), privateKey: Buffer.from(cfg.key), key: cfg.apiv3_key});
(async () => {
  for (let attempt = 0; ; attempt++) {
    try {
      const certs = await pay.get_certificates(cfg.apiv3_key);
      process.stdout.write(JSON.stringify({serials: certs.map((c) => c.serial_no)}) + '\\n');
      return;
    } catch (err) {
      if (attempt > 100) { throw err; }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
})().catch((err) => { process.stderr.write(String(err && err.stack || err)); process.exit(1); });
"""


def test_unmodified_clients_reach_it_by_wechat_pays_host_name(
    netns: str, world: World, tmp_path: Path
) -> None:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(yaml.safe_dump(world_scenario(world), allow_unicode=True))
    prefix = ("ip", "netns", "exec", netns)
    args = ["--tls", "--host", "127.0.0.1", "--no-demo", "--scenario", str(scenario), "--token", "t"]
    server = TlsServer(tmp_path / "d", *args, prefix=prefix, port=443)
    try:
        ca = server.info["tls_ca_path"]
        m = world.merchants[SP_B]  # certificate mode: both clients download /v3/certificates
        config = {"mchid": m.mchid, "serial": m.serial_no, "key": m.private_key_pem, "apiv3_key": m.apiv3_key}
        env = {**os.environ, "REQUESTS_CA_BUNDLE": ca, "SSL_CERT_FILE": ca}
        for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            env.pop(proxy, None)
        run = subprocess.run(
            [*prefix, sys.executable, "-c", _CLIENTS],
            input=json.dumps(config),
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        out = json.loads(run.stdout.strip().splitlines()[-1])
        npm_peer_ready("wechatpay-node-v3")
        node = subprocess.run(
            [*prefix, "node", "-e", _NODE_CLIENT],
            input=json.dumps({**config, "certificate": m.certificate_pem}),
            capture_output=True,
            text=True,
            env={**env, "NODE_EXTRA_CA_CERTS": ca, "NODE_PATH": str(PEERS / "node_modules")},
            timeout=120,
        )
        assert node.returncode == 0, node.stderr[-3000:]
        out["node_v3_serials"] = json.loads(node.stdout.strip().splitlines()[-1])["serials"]
    finally:
        server.stop()
    assert out["wechatpayv3_gateway"] == "https://api.mch.weixin.qq.com"
    assert world.platform_cert.key_id in out["wechatpayv3_certificates"]
    assert out["wechatpayv3_status"] == 200
    assert out["sdk_base_url"] == "https://api.mch.weixin.qq.com"
    assert out["sdk_status"] == 200 and out["sdk_verified_by"] == world.platform_cert.key_id
    assert world.platform_cert.key_id in out["node_v3_serials"]


def test_the_base_url_says_https_and_brackets_an_ipv6_host() -> None:
    from wxpartner.server.settings import Settings

    assert Settings(host="127.0.0.1", port=8443, tls=True).base_url() == "https://127.0.0.1:8443"
    assert Settings(host="::1", port=8080).base_url() == "http://[::1]:8080"  # was http://::1:8080
    assert Settings(host="::", port=8080).base_url() == "http://127.0.0.1:8080"
