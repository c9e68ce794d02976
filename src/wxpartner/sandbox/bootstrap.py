"""First run: WeChat Pay's own keys, a demo service provider with its keys, an APIv3 key and a sandbox
token; afterwards, the connection settings a client needs (printed by ``wxpartner serve``)."""

from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path
from typing import Any

from ..domain.merchants import KeyMode, Merchant, RelationKind, Role
from ..store import registry, sandbox
from ..store.db import Database
from .material import (
    make_merchant_keys,
    make_platform_certificate,
    make_platform_public_key,
    new_apiv3_key,
    usable_key_files,
    write_file,
    write_secret,
)

DEMO_SP = "1900000001"
DEMO_SUB = "1900000101"
DEMO_SECOND_LEVEL = "1900000201"
DEMO_CHANNEL = "1900000301"  # apply4subject answers only channel merchants and licensed institutions
TOKEN_KEY = "sandbox_token"


def ensure_platform_keys(db: Database, data_dir: Path) -> None:
    """One shared WeChat Pay public key (PUB_KEY_ID_...) and one platform certificate, kept in the db;
    the public halves of every key in use (a merchant's own public key too: connection.json names the
    demo merchant's once it has one), and only those, are in data_dir/platform for clients to load."""
    with db.write() as conn:
        rows = registry.list_platform_keys(conn)
        if not any(r.kind == "public_key" for r in rows):
            registry.add_platform_key(conn, make_platform_public_key())
        if not any(r.kind == "certificate" for r in rows):
            registry.add_platform_key(conn, make_platform_certificate())
        rows = registry.list_platform_keys(conn)
    out = data_dir / "platform"
    out.mkdir(parents=True, exist_ok=True)
    written: set[str] = set()
    for row in rows:
        if row.retired:
            continue
        if row.kind == "public_key":
            name = f"{row.key_id}.pem"
            write_file(out / name, row.public_key_pem)
        elif row.kind == "certificate" and row.certificate_pem:
            name = f"wechatpay_{row.key_id}.pem"
            write_file(out / name, row.certificate_pem)
        else:
            continue
        written.add(name)
    # Files of keys this database does not use: retired ones, and every key of a database the data dir
    # outlived (a new one makes keys of its own), which piled up two files a start. No answer verifies
    # with them. Only what this function writes goes: our names, public halves (a scenario's own PEM
    # files may sit here, as README's example puts them in platform/).
    for stale in out.iterdir():
        if stale.name not in written and _OUR_FILE.fullmatch(stale.name) and _public_only(stale):
            stale.unlink(missing_ok=True)


# The names ensure_platform_keys writes: PUB_KEY_ID_… (a scenario's key_id: letters, digits, '_') and
# wechatpay_<certificate serial, upper-case hex>.
_OUR_FILE = re.compile(r"PUB_KEY_ID_[A-Za-z0-9_]+\.pem|wechatpay_[0-9A-F]+\.pem")


def _public_only(path: Path) -> bool:
    """A public key or a certificate, as written above; never a private key someone keeps here."""
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return False
    return "PRIVATE KEY" not in text and text.lstrip().startswith(
        ("-----BEGIN PUBLIC KEY-----", "-----BEGIN CERTIFICATE-----")
    )


def ensure_token(db: Database, given: str = "") -> str:
    with db.write() as conn:
        if given:
            sandbox.kv_set(conn, TOKEN_KEY, given)
            return given
        token = sandbox.kv_get(conn, TOKEN_KEY)
        if token is None:
            token = "wxp_" + secrets.token_urlsafe(24)
            sandbox.kv_set(conn, TOKEN_KEY, token)
        return token


def local_serial(data_dir: Path, mchid: str, certs: list[dict[str, object]]) -> str | None:
    """The serial of the API certificate whose private key this data dir holds
    (``keys/<mchid>/apiclient_key.pem`` + ``apiclient_cert.pem``, the key matching the certificate),
    if it is one of the merchant's registered certificates ``certs`` and not revoked; None otherwise."""
    usable = {str(c["serial_no"]) for c in certs if not c["revoked"]}
    return usable_key_files(data_dir / "keys" / mchid, lambda serial: serial in usable)


def _ensure_local_keys(db: Database, data_dir: Path, mchid: str) -> None:
    """A demo merchant that exists already but whose key this data dir does not hold (or holds revoked):
    a scenario named it without keys, another host (another data dir on the same database) created
    it, or its certificate was revoked. The private key never leaves the data dir that made it, so
    this one gets a key pair of its own, registered as one more certificate of the merchant; its
    connection.json names that key."""
    with db.read() as conn:
        certs = registry.list_certificates(conn, mchid)
    if local_serial(data_dir, mchid, certs) is not None:
        return
    files = make_merchant_keys(mchid, data_dir / "keys" / mchid)
    with db.write() as conn:
        registry.add_certificate(conn, mchid, files.serial_no, files.public_key_pem, files.certificate_pem)


def ensure_demo(db: Database, data_dir: Path) -> None:
    """The demo service provider (also a platform merchant) with a sub-merchant and a second-level
    merchant, and a demo channel merchant for the applyment family."""
    _ensure_demo_channel(db, data_dir)
    with db.read() as conn:
        existing = registry.get_merchant(conn, DEMO_SP)
    if existing is not None:
        _ensure_local_keys(db, data_dir, DEMO_SP)
        return
    files = make_merchant_keys(DEMO_SP, data_dir / "keys" / DEMO_SP)
    with db.write() as conn:
        registry.upsert_merchant(
            conn,
            Merchant(
                DEMO_SP,
                "Demo service provider",
                Role.SERVICE_PROVIDER,
                new_apiv3_key(),
                KeyMode.PUBLIC_KEY,
                None,
            ),
        )
        registry.add_certificate(conn, DEMO_SP, files.serial_no, files.public_key_pem, files.certificate_pem)
        registry.upsert_merchant(
            conn, Merchant(DEMO_SUB, "Demo sub-merchant", Role.SUB_MERCHANT, None, KeyMode.PUBLIC_KEY, None)
        )
        registry.upsert_merchant(
            conn,
            Merchant(
                DEMO_SECOND_LEVEL,
                "Demo second-level merchant",
                Role.SECOND_LEVEL,
                None,
                KeyMode.PUBLIC_KEY,
                None,
            ),
        )
        registry.add_relation(conn, DEMO_SP, DEMO_SUB, RelationKind.SUB_MERCHANT)
        registry.add_relation(conn, DEMO_SP, DEMO_SECOND_LEVEL, RelationKind.SECOND_LEVEL)


def _ensure_demo_channel(db: Database, data_dir: Path) -> None:
    with db.read() as conn:
        channel = registry.get_merchant(conn, DEMO_CHANNEL)
    if channel is not None:
        if channel.role == Role.CHANNEL:
            _ensure_local_keys(db, data_dir, DEMO_CHANNEL)
        return
    files = make_merchant_keys(DEMO_CHANNEL, data_dir / "keys" / DEMO_CHANNEL)
    with db.write() as conn:
        registry.upsert_merchant(
            conn,
            Merchant(
                DEMO_CHANNEL, "Demo channel merchant", Role.CHANNEL, new_apiv3_key(), KeyMode.PUBLIC_KEY, None
            ),
        )
        registry.add_certificate(
            conn, DEMO_CHANNEL, files.serial_no, files.public_key_pem, files.certificate_pem
        )


def _channel_info(db: Database, data_dir: Path) -> dict[str, Any]:
    with db.read() as conn:
        channel = registry.get_merchant(conn, DEMO_CHANNEL)
        certs = registry.list_certificates(conn, DEMO_CHANNEL) if channel else []
    if channel is None or channel.role != Role.CHANNEL:
        return {}
    key_dir = data_dir / "keys" / DEMO_CHANNEL
    return {
        "channel_mchid": DEMO_CHANNEL,
        "channel_serial_no": local_serial(data_dir, DEMO_CHANNEL, certs) or "",
        "channel_private_key_path": str((key_dir / "apiclient_key.pem").resolve()),
    }


def merchant_entry(db: Database, data_dir: Path, mchid: str) -> dict[str, Any] | None:
    """What a client acting as ``mchid`` needs, each value this merchant's own: its API certificate
    serial and key in this data dir, its APIv3 key, and the WeChat Pay keys that sign its answers by
    its key mode (``Keyring.signer_for``): its public key in public-key mode, the platform certificate
    in certificate mode, both while migrating. None for a merchant that is not registered."""
    with db.read() as conn:
        merchant = registry.get_merchant(conn, mchid)
        certs = registry.list_certificates(conn, mchid) if merchant else []
        keys = registry.list_platform_keys(conn)
    if merchant is None:
        return None
    pub = registry.public_key_of(keys, mchid)
    cert = next(iter(registry.valid_certificates(keys, time.time())), None)
    if merchant.key_mode == KeyMode.PUBLIC_KEY and pub is not None:
        cert = None  # answers are signed with the public key
    elif merchant.key_mode == KeyMode.CERTIFICATE and cert is not None:
        pub = None  # naming a public key (Wechatpay-Serial, encrypted fields) would be refused
    key_dir = data_dir / "keys" / mchid
    platform = data_dir / "platform"
    return {
        "mchid": mchid,
        "role": merchant.role.value,
        "key_mode": merchant.key_mode.value,
        "serial_no": local_serial(data_dir, mchid, certs) or "",
        "private_key_path": str((key_dir / "apiclient_key.pem").resolve()),
        "certificate_path": str((key_dir / "apiclient_cert.pem").resolve()),
        "apiv3_key": merchant.apiv3_key,
        "wechatpay_public_key_id": pub.key_id if pub else None,
        "wechatpay_public_key_path": str((platform / f"{pub.key_id}.pem").resolve()) if pub else None,
        "platform_certificate_serial": cert.key_id if cert else None,
        "platform_certificate_path": (
            str((platform / f"wechatpay_{cert.key_id}.pem").resolve()) if cert else None
        ),
    }


def _merchants_info(db: Database, data_dir: Path, mchid: str) -> dict[str, Any]:
    """``merchants``: one entry per demo merchant a client can act as (``from_connection_info``'s
    ``merchant=``), each complete in itself. The top-level fields (the service provider's) and the
    ``channel_*`` ones stay as they were, for readers of older files."""
    entries = {"service_provider": merchant_entry(db, data_dir, mchid)}
    if mchid == DEMO_SP:
        channel = merchant_entry(db, data_dir, DEMO_CHANNEL)
        if channel is not None and channel["role"] == Role.CHANNEL.value:
            entries["channel"] = channel
    return {"merchants": {name: entry for name, entry in entries.items() if entry is not None}}


def connection_info(
    db: Database,
    data_dir: Path,
    base_url: str,
    token: str,
    mchid: str = DEMO_SP,
    *,
    tls_ca_path: Path | None = None,
) -> dict[str, Any]:
    with db.read() as conn:
        merchant = registry.get_merchant(conn, mchid)
        certs = registry.list_certificates(conn, mchid)
        keys = registry.list_platform_keys(conn)
        subs = registry.children(conn, mchid)
    if merchant is None:
        raise LookupError(f"merchant {mchid} is not registered")
    pub = registry.public_key_of(keys, mchid)
    cert = next(iter(registry.valid_certificates(keys, time.time())), None)
    key_dir = data_dir / "keys" / mchid
    # the certificate of the key in this data dir, never another data dir's (its key is not here)
    serial = local_serial(data_dir, mchid, certs) or ""
    info: dict[str, Any] = {
        "base_url": base_url,
        "mchid": mchid,
        "key_mode": merchant.key_mode.value,
        "serial_no": serial,
        "private_key_path": str((key_dir / "apiclient_key.pem").resolve()),
        "certificate_path": str((key_dir / "apiclient_cert.pem").resolve()),
        "apiv3_key": merchant.apiv3_key,
        "wechatpay_public_key_id": pub.key_id if pub else None,
        "wechatpay_public_key_path": str((data_dir / "platform" / f"{pub.key_id}.pem").resolve())
        if pub
        else None,
        "platform_certificate_serial": cert.key_id if cert else None,
        "platform_certificate_path": (
            str((data_dir / "platform" / f"wechatpay_{cert.key_id}.pem").resolve()) if cert else None
        ),
        "sub_mchid": [child for child, kind in subs if kind == RelationKind.SUB_MERCHANT.value],
        "second_level_mchid": [child for child, kind in subs if kind == RelationKind.SECOND_LEVEL.value],
        **(_channel_info(db, data_dir) if mchid == DEMO_SP else {}),
        **_merchants_info(db, data_dir, mchid),
        "sandbox_token": token,
        "sandbox_api": f"{base_url}/sandbox",
        "dashboard": f"{base_url}/dashboard",
        **_tls_info(tls_ca_path),
    }
    # The sandbox token and the APIv3 key: owner-only.
    write_secret(data_dir / "connection.json", json.dumps(info, indent=2, ensure_ascii=False))
    return info


def control_connection_info(
    data_dir: Path, base_url: str, token: str, *, tls_ca_path: Path | None = None
) -> dict[str, Any]:
    """Without the demo merchant (``serve --no-demo``): where the server is and its sandbox token, also
    written to ``connection.json`` (owner-only), where the operations commands look for them."""
    info: dict[str, Any] = {"base_url": base_url, "sandbox_token": token, **_tls_info(tls_ca_path)}
    write_secret(data_dir / "connection.json", json.dumps(info, indent=2, ensure_ascii=False))
    return info


def _tls_info(ca_path: Path | None) -> dict[str, str]:
    """``serve --tls``: the authority a client trusts to reach base_url (the operations commands do)."""
    return {"tls_ca_path": str(ca_path.resolve())} if ca_path is not None else {}


def bootstrap(
    db: Database, data_dir: Path, *, token: str = "", demo: bool = True, scenario: Path | None = None
) -> str:
    """Migrate, load the scenario (whose platform keys, if any, win over generated ones), create keys
    and the demo merchant if missing; returns the sandbox token."""
    from .scenario import load_scenario_file

    # Owner-only when we create it: it holds private keys, the database and connection.json (an existing
    # directory keeps the mode its owner gave it).
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Every host of a deployment runs this against the one database, maybe at the same moment (the
    # migration inside too: two SQLite processes migrating one new file at once made one fail with
    # "database is locked"; on PostgreSQL the migration also takes a lock of its own).
    with db.setup_lock():
        db.migrate()
        if scenario is not None:
            load_scenario_file(db, scenario, data_dir=data_dir)
        ensure_platform_keys(db, data_dir)
        if demo:
            ensure_demo(db, data_dir)
        return ensure_token(db, token)
