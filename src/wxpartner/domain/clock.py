"""The business clock: real time moved by an offset, or frozen. Wire timestamps stay real time, because
clients sign with their own clocks; only business time (expiry, audits, created times) moves."""

from __future__ import annotations

import datetime as dt
import math
import time
from dataclasses import dataclass

# Business time must stay a real calendar date (datetime stops at year 9999; a day of margin for the
# +08:00 rendering of China time and for expiries computed from it).
MAX_CLOCK_TS = 253402300799.0 - 86400


def is_business_time(ts: float) -> bool:
    """Whether the clock could show ``ts`` (and so a date stored from it can be rendered)."""
    return math.isfinite(ts) and 0.0 <= ts <= MAX_CLOCK_TS


@dataclass(frozen=True, slots=True)
class ClockState:
    offset_seconds: float = 0.0
    frozen_at: float | None = None

    @classmethod
    def stored(cls, offset_seconds: float, frozen_at: float | None) -> ClockState:
        """A clock as read from the database. Older versions could store an infinite or NaN one (the
        dashboard did not check its input); it reads as the nearest end of the range, NaN as real time."""

        def finite(value: float) -> float:
            return math.copysign(MAX_CLOCK_TS, value) if math.isinf(value) else value

        offset = float(offset_seconds)
        frozen = None if frozen_at is None or math.isnan(frozen_at) else finite(float(frozen_at))
        return cls(0.0 if math.isnan(offset) else finite(offset), frozen)

    def _raw_ts(self, real: float | None) -> float:
        if self.frozen_at is not None:
            return self.frozen_at
        return (time.time() if real is None else real) + self.offset_seconds

    def now_ts(self, real: float | None = None) -> float:
        ts = self._raw_ts(real)
        if 0.0 <= ts <= MAX_CLOCK_TS:
            return ts
        # Out of range only when stored by an older version or run past the end since: business time
        # stops at the nearest end instead of breaking every date it feeds (every /v3 call).
        return MAX_CLOCK_TS if ts > 0 else 0.0

    def now(self, real: float | None = None) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.now_ts(real), dt.UTC)

    def checked(self, real: float | None = None) -> ClockState:
        """This clock, if it may be written: finite and between 1970 and 9999 now; ValueError otherwise.
        The control API and the dashboard both check here before writing."""
        if not (math.isfinite(self.offset_seconds) and is_business_time(self._raw_ts(real))):
            raise ValueError("the clock must stay between 1970 and 9999")
        return self

    def advanced(self, seconds: float) -> ClockState:
        if self.frozen_at is not None:
            return ClockState(self.offset_seconds, self.now_ts() + seconds)
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
        real = time.time() if real is None else real
        return ClockState(self.now_ts(real) - real, None)


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION_SPELLINGS = "use seconds or 90s, 15m, 2h, 30d"


def parse_duration(text: str) -> float:
    """Seconds in ``90``, ``90s``, ``15m``, ``2h``, ``30d``, ``-1h`` (the CLI and the dashboard accept the
    same spellings). Raises ValueError."""
    t = text.strip().lower()
    if not t:
        raise ValueError("empty duration")
    factor = DURATION_UNITS.get(t[-1])
    if factor is not None:
        t = t[:-1]
    try:
        seconds = float(t) * (factor or 1)
    except ValueError:  # float's own words ("could not convert string to float") name no remedy
        raise ValueError(f"{text.strip()!r} is not a duration: {DURATION_SPELLINGS}") from None
    if not math.isfinite(seconds):  # float() reads "inf" and "nan"; no clock can move by them
        raise ValueError(f"{text.strip()!r} is not a finite duration")
    return seconds
