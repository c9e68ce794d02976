"""What a business-clock move owes, made before ``POST /sandbox/clock`` answers (and the dashboard's Clock
page redirects): quota cards past their end become DISABLED and queue WEBIZPAY.QUOTACARDEXPIRED,
applyments the auto policy has waited long enough for leave WAITTING_FOR_AUDIT. The pytest plugin's
``advance_clock`` made that promise; a script using the control API or ``wxpartner clock`` got it only
from the next background round (up to 2 s later, never with the sweep switched off).

The work is the families' ``SETTLE_HOOKS`` (server/app.py), run again until none has anything left,
bounded: a clock moved over a huge backlog stops after ``Settings.extra["clock_settle_max"]``
transitions (default 10,000) or ``MAX_SECONDS``, whichever comes first, and says so
(``settled_all: false``); the background sweep and every read make the rest as before."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .app import STARTUP_HOOKS

if TYPE_CHECKING:
    from .app import AppState

# Transitions one clock move makes before answering. Measured on SQLite (2 shared cores, busy): ≈ 1 ms
# a card (disabled, its callback queued), so 10,000 ≈ 10 s, which MAX_SECONDS caps anyway.
DEFAULT_MAX = 10_000
MAX_SECONDS = 10.0  # whatever the count, a slower database does not hold the answer longer

# The answer's name for what each hook makes ("quota_cards_expired"); a hook without one is named
# after its function.
SETTLE_LABELS: dict[Callable[[AppState], int], str] = {}


@dataclass(frozen=True)
class Settled:
    counts: dict[str, int]
    complete: bool  # False: stopped at the bound; more may still be owed

    def view(self) -> dict[str, Any]:
        return {"settled": self.counts, "settled_all": self.complete}


def settle_max(extra: dict[str, object]) -> int:
    """``settings.extra["clock_settle_max"]``: a whole number, 0 or more (0: a clock move settles
    nothing, as before; the background sweep does it)."""
    raw = extra.get("clock_settle_max", DEFAULT_MAX)
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise ValueError(f"settings.extra['clock_settle_max'] must be a whole number, 0 or more, got {raw!r}")
    return raw


def settle(state: AppState, limit: int | None = None) -> Settled:
    """Run every hook until a round makes nothing (complete), or stop after the round that reaches
    ``limit`` transitions or ``MAX_SECONDS``. Each hook batch is its own short transaction, so other
    requests interleave. Runs in a worker thread."""
    from .app import SETTLE_HOOKS

    if limit is None:
        limit = settle_max(state.settings.extra)
    counts = {SETTLE_LABELS.get(hook, hook.__name__): 0 for hook in SETTLE_HOOKS}
    if limit == 0:
        return Settled(counts, False)
    deadline = time.monotonic() + MAX_SECONDS
    total = 0
    while True:
        made = 0
        for hook in SETTLE_HOOKS:
            n = hook(state)
            counts[SETTLE_LABELS.get(hook, hook.__name__)] += n
            made += n
        total += made
        if not made:
            return Settled(counts, True)
        if total >= limit or time.monotonic() >= deadline:
            return Settled(counts, False)


async def settle_for_read(state: AppState) -> None:
    """Before a sandbox read shows state the business clock changes (the dashboard's pages, the
    control API's applyment and callback reads): what the clock owes, made as an API read would make
    it, so the read shows what the API answers, whatever the background sweep has reached. One round
    of ``settle``'s loop, one batch of every hook (a read's time stays bounded; a clock move settles
    the rest). One function for both: the control API ran the applyment hook only, and its callback
    list did not settle at all, so a quota card past its end was ACTIVE there, and its
    WEBIZPAY.QUOTACARDEXPIRED missing, where the dashboard showed them."""
    import anyio

    await anyio.to_thread.run_sync(settle, state, 1)


def _check_settings(state: AppState) -> None:
    """Start-up stops on a bound that would be misread."""
    settle_max(state.settings.extra)


STARTUP_HOOKS.append(_check_settings)
