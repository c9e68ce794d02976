"""WeChat Pay's per-merchant request-rate limits, shared by every worker process and host.

A family declares which operations draw from which budget (``declare``); one before-handler counts each
authenticated call in the store's one-second window counters (an atomic upsert, so the limit holds across
processes) and refuses the call beyond the limit with 429 ``FREQUENCY_LIMITED`` before anything else runs,
with ``Retry-After: 1`` (the next window starts within the second).
Limits are overridable per family through ``Settings.extra["<family>_rate_limits"] = {"<budget>": n}``
(0 or less: no limit) and switched off as a whole by ``Settings.rate_limits = False`` (``serve
--no-rate-limits``, for load tests)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..protocol.errors import ApiError
from ..store import sandbox
from .app import STARTUP_HOOKS
from .context import Ctx
from .pipeline import Shaping

if TYPE_CHECKING:
    from .app import AppState

PRUNE_EVERY = 1000  # calls between sweeps of old windows (housekeeping only; any process may do it)
LIMITS_KEY = "rate_limits.qps"


@dataclass(frozen=True)
class Budget:
    family: str
    name: str  # e.g. "add": one budget per operation kind and caller
    default: int  # requests per second per caller
    per: str  # who the limit counts, for the refusal message


_BUDGETS: dict[str, Budget] = {}  # op_id -> budget


def declare(family: str, per: str, budgets: Mapping[str, tuple[str, int]]) -> None:
    """``budgets`` maps op_id -> (budget name, requests per second)."""
    for op_id, (name, qps) in budgets.items():
        _BUDGETS[op_id] = Budget(family, name, qps, per)


def limits(family: str, overrides: object) -> dict[str, int]:
    """The effective limits of one family: its defaults, overridden by ``overrides`` (validated)."""
    out = {b.name: b.default for b in _BUDGETS.values() if b.family == family}
    if overrides is None:
        return out
    if not isinstance(overrides, Mapping):
        raise ValueError(f"settings.extra['{family}_rate_limits'] must be a mapping such as {{'add': 10}}")
    for name, value in overrides.items():
        if name not in out:
            known = ", ".join(sorted(out))
            raise ValueError(f"{family} rate limit for unknown operation {name!r} ({known})")
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{family} rate limit for {name} must be an integer, got {value!r}")
        out[name] = value
    return out


class _Pruner:
    def __init__(self) -> None:
        self.calls = 0

    def due(self) -> bool:
        self.calls += 1
        if self.calls >= PRUNE_EVERY:
            self.calls = 0
            return True
        return False


_pruner = _Pruner()


def rate_limit(ctx: Ctx, _shaping: Shaping) -> None:
    """Runs after the signature is verified and before the request is validated: every authenticated
    call counts (401s never do); a refused call counts nothing and changes nothing."""
    budget = _BUDGETS.get(ctx.operation.op_id)
    if budget is None or not ctx.state.settings.rate_limits:
        return
    limit = ctx.state.extensions[LIMITS_KEY][budget.family][budget.name]
    if limit <= 0:
        return
    scope = f"{budget.family}.{budget.name}:{ctx.mchid}"
    # The count is one atomic upsert (and the sweep one DELETE): on PostgreSQL each commits by itself,
    # without BEGIN and COMMIT round trips (and the counter's row is locked for that statement alone);
    # on SQLite a write transaction.
    with ctx.autocommit() as conn:
        # The current second of real time (the business clock never changes the wire rate); on
        # PostgreSQL the database's, the same for every host.
        allowed = sandbox.hit_rate_limit(conn, scope, None, limit)
        if _pruner.due():
            sandbox.prune_rate_counters(conn)
    if not allowed:
        raise ApiError(
            "FREQUENCY_LIMITED",
            f"频率限制，请降低频率后重试 (at most {limit} {budget.name} requests per second per {budget.per})",
            detail={"operation": budget.name, "limit": limit, "window_seconds": 1},
            # the window is the current second: the next one starts within a second (HTTP's
            # Retry-After is whole seconds)
            retry_after=1,
        )


def _install(state: AppState) -> None:
    families = {b.family for b in _BUDGETS.values()}
    state.extensions[LIMITS_KEY] = {
        f: limits(f, state.settings.extra.get(f"{f}_rate_limits")) for f in families
    }
    state.before_handlers.append(rate_limit)


STARTUP_HOOKS.append(_install)
