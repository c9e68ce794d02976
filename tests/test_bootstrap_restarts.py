"""Starting again on one data dir: `<data-dir>/platform` holds the public halves of the keys the database
uses, the same files start after start (a client that loaded them goes on verifying), and no more. It
used to keep every file it ever wrote: retired keys, and two files per start on a database the data dir
outlived (the SQLite file removed to start over, a fresh `--database-url`), each start a new pair."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from conftest import BACKENDS
from live import Served
from pg import PgServer, create_database, drop_database
from wxpartner.cli import main
from wxpartner.protocol import keys as k
from wxpartner.protocol.messages import response_message
from wxpartner.protocol.signing import verify
from wxpartner.sandbox.bootstrap import bootstrap, connection_info
from wxpartner.sandbox.material import make_platform_certificate
from wxpartner.store import registry
from wxpartner.store.db import Database

_names = itertools.count()


@pytest.fixture(params=BACKENDS)
def fresh_database(
    request: pytest.FixtureRequest, tmp_path: Path, pg_server: PgServer | None
) -> Iterator[Callable[[], Database]]:
    """Empty databases of one backend, as many as asked for (each a database the data dir outlives)."""
    if request.param == "postgres" and pg_server is None:
        pytest.skip("PostgreSQL is not installed here; .ci/run installs it")
    made: list[tuple[Database, str | None]] = []

    def new() -> Database:
        n = next(_names)
        if request.param == "sqlite":
            db, name = Database(f"sqlite:///{tmp_path / f'db{n}.sqlite3'}"), None
        else:
            assert pg_server is not None
            name = f"wx_restart_{os.getpid()}_{n}"
            db = Database(create_database(pg_server, name))
        made.append((db, name))
        return db

    yield new
    for db, name in made:
        db.dispose()
        if name is not None and pg_server is not None:
            drop_database(pg_server, name)


def _files(data_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (data_dir / "platform").iterdir()}


def _in_use(db: Database) -> set[str]:
    with db.read() as conn:
        rows = registry.list_platform_keys(conn)
    return {
        f"{r.key_id}.pem" if r.kind == "public_key" else f"wechatpay_{r.key_id}.pem"
        for r in rows
        if not r.retired
    }


def test_platform_files_are_the_keys_in_use_start_after_start(
    fresh_database: Callable[[], Database], tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    db = fresh_database()
    bootstrap(db, data_dir)
    loaded = _files(data_dir)
    assert set(loaded) == _in_use(db) and len(loaded) == 2
    for _ in range(3):  # restarts on the same database reuse its keys: the same files, byte for byte
        bootstrap(db, data_dir)
        assert _files(data_dir) == loaded
        assert _in_use(db) == set(loaded)

    # a file a person keeps here (README's scenario example puts its PEMs in platform/) is not ours
    theirs = {
        "wechatpay_cert.pem": loaded[next(n for n in loaded if n.startswith("wechatpay_"))],
        "PUB_KEY_ID_0114232134912410000000000000.pem": b"-----BEGIN PRIVATE KEY-----\nMII...\n",
    }
    for name, data in theirs.items():
        (data_dir / "platform" / name).write_bytes(data)

    # a rotation that retired the first certificate: the next start drops its file, keeps the new one
    old = next(n for n in loaded if n.startswith("wechatpay_"))
    new = make_platform_certificate()
    with db.write() as conn:
        registry.add_platform_key(conn, new)
        assert registry.retire_platform_key(conn, old.removeprefix("wechatpay_").removesuffix(".pem"))
    bootstrap(db, data_dir)
    after = _files(data_dir)
    assert set(after) == (set(loaded) - {old}) | {f"wechatpay_{new.key_id}.pem"} | set(theirs)

    # the data dir outlives its database: the new database's keys replace the old files (they piled up,
    # two a start), and each start on it keeps them
    for _ in range(2):
        other = fresh_database()
        bootstrap(other, data_dir)
        info = connection_info(other, data_dir, "http://127.0.0.1:1", "token")
        assert set(_files(data_dir)) == _in_use(other) | set(theirs)
        assert Path(info["wechatpay_public_key_path"]).is_file()
        assert Path(info["platform_certificate_path"]).is_file()
        assert not (set(_files(data_dir)) - set(theirs)) & set(after)
    assert _files(data_dir).items() >= theirs.items()  # left as they were


@pytest.mark.slow
def test_a_key_loaded_before_a_restart_verifies_after_it(tmp_path: Path) -> None:
    """Real `serve` restarts on one data dir: the WeChat Pay public key a client loaded from
    platform/ before verifies answers after two restarts, and platform/ still holds just the two files."""
    data_dir = tmp_path / "data"
    first = Served(data_dir)
    first.stop()
    public = k.load_public_key(Path(first.info["wechatpay_public_key_path"]).read_bytes())
    before = _files(data_dir)
    assert len(before) == 2
    for _ in range(2):
        server = Served(data_dir)
        try:
            info = server.info
            assert info["wechatpay_public_key_id"] == first.info["wechatpay_public_key_id"]
            args = [
                "sign",
                "--url",
                "/v3/certificates",
                "--mchid",
                info["mchid"],
                "--serial",
                info["serial_no"],
            ]
            args += ["--key", info["private_key_path"], "--json"]
            signed = CliRunner().invoke(main, args, catch_exceptions=False)
            headers = {
                "Authorization": json.loads(signed.output)["authorization"],
                "Accept": "application/json",
            }
            resp = httpx.get(server.url + "/v3/certificates", headers=headers)
            assert resp.status_code == 404, resp.text  # public-key mode: a signed refusal
            message = response_message(
                resp.headers["Wechatpay-Timestamp"], resp.headers["Wechatpay-Nonce"], resp.content
            )
            assert verify(public, message, resp.headers["Wechatpay-Signature"])
        finally:
            server.stop()
        assert _files(data_dir) == before
