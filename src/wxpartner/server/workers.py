"""Several uvicorn worker processes, each with its own listening socket on the same port.

uvicorn's own supervisor (``uvicorn.run(workers=N)``) hands one listening socket to every worker, and
whichever worker the kernel wakes first accepts: connections opened together land unevenly and stay
there. Measured here: 64 keep-alive connections opened at once went 54 / 10 to two workers, so one
worker served 84 % of the requests while the other idled, and at half of the server's peak rate requests
queued behind the busy one (W4 p50 12 ms, p99 69 ms, where each request takes ~1 ms).

Here every worker binds its own socket with ``SO_REUSEPORT`` and the kernel assigns each new connection
to one of them by a hash of its addresses, so keep-alive clients (connection pools, load generators) are
spread evenly. Only processes of the same user can join such a port group; the supervisor checks with a
plain bind that nothing holds the port before it starts the workers. A worker that dies is replaced; one
that fails before serving (bad app, port taken) stops the supervisor, as with uvicorn.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

import uvicorn

log = logging.getLogger("uvicorn.error")

STARTUP_FAILURE = 3  # uvicorn's exit code for a worker that could not start serving
GRACEFUL_TIMEOUT = 5  # seconds requests running at a stop may take (serve --graceful-timeout)


def _socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _worker(config: dict[str, Any], supervisor: int) -> None:
    """One worker process: its own socket in the port's group, then uvicorn's server on it.
    ``supervisor``: the pid of the process that started it, which it must outlive by no more than a
    second."""
    cfg = uvicorn.Config(**config)
    try:
        sock = _socket(cfg.host, cfg.port, reuse_port=True)
        # Into the port group at once, before the app loads (~1 s): connections the kernel assigns here
        # wait in the backlog until it serves. Joining only when ready, the first worker up would keep
        # every connection opened meanwhile.
        sock.listen(cfg.backlog)
    except OSError as exc:
        log.error("worker %s could not bind %s:%s: %s", os.getpid(), cfg.host, cfg.port, exc)
        sys.exit(STARTUP_FAILURE)
    # The supervisor's pid as it gave it: read here, os.getppid() of a worker whose supervisor died
    # while it was starting is already init's, and the worker watched init and served on for good.
    threading.Thread(target=_exit_with_parent, args=(supervisor,), daemon=True).start()
    server = uvicorn.Server(cfg)

    def on_term(_sig: int, _frame: FrameType | None) -> None:
        server.should_exit = True

    # uvicorn raises the signals it caught again once its serve() is over, to the handlers it found.
    # SIGTERM's default (the supervisor stops workers with it) then killed the worker right there:
    # after a forced quit (a second Ctrl-C) that is before asyncio.run cancels the app's tasks, whose
    # stop steps write the journal and close the database (uvicorn skips the lifespan shutdown then),
    # so requests answered in the last quarter second were missing from the journal. Found here, this
    # handler only asks the server to stop (as serve_one's does).
    signal.signal(signal.SIGTERM, on_term)
    server.run(sockets=[sock])
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def _exit_with_parent(parent: int) -> None:
    """A supervisor killed outright (SIGKILL, OOM) cannot stop its workers: each stops itself, gracefully,
    once it is no longer the supervisor's child, rather than serving on unsupervised."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


def hold_free_port(host: str, workers: int) -> socket.socket:
    """A socket bound to a free port the system picks (``serve --port 0``), held from before the
    connection settings are printed until the server stops, so the port printed is the port served
    and nobody takes it in between. One worker serves on this very socket; several each bind their own
    in its ``SO_REUSEPORT`` group (a socket bound and not listening gets no connections: it only keeps
    the port); without ``SO_REUSEPORT``, uvicorn's supervisor shares it."""
    return _socket(host, 0, reuse_port=workers > 1 and hasattr(socket, "SO_REUSEPORT"))


def free_port_for(host: str, port: int) -> int:
    """``port`` if nothing holds it (0: one the system picks), else OSError. A plain bind, without
    SO_REUSEPORT, fails on any socket bound there, a port group of our own included."""
    with _socket(host, port, reuse_port=False) as probe:
        return int(probe.getsockname()[1])


def serve(workers: int, held: socket.socket | None = None, **config: Any) -> int:
    """Run ``workers`` processes of ``uvicorn.Server(uvicorn.Config(**config))`` until SIGINT or SIGTERM;
    returns the exit status. ``config["app"]`` must be an import string (each worker imports it).
    ``held``: the port group's socket from ``hold_free_port`` (``config["port"]`` is its port), kept
    bound until the workers stop."""
    uvicorn.Config(**config)  # configures logging here as in the workers, and checks the arguments
    if held is None:
        try:
            config["port"] = free_port_for(config["host"], config["port"])
        except OSError as exc:
            log.error("cannot listen on %s:%s: %s", config["host"], config["port"], exc)
            return STARTUP_FAILURE
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked database connections

    def start() -> BaseProcess:
        proc = ctx.Process(target=_worker, args=(config, os.getpid()), name="wxpartner-worker")
        # Started with SIGINT ignored (a disposition that survives exec): a Ctrl-C reaches the whole
        # process group, and a worker still importing, or uvicorn re-raising it after its graceful
        # stop, printed a KeyboardInterrupt traceback per worker. The supervisor stops them with
        # SIGTERM; a started worker's uvicorn handles SIGINT itself.
        handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            proc.start()
        finally:
            signal.signal(signal.SIGINT, handler)
        return proc

    stop = False

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    # The wait below sleeps until a worker ends or a stop signal comes: the signal's byte on this
    # socket wakes it (a wait interrupted by a signal is resumed, PEP 475), where a 0.5 s poll made a
    # stop wait for the next look.
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    previous_wakeup = signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    procs = [start() for _ in range(workers)]
    log.info(
        "Started %d workers [%s] on one SO_REUSEPORT port group",
        workers,
        ", ".join(str(p.pid) for p in procs),
    )
    status = 0
    try:
        while not stop:
            if wake_r in wait([wake_r, *(p.sentinel for p in procs)]):
                with contextlib.suppress(BlockingIOError):
                    wake_r.recv(64)  # the signals' bytes: a later signal wakes the wait again
            for i, proc in enumerate(procs):
                if proc.is_alive() or stop:
                    continue
                if proc.exitcode == STARTUP_FAILURE:
                    log.error("worker %s failed to start; stopping", proc.pid)
                    stop, status = True, STARTUP_FAILURE
                    break
                log.warning("worker %s died (exit code %s); starting another", proc.pid, proc.exitcode)
                procs[i] = start()
    finally:
        for proc in procs:  # graceful: each worker drains its connections and flushes its journal
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)
        # A worker's stop: its requests' graceful time, then the journal and the callback sends in
        # flight (at most 6 s, README: Stopping and restarting).
        deadline = time.monotonic() + stop_seconds(config)
        for proc in procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(previous_wakeup)
        wake_r.close()
        wake_w.close()
    return status


def stop_seconds(config: dict[str, Any]) -> float:
    """How long the supervisor gives a worker to stop before it kills it: the graceful timeout of its
    requests and 10 s for what follows them."""
    return float(config.get("timeout_graceful_shutdown", GRACEFUL_TIMEOUT)) + 10


def config_for(
    app: str,
    *,
    host: str,
    port: int,
    log_level: str,
    factory: bool = False,
    graceful_timeout: int = GRACEFUL_TIMEOUT,
) -> dict[str, Any]:
    """uvicorn's settings for serving ``app`` (an import string) as ``wxpartner serve`` does;
    ``graceful_timeout``: how long requests running at a stop may take to finish (``--graceful-timeout``)."""
    from .http_protocol import BoundedHttpToolsProtocol

    return {
        "app": app,
        "factory": factory,
        "http": BoundedHttpToolsProtocol,  # bounds the request head before the app sees it
        "host": host,
        "port": port,
        "log_level": log_level,
        "access_log": False,
        "timeout_graceful_shutdown": graceful_timeout,
    }


def serve_one(held: socket.socket | None = None, **config: Any) -> int:
    """One uvicorn server in this process until SIGINT or SIGTERM; returns the exit status: 0 after the
    graceful stop, as ``serve`` (the supervisor) returns. uvicorn raises the stopping signal again once
    its graceful stop is over, to the handler it found: SIGTERM's default then killed the process
    (status -15, docker's 143) after a clean stop, where SIGINT ended in status 0. The handler found is
    now this one, which only asks the server to stop: a signal before uvicorn takes over (while the
    event loop starts) is not lost."""
    server = uvicorn.Server(uvicorn.Config(**config))

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        server.should_exit = True

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[held] if held is not None else None)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if server.started else STARTUP_FAILURE


def run(workers: int, config: dict[str, Any], held: socket.socket | None = None) -> int:
    """Serve until stopped, then return the exit status: one process in-process, several each on its
    own socket of one port group (where the system has ``SO_REUSEPORT``; otherwise uvicorn's supervisor
    and its shared socket). ``held``: the socket of ``hold_free_port`` (``serve --port 0``), whose port
    ``config["port"]`` names."""
    try:
        if workers > 1 and hasattr(socket, "SO_REUSEPORT"):
            return serve(workers, held, **config)
        if workers == 1:
            return serve_one(held, **config)
        if held is not None:
            config = {**config, "fd": held.fileno()}
        uvicorn.run(**config, workers=workers)
        return 0
    finally:
        if held is not None:
            held.close()
