"""Sending through an HTTP client the caller gave (``http_client=``): httpx's, or one of a library with
httpx's API, i.e. httpx2, the fork Starlette's TestClient uses as soon as it is installed (Starlette
1.x deprecates its httpx fallback). An ``httpx.Request`` handed to an httpx2 client is not one of its
own ("Attempted to send an async request with a sync Client instance"), so the request is built from
the client's own library, and that library's transport errors are turned into httpx's for the rest of
the pipeline (the retry policy tells "not sent" from "maybe sent" by httpx's classes)."""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any, Protocol

import httpx

from .outgoing import Outgoing


class SyncHTTPClient(Protocol):
    """``httpx.Client`` or a client of a library with its API (httpx2, Starlette's TestClient)."""

    def send(self, request: Any) -> Any: ...


class AsyncHTTPClient(Protocol):
    """``httpx.AsyncClient`` or a client of a library with its API (httpx2)."""

    async def send(self, request: Any) -> Any: ...


_LIBRARIES: dict[type, ModuleType] = {}


def library_of(client: object) -> ModuleType:
    """The httpx-like library that defines ``client``'s class (a subclass counts: Starlette's TestClient
    is an httpx or httpx2 ``Client``); httpx when none is found."""
    kind = type(client)
    found = _LIBRARIES.get(kind)
    if found is None:
        found = httpx
        for cls in kind.__mro__:
            root = sys.modules.get(cls.__module__.partition(".")[0])
            if root is not None and all(
                isinstance(getattr(root, name, None), type) for name in ("Request", "TransportError")
            ):
                found = root
                break
        _LIBRARIES[kind] = found
    return found


def request_for(client: object, request: Outgoing, timeout: httpx.Timeout) -> Any:
    """The outgoing request as ``client``'s library's Request, with the SDK's timeouts."""
    library = library_of(client)
    if library is httpx:
        built: Any = request.to_httpx()
    else:
        built = library.Request(
            request.method, request.url, headers=request.headers, content=request.body or None
        )
    built.extensions["timeout"] = timeout.as_dict()
    return built


def transport_error(exc: BaseException) -> Exception | None:
    """``exc`` as the pipeline knows transport failures (httpx's classes, or ``OSError``); None when it
    is not one (it then propagates). An httpx2 ``ConnectError`` becomes httpx's ``ConnectError``."""
    if isinstance(exc, httpx.TransportError | OSError):
        return exc
    if not isinstance(exc, Exception):
        return None
    names = [cls.__name__ for cls in type(exc).__mro__]
    if "TransportError" not in names or library_of(exc) is httpx:
        return None
    for name in names:  # the most specific class httpx also has
        twin = getattr(httpx, name, None)
        if isinstance(twin, type) and issubclass(twin, httpx.TransportError):
            converted: Exception = twin(str(exc))
            converted.__cause__ = exc
            return converted
    return None  # pragma: no cover - "TransportError" itself is always found
