"""Callbacks to https:// notify URLs whose certificate comes from a private authority (a company CA, a
self-signed development certificate): trusted with ``serve --notify-ca-file`` (settings.notify_ca_file)
or SSL_CERT_FILE / SSL_CERT_DIR, on top of the public roots, host names still checked. Real TLS on
loopback with authorities made here the way sandbox/tls.py makes them."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import itertools
import os
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import certifi
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.testclient import TestClient

from conftest import BACKENDS, SANDBOX_TOKEN
from live import free_port, start_live_server
from pg import PgServer, create_database, drop_database
from self_signed import self_signed
from support import SP_A, World
from test_callbacks import REVOKED, T0, Received, verified
from wxpartner.cli import main
from wxpartner.sandbox import tls
from wxpartner.server.app import WxPartnerApp, create_app
from wxpartner.server.callbacks import Deliverer, deliverer_for, notify_tls_context
from wxpartner.server.settings import Settings
from wxpartner.store import outbox, registry
from wxpartner.store.db import Database, sqlite_url_for

PEM = serialization.Encoding.PEM


@dataclass
class Authority:
    ca_path: Path  # what a receiver's operator would hand over: the PEM to trust
    chain_path: Path  # the receiver's certificate (for 127.0.0.1 and localhost), then the authority's
    key_path: Path


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    """A private authority and a receiver certificate it signs, trusted by nobody yet."""
    files = tls.ensure_tls(tmp_path / "private-ca", "127.0.0.1")
    return Authority(files.ca_path, files.certificate_path, files.key_path)


@pytest.fixture(autouse=True)
def no_ambient_trust(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine's SSL_CERT_FILE / SSL_CERT_DIR would add to what is trusted: each test sets its own."""
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)


@dataclass
class HttpsReceiver:
    url: str
    requests: list[Received] = field(default_factory=list)


@contextlib.contextmanager
def https_receiver(chain: Path, key: Path, host: str = "127.0.0.1") -> Iterator[HttpsReceiver]:
    """A merchant's callback endpoint serving HTTPS on loopback with the given certificate; answers 200."""
    served = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    served.load_cert_chain(chain, key)
    with _receiver(host, served) as rec:
        yield rec


@contextlib.contextmanager
def plain_receiver() -> Iterator[HttpsReceiver]:
    """A merchant's callback endpoint serving plain HTTP on loopback; answers 200."""
    with _receiver("127.0.0.1", None) as rec:
        yield rec


@contextlib.contextmanager
def _receiver(host: str, tls: ssl.SSLContext | None) -> Iterator[HttpsReceiver]:
    rec = HttpsReceiver("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            rec.requests.append(Received(self.path, dict(self.headers.items()), body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if tls is not None:
        # A refused handshake fails in accept() (an OSError, which serve_forever shrugs off).
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    scheme = "http" if tls is None else "https"
    rec.url = f"{scheme}://{host}:{server.server_address[1]}/wxpay/notify"
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()


def _enqueue(app: WxPartnerApp, url: str, now: float = T0) -> str:
    with app.state.db.write() as conn:
        registry.set_notify_url(conn, SP_A, url)
        return outbox.enqueue(
            conn, mchid=SP_A, event_type="WEBIZPAY.REVOKED", summary="s", resource=REVOKED, now=now
        )


def _attempts(app: WxPartnerApp, nid: str) -> list[dict[str, Any]]:
    with app.state.db.read() as conn:
        view = outbox.get_notification(conn, nid)
    assert view is not None
    attempts: list[dict[str, Any]] = view["attempts"]
    return attempts


def test_a_receiver_behind_a_private_authority_is_refused_then_trusted_with_notify_ca_file(
    settings: Settings, app: WxPartnerApp, authority: Authority, world: World
) -> None:
    """The sender trusted certifi's roots only: a receiver behind a company authority never got a
    callback. Without the option it is still refused, and the attempt says why and what to do."""
    with https_receiver(authority.chain_path, authority.key_path) as rec:
        nid = _enqueue(app, rec.url)
        [refused] = Deliverer(app.state.db, app.state.keyring).run_pass()
        assert (refused.ok, refused.status, refused.state) == (False, None, "pending")
        [attempt] = _attempts(app, nid)
        assert attempt["status"] is None and not attempt["ok"]
        assert "CERTIFICATE_VERIFY_FAILED" in attempt["error"], attempt
        assert "--notify-ca-file" in attempt["error"], attempt  # what to do about it
        assert rec.requests == []

        trusting = create_app(dataclasses.replace(settings, notify_ca_file=str(authority.ca_path)))
        try:
            with TestClient(trusting) as control:
                control.headers["Authorization"] = f"Bearer {SANDBOX_TOKEN}"
                assert control.post("/sandbox/clock", json={"advance": 15}).status_code == 200  # the retry
                sent = control.post("/sandbox/callbacks/deliver").json()["attempts"]
        finally:
            trusting.state.db.dispose()
        assert [(a["id"], a["status"], a["state"]) for a in sent] == [(nid, 200, "delivered")]
        [req] = rec.requests
        body, _plain = verified(req, world)
        assert body["id"] == nid


def test_the_notify_ca_file_is_read_at_start_up(
    settings: Settings, app: WxPartnerApp, authority: Authority, tmp_path: Path
) -> None:
    """Read when the app starts (each worker), not at the first https:// callback: a file moved or
    rewritten later (a certificate rotation, a cleaned temp dir) failed every delivery pass."""
    ca_copy = tmp_path / "company-ca.pem"
    ca_copy.write_bytes(authority.ca_path.read_bytes())
    trusting = create_app(dataclasses.replace(settings, notify_ca_file=str(ca_copy)))
    try:
        ca_copy.unlink()
        with https_receiver(authority.chain_path, authority.key_path) as rec:
            _enqueue(app, rec.url)
            [sent] = deliverer_for(trusting.state).deliver_now()
        assert (sent.ok, sent.status) == (True, 200), sent
    finally:
        trusting.state.db.dispose()


def test_host_names_are_still_checked_against_a_trusted_authority(
    app: WxPartnerApp, authority: Authority, tmp_path: Path
) -> None:
    """Trusting an authority is not trusting whatever it signed for any host: a certificate for
    another name is refused."""
    pair = tls._load_pair(authority.ca_path, authority.ca_path.parent / "ca-key.pem")
    assert pair is not None
    cert, key = tls._new_server_certificate(pair, ["receiver.example.test"], dt.datetime.now(dt.UTC))
    chain, key_path = tmp_path / "other.pem", tmp_path / "other-key.pem"
    chain.write_bytes(cert.public_bytes(PEM) + pair[0].public_bytes(PEM))
    key_path.write_text(tls._key_pem(key))
    with https_receiver(chain, key_path) as rec:
        nid = _enqueue(app, rec.url)
        [refused] = Deliverer(app.state.db, app.state.keyring, ca_file=str(authority.ca_path)).run_pass()
    assert not refused.ok and rec.requests == []
    [attempt] = _attempts(app, nid)
    assert "certificate is not valid for '127.0.0.1'" in attempt["error"], attempt


def test_a_receiver_named_by_host_name_is_checked_against_that_name(
    app: WxPartnerApp, authority: Authority, tmp_path: Path
) -> None:
    """The deliverer looks the host name up itself and connects to the address (callback_network.py);
    the handshake still names and checks the URL's host: a certificate for localhost alone is
    accepted at https://localhost, and one for another name is refused naming localhost."""
    pair = tls._load_pair(authority.ca_path, authority.ca_path.parent / "ca-key.pem")
    assert pair is not None
    for name, ok in (("localhost", True), ("receiver.example.test", False)):
        cert, key = tls._new_server_certificate(pair, [name], dt.datetime.now(dt.UTC))
        chain, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}-key.pem"
        chain.write_bytes(cert.public_bytes(PEM) + pair[0].public_bytes(PEM))
        key_path.write_text(tls._key_pem(key))
        with https_receiver(chain, key_path, host="localhost") as rec:
            nid = _enqueue(app, rec.url)
            [sent] = Deliverer(app.state.db, app.state.keyring, ca_file=str(authority.ca_path)).run_pass()
        assert sent.ok is ok and len(rec.requests) == int(ok), sent
        if not ok:
            [attempt] = _attempts(app, nid)
            assert "certificate is not valid for 'localhost'" in attempt["error"], attempt


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A development certificate as people make them for one receiver: self-signed, no authority."""
    return self_signed(tmp_path, stem="dev")


def test_a_self_signed_receiver_certificate_named_by_notify_ca_file_is_trusted(
    app: WxPartnerApp, tmp_path: Path
) -> None:
    cert, key = _self_signed(tmp_path)
    with https_receiver(cert, key) as rec:
        _enqueue(app, rec.url)
        [sent] = Deliverer(app.state.db, app.state.keyring, ca_file=str(cert)).run_pass()
    assert (sent.ok, sent.status, sent.state) == (True, 200, "delivered")
    assert len(rec.requests) == 1


def _public_roots() -> int:
    return int(ssl.create_default_context(cafile=certifi.where()).cert_store_stats()["x509_ca"])


def test_ssl_cert_file_and_dir_add_to_the_public_roots(
    app: WxPartnerApp, authority: Authority, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The standard variables are honoured, added to certifi's roots (httpx and OpenSSL would use them
    instead: a serve started where SSL_CERT_FILE names the sandbox's own authority, as the README has
    clients do, would have refused every public receiver)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(authority.ca_path))
    assert notify_tls_context().cert_store_stats()["x509_ca"] == _public_roots() + 1
    with https_receiver(authority.chain_path, authority.key_path) as rec:
        _enqueue(app, rec.url)
        [sent] = Deliverer(app.state.db, app.state.keyring).run_pass()
        assert sent.ok, sent
        if shutil.which("openssl") is None:
            pytest.skip("no openssl command to name a hashed certificate directory")
        monkeypatch.delenv("SSL_CERT_FILE")
        hashed = tmp_path / "certs"
        hashed.mkdir()
        subject_hash = subprocess.run(
            ["openssl", "x509", "-hash", "-noout", "-in", str(authority.ca_path)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        shutil.copy(authority.ca_path, hashed / f"{subject_hash}.0")
        monkeypatch.setenv("SSL_CERT_DIR", f"{tmp_path / 'missing'}{os.pathsep}{hashed}")
        _enqueue(app, rec.url)
        [sent] = Deliverer(app.state.db, app.state.keyring).run_pass()
        assert sent.ok, sent
    assert len(rec.requests) == 2


def test_an_unusable_ssl_cert_file_is_skipped_with_a_warning(
    authority: Authority, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Set for every program (the README's export may name a file ``serve --tls`` has not made yet), it
    does not stop anything: it is said, and the other roots stay."""
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "not-made-yet.pem"))
    with caplog.at_level("WARNING", logger="wxpartner.callbacks"):
        ctx = notify_tls_context(str(authority.ca_path))
    assert ctx.cert_store_stats()["x509_ca"] == _public_roots() + 1
    assert "SSL_CERT_FILE=" in caplog.text and "not-made-yet.pem" in caplog.text


@pytest.fixture
def bad_ca_files(tmp_path: Path) -> dict[str, Path]:
    key_only = tmp_path / "key.pem"
    key_only.write_text(tls._key_pem(ec.generate_private_key(ec.SECP256R1())))
    return {"missing": tmp_path / "missing.pem", "key only": key_only, "directory": tmp_path}


@pytest.mark.parametrize(
    ("kind", "fragment"),
    [
        ("missing", "No such file or directory"),
        ("key only", "no PEM certificate in it"),
        ("directory", "is a directory"),
    ],
)
def test_a_notify_ca_file_it_cannot_use_stops_the_start_in_one_line(
    settings: Settings, bad_ca_files: dict[str, Path], tmp_path: Path, kind: str, fragment: str
) -> None:
    """Not at the first https:// callback, hours later: the app (each worker) and serve refuse it."""
    path = str(bad_ca_files[kind])
    with pytest.raises(ValueError, match=r"settings\.notify_ca_file") as refused:
        create_app(dataclasses.replace(settings, notify_ca_file=path))
    assert "\n" not in str(refused.value) and fragment.lower() in str(refused.value).lower()
    args = [
        "serve",
        "--data-dir",
        str(tmp_path / "data"),
        "--port",
        str(free_port()),
        "--notify-ca-file",
        path,
    ]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert "--notify-ca-file" in result.output and fragment.lower() in result.output.lower()
    assert "Traceback" not in result.output and "is serving" not in result.output
    assert not (tmp_path / "data").exists()  # refused before anything was written


_pg_names = itertools.count()


@pytest.mark.slow
@pytest.mark.parametrize("kind", BACKENDS)
def test_worker_processes_trust_the_notify_ca_file(
    kind: str, tmp_path: Path, world: World, pg_server: PgServer | None, authority: Authority
) -> None:
    """``serve --workers 2 --notify-ca-file``: the setting reaches the workers (WXPARTNER_SETTINGS), whose
    background delivery sends to the private-authority receiver."""
    url = name = ""
    if kind == "postgres":
        if pg_server is None:
            pytest.skip("PostgreSQL is not installed here")
        name = f"wx_cbtls{os.getpid()}_{next(_pg_names)}"
        url = create_database(pg_server, name)
    server = start_live_server(
        tmp_path / "live",
        world,
        workers=2,
        database_url=url,
        extra_args=["--notify-ca-file", str(authority.ca_path)],
    )
    db = Database(url or sqlite_url_for(server.data_dir.resolve()), pool_size=2)
    try:
        with https_receiver(authority.chain_path, authority.key_path) as rec:
            with server.control() as control:
                resp = control.put(f"/sandbox/merchants/{SP_A}/notify-url", json={"notify_url": rec.url})
                assert resp.status_code == 200
            with db.write() as conn:
                nid = outbox.enqueue(
                    conn, mchid=SP_A, event_type="WEBIZPAY.REVOKED", summary="", resource={}, now=time.time()
                )
            deadline = time.monotonic() + 30
            view: dict[str, Any] = {}
            with server.control() as control:
                while view.get("state") != "delivered" and time.monotonic() < deadline:
                    time.sleep(0.05)
                    view = control.get(f"/sandbox/callbacks/{nid}").json()
            assert view["state"] == "delivered" and view["attempts"][0]["status"] == 200, view
            assert len(rec.requests) == 1
            verified(rec.requests[0], world)
    finally:
        db.dispose()
        server.stop()
        if name and pg_server is not None:
            drop_database(pg_server, name)
