"""RFC 3339 date-times with an explicit offset, as every APIv3 body carries them."""

from __future__ import annotations

import datetime as dt
import re

CHINA_TZ = dt.timezone(dt.timedelta(hours=8))

_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})\Z")


def parse_rfc3339(value: str) -> dt.datetime:
    """Strict: date, ``T``, time, optional fraction, and ``Z`` or ``±hh:mm``. Raises ValueError."""
    m = _RFC3339.match(value)
    if m is None:
        raise ValueError("expected RFC 3339 date-time with offset, e.g. 2025-05-20T13:29:35+08:00")
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    frac = m.group(7)
    micro = int((frac[1:] + "000000")[:6]) if frac else 0
    zone = m.group(8)
    if zone == "Z":
        tz = dt.UTC
    else:
        sign = 1 if zone[0] == "+" else -1
        hh, mm = int(zone[1:3]), int(zone[4:6])
        if hh > 23 or mm > 59:
            raise ValueError("offset out of range")
        tz = dt.timezone(sign * dt.timedelta(hours=hh, minutes=mm))
    return dt.datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)


def format_rfc3339(value: dt.datetime, *, millis: bool = False) -> str:
    """China time with offset (``2025-05-20T13:29:35+08:00``), optionally with milliseconds."""
    local = value.astimezone(CHINA_TZ)
    # isoformat, not strftime: glibc's %Y does not zero-pad years before 1000 (then unparseable).
    return local.isoformat(timespec="milliseconds" if millis else "seconds")
