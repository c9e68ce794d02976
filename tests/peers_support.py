"""Pieces of the product-family peer tests (tests/test_peers_families.py): running the pinned npm
peers (as tests/test_peers.py does), the peers' own merchants and the business data they send."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from a1_support import ADDRESS, a1_body
from support import APIV3_KEY, SECOND_A, World
from wxpartner.protocol import keys as k
from wxpartner.protocol.times import format_rfc3339

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / "peers"
NPM_PINS = {"wechatpay-axios-plugin": "0.9.6", "wechatpay-node-v3": "2.2.1"}
PYPI_PIN = "2.0.4"
PYWECHATPAY_PIN = "0.1.0"

# The peers' own merchants, one per key mode: channel merchants (the only role besides institution that
# may call apply4subject) that are also platforms (second-level merchants: recharge) and service
# providers (a sub-merchant: enterprise payment). One second-level merchant per peer, as each allows
# only 3 recharge configurations a day. wechatpay-node-v3 2.2.1 knows certificates only.
MODES: dict[str, tuple[str, str, dict[str, str]]] = {  # mode -> (mchid, sub-merchant, {peer: second-level})
    "certificate": (
        "1230000501",
        "1230000521",
        {"py": "1230000511", "axios": "1230000512", "node": "1230000513", "pyw": "1230000516"},
    ),
    "public_key": (
        "1230000502",
        "1230000522",
        {"py": "1230000514", "axios": "1230000515", "pyw": "1230000517"},
    ),
}
PEER_CONFIRM = "1230000531"  # the merchant number an applyment covers
PEER_TEMPLATE = "peer_tpl_single"  # loaded by the scenario (the built-ins would work as well)

# JSON pointers of the applyment's sensitive fields, which the peers encrypt themselves.
SENSITIVE = [
    "/contact_info/name",
    "/contact_info/mobile",
    "/contact_info/id_card_number",
    "/identification_info/identification_name",
    "/identification_info/identification_number",
    "/identification_info/identification_address",
]


@dataclass
class PeerMerchant:
    mode: str  # "certificate" | "public_key"
    mchid: str
    sub_mchid: str
    second_level: dict[str, str]
    private_key_pem: str
    certificate_pem: str
    serial_no: str
    apiv3_key: str = APIV3_KEY

    def platform_key(self, world: World) -> tuple[str, str]:
        """(Wechatpay-Serial, PEM) of the WeChat Pay key this merchant verifies and encrypts with."""
        if self.mode == "public_key":
            return world.platform_pub.key_id, world.platform_pub.public_key_pem
        return world.platform_cert.key_id, world.platform_cert.certificate_pem


def make_peer_merchant(mode: str) -> PeerMerchant:
    mchid, sub, seconds = MODES[mode]
    key = k.generate_private_key()
    cert = k.issue_certificate(key, mchid)
    return PeerMerchant(
        mode, mchid, sub, seconds, k.private_key_pem(key), k.certificate_pem(cert), k.certificate_serial(cert)
    )


def peer_scenario(peers: list[PeerMerchant]) -> dict[str, Any]:
    """Extra scenario sections for tests/live.py's start_live_server (added to the test world)."""
    return {
        "merchants": [
            {
                "mchid": m.mchid,
                "name": f"Peer channel merchant ({m.mode})",
                "role": "channel",
                "key_mode": m.mode,
                "apiv3_key": m.apiv3_key,
                "certificates": [{"certificate": m.certificate_pem}],
                "sub_merchants": [m.sub_mchid],
                "second_level_merchants": list(m.second_level.values()),
            }
            for m in peers
        ],
        "webizpay": {
            "templates": [
                {
                    "sp_mchid": m.mchid,
                    "card_template_id": PEER_TEMPLATE,
                    "card_rule": "SINGLE",
                    "refund_rule": "NOT_RETURN",
                }
                for m in peers
            ]
        },
    }


def peer_config(peer: PeerMerchant, world: World, base_url: str, token: str) -> dict[str, Any]:
    """What every driver needs: where, who, and (axios plugin) the WeChat Pay key up front."""
    serial, pem = peer.platform_key(world)
    return {
        "base_url": base_url,
        "control_token": token,  # only for the employee's side (consent), never for the peer's calls
        "mchid": peer.mchid,
        "serial_no": peer.serial_no,
        "private_key": peer.private_key_pem,
        "certificate": peer.certificate_pem,
        "apiv3_key": peer.apiv3_key,
        "platform_serial": serial,
        "platform_key": pem,  # a certificate or a public key PEM
    }


def plan(peer: PeerMerchant, tag: str, family: str) -> dict[str, Any]:
    """The business data one peer sends for one family (distinct per peer: one server for all)."""
    if family == "recharge":
        return {
            "sub_mchid": peer.second_level[tag],
            "sp_openid": f"oPeer_{tag}_RechargeEmployee01",
            "foreign_sub_mchid": SECOND_A,  # another platform's second-level merchant: 403 NO_AUTH
        }
    if family == "webizpay":
        end = format_rfc3339(dt.datetime.now(dt.UTC) + dt.timedelta(days=30))
        who = {"sp_mchid": peer.mchid, "sub_mchid": peer.sub_mchid}
        return {
            **who,
            "user_id": f"peer_{tag}|emp*01",  # "|" and "*" are allowed: path encoding matters
            "application_type": "H5",
            "card": {
                **who,
                "card_template_id": PEER_TEMPLATE,
                "amount": 10000,
                "card_name": "报销额度卡",
                "out_card_no": f"peer_{tag}_card_0001",
                "effective_end_time": end,
                "card_remark": "2023年1月差旅报销",
            },
            "cancel_reason": "商户主动作废",
        }
    if family == "apply4subject":
        return {"applyment": applyment(f"PEER_{tag.upper()}_APPLY_0001"), "sensitive": SENSITIVE}
    raise ValueError(family)


def applyment(business_code: str) -> dict[str, Any]:
    """A1 body with the sensitive fields still in plain text (the peer encrypts them)."""
    return a1_body(business_code, identification_address=ADDRESS, confirm=[PEER_CONFIRM])


_npm_installed = False  # by this process, once: install-peers.sh then found everything in place


def npm_peer_ready(name: str) -> None:
    """The pinned npm peers in peers/node_modules, installed once whichever process asks first. Two
    pytest-xdist workers used to run install-peers.sh at once (each saw no node_modules): one `npm ci`
    emptied node_modules under the other (ENOENT), or a worker saw the first package.json of a
    half-done install and ran a driver without its dependencies. Now each asks under a lock on
    peers/.install.lock, and the script (idempotent) finds the other's install complete."""
    global _npm_installed
    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed")
    if not _npm_installed:
        with (PEERS / ".install.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            env = {**os.environ, "WXPARTNER_PEERS_LOCKED": "1"}  # the script's own lock: this one
            subprocess.run([str(ROOT / "scripts" / "install-peers.sh")], check=True, timeout=300, env=env)
        _npm_installed = True
    manifest = PEERS / "node_modules" / name / "package.json"
    assert json.loads(manifest.read_text())["version"] == NPM_PINS[name]


def run_node(script: str, config: dict[str, Any]) -> dict[str, Any]:
    """Run a driver: JSON config on stdin, one JSON result line on stdout ({"fatal": …} on a crash)."""
    proc = subprocess.run(
        ["node", str(PEERS / script)],
        input=json.dumps(config).encode(),
        capture_output=True,
        cwd=PEERS,
        timeout=60,
    )
    out = proc.stdout.decode().strip().splitlines()
    assert out, f"{script} printed nothing; stderr: {proc.stderr.decode()[-2000:]}"
    result: dict[str, Any] = json.loads(out[-1])
    assert proc.returncode == 0 and "fatal" not in result, result.get("fatal") or proc.stderr.decode()
    return result
