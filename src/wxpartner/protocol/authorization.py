"""The ``Authorization`` header: emit and parse (spec: protocol.md §4)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .constants import SCHEME
from .detail import shown_value

PARAM_NAMES = ("mchid", "nonce_str", "timestamp", "serial_no", "signature")
MAX_NONCE_LENGTH = 64
MAX_TIMESTAMP_DIGITS = 19
_PARAM = re.compile(r'\s*([A-Za-z_]+)="([^"]*)"\s*')


class AuthorizationFormatError(ValueError):
    """The header does not follow the grammar; the message says exactly where."""


@dataclass(frozen=True, slots=True)
class Authorization:
    mchid: str
    nonce_str: str
    timestamp: str
    serial_no: str
    signature: str

    def header_value(self) -> str:
        """The order both official SDKs emit; the server accepts any order."""
        return (
            f'{SCHEME} mchid="{self.mchid}",nonce_str="{self.nonce_str}",timestamp="{self.timestamp}",'
            f'serial_no="{self.serial_no}",signature="{self.signature}"'
        )


# What clients send (five key="value" pairs after the scheme, any order): one match instead of the
# piece-by-piece walk below, which stays for everything else and for its precise error messages.
_WELL_FORMED = re.compile(
    rf"\s*{re.escape(SCHEME)} +" + r",\s*".join([r'([A-Za-z_]+)="([^"]*)"'] * len(PARAM_NAMES)) + r"\s*"
)
_NAMES = frozenset(PARAM_NAMES)


def parse_authorization(value: str) -> Authorization:
    """Parse a header value; parameters in any order, each exactly once, values double-quoted."""
    m = _WELL_FORMED.fullmatch(value)
    if m is not None:
        g = m.groups()
        found = dict(zip(g[0::2], g[1::2], strict=True))
        if found.keys() == _NAMES and all(g[1::2]):
            return _checked(found)
    return _checked(_parameters(value))


def _parameters(value: str) -> dict[str, str]:
    scheme, sep, rest = value.strip().partition(" ")
    if not sep or not rest.strip():
        raise AuthorizationFormatError(f"expected '{SCHEME} key=\"value\",...'")
    if scheme != SCHEME:
        raise AuthorizationFormatError(f"unsupported scheme {scheme[:40]!r}, expected {SCHEME}")
    found: dict[str, str] = {}
    for part in _split_params(rest):
        m = _PARAM.fullmatch(part)
        if m is None:
            raise AuthorizationFormatError(f'malformed parameter {part.strip()[:60]!r}: expected key="value"')
        key, val = m.group(1), m.group(2)
        if key not in PARAM_NAMES:
            raise AuthorizationFormatError(f"unknown parameter {shown_value(None, key)!r}")
        if key in found:
            raise AuthorizationFormatError(f"duplicate parameter {shown_value(None, key)!r}")
        if not val:
            raise AuthorizationFormatError(f"empty parameter {shown_value(None, key)!r}")
        found[key] = val
    missing = [k for k in PARAM_NAMES if k not in found]
    if missing:
        raise AuthorizationFormatError("missing parameter(s): " + ", ".join(missing))
    return found


def _checked(found: dict[str, str]) -> Authorization:
    ts = found["timestamp"]
    # The length cap keeps int() cheap and bounded (Python refuses >4300 digits with a ValueError).
    if not ts.isascii() or not ts.isdigit() or len(ts) > MAX_TIMESTAMP_DIGITS:
        raise AuthorizationFormatError("timestamp must be decimal Unix seconds")
    nonce = found["nonce_str"]
    # Emulator choice (spec §3.1): 1-64 printable ASCII characters; also what the replay table stores.
    if len(nonce) > MAX_NONCE_LENGTH or not (nonce.isascii() and nonce.isprintable()):
        raise AuthorizationFormatError(
            f"nonce_str must be 1-{MAX_NONCE_LENGTH} printable ASCII characters (got {len(nonce)})"
        )
    for key in ("mchid", "serial_no"):  # looked up in the database, where a NUL cannot even be asked for
        if not found[key].isprintable():
            raise AuthorizationFormatError(f"{key} must be printable characters")
    return Authorization(**found)


# A quoted run or any run of characters that are neither quotes nor commas: the pieces between
# top-level commas. Regex-driven because this runs on every request (a per-character loop cost ~0.1 ms).
_PIECE = re.compile(r'"[^"]*"?|[^",]+')


def _split_params(rest: str) -> list[str]:
    """Split on commas outside quotes so a stray comma inside a value is reported, not misparsed."""
    if '"' not in rest:
        return rest.split(",")
    parts: list[str] = []
    current = ""
    pos = 0
    for m in _PIECE.finditer(rest):
        between = rest[pos : m.start()]  # only commas can sit between pieces
        for _ in between:
            parts.append(current)
            current = ""
        current += m.group()
        pos = m.end()
    for _ in rest[pos:]:
        parts.append(current)
        current = ""
    parts.append(current)
    return parts
