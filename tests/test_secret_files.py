"""Files that hold secrets are owner-only whatever the umask: the data directory wxpartner creates (0700),
connection.json (sandbox token, APIv3 key), the SQLite database with its -wal and -shm (every APIv3 key,
the platform private keys, the token) and the merchants' apiclient_key.pem (0600). The audit found
connection.json and the database 0644 under umask 022. `wxpartner serve` itself: tests/test_cli.py."""

from __future__ import annotations

import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from wxpartner.sandbox.bootstrap import bootstrap, connection_info
from wxpartner.store.db import Database, sqlite_url_for


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("loose_umask")
def test_bootstrap_makes_secrets_owner_only(tmp_path: Path) -> None:
    data_dir = tmp_path / "new" / "data"
    db = Database(sqlite_url_for(data_dir))
    try:
        token = bootstrap(db, data_dir)
        info = connection_info(db, data_dir, "http://127.0.0.1:1", token)
        with db.read():  # a connection is open: the -wal and -shm files exist
            database = data_dir / "wxpartner.sqlite3"
            secrets = {
                data_dir: 0o700,
                data_dir / "connection.json": 0o600,
                database: 0o600,
                database.with_name(database.name + "-wal"): 0o600,
                database.with_name(database.name + "-shm"): 0o600,
                Path(info["private_key_path"]): 0o600,
            }
            assert {p.name: _mode(p) for p in secrets} == {p.name: m for p, m in secrets.items()}
    finally:
        db.dispose()


@pytest.mark.usefixtures("loose_umask")
def test_existing_files_are_narrowed_and_an_existing_data_dir_is_left_alone(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    database = data_dir / "wxpartner.sqlite3"
    for path in (database, data_dir / "connection.json"):
        path.write_text("")
        path.chmod(0o644)
    db = Database(sqlite_url_for(data_dir))
    try:
        bootstrap(db, data_dir)  # the database of an older version, opened again
        connection_info(db, data_dir, "http://127.0.0.1:1", "t")
    finally:
        db.dispose()
    assert _mode(database) == 0o600 and _mode(data_dir / "connection.json") == 0o600
    assert _mode(data_dir) == 0o755  # the owner's choice for a directory it made


def test_a_key_pair_is_replaced_whole_when_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`keys --force` interrupted between its two files left the new key beside the old certificate, a
    pair no request could be signed with (session 17's list). Now both are renamed with SIGINT held back:
    the Ctrl-C lands after the second rename."""
    import signal

    from wxpartner.sandbox import material

    material.write_merchant_keys(material.new_merchant_keys("1888000001", tmp_path))
    new = material.new_merchant_keys("1888000001", tmp_path)
    real_replace = os.replace
    # Whichever thread takes the signal writes its number here (Python's C-level handler) before the
    # handler runs in the main thread. The test waited a fixed 0.05 s for that: on a loaded machine the
    # chosen thread ran only after both renames, the Ctrl-C came after them, and nothing was raised
    # inside the write (then the KeyboardInterrupt hit whatever ran next).
    taken, wakeup = socket.socketpair()
    wakeup.setblocking(False)
    taken.settimeout(60)  # a bound for a loaded machine, not a measurement

    def replace_then_interrupt(src: str, dst: Path) -> None:
        real_replace(src, dst)
        if Path(dst) == new.private_key_path:  # a real Ctrl-C, right after the key's rename
            os.kill(os.getpid(), signal.SIGINT)
            assert taken.recv(1) == bytes([signal.SIGINT])  # a thread has taken it

    monkeypatch.setattr(material.os, "replace", replace_then_interrupt)
    # Another thread is running, as in a full test session or a server: the kernel may hand the signal
    # to it (a signal mask on the writing thread alone held nothing then; one full run failed so).
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    # Python's own Ctrl-C handler, whatever this process inherited: a job a script starts with `&`
    # ignores SIGINT, and the write then held and raised again a signal that does nothing.
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    before = signal.set_wakeup_fd(wakeup.fileno())
    try:
        with pytest.raises(KeyboardInterrupt):
            material.write_merchant_keys(new)
    finally:
        signal.set_wakeup_fd(before)
        signal.signal(signal.SIGINT, inherited)
        taken.close()
        wakeup.close()
        stop.set()
        other.join()
    assert new.private_key_path.read_text() == new.private_key_pem
    assert new.certificate_path.read_text() == new.certificate_pem
    assert sorted(p.name for p in tmp_path.iterdir()) == ["apiclient_cert.pem", "apiclient_key.pem"]
    assert stat.S_IMODE(new.private_key_path.stat().st_mode) == 0o600
