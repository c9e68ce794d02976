"""Which registered serial a mistyped one meant (spec: protocol.md §3.2, §7).

WeChat Pay names a certificate by its serial in upper-case hex without leading zeros
(``keys.certificate_serial``), a public key by ``PUB_KEY_ID_`` and digits. Integrators often send
another spelling of the right serial: the number in decimal (Go's ``big.Int.String()``, Java's
``BigInteger.toString()``: wechatpay-go #214, wechatpay-apache-httpclient #47), lower case, or as
OpenSSL prints it (``serial=`` prefix, colons, a leading zero). Such a request stays refused, as a
serial that is not registered; the refusal names the serial it spells, so the fix is obvious.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_HEX = re.compile(r"[0-9A-Fa-f]+")
_SEPARATORS = re.compile(r"[\s:]+")
_MAX_DIGITS = 128  # a 20-byte serial is 49 decimal digits; longer text spells no serial


def _as_number(text: str, base: int) -> int | None:
    if not text or len(text) > _MAX_DIGITS:
        return None
    if base == 10 and not (text.isascii() and text.isdigit()):
        return None
    if base == 16 and not _HEX.fullmatch(text):
        return None
    return int(text, base)


def misspelt(sent: str, registered: Iterable[str]) -> tuple[str, str] | None:
    """(the registered serial ``sent`` spells, how it was written), or None when it spells none."""
    serials = [s for s in registered if s != sent]
    for serial in serials:
        if sent.upper() == serial.upper():
            return serial, "in lower case"
    decimal = _as_number(sent, 10)
    spelt = _SEPARATORS.sub("", sent)
    if spelt[:7].lower() == "serial=":
        spelt = spelt[7:]
    hexadecimal = _as_number(spelt, 16)
    for serial in serials:
        value = _as_number(serial, 16)
        if value is None:  # a PUB_KEY_ID_: only its case can be wrong
            continue
        if decimal is not None and decimal == value:
            return serial, "in decimal"
        if hexadecimal is not None and hexadecimal == value:
            return serial, "as OpenSSL prints it (a serial= prefix, colons or leading zeros)"
    return None


def hint(sent: str, registered: Iterable[str]) -> str:
    """A sentence to append to a refusal, or "" when ``sent`` spells no registered serial."""
    found = misspelt(sent, registered)
    if found is None:
        return ""
    serial, how = found
    return (
        f"; it is the registered serial {serial} written {how}: send serials exactly as registered, "
        "certificate serials in upper-case hex without leading zeros"
    )
