"""Response header names as WeChat Pay writes them on the wire (spec: protocol.md §5.2, §11.4).

ASGI servers write every name in lower case (uvicorn lower-cases what the app gives it); WeChat Pay
writes ``Request-ID``, ``Wechatpay-Signature``, ``Content-Type``. HTTP/1.1 names are
case-insensitive, but hand-written integrations that search the raw head for
``Wechatpay-Signature:`` exist, and a sandbox should answer as production does. ``canonical_head``
rewrites the names of one serialised response head; values, the status line and the order stay as
they are.
"""

from __future__ import annotations

# Names whose usual form is not "each dash-separated word capitalised".
_SPECIAL = {
    b"request-id": b"Request-ID",  # WeChat Pay's own spelling (Go's canonical form would be Request-Id)
    b"www-authenticate": b"WWW-Authenticate",
    b"etag": b"ETag",
}
_MAX_CACHED = 512  # names come from our own apps, a bounded set; the bound only guards the cache
_cache: dict[bytes, bytes] = dict(_SPECIAL)


def canonical_name(name: bytes) -> bytes:
    """``request-id`` → ``Request-ID``, ``wechatpay-signature-type`` → ``Wechatpay-Signature-Type``."""
    found = _cache.get(name)
    if found is not None:
        return found
    low = name.lower()
    canon = _SPECIAL.get(low) or b"-".join(part[:1].upper() + part[1:] for part in low.split(b"-"))
    if len(_cache) < _MAX_CACHED:
        _cache[name] = canon
    return canon


def canonical_head(head: bytes) -> bytes:
    """One response head (status line, header lines, the blank line) with its header names in their
    canonical form. Anything that is not a ``name: value`` line is left as it is. (≈ 4 µs for a signed
    answer's 12 lines: split and cached lookups; a regular expression was slower.)"""
    lines = head.split(b"\r\n")
    cached = _cache.get
    out = [lines[0]]
    for line in lines[1:]:
        name, colon, rest = line.partition(b":")
        if colon and name:
            out.append((cached(name) or canonical_name(name)) + colon + rest)
        else:
            out.append(line)
    return b"\r\n".join(out)
