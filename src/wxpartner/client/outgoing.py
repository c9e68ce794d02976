"""One request as it goes on the wire, built once by the pipeline and signed over exactly these bytes.

The sync client's own HTTP/1.1 (http11.py) writes it as it is; the httpx drivers turn it into an
``httpx.Request`` (``to_httpx``) that puts the same request line and headers on the wire. Building an
``httpx.Request`` on every call cost ≈ 26 µs (its URL parser looks at every character), more than
everything else the pipeline does beside the signature; so the target is computed here, the way httpx
computes it, and httpx is asked only for what this module does not know how to write the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlencode

import httpx

# A path httpx sends as it is: unreserved and sub-delimiter characters, ':', '@', '/', and valid
# percent-escapes. Anything else (a space, a raw non-ASCII character, a lone '%') is quoted by httpx,
# and '.'/'..' segments are removed by it, so such paths take httpx's own answer (test_client_http11).
_PLAIN_PATH = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})  # httpx sends Content-Length: 0 for these


@dataclass(slots=True)
class Outgoing:
    """``target`` is the request-target (path?query) that was signed; ``headers`` in wire order."""

    method: str
    origin: str  # scheme://host[:port], as configured
    target: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def url(self) -> str:
        return self.origin + self.target

    def to_httpx(self) -> httpx.Request:
        """The same request for an httpx client (Host and Content-Length included, so httpx adds none)."""
        return httpx.Request(self.method, self.url, headers=self.headers, content=self.body or None)


def outgoing(
    method: str,
    origin: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
) -> Outgoing:
    """Headers in httpx's order: Host first, then Content-Length 0 of an empty POST/PUT/PATCH, the
    given headers, then the Content-Length of a body."""
    given = {k.lower() for k in headers}
    pairs: list[tuple[str, str]] = [] if "host" in given else [("Host", host_header(origin))]
    sized = "content-length" in given or "transfer-encoding" in given
    if not body and not sized and method in _BODY_METHODS:
        pairs.append(("Content-Length", "0"))
    pairs.extend(headers.items())
    if body and not sized:
        pairs.append(("Content-Length", str(len(body))))
    return Outgoing(method, origin, wire_target(origin, path, query), pairs, body)


def wire_target(origin: str, path: str, query: Iterable[tuple[str, str]] = ()) -> str:
    """The request-target httpx would send for ``origin + path`` with ``params=query``."""
    pairs = list(query)
    if not _PLAIN_PATH.fullmatch(path) or "/." in path:
        # httpx.Request itself: its params replace a query written into the path, which URL's don't
        return httpx.Request("GET", origin + path, params=tuple(pairs) or None).url.raw_path.decode("ascii")
    if not pairs:
        return path
    grouped: dict[str, list[str]] = {}  # httpx's QueryParams: a repeated name's values together
    for name, value in pairs:
        grouped.setdefault(name, []).append(value)
    return f"{path}?{urlencode([(name, v) for name, values in grouped.items() for v in values])}"


@lru_cache(maxsize=64)
def host_header(origin: str) -> str:
    """Host as httpx writes it: IDNA-encoded, the port only when it is not the scheme's default."""
    return httpx.URL(origin).netloc.decode("ascii")
