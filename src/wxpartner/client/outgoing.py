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
_GIVEN_SPECIALLY = frozenset({"host", "content-length", "transfer-encoding"})
_LENGTH = re.compile(r"[0-9]{1,20}")  # h11's Content-Length: digits, at most 20 of them


@dataclass(slots=True)
class Outgoing:
    """``target`` is the request-target (path?query) that was signed; ``headers`` in wire order."""

    method: str
    origin: str  # scheme://host[:port], as configured
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    # The caller gave Transfer-Encoding: chunked (allowed only without a body): the empty body goes as
    # its last chunk, as h11 writes it.
    chunked: bool = False

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
    given headers, then the Content-Length of a body. A Host, Content-Length or Transfer-Encoding the
    caller gives: see ``given_framing``."""
    target = wire_target(origin, path, query)
    if not _GIVEN_SPECIALLY.isdisjoint(k.lower() for k in headers):
        return given_framing(method, origin, target, headers, body)
    pairs = [("Host", host_header(origin))]
    if not body and method in _BODY_METHODS:
        pairs.append(("Content-Length", "0"))
    pairs.extend(headers.items())
    if body:
        pairs.append(("Content-Length", str(len(body))))
    return Outgoing(method, origin, target, pairs, body)


def given_framing(method: str, origin: str, target: str, headers: Mapping[str, str], body: bytes) -> Outgoing:
    """The request httpx (with h11) would send when the caller gives Host, Content-Length or
    Transfer-Encoding, or ``httpx.LocalProtocolError`` before anything is sent where h11 refuses it or
    where what httpx sends is wrong or ambiguous:

    - a given Host replaces the origin's, and goes first (h11 writes Host first whatever its place);
    - a given Content-Length replaces the body's, as h11 normalizes it ("7, 7" is 7; twice the same
      is written once); one that is not the body's length is refused (httpx sends the headers, then
      fails: "Too much data" or "Too little data for declared Content-Length");
    - a given Transfer-Encoding must be "chunked" (h11 refuses any other), written in lower case,
      and without a body, which goes as the last chunk alone. With a body, httpx also adds the body's
      Content-Length and sends both headers, and so with a given Content-Length: a request one server
      may frame by its length and another by its chunks. Both are refused.
    """
    hosts: list[tuple[str, str]] = []
    pairs: list[tuple[str, str]] = []
    length: str | None = None
    coding = False
    for name, value in headers.items():
        key = name.lower()
        if key == "host":
            hosts.append((name, value))
            continue
        if key == "content-length":
            lengths = {part.strip(" \t") for part in value.split(",")}
            if len(lengths) > 1 or (length is not None and lengths != {length}):
                raise httpx.LocalProtocolError(f"conflicting Content-Length headers given: {value!r}")
            written = lengths.pop()
            if value != value.strip(" \t") or not _LENGTH.fullmatch(written):
                raise httpx.LocalProtocolError(f"bad Content-Length given: {value!r}")
            if int(written) != len(body):
                raise httpx.LocalProtocolError(
                    f"Content-Length {value!r} given for a body of {len(body)} bytes: refused before "
                    "sending (httpx would send the headers, then fail)"
                )
            if length is not None:
                continue  # the same length twice: h11 writes it once
            length, value = written, written
        elif key == "transfer-encoding":
            if coding:
                raise httpx.LocalProtocolError("multiple Transfer-Encoding headers given")
            if value.lower() != "chunked":
                raise httpx.LocalProtocolError(
                    f"Transfer-Encoding {value!r} given: only chunked is supported (as in h11)"
                )
            coding, value = True, "chunked"
        pairs.append((name, value))
    if coding and (body or length is not None):
        raise httpx.LocalProtocolError(
            "Transfer-Encoding given with "
            + ("a Content-Length" if length is not None else f"a body of {len(body)} bytes")
            + ": httpx would send both Content-Length and Transfer-Encoding, an ambiguous framing; "
            "leave both to the SDK, which sends the body's Content-Length"
        )
    auto = [] if hosts else [("Host", host_header(origin))]
    if not body and length is None and not coding and method in _BODY_METHODS:
        auto.append(("Content-Length", "0"))
    if body and length is None:
        pairs.append(("Content-Length", str(len(body))))
    return Outgoing(method, origin, target, hosts + auto + pairs, body, chunked=coding)


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
