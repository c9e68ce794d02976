"""`python -m bench.profile`: where one request's time goes, in-process, without sockets or load tools.

Builds the real app (demo world, rate limits off) in a temporary directory and runs pre-signed
requests through ``Pipeline.handle`` (the synchronous core) or through the ASGI entry point (adds body
reading, the thread hop and response sending). Profiles are the evidence for optimisations: on a
shared machine an absolute rate from another minute says little, the share of each function says a lot.

    python -m bench.profile                    # per-request microseconds of each endpoint, both paths
    python -m bench.profile --cprofile issue   # cProfile of one endpoint (top 35 by cumulative time)
    python -m bench.profile --postgres         # the same against a private PostgreSQL server
    python -m bench.profile --stub-rsa         # without the RSA verification and signature: ours alone
    python -m bench.profile --big 1000000      # W4 on a store of 1,000 cards against one of a million
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import functools
import pstats
import sys
import tempfile
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

from wxpartner.server.app import WxPartnerApp, create_app
from wxpartner.server.http import RawRequest, RawResponse
from wxpartner.server.settings import Settings

from . import endpoints as ep
from .presign import Call, Signer, raw_request


class InProcess:
    """The demo world served in-process; requests are signed on the fly but outside the timed part."""

    def __init__(self, data_dir: Path, database_url: str = "") -> None:
        from wxpartner.sandbox.bootstrap import bootstrap, connection_info
        from wxpartner.store.db import Database

        settings = Settings(
            data_dir=str(data_dir),
            database_url=database_url,
            sandbox_token="bench-token",
            rate_limits=False,
            deliver_callbacks=False,
        )
        self.db = Database(settings.resolved_database_url())
        bootstrap(self.db, data_dir, token="bench-token", demo=True)
        info = connection_info(self.db, data_dir, "http://bench", "bench-token")
        self.signer = Signer(info["mchid"], info["serial_no"], info["private_key_path"])
        self.channel = Signer(
            info["channel_mchid"], info["channel_serial_no"], info["channel_private_key_path"]
        )
        self.app: WxPartnerApp = create_app(settings, self.db)
        self.app.state.keyring.refresh()

    def raw(self, call: Call) -> RawRequest:
        # The applyment family answers channel merchants only; the rest is the demo provider's.
        signer = self.channel if call.url.startswith("/v3/apply4subject/") else self.signer
        wire = raw_request(signer, call, "bench")
        head, _, body = wire.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        target = lines[0].split(" ")[1]
        path, _, query = target.partition("?")
        headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
        return RawRequest(call.method, path, query, headers, body, "127.0.0.1:1")

    def handle(self, call: Call) -> RawResponse:
        return self.app.pipeline.handle(self.raw(call))

    def asgi(self, call: Call) -> tuple[int, bytes]:
        req = self.raw(call)
        return asyncio.run(_asgi_once(self.app, req))

    def employee(self) -> str:
        body = f'{{"sp_mchid":"{ep.SP}","sub_mchid":"{ep.SUB}","application_type":"H5"}}'.encode()
        resp = self.handle(Call("POST", "/v3/webizpay/users/bench_user_01/authorization-url", body))
        token = resp.body.decode().split("token=", 1)[1].split('"', 1)[0]
        from starlette.testclient import TestClient

        with TestClient(self.app) as tc:
            r = tc.post(
                "/sandbox/webizpay/authorizations",
                json={"token": token},
                headers={"Authorization": "Bearer bench-token"},
            )
            r.raise_for_status()
            return str(r.json()["employee_id"])

    def second_levels(self, count: int) -> list[str]:
        """``count`` second-level merchants of the demo platform merchant, for R1 adds (three each: the
        family's cap, so every add inserts)."""
        from wxpartner.domain.merchants import KeyMode, Merchant, RelationKind, Role
        from wxpartner.store import registry

        mchids = [f"19{i:08d}" for i in range(40_000_000, 40_000_000 + count)]
        with self.db.write() as conn:
            for mchid in mchids:
                merchant = Merchant(
                    mchid, "Bench second-level", Role.SECOND_LEVEL, None, KeyMode.PUBLIC_KEY, None
                )
                registry.upsert_merchant(conn, merchant)
                registry.add_relation(conn, ep.SP, mchid, RelationKind.SECOND_LEVEL)
        return mchids

    def applyments(self, count: int, prefix: str = "prof") -> list[str]:
        """``count`` applyments of the demo channel merchant awaiting audit (a scenario: the sandbox's
        own way in, without encrypting the sensitive fields of a submission)."""
        from starlette.testclient import TestClient

        codes = [f"{prefix}{i:04d}" for i in range(count)]
        section = {"applyments": [{"mchid": self.channel.mchid, "business_code": c} for c in codes]}
        auth = {"Authorization": "Bearer bench-token"}
        with TestClient(self.app) as tc:
            tc.post("/sandbox/scenario", json={"apply4subject": section}, headers=auth).raise_for_status()
            r = tc.get("/sandbox/apply4subject/applyments", headers=auth)
            r.raise_for_status()
            return [str(a["applyment_id"]) for a in r.json()["data"] if a["business_code"] in codes]


def stub_rsa() -> None:
    """Replace the server's two RSA operations by stand-ins that do the rest of their work: the check
    still decodes the request's Base64 signature (and accepts it), the answer still gets a Base64
    signature of the right length (of zeros). Everything else in the request runs as served."""
    import base64
    import binascii

    from wxpartner.server import pipeline, verify

    def verify_stub(_public_key: Any, _message: bytes, signature: str) -> bool:
        try:
            base64.b64decode(signature.encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            return False
        return True

    zeros = base64.b64encode(bytes(256)).decode("ascii")

    def sign_stub(_private_key: Any, _message: bytes) -> str:
        return zeros

    verify.verify = verify_stub  # type: ignore[attr-defined,assignment]
    pipeline.sign = sign_stub  # type: ignore[attr-defined,assignment]


async def _asgi_once(app: WxPartnerApp, req: RawRequest) -> tuple[int, bytes]:
    scope = {
        "type": "http",
        "method": req.method,
        "path": req.raw_path,
        "raw_path": req.raw_path.encode(),
        "query_string": req.raw_query.encode(),
        "headers": [(k.encode(), v.encode()) for k, v in req.headers.items()],
        "client": ("127.0.0.1", 1),
    }
    sent = False
    out: dict[str, Any] = {}

    async def receive() -> MutableMapping[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": req.body, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        out.setdefault(message["type"], message)

    await app(scope, receive, send)
    return out["http.response.start"]["status"], out["http.response.body"]["body"]


def _calls(world: InProcess, cancels: int) -> dict[str, Callable[[int], Call]]:
    """Request factories; ``cancels`` cards are issued up front, as each cancel needs a fresh one."""
    employee = world.employee()
    stamp = str(int(time.time()))
    cards = []
    for i in range(max(400, cancels)):
        r = world.handle(ep.issue_call(employee, "pool", i))
        cards.append(r.body.decode().split('"card_no":"', 1)[1].split('"', 1)[0])
    return {
        "query": functools.partial(ep.query_call, employee, cards[:400]),
        "issue": functools.partial(ep.issue_call, employee, stamp),
        "cancel": functools.partial(ep.cancel_call, employee, cards),
        "applyment": functools.partial(ep.applyment_query_call, world.applyments(20)),
        # A3 by business_code: each call cancels an applyment of its own.
        "a3-cancel": lambda i: Call("POST", f"/v3/apply4subject/applyment/a3c{i:04d}/cancel", b""),
        # R1: a new employee each call, three per second-level merchant (the cap).
        "r1-add": functools.partial(ep.recharge_add_call, world.second_levels(cancels // 3 + 1), stamp),
    }


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--repeat", type=int, default=1, help="rounds per endpoint; the best is reported")
    p.add_argument(
        "--cprofile", metavar="ENDPOINT", help="query, issue, cancel, applyment (A2), a3-cancel or r1-add"
    )
    p.add_argument("--asgi", action="store_true", help="profile through the ASGI entry point")
    p.add_argument("--sort", default="cumulative")
    p.add_argument("--top", type=int, default=35)
    p.add_argument("--postgres", action="store_true", help="a private PostgreSQL server, not SQLite")
    p.add_argument(
        "--stub-rsa",
        action="store_true",
        help="skip the RSA check of each request and the RSA signature of each answer (what is left is"
        " wxpartner's own Python, the floor's crypto taken out)",
    )
    p.add_argument(
        "--big",
        type=int,
        metavar="CARDS",
        help="W4 only: two stores side by side, 1,000 cards and CARDS (as make bench fills them),"
        " queried in alternated rounds (--repeat of --requests); medians of CPU µs per query",
    )
    p.add_argument(
        "--write-every",
        type=int,
        default=0,
        metavar="K",
        help="commit a small write through another connection before every K-th request (untimed), so"
        " the request's connections start with an empty page cache, as in a served worker whenever"
        " another process has committed since (with --big: the journal's chunks; for a write: the"
        " other worker's writes, before nearly every one)",
    )
    args = p.parse_args()
    if args.stub_rsa:
        stub_rsa()
    with contextlib.ExitStack() as stack:
        database_url = ""
        if args.postgres:
            from .postgres import PrivatePostgres
            from .servers import free_port

            pg = PrivatePostgres(free_port())
            pg.start()
            database_url = stack.enter_context(pg).url
        if args.big:
            return _scale(args, database_url)
        return _profile(
            args, stack.enter_context(tempfile.TemporaryDirectory(prefix="wxprof-")), database_url
        )


def _reads() -> int:
    """read(2)/pread(2) calls this process has made (SQLite reads a page it does not cache with one)."""
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("syscr"))


def _scale(args: argparse.Namespace, database_url: str) -> int:
    """W4 on a small store and a big one, in one process, alternated round by round (the order
    reversed every other round): the CPU per query of each, and the reads of pages SQLite did not
    have in its cache. Each store holds 1,000 copies of an issued card (the ones queried, as in
    ``make bench``); the big one is then filled to ``--big`` cards."""
    import statistics

    from . import seed

    stores: dict[str, tuple[InProcess, str, list[str]]] = {}
    with contextlib.ExitStack() as stack:
        for name, fill in (("1,000", 0), (f"{args.big:,}", args.big)):
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="wxprof-"))
            world = InProcess(Path(tmp), database_url)
            employee = world.employee()
            issued = world.handle(ep.issue_call(employee, "seed", 0)).body.decode()
            first = issued.split('"card_no":"', 1)[1].split('"', 1)[0]
            small = seed.clone_cards(world.db, first, 1_000, "81")
            if fill:
                started = time.monotonic()
                seed.fill_cards(world.db, first, fill - seed.count_cards(world.db), "83")
                print(f"filled to {seed.count_cards(world.db):,} cards in {time.monotonic() - started:.0f} s")
            stores[name] = (world, employee, small)
        cpu: dict[str, list[float]] = {name: [] for name in stores}
        reads: dict[str, list[float]] = {name: [] for name in stores}
        n, done = args.requests, 0
        for round_no in range(args.repeat):
            for name in list(stores)[:: 1 if round_no % 2 == 0 else -1]:
                world, employee, small = stores[name]
                reqs = [world.raw(ep.query_call(employee, small, done + i)) for i in range(n)]
                done += n
                spent, reads0 = 0.0, _reads()
                for i, r in enumerate(reqs):
                    if args.write_every and i % args.write_every == 0:
                        with world.db.write() as conn:  # not timed
                            conn.exec_driver_sql("DELETE FROM sandbox_kv WHERE key = 'bench_probe'")
                            conn.exec_driver_sql(
                                f"INSERT INTO sandbox_kv (key, value) VALUES ('bench_probe', '{done + i}')"
                            )
                    started = time.process_time()
                    resp = world.app.pipeline.handle(r)
                    spent += time.process_time() - started
                    assert resp.status == 200, (resp.status, resp.body)
                cpu[name].append(spent / n * 1e6)
                reads[name].append((_reads() - reads0) / n)
        print(f"{'cards':>10} {'CPU µs median':>14} {'min':>6} {'max':>6} {'reads/query':>12}")
        for name in stores:
            med, lo, hi = statistics.median(cpu[name]), min(cpu[name]), max(cpu[name])
            print(f"{name:>10} {med:14.0f} {lo:6.0f} {hi:6.0f} {statistics.median(reads[name]):12.2f}")
    return 0


class _Foreign:
    """Another connection's commit (a row of ``sandbox_kv`` rewritten), as another worker process's: every
    connection of the world then finds the database changed when its next transaction begins, and
    SQLite starts that transaction with an empty page cache."""

    def __init__(self, db: Any) -> None:
        self._db = db
        self._n = 0
        self._conn: Any = None
        if db.sqlite:
            import sqlite3

            from wxpartner.store.db import sqlite_file

            path = sqlite_file(db.url)
            assert path is not None, "--write-every needs a database file"
            self._conn = sqlite3.connect(path, isolation_level=None)

    def commit_one(self) -> None:
        self._n += 1
        if self._conn is None:  # PostgreSQL: no page cache of the worker's to empty
            return
        with self._db.write_turn():
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute("DELETE FROM sandbox_kv WHERE key = 'bench_probe'")
            self._conn.execute(
                "INSERT INTO sandbox_kv (key, value) VALUES ('bench_probe', ?)", (str(self._n),)
            )
            self._conn.execute("COMMIT")


def _profile(args: argparse.Namespace, tmp: str, database_url: str) -> int:
    world = InProcess(Path(tmp), database_url)
    n = args.requests
    cancels = n * (1 if args.cprofile else args.repeat)
    calls = _calls(world, cancels)
    world.applyments(cancels, prefix="a3c")
    if args.cprofile:
        factory = calls[args.cprofile]
        reqs = [world.raw(factory(i)) for i in range(n)]
        run = (lambda r: asyncio.run(_asgi_once(world.app, r))) if args.asgi else world.app.pipeline.handle
        prof = cProfile.Profile()
        prof.enable()
        for r in reqs:
            run(r)
        prof.disable()
        pstats.Stats(prof).sort_stats(args.sort).print_stats(args.top)
        return 0
    counts = {"statements": 0, "transactions": 0}

    def on_execute(*_a: Any) -> None:
        counts["statements"] += 1

    def on_begin(*_a: Any) -> None:
        counts["transactions"] += 1

    import sqlalchemy as sa

    foreign = _Foreign(world.db) if args.write_every else None
    for engine in world.db.engines:
        sa.event.listen(engine, "before_cursor_execute", on_execute)
        sa.event.listen(engine, "begin", on_begin)
    print(f"{'endpoint':14} {'wall µs':>8} {'CPU µs':>8} {'txns':>5} {'stmts':>6}   (per request)")
    for name, factory in calls.items():
        # Best of --repeat rounds: on a shared machine the minimum is the stable figure.
        best_wall = best_cpu = float("inf")
        for round_no in range(args.repeat):
            reqs = [world.raw(factory(i + round_no * n)) for i in range(n)]
            counts.update(statements=0, transactions=0)
            wall = cpu = 0.0
            for i, r in enumerate(reqs):
                if foreign is not None and i % args.write_every == 0:
                    foreign.commit_one()
                started, cpu0 = time.perf_counter(), time.process_time()
                resp = world.app.pipeline.handle(r)
                wall += time.perf_counter() - started
                cpu += time.process_time() - cpu0
                assert 200 <= resp.status < 300, (name, resp.status, resp.body)
            best_wall = min(best_wall, wall / n * 1e6)
            best_cpu = min(best_cpu, cpu / n * 1e6)
        txns, stmts = counts["transactions"] / n, counts["statements"] / n
        print(f"{name:14} {best_wall:8.0f} {best_cpu:8.0f} {txns:5.1f} {stmts:6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
