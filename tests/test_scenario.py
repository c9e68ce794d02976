"""Scenario files: load, export, reset round trip; a bad scenario gives a clear error and loads nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.testclient import TestClient

from conftest import SANDBOX_TOKEN
from support import SP_A, ApiClient, MerchantKeys, World, inconsistent_private_key_pem
from wxpartner.domain.merchants import KeyMode
from wxpartner.protocol import keys as k
from wxpartner.sandbox import scenario
from wxpartner.server.app import WxPartnerApp
from wxpartner.store import registry
from wxpartner.store.db import Database

AUTH = {"Authorization": f"Bearer {SANDBOX_TOKEN}"}
NEW_SP = "1888000001"


def _scenario(world: World, *, extra_cert_pem: str) -> dict[str, Any]:
    key = k.generate_private_key()
    return {
        "version": 1,
        "merchants": [
            {
                "mchid": NEW_SP,
                "name": "Scenario SP",
                "role": "service_provider",
                "key_mode": "certificate",
                "apiv3_key": "A" * 32,
                "notify_url": "https://sp.example/notify",
                "certificates": [
                    {"generate": True},
                    {"certificate": extra_cert_pem, "revoked": True},
                    {"serial_no": "abcdef0123", "public_key": k.public_key_pem(key.public_key())},
                ],
                "sub_merchants": ["1888000101"],
                "second_level_merchants": ["1888000201"],
                "channel_merchants": ["1888000301"],
            }
        ],
    }


def _merchant_ids(db: Database) -> set[str]:
    with db.read() as conn:
        return {m.mchid for m in registry.list_merchants(conn)}


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


def test_load_export_round_trip(db: Database, world: World, tmp_path: Path) -> None:
    cert_pem = k.certificate_pem(k.issue_certificate(k.generate_private_key(), NEW_SP))
    report = scenario.load_scenario(
        db, _scenario(world, extra_cert_pem=cert_pem), base_dir=tmp_path, data_dir=tmp_path
    )
    assert report["merchants"] == 1
    [generated] = report["generated_keys"][NEW_SP]
    assert Path(generated["private_key"]).exists() and Path(generated["certificate"]).exists()
    assert Path(generated["private_key"]).stat().st_mode & 0o077 == 0  # private key not world-readable

    exported = scenario.export_scenario(db)
    entry = next(m for m in exported["merchants"] if m["mchid"] == NEW_SP)
    assert entry["key_mode"] == "certificate" and entry["apiv3_key"] == "A" * 32
    assert entry["notify_url"] == "https://sp.example/notify"
    assert entry["sub_merchants"] == ["1888000101"]
    assert entry["second_level_merchants"] == ["1888000201"]
    assert entry["channel_merchants"] == ["1888000301"]
    certs = entry["certificates"]
    assert len(certs) == 3
    assert {"serial_no": "ABCDEF0123", "public_key": certs[2]["public_key"]} in certs  # serials upper-cased
    revoked = [c for c in certs if c.get("revoked")]
    assert len(revoked) == 1 and revoked[0]["certificate"] == cert_pem

    # load the export into a fresh database: the same export comes back (YAML text in between)
    fresh = Database(f"sqlite:///{tmp_path / 'fresh.sqlite3'}")
    fresh.migrate()
    text = yaml.safe_dump(exported, allow_unicode=True)
    scenario.load_scenario(fresh, scenario.parse_text(text), base_dir=tmp_path, data_dir=tmp_path)
    assert scenario.export_scenario(fresh)["merchants"] == exported["merchants"]
    fresh.dispose()


def test_loading_twice_is_idempotent(db: Database, world: World, tmp_path: Path) -> None:
    cert_pem = k.certificate_pem(k.issue_certificate(k.generate_private_key(), NEW_SP))
    data = _scenario(world, extra_cert_pem=cert_pem)
    data["merchants"][0]["certificates"] = data["merchants"][0]["certificates"][1:]
    scenario.load_scenario(db, data, base_dir=tmp_path, data_dir=tmp_path)
    first = scenario.export_scenario(db)
    scenario.load_scenario(db, data, base_dir=tmp_path, data_dir=tmp_path)
    assert scenario.export_scenario(db) == first


def test_certificate_paths_relative_to_scenario_file(db: Database, tmp_path: Path) -> None:
    cert = k.issue_certificate(k.generate_private_key(), NEW_SP)
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "new.pem").write_text(k.certificate_pem(cert))
    path = tmp_path / "s.yaml"
    path.write_text(
        f'merchants:\n  - mchid: "{NEW_SP}"\n    certificates:\n      - certificate: certs/new.pem\n'
    )
    scenario.load_scenario_file(db, path, data_dir=tmp_path)
    with db.read() as conn:
        merchant, cred = registry.get_credential(conn, NEW_SP, k.certificate_serial(cert))
    assert merchant is not None and merchant.key_mode == KeyMode.PUBLIC_KEY  # the default mode
    assert cred is not None and not cred.revoked


def test_certificate_of_another_merchant_is_refused(db: Database, world: World, tmp_path: Path) -> None:
    """Found by this suite: the certificate used to move silently to the new merchant."""
    m: MerchantKeys = world.merchants[SP_A]
    data = {"merchants": [{"mchid": NEW_SP, "certificates": [{"certificate": m.certificate_pem}]}]}
    with pytest.raises(scenario.ScenarioError, match=f"already registered to merchant {SP_A}"):
        scenario.load_scenario(db, data, base_dir=tmp_path, data_dir=tmp_path)
    with db.read() as conn:
        assert registry.serial_owner(conn, m.serial_no) == SP_A
    public = k.public_key_pem(m.private_key.public_key())
    bare = {
        "merchants": [
            {"mchid": NEW_SP, "certificates": [{"serial_no": m.serial_no.lower(), "public_key": public}]}
        ]
    }
    with pytest.raises(scenario.ScenarioError, match="already registered"):
        scenario.load_scenario(db, bare, base_dir=tmp_path, data_dir=tmp_path)
    assert NEW_SP not in _merchant_ids(db)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"merchants": [{"mchid": NEW_SP, "apiv3_key": "short"}]}, "merchants[1].apiv3_key"),
        # found by an audit: 32 characters but not 32 bytes; every callback failed to encrypt
        ({"merchants": [{"mchid": NEW_SP, "apiv3_key": "é" * 32}]}, "32 printable ASCII characters"),
        ({"merchants": [{"mchid": NEW_SP, "apiv3_key": "ａ" * 32}]}, "32 printable ASCII characters"),
        # found by an audit: stored, then every callback's sends failed
        ({"merchants": [{"mchid": NEW_SP, "notify_url": "merchant.example/notify"}]}, "http:// or https://"),
        ({"merchants": [{"mchid": NEW_SP, "key_mode": "sm2"}]}, "merchants[1].key_mode"),
        ({"merchants": [{"mchid": NEW_SP, "colour": "red"}]}, "merchants[1].colour"),
        (
            {"merchants": [{"mchid": NEW_SP, "certificates": [{}]}]},
            "give certificate, public_key + serial_no",
        ),
        (
            {
                "merchants": [
                    {"mchid": NEW_SP, "certificates": [{"public_key": "-----BEGIN PUBLIC KEY-----"}]}
                ]
            },
            "a bare public_key needs its serial_no",
        ),
        (
            {
                "merchants": [
                    {
                        "mchid": NEW_SP,
                        "certificates": [
                            {"certificate": "-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----"}
                        ],
                    }
                ]
            },
            "not a PEM X.509 certificate",
        ),
        (
            {"merchants": [{"mchid": NEW_SP, "certificates": [{"certificate": "missing.pem"}]}]},
            f"merchants[{NEW_SP}].certificates[0]: cannot read missing.pem",
        ),
        ({"no_such_section": []}, "unknown section(s): no_such_section"),
        # found by this suite: values longer than the registry columns were database errors (500) on PostgreSQL
        ({"merchants": [{"mchid": NEW_SP, "sub_merchants": ["1" * 33]}]}, "merchants[1].sub_merchants[0]"),
        (
            {"merchants": [{"mchid": NEW_SP, "certificates": [{"serial_no": "A" * 65, "public_key": "x"}]}]},
            "merchants[1].certificates[0].serial_no",
        ),
        (
            {"merchants": [{"mchid": NEW_SP, "notify_url": "https://x/" + "a" * 510}]},
            "merchants[1].notify_url",
        ),
        ({"merchants": [{"mchid": NEW_SP, "name": "n" * 129}]}, "merchants[1].name"),
        ({"version": 2}, "version"),
        ({"platform_keys": [{"kind": "public_key", "private_key": "x"}]}, "platform_keys[0]: cannot read x"),
    ],
)
def test_bad_scenario_loads_nothing(
    db: Database, tmp_path: Path, data: dict[str, Any], fragment: str
) -> None:
    good = {"mchid": "1888000009", "name": "would be first"}
    data = {**data, "merchants": [good, *data.get("merchants", [])]}
    before = _merchant_ids(db)
    with pytest.raises(scenario.ScenarioError) as exc:
        scenario.load_scenario(db, data, base_dir=tmp_path, data_dir=tmp_path)
    assert fragment in str(exc.value)
    assert _merchant_ids(db) == before  # the good merchant before the bad entry was rolled back too


def test_an_inconsistent_platform_key_is_refused(db: Database, tmp_path: Path) -> None:
    """The keyring trusts stored platform keys (it skips the RSA consistency check), so a scenario
    must not store one that fails it."""
    data = {
        "merchants": [{"mchid": NEW_SP}],
        "platform_keys": [
            {"kind": "public_key", "key_id": "PUB_KEY_ID_0199", "private_key": inconsistent_private_key_pem()}
        ],
    }
    with pytest.raises(scenario.ScenarioError, match=r"platform_keys\[0\]: not an unencrypted PEM RSA"):
        scenario.load_scenario(db, data, base_dir=tmp_path, data_dir=tmp_path)
    assert NEW_SP not in _merchant_ids(db)
    with db.read() as conn:
        assert "PUB_KEY_ID_0199" not in {r.key_id for r in registry.list_platform_keys(conn)}


def test_serial_mismatch_is_reported(db: Database, world: World, tmp_path: Path) -> None:
    m: MerchantKeys = world.merchants[SP_A]
    data = {
        "merchants": [
            {"mchid": NEW_SP, "certificates": [{"certificate": m.certificate_pem, "serial_no": "ABC"}]}
        ]
    }
    with pytest.raises(
        scenario.ScenarioError, match=f"serial_no ABC does not match the certificate \\({m.serial_no}\\)"
    ):
        scenario.load_scenario(db, data, base_dir=tmp_path, data_dir=tmp_path)
    assert NEW_SP not in _merchant_ids(db)


@pytest.mark.parametrize(
    ("text", "fragment"), [("merchants: [", "not valid YAML"), ("- a\n- b\n", "a scenario is a mapping")]
)
def test_parse_text_errors(text: str, fragment: str) -> None:
    with pytest.raises(scenario.ScenarioError, match=fragment):
        scenario.parse_text(text)
    assert scenario.parse_text("") == {}


def test_scenario_through_control_api(http: TestClient, world: World) -> None:
    m = world.merchants[SP_A]
    text = yaml.safe_dump(
        {
            "merchants": [
                {
                    "mchid": NEW_SP,
                    "key_mode": "certificate",
                    "apiv3_key": "B" * 32,
                    "certificates": [{"generate": True}],
                }
            ]
        }
    )
    resp = http.post("/sandbox/scenario", content=text, headers=AUTH)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["loaded"] is True and body["merchants"] == 1
    [gen] = body["generated_keys"][NEW_SP]

    # the loaded merchant can call the API with the generated key
    key = k.load_private_key(Path(gen["private_key"]))
    keys = MerchantKeys(NEW_SP, key, "", "", gen["serial_no"], KeyMode.CERTIFICATE, "B" * 32)
    world2 = World(world.platform_pub, world.platform_cert, {NEW_SP: keys})
    assert ApiClient(http, world2, NEW_SP).get("/v3/certificates").status_code == 200

    exported = http.get("/sandbox/scenario", headers=AUTH).json()
    assert NEW_SP in {e["mchid"] for e in exported["merchants"]}

    # a bad scenario: 400 SCENARIO_ERROR naming the entry, nothing changed
    before = http.get("/sandbox/scenario", headers=AUTH).json()
    bad = yaml.safe_dump(
        {"merchants": [{"mchid": "1888000002"}, {"mchid": "1888000003", "key_mode": "nope"}]}
    )
    resp = http.post("/sandbox/scenario", content=bad, headers=AUTH)
    assert resp.status_code == 400
    assert resp.json()["code"] == "SCENARIO_ERROR" and "merchants[1].key_mode" in resp.json()["message"]
    assert http.get("/sandbox/scenario", headers=AUTH).json() == before
    resp = http.post("/sandbox/scenario", content=b"merchants: [", headers=AUTH)
    assert resp.status_code == 400 and "not valid YAML" in resp.json()["message"]
    assert m.mchid in {e["mchid"] for e in before["merchants"]}


def test_reset_keeps_merchants(http: TestClient) -> None:
    before = http.get("/sandbox/scenario", headers=AUTH).json()["merchants"]
    assert http.post("/sandbox/reset", headers=AUTH).status_code == 200
    assert http.get("/sandbox/scenario", headers=AUTH).json()["merchants"] == before


def test_scenario_naming_the_demo_merchant_keeps_it_usable(tmp_path: Path) -> None:
    """A scenario that lists the demo merchant (to add relations, say) without keys: bootstrap still
    gives it the demo's key pair, so `serve` prints a serial and a key that sign."""
    from wxpartner.sandbox.bootstrap import DEMO_SP, bootstrap, connection_info

    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump({"merchants": [{"mchid": DEMO_SP, "sub_merchants": ["1900000109"]}]}))
    database = Database(f"sqlite:///{tmp_path / 'demo.sqlite3'}")
    try:
        token = bootstrap(database, tmp_path / "data", scenario=path)
        info = connection_info(database, tmp_path / "data", "http://127.0.0.1:1", token)
    finally:
        database.dispose()
    assert info["serial_no"] and "1900000109" in info["sub_mchid"]
    key = k.load_private_key(Path(info["private_key_path"]).read_bytes())
    cert = k.load_certificate(Path(info["certificate_path"]).read_bytes())
    assert k.certificate_serial(cert) == info["serial_no"]
    assert k.public_key_pem(key.public_key()) == k.public_key_pem(k.certificate_public_key(cert))


# --- security: a scenario chooses neither where key files are written nor which files are read ----------


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (
            {"merchants": [{"mchid": "../escaped", "certificates": [{"generate": True}]}]},
            "merchants[1].mchid",
        ),
        ({"merchants": [{"mchid": "/tmp/x"}]}, "merchants[1].mchid"),
        ({"merchants": [{"mchid": NEW_SP, "sub_merchants": ["1/2"]}]}, "merchants[1].sub_merchants[0]"),
        (
            {"merchants": [{"mchid": NEW_SP, "channel_merchants": ["x1"]}]},
            "merchants[1].channel_merchants[0]",
        ),
        ({"merchants": [{"mchid": "1888000010\n"}]}, "merchants[1].mchid"),
        (
            {
                "platform_keys": [
                    {"kind": "public_key", "key_id": "PUB_KEY_ID_01", "private_key": "x", "mchid": ".."}
                ]
            },
            "platform_keys[0].mchid",
        ),
        (  # found in review: it names a file in <data-dir>/platform
            {"platform_keys": [{"kind": "public_key", "key_id": "PUB_KEY_ID_/../../x", "private_key": "x"}]},
            "platform_keys[0].key_id",
        ),
        ({"faults": [{"kind": "SYSTEM_ERROR", "mchid": "../x"}]}, "faults[0].mchid"),
        ({"apply4subject": {"applyments": [{"mchid": "a", "business_code": "b1"}]}}, "applyments[0].mchid"),
        (
            {"apply4subject": {"authorizations": [{"mchid": "a", "sub_mchid": "1"}]}},
            "authorizations[0].mchid",
        ),
        (
            {"webizpay": {"templates": [{"sp_mchid": "../x", "card_template_id": "t"}]}},
            "templates[0].sp_mchid",
        ),
        ({"recharge_employees": [{"sub_mchid": "/x", "mchid": NEW_SP}]}, "sub_mchid"),
    ],
)
def test_merchant_numbers_are_digits_everywhere(
    db: Database, tmp_path: Path, data: dict[str, Any], fragment: str
) -> None:
    good = {"mchid": "1888000009", "name": "would be first"}
    data = {**data, "merchants": [good, *data.get("merchants", [])]}
    before = scenario.export_scenario(db)
    with pytest.raises(scenario.ScenarioError) as exc:
        scenario.load_scenario(db, data, base_dir=tmp_path, data_dir=tmp_path / "data")
    assert fragment in str(exc.value)
    assert scenario.export_scenario(db) == before
    assert not (tmp_path / "data").exists() and not (tmp_path / "escaped").exists()


def test_a_path_as_mchid_writes_no_key_files(http: TestClient, app: WxPartnerApp) -> None:
    """The audit's case: mchid "/tmp/x" or "../x" with generate: true used to write
    apiclient_key.pem/apiclient_cert.pem there (overwriting files of that name)."""
    import tempfile

    data_dir = Path(app.state.settings.data_dir)
    outside = Path(tempfile.mkdtemp(prefix="wx"))
    try:
        target = outside / "x"
        assert len(str(target)) <= 32, "TMPDIR too long for the short absolute path this test needs"
        for mchid in (str(target), "../../x"):  # the second: <data-dir>/keys/../../x
            text = yaml.safe_dump({"merchants": [{"mchid": mchid, "certificates": [{"generate": True}]}]})
            resp = http.post("/sandbox/scenario", content=text, headers=AUTH)
            assert resp.status_code == 400, resp.text
            assert resp.json()["code"] == "SCENARIO_ERROR" and "merchants[0].mchid" in resp.json()["message"]
        assert not target.exists()
        assert not (data_dir.parent / "x").exists()
        assert mchid not in {
            e["mchid"] for e in http.get("/sandbox/scenario", headers=AUTH).json()["merchants"]
        }
    finally:
        for name in ("apiclient_key.pem", "apiclient_cert.pem"):
            (target / name).unlink(missing_ok=True)
            (data_dir.parent / "x" / name).unlink(missing_ok=True)
        for d in (target, data_dir.parent / "x", outside):
            if d.exists():
                d.rmdir()


@pytest.mark.parametrize("mchid", ["../x", "/tmp/x", "", ".", "1/2", "1900000001/../1900000002"])
def test_merchant_key_dir_stays_under_keys(tmp_path: Path, mchid: str) -> None:
    from wxpartner.sandbox.material import merchant_key_dir

    assert merchant_key_dir(tmp_path, "1900000001") == (tmp_path / "keys" / "1900000001").resolve()
    with pytest.raises(ValueError, match="not a merchant number"):
        merchant_key_dir(tmp_path, mchid)


def _load_cert_entry(db: Database, base: Path, value: str, *, confine: bool = True) -> None:
    data = {"merchants": [{"mchid": NEW_SP, "certificates": [{"certificate": value}]}]}
    scenario.load_scenario(db, data, base_dir=base, data_dir=base, confine=confine)


def test_pem_paths_stay_inside_the_scenario_directory(db: Database, tmp_path: Path) -> None:
    base = tmp_path / "scenario"
    (base / "certs").mkdir(parents=True)
    cert = k.certificate_pem(k.issue_certificate(k.generate_private_key(), NEW_SP))
    (base / "certs" / "ok.pem").write_text(cert)
    (tmp_path / "outside.pem").write_text(cert)  # a real PEM, but not the scenario's
    (base / "link.pem").symlink_to(tmp_path / "outside.pem")

    # outside: refused before anything is read, with the same words whether the file exists or not
    messages = set()
    for value, shown in (
        ("../outside.pem", "../outside.pem"),
        ("../missing.pem", "../missing.pem"),
        (str(tmp_path / "outside.pem"), "outside.pem"),
        (str(tmp_path / "missing.pem"), "missing.pem"),
        ("certs/../../outside.pem", "outside.pem"),
        ("link.pem", "link.pem"),  # a symlink that leads out
    ):
        with pytest.raises(scenario.ScenarioError) as exc:
            _load_cert_entry(db, base, value)
        assert shown in str(exc.value)
        messages.add(str(exc.value).replace(value, "<path>"))
    assert messages == {
        f"merchants[{NEW_SP}].certificates[0]: <path> is outside the scenario's directory; "
        "give PEM text or a path inside it"
    }
    assert NEW_SP not in _merchant_ids(db)

    # inside: relative, absolute, and through a harmless ../ step; PEM text as before
    for value in ("certs/ok.pem", str(base / "certs" / "ok.pem"), "certs/../certs/ok.pem", cert):
        _load_cert_entry(db, base, value)
    assert NEW_SP in _merchant_ids(db)


def test_a_scenario_loaded_locally_may_name_any_readable_file(db: Database, tmp_path: Path) -> None:
    """serve --scenario and the pytest plugin load the user's own file: its paths are relative to it and
    may lead out (a project's keys kept beside its tests); only the control API confines them."""
    base = tmp_path / "tests"
    base.mkdir()
    cert = k.certificate_pem(k.issue_certificate(k.generate_private_key(), NEW_SP))
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "cert.pem").write_text(cert)
    _load_cert_entry(db, base, "../keys/cert.pem", confine=False)
    assert NEW_SP in _merchant_ids(db)
    with pytest.raises(scenario.ScenarioError, match="cannot read"):
        _load_cert_entry(db, base, "../keys/missing.pem", confine=False)


def test_a_file_that_is_not_pem_text_is_a_scenario_error(db: Database, tmp_path: Path) -> None:
    """Found while fixing the path checks: a binary file (the data dir's own database, say) raised
    UnicodeDecodeError: a 500 through the control API."""
    (tmp_path / "blob.bin").write_bytes(b"\xff\xfe" * 10)
    (tmp_path / "huge.pem").write_bytes(b"A" * ((1 << 20) + 1))
    for value, words in (
        ("blob.bin", "blob.bin is not PEM text"),
        ("huge.pem", "huge.pem is larger than 1048576 bytes"),
        ("a\x00b", r"certificates\[0\]\.certificate: must not contain NUL"),  # before any path is made
    ):
        with pytest.raises(scenario.ScenarioError, match=words):
            _load_cert_entry(db, tmp_path, value)


def test_control_api_reads_pem_files_from_the_data_dir_only(http: TestClient, app: WxPartnerApp) -> None:
    data_dir = Path(app.state.settings.data_dir)
    cert = k.certificate_pem(k.issue_certificate(k.generate_private_key(), NEW_SP))
    (data_dir / "in.pem").write_text(cert)
    (data_dir.parent / "out.pem").write_text(cert)
    for value, status in (
        ("../out.pem", 400),
        ("/etc/passwd", 400),
        ("/etc/nonexistent", 400),
        ("in.pem", 200),
    ):
        text = yaml.safe_dump({"merchants": [{"mchid": NEW_SP, "certificates": [{"certificate": value}]}]})
        resp = http.post("/sandbox/scenario", content=text, headers=AUTH)
        assert resp.status_code == status, (value, resp.text)
        if status == 400:
            assert "outside the scenario's directory" in resp.json()["message"], resp.text
    (data_dir / "blob.bin").write_bytes(b"\xff" * 64)
    text = yaml.safe_dump({"merchants": [{"mchid": NEW_SP, "certificates": [{"certificate": "blob.bin"}]}]})
    resp = http.post("/sandbox/scenario", content=text, headers=AUTH)
    assert resp.status_code == 400 and "not PEM text" in resp.json()["message"]


def test_a_private_key_without_its_armor_is_not_echoed(http: TestClient, world: World) -> None:
    """A platform key's PEM body pasted without its '-----BEGIN' line was taken for a path, and the
    refusal said "cannot read MIIEvQIBADAN...: No such file or directory": the whole private key in the
    control API's answer (and in the CLI's output, a CI log)."""
    pem = world.merchants[SP_A].private_key_pem
    body = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    for text in ("".join(body), "\n".join(body), body[0] + body[1]):
        entry = {"kind": "public_key", "key_id": "PUB_KEY_ID_0199", "private_key": text}
        resp = http.post(
            "/sandbox/scenario", content=yaml.safe_dump({"platform_keys": [entry]}), headers=AUTH
        )
        assert resp.status_code == 400, resp.text
        assert resp.json()["detail"]["field"] == "platform_keys[0]"
        assert "look like key material (not shown)" in resp.json()["message"], resp.text
        assert all(line[:24] not in resp.text for line in body[:2]), resp.text


def _key_files(data_dir: Path, mchid: str) -> dict[str, bytes]:
    key_dir = data_dir / "keys" / mchid
    return {p.name: p.read_bytes() for p in sorted(key_dir.iterdir())} if key_dir.is_dir() else {}


def test_generate_reuses_the_registered_pair_and_a_failed_load_writes_no_key_file(
    db: Database, tmp_path: Path
) -> None:
    """Found in the sandbox audit: ``generate: true`` wrote its files inside the transaction, so a load
    that failed later left new key files behind (the database rolled back) and overwrote the merchant's
    working apiclient_key.pem; and every load made yet another certificate (not idempotent)."""
    data: dict[str, Any] = {"merchants": [{"mchid": NEW_SP, "certificates": [{"generate": True}]}]}
    first = scenario.load_scenario(db, data, base_dir=tmp_path, data_dir=tmp_path)
    files = _key_files(tmp_path, NEW_SP)
    assert set(files) == {"apiclient_cert.pem", "apiclient_key.pem"}
    again = scenario.load_scenario(db, data, base_dir=tmp_path, data_dir=tmp_path)
    assert again["generated_keys"] == first["generated_keys"]  # the same pair, reported again
    assert _key_files(tmp_path, NEW_SP) == files
    with db.read() as conn:
        assert len(registry.list_certificates(conn, NEW_SP)) == 1

    other = "1888000002"
    failing: dict[str, Any] = {
        "merchants": [
            {"mchid": NEW_SP, "certificates": [{"generate": True}]},
            {"mchid": other, "certificates": [{"generate": True}]},
        ],
        # refused while loading, after the merchants (a user_id is at least 6 characters)
        "webizpay": {"employees": [{"sp_mchid": NEW_SP, "sub_mchid": "1888000101", "user_id": "u"}]},
    }
    with db.write() as conn:  # the merchant's only certificate is revoked: generate must make a new pair
        registry.revoke_certificate(conn, next(iter(first["generated_keys"][NEW_SP]))["serial_no"])
    with pytest.raises(scenario.ScenarioError, match=r"webizpay\.employees\[0\]\.user_id"):
        scenario.load_scenario(db, failing, base_dir=tmp_path, data_dir=tmp_path)
    assert _key_files(tmp_path, NEW_SP) == files  # untouched
    assert _key_files(tmp_path, other) == {}  # nothing written for the merchant that was not loaded
    assert other not in _merchant_ids(db)
    with db.read() as conn:
        assert len(registry.list_certificates(conn, NEW_SP)) == 1

    # without the bad section: a new pair for NEW_SP (its old one is revoked), written once committed
    del failing["webizpay"]
    report = scenario.load_scenario(db, failing, base_dir=tmp_path, data_dir=tmp_path)
    [made] = report["generated_keys"][NEW_SP]
    assert _key_files(tmp_path, NEW_SP) != files
    cert = k.load_certificate(Path(made["certificate"]).read_bytes())
    assert k.certificate_serial(cert) == made["serial_no"]
    key = k.load_private_key(Path(made["private_key"]))
    assert key.public_key().public_numbers() == k.certificate_public_key(cert).public_numbers()
    assert set(_key_files(tmp_path, other)) == {"apiclient_cert.pem", "apiclient_key.pem"}


def test_a_loaded_scenario_applies_to_the_very_next_request(http: TestClient, world: World) -> None:
    """Found in the sandbox audit: POST /sandbox/scenario left this process's cached fault rules (0.5 s)
    and platform keys (5 s) as they were, so a request right after the load ran without the scenario's
    fault and was signed with the merchant's old WeChat Pay key; rotate and the faults API apply at once."""
    client = ApiClient(http, world, SP_A)
    before = client.get("/v3/webizpay/avail-mch-ranges?sp_mchid=" + SP_A)  # reads the rules and the keys
    assert before.status_code == 200, before.text
    key = k.generate_private_key()
    key_id = "PUB_KEY_ID_0100000000000000000000000001"
    text = yaml.safe_dump(
        {
            "platform_keys": [
                {"kind": "public_key", "key_id": key_id, "private_key": k.private_key_pem(key), "mchid": SP_A}
            ],
            "faults": [{"kind": "SYSTEM_ERROR", "path": "/v3/webizpay/users/*", "count": 1}],
        }
    )
    assert http.post("/sandbox/scenario", content=text.encode(), headers=AUTH).status_code == 200
    signed = client.get("/v3/webizpay/avail-mch-ranges?sp_mchid=" + SP_A, check=False)
    assert signed.headers["Wechatpay-Serial"] == key_id  # the merchant's own key from now on
    faulted = client.get(
        f"/v3/webizpay/users/user_scn1/authorization-state?sp_mchid={SP_A}&sub_mchid=1", check=False
    )
    assert faulted.status_code == 500 and faulted.json()["code"] == "SYSTEM_ERROR"


@pytest.mark.parametrize(
    ("rule", "fragment"),
    [
        ({"kind": "SYSTEM_ERROR", "path": [1]}, "path must be a string"),  # was a 500
        ({"kind": "SYSTEM_ERROR", "operation": 5}, "operation must be a string"),
        ({"kind": "SYSTEM_ERROR", "count": 1.5}, "count must be"),  # was stored as is
        ({"kind": "SYSTEM_ERROR", "count": True}, "count must be"),  # was a count of 1
        ({"kind": "SYSTEM_ERROR", "count": "3x"}, "count must be"),
        ({"kind": "SYSTEM_ERROR", "probability": "x"}, "probability must be"),
        ({"kind": "LATENCY", "latency_ms": [5]}, "latency_ms must be"),
    ],
)
def test_a_bad_fault_rule_in_a_scenario_is_a_scenario_error(
    http: TestClient, rule: dict[str, Any], fragment: str
) -> None:
    """Found in the sandbox audit: the faults: section checked only some types, so `path: [1]` was a 500
    and `count: 1.5` or `count: true` were stored; it now runs the control API's own check."""
    text = yaml.safe_dump({"faults": [{"kind": "LATENCY", "latency_ms": 5}, rule]})
    resp = http.post("/sandbox/scenario", content=text.encode(), headers=AUTH)
    assert resp.status_code == 400 and resp.json()["code"] == "SCENARIO_ERROR", resp.text
    assert resp.json()["message"].startswith("faults[1]: ") and fragment in resp.json()["message"]
    assert http.get("/sandbox/faults", headers=AUTH).json()["data"] == []  # the good rule went too


def test_fault_rules_in_a_scenario_take_unquoted_numbers(http: TestClient) -> None:
    text = "faults:\n  - {kind: 500, mchid: 1230000001, count: 2}\n"
    assert http.post("/sandbox/scenario", content=text.encode(), headers=AUTH).status_code == 200
    [rule] = http.get("/sandbox/faults", headers=AUTH).json()["data"]
    assert (rule["kind"], rule["mchid"], rule["remaining"]) == ("SYSTEM_ERROR", "1230000001", 2)


def test_loading_fault_rules_again_changes_nothing(http: TestClient, world: World) -> None:
    """Found in the sandbox audit: each load added the file's rules again (two SYSTEM_ERRORs after two
    loads). A rule the file made before is given the file's count again; a twin entry of the file is a
    rule of its own; a rule of another shape, made through the control API, stays as it is."""
    rules = [
        {"kind": "SYSTEM_ERROR", "operation": "webizpay.*", "count": 1},
        {"kind": "SYSTEM_ERROR", "operation": "webizpay.*", "count": 1},  # a twin: two uses in all
        {"kind": "LATENCY", "latency_ms": 5},
    ]
    text = yaml.safe_dump({"faults": rules}).encode()
    assert http.post("/sandbox/scenario", content=text, headers=AUTH).status_code == 200
    own = {"kind": "SYSTEM_ERROR", "operation": "certificates.*", "count": 3}
    assert http.post("/sandbox/faults", json=own, headers=AUTH).status_code in (200, 201)
    first = http.get("/sandbox/faults", headers=AUTH).json()["data"]
    assert len(first) == 4

    resp = ApiClient(http, world, SP_A).get("/v3/webizpay/avail-mch-ranges?limit=10&offset=0")
    assert resp.status_code == 500  # one use of a twin taken

    assert http.post("/sandbox/scenario", content=text, headers=AUTH).status_code == 200
    again = http.get("/sandbox/faults", headers=AUTH).json()["data"]
    assert sorted(r["id"] for r in again) == sorted(r["id"] for r in first)  # no rule added
    assert sorted((r["kind"], r["operation"], r["remaining"]) for r in again) == [
        ("LATENCY", None, None),
        ("SYSTEM_ERROR", "certificates.*", 3),
        ("SYSTEM_ERROR", "webizpay.*", 1),
        ("SYSTEM_ERROR", "webizpay.*", 1),  # re-armed to the file's count
    ]


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (
            yaml.safe_dump(
                {"merchants": [{"mchid": "1888000002"}, {"mchid": "1888000003", "key_mode": "x"}]}
            ),
            "merchants[1].key_mode",
        ),
        (yaml.safe_dump({"faults": [{"kind": "LATENCY", "latency_ms": 5}, {"kind": "NOPE"}]}), "faults[1]"),
        (
            yaml.safe_dump({"merchants": [{"mchid": "1888000004", "certificates": [{}]}]}),
            "merchants[1888000004].certificates[0]",
        ),
        ("merchants: [", None),
        ("[1, 2]", None),
    ],
    ids=["validation", "faults", "certificate", "not-yaml", "not-a-mapping"],
)
def test_a_scenario_refusal_names_its_entry_in_detail(http: TestClient, text: str, field: str | None) -> None:
    """As the business API's detail names a field: the entry the message starts with, and the reason
    as the issue; a scenario no one entry of which is to blame has no detail."""
    resp = http.post("/sandbox/scenario", content=text.encode(), headers=AUTH)
    assert resp.status_code == 400 and resp.json()["code"] == "SCENARIO_ERROR", resp.text
    body = resp.json()
    if field is None:
        assert "detail" not in body, body
        return
    assert body["message"].startswith(field + ": ")
    assert body["detail"] == {"field": field, "location": "body", "issue": body["message"][len(field) + 2 :]}


def test_a_scenario_error_splits_its_entry_from_its_reason() -> None:
    located = scenario.ScenarioError("merchants[1900000001].certificates[0]: bad PEM: line 2: x")
    assert located.where == "merchants[1900000001].certificates[0]"
    assert located.reason == "bad PEM: line 2: x"
    for message in ("not valid YAML/JSON: x", "cannot read scenario /tmp/a: gone", "a scenario is a mapping"):
        assert scenario.ScenarioError(message).where is None
        assert scenario.ScenarioError(message).reason == message


def test_a_reload_changes_only_what_the_entry_names(db: Database, tmp_path: Path) -> None:
    """Reloading ``{mchid, key_mode}`` (the README's way to switch a merchant's mode) reset the role to
    service_provider and dropped the APIv3 key, the notify URL and the name: every callback of the
    merchant then failed to encrypt. Now the entry's named values change, the rest stays; a value named
    as null is cleared; a new merchant still gets the defaults."""
    full = {
        "mchid": NEW_SP,
        "name": "Platform",
        "role": "platform",
        "apiv3_key": "B" * 32,
        "notify_url": "https://platform.example/notify",
    }
    scenario.load_scenario(db, {"merchants": [full]}, base_dir=tmp_path, data_dir=tmp_path)
    partial = {"merchants": [{"mchid": NEW_SP, "key_mode": "migrating"}, {"mchid": "1888000999"}]}
    scenario.load_scenario(db, partial, base_dir=tmp_path, data_dir=tmp_path)
    with db.read() as conn:
        kept, fresh = registry.get_merchant(conn, NEW_SP), registry.get_merchant(conn, "1888000999")
    assert kept is not None and fresh is not None
    assert (kept.name, kept.role.value, kept.apiv3_key, kept.notify_url, kept.key_mode) == (
        "Platform",
        "platform",
        "B" * 32,
        "https://platform.example/notify",
        KeyMode.MIGRATING,
    )
    assert (fresh.role.value, fresh.apiv3_key, fresh.notify_url, fresh.key_mode) == (
        "service_provider",
        None,
        None,
        KeyMode.PUBLIC_KEY,
    )
    cleared = {"merchants": [{"mchid": NEW_SP, "notify_url": None, "role": "service_provider"}]}
    scenario.load_scenario(db, cleared, base_dir=tmp_path, data_dir=tmp_path)
    with db.read() as conn:
        after = registry.get_merchant(conn, NEW_SP)
    assert after is not None
    assert (after.notify_url, after.role.value, after.apiv3_key, after.key_mode) == (
        None,
        "service_provider",
        "B" * 32,
        KeyMode.MIGRATING,
    )


def test_a_nul_in_a_scenario_is_named_as_every_other_scenario_error(http: TestClient, tmp_path: Path) -> None:
    """It was named by a JSON pointer (``scenario/merchants/0/mchid must not contain NUL``), a third
    form next to ``merchants[0].mchid`` and the pydantic locations; and a file loaded by serve or the
    plugin (not through the control API) was not checked at all."""
    text = '{"merchants": [{"mchid": "1888000001", "name": "x"}], "faults": [{"kind": "LATENCY", "note": "a\\u0000"}]}'
    resp = http.post("/sandbox/scenario", content=text.encode(), headers=AUTH)
    assert resp.status_code == 400, resp.text
    assert resp.json() == {
        "code": "PARAM_ERROR",  # as a NUL anywhere in the control API's input
        "message": "faults[0].note: must not contain NUL characters",
        "detail": {"field": "faults[0].note", "location": "body", "issue": "contains NUL"},
    }
    assert "1888000001" not in {
        e["mchid"] for e in http.get("/sandbox/scenario", headers=AUTH).json()["merchants"]
    }
    path = tmp_path / "nul.json"
    path.write_text('{"webizpay": {"templates": [{"sp_mchid": "1", "card_template_id": "t\\u0000"}]}}')
    db = http.app.state.db  # type: ignore[attr-defined]
    with pytest.raises(scenario.ScenarioError) as err:
        scenario.load_scenario_file(db, path, data_dir=tmp_path)
    assert err.value.where == "webizpay.templates[0].card_template_id"


def test_a_recharge_preloads_bad_time_is_named_with_its_entry(http: TestClient) -> None:
    """It was ``recharge_employees: employees[0].create_time: …``: detail.field the section alone."""
    from support import SECOND_A

    for value, reason in (("yesterday", "expected RFC 3339"), (-1, "must be between 1970 and 9999")):
        data = {
            "recharge_employees": [
                {"sub_mchid": SECOND_A, "employees": ["oFine"]},
                {"sub_mchid": SECOND_A, "employees": ["oFine2", {"sp_openid": "oBad", "create_time": value}]},
            ]
        }
        resp = http.post("/sandbox/scenario", json=data, headers=AUTH)
        assert resp.status_code == 400, resp.text
        body = resp.json()
        assert body["detail"]["field"] == "recharge_employees[1].employees[1].create_time", body
        assert body["message"].startswith("recharge_employees[1].employees[1].create_time: "), body
        assert reason in body["message"], body


def test_a_scenario_without_merchants_does_not_report_merchants(http: TestClient) -> None:
    """As every section, ``merchants`` is reported when the file has it: a file of fault rules said
    ``merchants: 0`` (and ``scenario load`` printed it)."""
    resp = http.post("/sandbox/scenario", json={"faults": []}, headers=AUTH)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"loaded": True, "faults": 0}
    resp = http.post("/sandbox/scenario", json={"merchants": [], "faults": []}, headers=AUTH)
    assert resp.json() == {"loaded": True, "merchants": 0, "faults": 0}
