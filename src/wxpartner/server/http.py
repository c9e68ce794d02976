"""Framework-free request/response values the APIv3 pipeline works on (exact bytes in and out)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from ..protocol.messages import canonical_url

if TYPE_CHECKING:
    from ..domain.merchants import Caller

# A scope key set by the serving protocol (server/http_protocol.py) when the request target ended in a
# bare '?': ASGI's query_string cannot tell "/x?" from "/x".
BARE_QUERY = "wxpartner.bare_query"


@dataclass(slots=True)
class RawRequest:
    method: str
    raw_path: str  # still percent-encoded, exactly as sent
    raw_query: str  # exactly as sent, without '?'
    headers: dict[str, str]  # lower-case names; a repeated header keeps every value joined by ", "
    body: bytes
    client: str = ""
    duplicate_headers: frozenset[str] = frozenset()
    # The target ended in a bare '?' ("/v3/x?"): a client that builds its URL with one (Go's
    # url.RequestURI() keeps it) signs it too, and the signature covers the target as received.
    bare_query: bool = False
    # Set by the pipeline once the signature is verified: whom an answer cut off by a stop is signed for.
    caller: Caller | None = None
    # Set by the pipeline as it takes the request: the Request-ID its handler's journal entry carries.
    request_id: str | None = None

    def target(self) -> str:
        """The request target as received: the URL line of the string to sign."""
        url = canonical_url(self.raw_path, self.raw_query)
        return url + "?" if self.bare_query else url

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def query_params(self) -> dict[str, list[str]]:
        return parse_qs(self.raw_query, keep_blank_values=True)


@dataclass(slots=True)
class RawResponse:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    delay_s: float = 0.0  # sandbox latency fault: how long to hold the answer back

    def header(self, name: str) -> str | None:
        low = name.lower()
        for k, v in self.headers:
            if k.lower() == low:
                return v
        return None
