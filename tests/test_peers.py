"""Third-party WeChat Pay clients as black-box peers against a real loopback server (tests/live.py).

Each peer signs with its own code and verifies our response signatures with its own code:
- ``wechatpayv3`` (PyPI, pinned in pyproject's dev extra),
- ``wechatpay-axios-plugin`` and ``wechatpay-node-v3`` (npm, pinned in peers/package.json, installed by
  scripts/install-peers.sh into peers/node_modules; drivers in peers/*.js).
Only the host is redirected (the clients hard-code api.mch.weixin.qq.com); nothing of their signing or
verification is replaced. The certificate-mode merchant SP_B downloads /v3/certificates, and a signed
GET with a bad query answers with a signed WeChat error body, which each peer verifies.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from live import LiveServer, start_live_server
from peers_support import PYPI_PIN, npm_peer_ready, run_node
from support import SP_B, World
from wxpartner.protocol import keys as k

pytestmark = pytest.mark.peers


@pytest.fixture(scope="module")
def peer_server(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One loopback server for all peers (they only add nonces), to start a process once."""
    server = start_live_server(tmp_path_factory.mktemp("peers"), world)
    yield server
    server.stop()


def _common_config(live: LiveServer, world: World) -> dict[str, Any]:
    m = world.merchants[SP_B]
    return {
        "base_url": live.url,
        "mchid": m.mchid,
        "serial_no": m.serial_no,
        "private_key": m.private_key_pem,
        "certificate": m.certificate_pem,
        "apiv3_key": m.apiv3_key,
    }


def _assert_param_error(body: dict[str, Any]) -> None:
    assert body["code"] == "PARAM_ERROR"
    assert body["detail"]["location"] == "query"
    assert "algorithm_type" in body["detail"]["field"]


def test_wechatpay_axios_plugin(peer_server: LiveServer, world: World) -> None:
    npm_peer_ready("wechatpay-axios-plugin")
    cert_serial = world.platform_cert.key_id
    other_cert = k.certificate_pem(k.issue_certificate(world.other_key or k.generate_private_key(), "x"))
    result = run_node(
        "axios-plugin.js",
        {
            **_common_config(peer_server, world),
            "platform_serial": cert_serial,
            "platform_certificate": world.platform_cert.certificate_pem,
            "wrong_certificate": other_cert,
        },
    )
    certs = result["certificates"]
    assert certs["status"] == 200
    assert cert_serial in certs["serials"]
    decrypted = certs["decrypted"][certs["serials"].index(cert_serial)]
    assert decrypted == world.platform_cert.certificate_pem
    # The plugin's responseVerifier ran on the 400 (validateStatus accepts every status) and passed.
    assert result["error"]["status"] == 400
    assert result["error"]["serial"] == cert_serial
    _assert_param_error(result["error"]["body"])
    # With the wrong platform key the plugin's own verifier refuses our answer.
    assert result["wrong_key"] == "EV3_RES_HEADER_SIGNATURE_DIGEST"


def test_wechatpay_node_v3(peer_server: LiveServer, world: World) -> None:
    npm_peer_ready("wechatpay-node-v3")
    result = run_node("node-v3.js", _common_config(peer_server, world))
    certs = result["certificates"]
    assert certs["status"] == 200
    assert world.platform_cert.key_id in certs["serials"]
    expected_pub = k.public_key_pem(k.load_public_key(world.platform_cert.certificate_pem.encode()))
    got_pub = certs["public_keys"][certs["serials"].index(world.platform_cert.key_id)]
    assert k.public_key_pem(k.load_public_key(got_pub.encode())) == expected_pub
    assert certs["verified"] is True
    assert certs["tampered_verified"] is False
    err = result["error"]
    assert err["status"] == 400 and err["verified"] is True
    assert err["serial"] == world.platform_cert.key_id
    _assert_param_error(err["body"])


def test_wechatpayv3_python(peer_server: LiveServer, world: World) -> None:
    core_mod = pytest.importorskip("wechatpayv3.core")
    utils = pytest.importorskip("wechatpayv3.utils")
    from importlib.metadata import version

    assert version("wechatpayv3") == PYPI_PIN

    class LoopbackCore(core_mod.Core):  # type: ignore[misc,name-defined]
        """Only the gateway moves: wechatpayv3 downloads certificates from its constructor."""

        def _init_certificates(self) -> None:
            self._gate_way = peer_server.url
            super()._init_certificates()

    m = world.merchants[SP_B]
    core = LoopbackCore(
        mchid=m.mchid, cert_serial_no=m.serial_no, private_key=m.private_key_pem, apiv3_key=m.apiv3_key
    )
    # Its constructor downloaded and decrypted the platform certificates with the APIv3 key.
    serials = {format(c.serial_number, "X") for c in core._certificates}
    assert world.platform_cert.key_id in serials
    # A verified request: Core.request raises 'failed to verify the signature' on a bad one.
    status, text = core.request("/v3/certificates")
    assert status == 200 and json.loads(text)["data"]

    # A signed GET answered with a WeChat error body: wechatpayv3 only verifies 2xx inside request(),
    # so the harness sends its signed request and hands the answer to its verifier.
    path = "/v3/certificates?algorithm_type=BOGUS"
    auth = utils.build_authorization(path, "GET", m.mchid, m.serial_no, core._private_key)
    resp = requests.get(
        peer_server.url + path,
        headers={"Authorization": auth, "Accept": "application/json", "User-Agent": "wechatpayv3-peer"},
        timeout=10,
    )
    assert resp.status_code == 400
    _assert_param_error(resp.json())
    assert core._verify_signature(resp.headers, resp.text) is True
    assert core._verify_signature(resp.headers, resp.text + " ") is False
    assert abs(int(resp.headers["Wechatpay-Timestamp"]) - time.time()) < 300
