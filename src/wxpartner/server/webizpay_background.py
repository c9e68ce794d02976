"""Background expiry sweep for quota cards: every ACTIVE card past effective_end_time (business clock)
becomes DISABLED and notifies WEBIZPAY.QUOTACARDEXPIRED once, even if nobody reads it. Several
processes may sweep at once: the conditional UPDATE lets exactly one of them win each card.

The same round deletes authorization (W1) and payment (W7) links a day past their expiry
(``Policy.link_kept_after_expiry``): every call makes one, and nothing else ever deletes them."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import anyio

from ..domain.webizpay import quota_cards
from ..domain.webizpay.entities import Policy
from ..store import sandbox as sandbox_store
from ..store import webizpay_repo
from ..store.webizpay_repo import WebizpayRepo
from .app import BACKGROUND_TASKS, SETTLE_HOOKS, STARTUP_HOOKS
from .settle import SETTLE_LABELS

if TYPE_CHECKING:
    from .app import AppState

log = logging.getLogger("wxpartner.webizpay")

DEFAULT_INTERVAL = 2.0
LINKS_PER_ROUND = 1000  # links of each kind one round deletes: a short write whatever has gathered


def sweep_once(state: AppState) -> int:
    """One batch of due cards: how many this call disabled, 0 only once none is due. Two sweepers
    (hosts, workers, a request and the background round) can read the same batch on PostgreSQL, each in
    its own snapshot; the one that waited on the other's row locks then found all of it taken, and its
    0 ended sweep_all and a clock move's settling while later cards were still ACTIVE. It reads again
    instead (it has waited for the other's commit: no spinning)."""
    policy = Policy.from_settings(state.settings.extra)
    while True:
        with state.db.read() as conn:
            now = sandbox_store.read_clock(conn).now_ts()
            if not WebizpayRepo(conn).due_cards(now, 1):
                return 0  # the common case costs one indexed read, no write lock
        with state.db.write() as conn:
            if done := quota_cards.expire_due(WebizpayRepo(conn), policy, now):
                return done


def sweep_all(state: AppState) -> int:
    """Every due card, batch by batch (each batch its own short write, so requests interleave)."""
    total = 0
    while done := sweep_once(state):
        total += done
    return total


def sweep_interval(extra: dict[str, object]) -> float:
    """``settings.extra["webizpay_sweep_seconds"]`` (0 switches the sweep off); ValueError for anything
    else than a finite number of seconds, 0 or more (a string used to fall back to 2 s silently)."""
    raw = extra.get("webizpay_sweep_seconds", DEFAULT_INTERVAL)
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw) or raw < 0:
        raise ValueError(f"settings.extra['webizpay_sweep_seconds'] must be seconds, 0 or more, got {raw!r}")
    return float(raw)


def _check_settings(state: AppState) -> None:
    """Start-up stops on a webizpay setting that would be ignored or misread."""
    Policy.check_settings(state.settings.extra)
    sweep_interval(state.settings.extra)


def prune_links_once(state: AppState) -> int:
    """Delete links expired for longer than the policy keeps them; returns how many went."""
    policy = Policy.from_settings(state.settings.extra)
    with state.db.read() as conn:
        cutoff = sandbox_store.read_clock(conn).now_ts() - policy.link_kept_after_expiry
        if not webizpay_repo.links_expired_before(conn, cutoff):
            return 0  # the common case: two indexed reads, no write lock
    with state.db.write() as conn:
        return webizpay_repo.delete_links_expired_before(conn, cutoff, LINKS_PER_ROUND)


def _round(state: AppState) -> None:
    sweep_all(state)  # one batch of 200 a round left a backlog 100 cards a second behind the clock
    prune_links_once(state)


async def sweep_forever(state: AppState) -> None:
    interval = sweep_interval(state.settings.extra)
    if interval <= 0:
        return
    while True:
        await anyio.sleep(interval)
        try:
            await anyio.to_thread.run_sync(_round, state)
        except Exception as exc:  # a database outage must not kill the task; the next round retries
            log.warning("webizpay expiry sweep failed: %s", type(exc).__name__)


STARTUP_HOOKS.append(_check_settings)
BACKGROUND_TASKS.append(sweep_forever)
SETTLE_HOOKS.append(sweep_once)
SETTLE_LABELS[sweep_once] = "quota_cards_expired"
