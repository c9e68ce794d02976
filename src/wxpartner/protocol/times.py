"""RFC 3339 date-times with an explicit offset, as every APIv3 body carries them."""

from __future__ import annotations

import datetime as dt
import re

CHINA_TZ = dt.timezone(dt.timedelta(hours=8))

# ASCII digits (re.ASCII): Python's \d also matches full-width and other scripts' digits, which int()
# reads, so "２０２７-１２-３１T23:59:59+08:00" was taken and echoed back as the card's end time.
# ``T`` and ``Z`` in either case: RFC 3339 §5.6 ("may alternatively be lower case"); the seeds write
# upper case, and so does every answer (``format_rfc3339``, ``china_time_text``).
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})\Z", re.ASCII
)


def parse_rfc3339(value: str) -> dt.datetime:
    """Strict: date, ``T``, time, optional fraction, and ``Z`` or ``±hh:mm`` (``t``/``z`` too, as RFC
    3339 §5.6 allows). Raises ValueError."""
    m = _RFC3339.match(value)
    if m is None:
        raise ValueError("expected RFC 3339 date-time with offset, e.g. 2025-05-20T13:29:35+08:00")
    year, month, day, hour, minute, second, frac, zone = m.groups()
    micro = int((frac[1:] + "000000")[:6]) if frac else 0
    return dt.datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=_zone(zone)
    )


_ZONES: dict[str, dt.timezone] = {"Z": dt.UTC, "z": dt.UTC}


def _zone(text: str) -> dt.timezone:
    """``Z`` or ``±hh:mm`` as a timezone; the few offsets ever seen are kept (answers carry +08:00)."""
    tz = _ZONES.get(text)
    if tz is None:
        hh, mm = int(text[1:3]), int(text[4:6])
        if hh > 23 or mm > 59:
            raise ValueError("offset out of range")
        tz = dt.timezone((1 if text[0] == "+" else -1) * dt.timedelta(hours=hh, minutes=mm))
        if len(_ZONES) < 64:
            _ZONES[text] = tz
    return tz


def format_rfc3339(value: dt.datetime, *, millis: bool = False) -> str:
    """China time with offset (``2025-05-20T13:29:35+08:00``), optionally with milliseconds."""
    local = value.astimezone(CHINA_TZ)
    # isoformat, not strftime: glibc's %Y does not zero-pad years before 1000 (then unparseable).
    return local.isoformat(timespec="milliseconds" if millis else "seconds")


def china_time_text(value: str) -> str:
    """A time a request carried (any form ``parse_rfc3339`` takes), answered as the seeds write times:
    the same instant in China time, ``2023-12-31T23:59:59+08:00``. A fraction sent is kept digit for
    digit (offsets are whole minutes, so the instant's fraction is the one sent); a time that China
    time cannot write with a four-digit year (after 9999-12-31T15:59:59Z) keeps its own offset, with
    ``T`` and ``Z`` in upper case. Raises ValueError for text ``parse_rfc3339`` refuses."""
    parsed = parse_rfc3339(value)
    m = _RFC3339.match(value)
    fraction = (m.group(7) if m else None) or ""
    try:
        text = format_rfc3339(parsed.replace(microsecond=0))
    except OverflowError:
        return value.upper()
    return text[:-6] + fraction + text[-6:]
