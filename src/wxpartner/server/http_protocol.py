"""uvicorn's httptools protocol with a bound on the request head (see server/limits.py).

httptools buffers a header line of any length until it ends; a client sending an endless header would
grow the server's memory without limit. This subclass closes such a connection with a WeChat error
body once the unfinished head passes ``limits.HEAD_LIMIT`` bytes. Serve with
``uvicorn.run(..., http=BoundedHttpToolsProtocol)`` (a module-level class, so worker processes can
import it). Imported only by whoever starts uvicorn, never by the app.
"""

from __future__ import annotations

from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..protocol import constants as c
from ..protocol.errors import ApiError
from .http import BARE_QUERY, new_request_id
from .limits import HEAD_LIMIT, headers_too_large


def _refusal(err: ApiError) -> bytes:
    body = err.body_bytes()
    head = (
        f"HTTP/1.1 {err.status} Bad Request\r\ncontent-type: {c.JSON_CONTENT_TYPE}\r\n"
        f"{c.H_REQUEST_ID.lower()}: {new_request_id()}\r\ncontent-language: zh-CN\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class BoundedHttpToolsProtocol(HttpToolsProtocol):  # type: ignore[misc]
    """httptools, but a request head still unfinished after HEAD_LIMIT bytes closes the connection with
    a 400 instead of being buffered without bound, and uvicorn's plain-text 400 for unparseable HTTP
    becomes a WeChat error body. Bodies are untouched (the app bounds them)."""

    _head_bytes = 0
    _in_head = True

    def on_message_begin(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._in_head = False
        bare_query = self.url.endswith(b"?")
        super().on_headers_complete()  # builds the scope; the app runs later, in a task
        if bare_query:
            cast(dict[str, Any], self.scope)[BARE_QUERY] = True  # a key of ours, not of ASGI

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
