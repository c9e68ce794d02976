"""The wxpartner server a test session runs (``wxpartner.testing``'s fixtures hand it out): in-process
through Starlette's TestClient, on a loopback port on request, with the control helpers a test
uses (reset, scenarios, the clock, faults, notify URLs, callbacks, key rotation)."""

from __future__ import annotations

import socket
import threading
import time
import urllib.parse
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from starlette.testclient import TestClient

    from .client import AsyncClient, Client
    from .server.app import WxPartnerApp
    from .store.db import Database


class _Answer(Protocol):
    """An answer of the control client: httpx's or httpx2's Response."""

    @property
    def status_code(self) -> int: ...
    @property
    def text(self) -> str: ...
    def json(self) -> Any: ...


IN_PROCESS_URL = "http://testserver"
TOKEN = "wxpartner-pytest-token"


class WxPartnerServer:
    """One wxpartner server for a test session. Control helpers call the sandbox control API."""

    def __init__(self, data_dir: Path, *, database_url: str = "", scenario: Path | None = None) -> None:
        from .server.settings import Settings
        from .store.db import Database

        self.data_dir = data_dir
        self.settings = Settings(
            data_dir=str(data_dir), database_url=database_url, sandbox_token=TOKEN, deliver_callbacks=False
        )
        self.db: Database = Database(self.settings.resolved_database_url())
        self._http: TestClient | None = None
        try:
            self._start(data_dir, scenario)
        except BaseException:  # what was opened so far: the database's files and connections, the lifespan
            if self._http is not None:
                self._http.__exit__(None, None, None)
            if hasattr(self, "control"):
                self.control.close()
            self.db.dispose()
            raise

    def _start(self, data_dir: Path, scenario: Path | None) -> None:
        from .sandbox.bootstrap import bootstrap, connection_info
        from .server.app import create_app

        self.scenario = scenario
        self._baseline = self._business_sections(scenario)
        if scenario is not None and self._baseline:
            # Merchants and platform keys first, then the demo merchant, then the business sections:
            # these may refer to the demo merchant (bootstrap alone would load them before it exists).
            from .sandbox.scenario import load_scenario, parse_text

            self.db.migrate()
            base = {k: v for k, v in parse_text(scenario.read_text()).items() if k not in self._baseline}
            load_scenario(self.db, base, base_dir=scenario.parent, data_dir=data_dir)
            bootstrap(self.db, data_dir, token=TOKEN, demo=True)
        else:
            bootstrap(self.db, data_dir, token=TOKEN, demo=True, scenario=scenario)
        self.info: dict[str, Any] = connection_info(self.db, data_dir, IN_PROCESS_URL, TOKEN)
        if not self.info["serial_no"]:
            from .sandbox.scenario import ScenarioError

            raise ScenarioError(
                f"the demo merchant {self.info['mchid']} has no usable API certificate: the "
                "wxpartner_scenario revokes every certificate it has; leave one unrevoked, or declare "
                "your own merchants"
            )
        self.app: WxPartnerApp = create_app(self.settings, self.db)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Starlette's notice about its httpx-based TestClient
            from starlette.testclient import TestClient
        http = TestClient(self.app, base_url=IN_PROCESS_URL)
        http.__enter__()  # runs the app's lifespan (key ring, background tasks)
        self._http = http
        self.control = TestClient(
            self.app, base_url=IN_PROCESS_URL, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        self.url = IN_PROCESS_URL
        self.live_url: str | None = None
        self._uvicorn: Any = None
        self._thread: threading.Thread | None = None
        if self._baseline:
            self._load_baseline()
        with self.db.read() as conn:  # what reset() puts back: a test's receiver goes with the test
            self._notify_urls = _notify_urls(conn)

    @property
    def http(self) -> TestClient:
        """The in-process HTTP client (no port) that ``client()`` uses: pass it as ``http_client=``.
        Starlette's TestClient: an httpx client, or an httpx2 one once httpx2 is installed."""
        assert self._http is not None
        return self._http

    @property
    def mchid(self) -> str:
        """The demo service provider (public-key mode) the clients act as."""
        return str(self.info["mchid"])

    # -- clients ------------------------------------------------------------------------------------
    def client(self, *, live: bool = False, **overrides: Any) -> Client:
        """A sync client for the demo service provider (``merchant="channel"``: the demo channel
        merchant; ``overrides`` are ``from_connection_info``'s): in-process, or over the loopback port
        (``live``)."""
        from .client import Client

        if live:
            return Client.from_connection_info(self.live_info, **overrides)
        overrides.setdefault("http_client", self.http)
        return Client.from_connection_info(self.info, **overrides)

    def async_client(self, *, live: bool = False, **overrides: Any) -> AsyncClient:
        import httpx

        from .client import AsyncClient

        if live:
            return AsyncClient.from_connection_info(self.live_info, **overrides)
        overrides.setdefault("transport", httpx.ASGITransport(app=self.app))
        return AsyncClient.from_connection_info(self.info, **overrides)

    # -- sandbox control ------------------------------------------------------------------------------
    def _ok(self, resp: _Answer) -> Any:
        if resp.status_code >= 400:
            raise AssertionError(f"sandbox control API refused: {resp.status_code} {resp.text}")
        return resp.json()

    def reset(self) -> None:
        """Delete every family's business data (callback notifications included), fault rules, the
        request journal, the applyment auto policy and the clock offset, and put every merchant's
        notify URL back as the session began (merchants and keys stay), then load the ini scenario's
        business sections again."""
        from .domain.clock import ClockState
        from .sandbox import scenario
        from .store import registry, sandbox

        try:  # fault rules and the journal (the ops feature); direct, as the HTTP round trip costs ~10 ms
            from .server.faults import injector
            from .server.journal import writer
            from .store import ops_repo
        except ImportError:
            has_ops = False
        else:
            has_ops = True
            writer(self.app.state).flush()  # this process's buffered rows, so none lands after the clear
        try:  # a sandbox setting kept by /sandbox/reset, like fault rules: a test's must not reach the next
            from .store.apply4subject_repo import Apply4SubjectRepo
        except ImportError:
            policy_repo = None
        else:
            policy_repo = Apply4SubjectRepo
        with self.db.write() as conn:  # one transaction (its statements compiled once: LeanStatement)
            scenario.reset_in(conn, None)
            sandbox.write_clock(conn, ClockState())
            for mchid, url in _notify_urls(conn).items():
                if url != self._notify_urls.get(mchid):
                    registry.set_notify_url(conn, mchid, self._notify_urls.get(mchid))
            if has_ops:
                ops_repo.clear_faults(conn)
                ops_repo.clear_journal(conn)
            if policy_repo is not None:
                policy_repo(conn).set_policy(None)
        if self.db.replay_window is not None:
            self.db.replay_window.forget(None)
        if has_ops:
            injector(self.app.state).invalidate()
        if self._baseline:  # the ini scenario's business data (employees, cards, faults...) again
            self._load_baseline()

    @staticmethod
    def _business_sections(path: Path | None) -> dict[str, Any]:
        """The scenario's per-family sections: a reset deletes business data, and every test should
        start from what the ini scenario declares. Merchants and keys survive a reset anyway (and
        re-loading ``generate: true`` certificates would mint new keys)."""
        if path is None:
            return {}
        from .sandbox import scenario

        data = scenario.parse_text(path.read_text())
        return {k: v for k, v in data.items() if k not in ("version", "merchants", "platform_keys")}

    def _load_baseline(self) -> None:
        from .sandbox import scenario

        assert self.scenario is not None
        scenario.load_scenario(
            self.db,
            {"merchants": [], **self._baseline},
            base_dir=self.scenario.parent,
            data_dir=self.data_dir,
        )
        if "faults" in self._baseline:
            from .server.faults import injector

            injector(self.app.state).invalidate()

    def load_scenario(self, data: dict[str, Any] | str | Path) -> Any:
        """A scenario as a dict, YAML/JSON text, or a file path. A file's PEM paths are relative to the
        file's directory, as with the ini option and ``serve --scenario`` (a dict or text goes through
        the control API, which reads files inside the server's data dir only)."""
        import json

        if isinstance(data, Path):
            return self._load_file(data)
        text = json.dumps(data) if isinstance(data, dict) else data
        return self._ok(self.control.post("/sandbox/scenario", content=text.encode()))

    def _load_file(self, path: Path) -> Any:
        from .sandbox.scenario import ScenarioError, load_scenario_file
        from .server.control import scenario_loaded

        try:
            report = load_scenario_file(self.db, path, data_dir=self.data_dir)
        except ScenarioError as exc:
            raise AssertionError(f"scenario {path} refused: {exc}") from None
        scenario_loaded(self.app.state)
        return {"loaded": True, **report}

    def set_notify_url(self, url: str | None, mchid: str | None = None) -> None:
        """Where the server sends ``mchid``'s callbacks (the demo service provider by default): your
        receiver's URL, on a port it listens on. Until the next reset, which puts back the URL the
        session began with (none, unless the ini scenario set one)."""
        mchid = self.mchid if mchid is None else mchid  # "" is refused by the control API, not widened
        self._ok(self.control.put(f"/sandbox/merchants/{mchid}/notify-url", json={"notify_url": url}))

    def deliver_callbacks(self) -> list[dict[str, Any]]:
        """Send every callback notification that is due now (after a clock move: the events it
        caused, such as a card's expiry, too), and return once your receiver has answered them (the
        plugin's server sends none by itself): the attempts made, each with the
        notification's ``id``, ``event_type``, ``status`` (your answer's HTTP status), ``ok``,
        ``error``..."""
        self._settle()
        return list(self._ok(self.control.post("/sandbox/callbacks/deliver"))["attempts"])

    def _settle(self) -> None:
        """What business time owes, made now as a read of the card would make it (a card past its end
        expires and queues its callback); the server's background sweep does it only every 2 s."""
        from .server.app import SETTLE_HOOKS

        while sum([settle(self.app.state) for settle in SETTLE_HOOKS]):
            pass  # each hook makes one batch (200 cards): again until nothing is owed

    def advance_clock(self, seconds: float) -> Any:
        """Move business time (card expiry, applyment progress); wire timestamps stay real. On return,
        what the move owes has happened: a card past its end is DISABLED, its callback queued."""
        moved = self._ok(self.control.post("/sandbox/clock", json={"advance": seconds}))
        self._settle()
        return moved

    def set_clock(self, when: float | str, *, freeze: bool = False) -> Any:
        """Set business time (a timestamp or RFC 3339), frozen or running; settled as advance_clock."""
        moved = self._ok(self.control.post("/sandbox/clock", json={"set": when, "freeze": freeze}))
        self._settle()
        return moved

    def inject_fault(self, kind: str, **rule: Any) -> Any:
        """A fault rule (``SYSTEM_ERROR``, ``FREQUENCY_LIMITED``, ``DROP_CONNECTION``, ``LATENCY``,
        ``BAD_SIGNATURE``, ``SIGNATURE_PROBE``...), e.g. ``inject_fault("SYSTEM_ERROR", count=1)``."""
        return self._ok(self.control.post("/sandbox/faults", json={"kind": kind, **rule}))

    def rotate_platform_key(
        self, kind: str = "certificate", retire: str | None = None, *, mchid: str | None = None
    ) -> str:
        """A new platform certificate or WeChat Pay public key (``mchid``: that merchant's own public
        key), retiring ``retire``; returns its id. ``info`` (and ``live_info``) then name the keys in
        force, so ``client()`` made afterwards verifies with them; a client made before keeps the keys
        it was given, as after a real rotation (and goes on verifying while they are in force: a
        public-key client is answered with the key it names until ``retire_platform_key``). ``info``
        kept the keys of the session's start: after a public-key rotation every new client failed
        with ``unknown_serial``."""
        body: dict[str, Any] = {"kind": kind}
        if retire:
            body["retire"] = retire
        if mchid is not None:
            body["mchid"] = mchid
        key_id = str(self._ok(self.control.post("/sandbox/platform-keys/rotate", json=body))["key_id"])
        self._refresh_info()
        return key_id

    def set_key_mode(self, key_mode: str, mchid: str | None = None) -> str:
        """Switch a merchant's key mode (default: the demo service provider), as a migration's steps
        do: ``certificate`` -> ``migrating`` -> ``public_key``; returns the mode it had. ``info`` then
        names the WeChat Pay keys of the new mode, so ``client()`` made afterwards verifies with them."""
        who = mchid or self.mchid
        answer = self._ok(self.control.put(f"/sandbox/merchants/{who}/key-mode", json={"key_mode": key_mode}))
        self._refresh_info()
        return str(answer["previous"])

    def retire_platform_key(self, key_id: str) -> None:
        """Retire a platform key (the end of a rotation's overlap): it no longer signs answers or
        callbacks, is no longer listed by ``/v3/certificates``, and ``info`` stops naming it."""
        self._ok(self.control.post(f"/sandbox/platform-keys/{urllib.parse.quote(key_id, safe='')}/retire"))
        self._refresh_info()

    def _refresh_info(self) -> None:
        """connection.json, the ``platform/`` PEM files and ``info`` again, naming the keys in force."""
        from .sandbox.bootstrap import connection_info, ensure_platform_keys

        ensure_platform_keys(self.db, self.data_dir)
        self.info = connection_info(self.db, self.data_dir, IN_PROCESS_URL, TOKEN)

    # -- loopback ---------------------------------------------------------------------------------------
    @property
    def live_info(self) -> dict[str, Any]:
        """``info`` with the loopback port's URLs (``base_url``, ``sandbox_api``, ``dashboard``): the
        settings your own code needs to reach this server over HTTP, as ``connection.json`` gives them
        for ``wxpartner serve`` (``Client.from_connection_info(server.live_info)``; json.dump it for an
        app that reads the file). ``info`` names the in-process URL, which no socket reaches."""
        url = self.serve()
        return {
            **self.info,
            "base_url": url,
            "sandbox_api": f"{url}/sandbox",
            "dashboard": f"{url}/dashboard",
        }

    def serve(self) -> str:
        """Also listen on a loopback port (same app, same database); returns the base URL."""
        if self.live_url is not None:
            return self.live_url
        import uvicorn

        from .server.http_protocol import BoundedHttpToolsProtocol

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(  # the HTTP layer of `wxpartner serve`: its bounds, its header names
            self.app,
            http=BoundedHttpToolsProtocol,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._uvicorn = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._uvicorn.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._uvicorn.started:
            if time.monotonic() > deadline:
                raise RuntimeError("wxpartner loopback server did not start")
            time.sleep(0.01)
        self.live_url = f"http://127.0.0.1:{port}"
        return self.live_url

    def stop_serving(self) -> None:
        if self._uvicorn is not None and self._thread is not None:
            self._uvicorn.should_exit = True
            self._thread.join(10)
        self._uvicorn = self._thread = None
        self.live_url = None

    def close(self) -> None:
        self.stop_serving()
        self.http.__exit__(None, None, None)
        self.control.close()
        self.db.dispose()


def _notify_urls(conn: Any) -> dict[str, str | None]:
    from .store.registry import notify_urls

    return notify_urls(conn)
