"""Retry and timeout policy. Retries never repeat a side effect: see ``RetryPolicy`` and the README's SDK section."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import httpx

# Failures where the request provably never reached the server: always safe to repeat (or fail over).
NOT_SENT_ERRORS: tuple[type[Exception], ...] = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=30.0, write=30.0, pool=5.0)

# What ``timeout=`` takes, on a client and on each call: seconds, or an httpx.Timeout per phase.
TimeoutLike = float | httpx.Timeout


def as_timeout(value: TimeoutLike) -> httpx.Timeout:
    """Seconds as the read/write/pool bounds, with connect capped at 5 s (a host that takes longer to
    accept is better failed over); an ``httpx.Timeout`` as given. A bound that is no positive number
    (0 made the sockets non-blocking: every call then failed as a "not sent" ConnectError) is a
    ``ValueError`` naming it."""
    if isinstance(value, httpx.Timeout):
        phases = value.as_dict()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        phases = {"timeout": float(value)}
    else:
        raise ValueError(f"timeout must be seconds (a number) or an httpx.Timeout, got {value!r}")
    for phase, seconds in phases.items():
        if seconds is not None and not (isinstance(seconds, int | float) and 0 < seconds < math.inf):
            raise ValueError(
                f"timeout: the {phase} bound must be a positive number of seconds, got {seconds!r}"
            )
    if isinstance(value, httpx.Timeout):
        return value
    seconds = float(value)
    return httpx.Timeout(seconds, connect=min(seconds, DEFAULT_TIMEOUT.connect or 5.0))


@dataclass(frozen=True)
class RetryPolicy:
    """``max_attempts`` counts the first try. Retried for every call: 503 ``SERVICE_UNAVAILABLE``, 429
    (after ``Retry-After``, else after at least ``rate_limit_backoff``), and connection failures before
    the request was sent. Retried only for calls that are idempotent by design (queries, and the writes
    listed in the SDK docs): 500 ``SYSTEM_ERROR`` (WeChat: "retry with the same parameters", which is
    one effect only where the parameters identify the call), other 5xx, and a read timeout or dropped
    connection after sending."""

    max_attempts: int = 3
    backoff_base: float = 0.2
    backoff_max: float = 5.0
    jitter: float = 0.5  # +- this fraction of the delay, so concurrent clients do not retry in lockstep
    # A Retry-After longer than this is not waited for: the error is raised at once.
    max_retry_after: float = 10.0
    # A 429 without Retry-After waits at least this long, jittered upwards only: WeChat Pay's limits
    # count per second (R1: 10 per second), so the 0.2 s and 0.4 s backoffs landed in the same second
    # and a burst of 30 adds ended with 10 RateLimitedErrors after its three attempts.
    rate_limit_backoff: float = 1.0

    def delay(self, attempt: int, retry_after: float | None = None, *, rate_limited: bool = False) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` starts at 1)."""
        if retry_after is not None:  # the server's word wins; jitter only upwards
            return max(retry_after, 0.0) * (1.0 + random.uniform(0.0, self.jitter / 5))
        base = min(self.backoff_base * float(2 ** max(attempt - 1, 0)), self.backoff_max)
        if rate_limited and base < self.rate_limit_backoff:  # into a later counting window
            return self.rate_limit_backoff * (1.0 + random.uniform(0.0, self.jitter))
        jittered: float = base * (1.0 + random.uniform(-self.jitter, self.jitter))
        return max(0.0, jittered)


NO_RETRIES = RetryPolicy(max_attempts=1)


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    # "nan" parses, and a NaN delay made the client's sleep raise ValueError instead of retrying.
    return None if math.isnan(seconds) else seconds
