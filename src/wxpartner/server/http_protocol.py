"""uvicorn's httptools protocol with bounds on the request head, on how long a client may take to
send a request, and on how many connections a worker holds (see server/limits.py), and response
header names in WeChat Pay's case (``Request-ID``, ``Wechatpay-Signature``: protocol/header_names.py).

httptools buffers a header line of any length until it ends; a client sending an endless header would
grow the server's memory without limit. This subclass closes such a connection with a WeChat error
body once the unfinished head passes ``limits.HEAD_LIMIT`` bytes. Serve with
``uvicorn.run(..., http=BoundedHttpToolsProtocol)`` (a module-level class, so worker processes can
import it). Imported only by whoever starts uvicorn, never by the app.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..protocol import constants as c
from ..protocol.errors import ApiError
from ..protocol.header_names import canonical_head
from ..protocol.request_ids import new_request_id
from .http import BARE_QUERY
from .limits import BODY_TIMEOUT, HEAD_LIMIT, HEAD_TIMEOUT, connection_cap, headers_too_large

log = logging.getLogger("wxpartner.http")


def _refusal(err: ApiError) -> bytes:
    body = err.body_bytes()
    head = (
        f"HTTP/1.1 {err.status} Bad Request\r\nContent-Type: {c.JSON_CONTENT_TYPE}\r\n"
        f"{c.H_REQUEST_ID}: {new_request_id()}\r\nContent-Language: zh-CN\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class _CanonicalHeads:
    """A request's view of the connection's transport: a response head written through it (uvicorn
    writes each in one call, after lower-casing every name) goes out with the names in their
    canonical case; bodies pass as they are. An interim ``100 Continue`` is a head too, and the final
    head still follows it."""

    __slots__ = ("_head_done", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._head_done = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._head_done and bytes(data[:5]) == b"HTTP/":
            self._head_done = bytes(data[9:10]) != b"1"  # "HTTP/1.1 1xx": more heads to come
            data = canonical_head(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:  # is_closing, close, get_extra_info, ...
        return getattr(self._transport, name)


class BoundedHttpToolsProtocol(HttpToolsProtocol):  # type: ignore[misc]
    """httptools, but a request head still unfinished after HEAD_LIMIT bytes or HEAD_TIMEOUT seconds
    closes the connection with a 400 instead of being buffered or waited for without bound, a body not
    complete BODY_TIMEOUT seconds after its head closes it, and uvicorn's plain-text 400 for
    unparseable HTTP becomes a WeChat error body. Body sizes are the app's to bound."""

    _head_bytes = 0
    _in_head = True
    _begun = False  # a request has started arriving (its first byte), and is not complete yet
    # When what the client is sending (a head, then its body) must be complete; None while nothing is
    # awaited from it (the app is answering, or uvicorn's keep-alive timeout governs an idle connection).
    # Setting it is all a request pays: ONE timer per connection checks it, at the deadline or at least
    # once per the shorter timeout, instead of a timer made and cancelled per phase (≈ 4 µs a request).
    _deadline: float | None = None
    _timer: asyncio.TimerHandle | None = None
    head_timeout = HEAD_TIMEOUT
    body_timeout = BODY_TIMEOUT
    max_connections: int | None = None  # limits.connection_cap() unless a subclass says
    _refused_logged_at = float("-inf")

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # uvicorn's bookkeeping; connection_lost undoes it
        cap = type(self).max_connections
        if cap is None:
            cap = type(self).max_connections = connection_cap()
        if len(self.connections) > cap:
            self._refuse_connection(cap)
            return
        self._deadline = self.loop.time() + self.head_timeout  # one that sends nothing is not kept
        self._check_deadline()

    def _refuse_connection(self, cap: int) -> None:
        """Past the cap: closed at once, before anything is read (a client sees the connection closed
        unanswered, which the SDK knows as "not sent" and may retry). Logged at most once a minute."""
        now = self.loop.time()
        if now - BoundedHttpToolsProtocol._refused_logged_at >= 60:
            BoundedHttpToolsProtocol._refused_logged_at = now
            log.warning(
                "refusing connections: %d open, the cap is %d (the open-files limit less a reserve; "
                "raise it with ulimit -n)",
                len(self.connections) - 1,
                cap,
            )
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        self._in_head = self._begun = True
        self._head_bytes = 0
        super().on_message_begin()
        if self._deadline is None:  # a later request on the connection: timed from its first byte
            self._deadline = self.loop.time() + self.head_timeout

    def on_headers_complete(self) -> None:
        self._in_head = False
        bare_query = self.url.endswith(b"?")
        cycle = self.cycle
        super().on_headers_complete()  # builds the scope and a cycle; the app runs later, in a task
        if self.cycle is not cycle:  # not an upgrade: the new request's answer goes out through it
            self.cycle.transport = cast(asyncio.Transport, _CanonicalHeads(self.transport))
        if bare_query:
            cast(dict[str, Any], self.scope)[BARE_QUERY] = True  # a key of ours, not of ASGI
        self._deadline = self.loop.time() + self.body_timeout

    def on_message_complete(self) -> None:
        self._deadline = None  # received whole: how long the app takes is not the client's doing
        self._begun = False
        super().on_message_complete()

    def _check_deadline(self) -> None:
        """The connection's timer: time out a phase past its deadline, else look again at the deadline
        or within the shorter timeout, whichever is sooner (a deadline set meanwhile is never nearer
        than that, so it is never looked at late)."""
        self._timer = None
        if self.transport.is_closing():
            return
        now = self.loop.time()
        if self._deadline is not None and now >= self._deadline:
            self._timed_out()
            return
        step = min(self.head_timeout, self.body_timeout)
        due = now + step if self._deadline is None else min(self._deadline, now + step)
        self._timer = self.loop.call_at(due, self._check_deadline)

    def _timed_out(self) -> None:
        # _head_bytes misses the chunk that begins a later request on the connection (it arrives while
        # the last one's body is done): a head timed out there was closed without its 400.
        if self._in_head and self._begun:
            issue = f"request head not complete within {self.head_timeout:g} s"
            err = ApiError(
                "INVALID_REQUEST", f"无效请求：{issue}", detail={"location": "http", "issue": issue}
            )
            self.transport.write(_refusal(err))
        # Nothing sent, or a body still arriving (its app sees a disconnect and handles nothing).
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        counting = self._in_head  # a chunk that finishes the head is never refused
        super().data_received(data)
        if not counting or not self._in_head or self.transport.is_closing():
            return
        self._head_bytes += len(data)
        if self._head_bytes > HEAD_LIMIT:
            err = headers_too_large(f"request head larger than {HEAD_LIMIT} bytes", HEAD_LIMIT)
            self.transport.write(_refusal(err))
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """Unparseable HTTP (bad request line, bad Content-Length, ...): a WeChat error body too."""
        err = ApiError("INVALID_REQUEST", f"无效请求：{msg}", detail={"location": "http", "issue": msg})
        self.transport.write(_refusal(err))
        self.transport.close()
