"""Server settings, passed to worker processes through one environment variable."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

ENV_VAR = "WXPARTNER_SETTINGS"


@dataclass
class Settings:
    data_dir: str = ".wxpartner"
    database_url: str = ""  # empty: SQLite file inside data_dir
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    # ± seconds a request timestamp may differ from real time.
    time_window: int = 300
    # Sandbox mode explains SIGN_ERRORs (sign_information with the expected message).
    explain: bool = True
    sandbox_token: str = ""
    public_base_url: str = ""  # for links handed out (authorization/payment pages); default http://host:port
    tls: bool = False  # served over HTTPS (serve --tls): the default base URL is https://host:port
    max_body_bytes: int = 1 << 20
    # Bodies outside /v3 (server/limits.py): the control API with its token (a scenario upload is the
    # largest; `wxpartner scenario load --batch` splits bigger files), everything else (the dashboard's
    # and the simulated pages' forms, a /sandbox request without the token).
    max_control_body_bytes: int = 16 << 20
    max_form_body_bytes: int = 64 << 10
    # Header fields of one /v3 request: how many, and bytes of names + values in all (server/limits.py).
    max_header_count: int = 100
    max_header_bytes: int = 32 << 10
    # Rate limits can be switched off for load tests.
    rate_limits: bool = True
    # Where the APIv3 pipeline runs: on the event loop (one request at a time per worker, no thread hop,
    # no GIL convoy around SQLite's single writer) or in worker threads (overlap database round trips).
    # None: on the loop for SQLite, in threads for PostgreSQL (see server/app.py).
    pipeline_on_loop: bool | None = None
    # In threads, at most this many requests at once per worker. Enough to overlap a remote database's
    # round trips; anyio's default of 40 made the threads fight over the GIL (W4 on PostgreSQL, 2
    # workers: 589 requests/s with 40, 845 with 4, 992 with 2; 1,145 on the loop).
    pipeline_threads: int = 4
    # Background callback delivery (the outbox) in this process.
    deliver_callbacks: bool = True
    # A PEM bundle of authorities trusted for https:// notify URLs besides certifi's roots (a company
    # CA, a self-signed receiver); SSL_CERT_FILE / SSL_CERT_DIR add theirs too (server/callbacks.py).
    notify_ca_file: str = ""
    # Delivered and failed callbacks (with their attempts) are deleted this many days (real time) after
    # they finished, by the background delivery task; pending ones never. 0 keeps them for ever.
    callback_retention_days: float = 7.0
    # The request journal written by a process of its own at idle priority beside each worker
    # (server/journal_process.py): `serve` sets it; the in-process app writes its rows itself.
    journal_process: bool = False
    extra: dict[str, object] = field(default_factory=dict)

    def __repr__(self) -> str:
        """Every field, but never the sandbox token or the database password (settings get printed)."""
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.sandbox_token:
            shown["sandbox_token"] = "***"
        if self.database_url:
            from ..store.db import shown_url

            shown["database_url"] = shown_url(self.database_url) or "<not a database URL>"
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        from ..store.db import sqlite_url_for

        return sqlite_url_for(self.data_path)

    def base_url(self) -> str:
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        if ":" in host:  # an IPv6 address, bracketed in a URL
            host = f"[{host}]"
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> Settings:
        raw = os.environ.get(ENV_VAR)
        return cls(**json.loads(raw)) if raw else cls()
