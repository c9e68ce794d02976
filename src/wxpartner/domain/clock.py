"""The business clock: real time moved by an offset, or frozen. Wire timestamps stay real time, because
clients sign with their own clocks; only business time (expiry, audits, created times) moves."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ClockState:
    offset_seconds: float = 0.0
    frozen_at: float | None = None

    def now_ts(self, real: float | None = None) -> float:
        if self.frozen_at is not None:
            return self.frozen_at
        return (time.time() if real is None else real) + self.offset_seconds

    def now(self, real: float | None = None) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.now_ts(real), dt.UTC)

    def advanced(self, seconds: float) -> ClockState:
        if self.frozen_at is not None:
            return ClockState(self.offset_seconds, self.frozen_at + seconds)
        return ClockState(self.offset_seconds + seconds, None)

    def set_to(self, ts: float, *, frozen: bool, real: float | None = None) -> ClockState:
        if frozen:
            return ClockState(0.0, ts)
        return ClockState(ts - (time.time() if real is None else real), None)

    def frozen(self, real: float | None = None) -> ClockState:
        return ClockState(0.0, self.now_ts(real))

    def thawed(self, real: float | None = None) -> ClockState:
        if self.frozen_at is None:
            return self
        return ClockState(self.frozen_at - (time.time() if real is None else real), None)


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds in ``90``, ``90s``, ``15m``, ``2h``, ``30d``, ``-1h`` (the CLI and the dashboard accept the
    same spellings). Raises ValueError."""
    t = text.strip().lower()
    if not t:
        raise ValueError("empty duration")
    factor = DURATION_UNITS.get(t[-1])
    if factor is not None:
        t = t[:-1]
    return float(t) * (factor or 1)
