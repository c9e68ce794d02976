"""The operation table and the glue that turns a table row into a typed method on both clients.

A row (``Op``) says method, path template, request/response model, whether a repeat is harmless and
which fields are sensitive. A resource method is a one-line builder decorated with ``@endpoint``:
``client.webizpay.quota_cards.issue(...)`` returns the model on ``Client`` and an awaitable of it on
``AsyncClient``, from the same definition (mypy sees both exactly).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, get_args, get_type_hints, overload
from urllib.parse import quote

from pydantic import BaseModel

from .core import Call, Response, model_decoder, no_content, query_text, raw_response
from .policy import TimeoutLike, as_timeout

P = ParamSpec("P")
T = TypeVar("T")
B = TypeVar("B", bound=BaseModel)
Item = TypeVar("Item", covariant=True)


class Sync:
    """Marker: resources bound to a ``Client``."""


class Async:
    """Marker: resources bound to an ``AsyncClient``."""


M = TypeVar("M", Sync, Async)


@dataclass(frozen=True)
class Op(Generic[T]):
    """One row of the table. ``response`` None means 204 (no body)."""

    op_id: str
    method: str
    template: str
    response: type[T] | None
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    idempotent: bool = False
    sensitive: Sequence[str] = field(default=())

    def call(
        self,
        path: Mapping[str, str | int] | None = None,
        *,
        body: BaseModel | Mapping[str, Any] | None = None,
        query: BaseModel | Mapping[str, Any] | None = None,
        timeout: TimeoutLike | None = None,
    ) -> Call[T]:
        """The call with these path values, body and query; ``timeout`` bounds each of its attempts
        (seconds or an ``httpx.Timeout``, as the client's ``timeout=``; None: the client's)."""
        shape: BaseModel | None = body if isinstance(body, BaseModel) else None
        if body is not None and self.body is not None and shape is None:
            # Checked here, before anything is sent; the dict itself goes out, so keys newer than
            # our models still reach the server.
            shape = self.body.model_validate(dict(body))
        pairs: list[tuple[str, str]] = []
        if query is not None:
            if self.query is not None and not isinstance(query, BaseModel):
                query = self.query.model_validate(dict(query))
            raw = (
                query.model_dump(mode="json", exclude_none=True, by_alias=True)
                if isinstance(query, BaseModel)
                else dict(query)
            )
            pairs = [(k, query_text(v)) for k, v in raw.items() if v is not None]
        decode: Callable[[Response], Any] = (
            model_decoder(self.response) if self.response is not None else no_content  # type: ignore[arg-type]
        )
        return Call(
            self.method,
            fill(self.template, **(path or {})),
            decode,
            query=tuple(pairs),
            body=body,
            idempotent=self.idempotent,
            op_id=self.op_id,
            sensitive=tuple(self.sensitive),
            shape=shape,
            timeout=None if timeout is None else as_timeout(timeout),
        )


def fill(template: str, **params: str | int) -> str:
    """Fill ``{name}`` placeholders with percent-encoded values (the signature covers the encoded form)."""
    out = template
    for name, value in params.items():
        out = out.replace("{" + name + "}", quote(str(value), safe=""))
    if "{" in out:
        raise ValueError(f"path parameter missing in {out}")
    return out


class Resource(Generic[M]):
    """A group of operations bound to one client (its ``execute`` runs a ``Call``)."""

    def __init__(self, runner: Any) -> None:
        self._runner = runner
        self._async = inspect.iscoroutinefunction(runner.execute)

    def __repr__(self) -> str:
        """``<QuotaCards of Client(mchid='…', base_url='…'): issue, get, …>``: which merchant and server
        the group calls, and its operations (the client's repr holds no key material)."""
        return f"<{type(self).__name__} of {self._runner!r}: {', '.join(operation_names(type(self)))}>"


def operation_names(cls: type) -> list[str]:
    """The ``@endpoint`` and ``@paged`` methods of a resource class, in the order they are defined."""
    names: list[str] = []
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            if isinstance(value, endpoint | paged) and name not in names:
                names.append(name)
    return names


class endpoint(Generic[P, T]):
    """Turns ``def issue(...) -> Call[X]`` into ``issue(...) -> X`` (sync) / ``Awaitable[X]`` (async)."""

    def __init__(self, build: Callable[P, Call[T]]) -> None:
        self.build = build
        self.__doc__ = build.__doc__
        self._signature: inspect.Signature | None = None

    def signature(self) -> inspect.Signature:
        """The builder's parameters (what ``help()``, IPython and ``inspect.signature`` show for the
        bound method, instead of ``(*args, **kwargs)``) and the model it returns (``Call[X]`` → ``X``)."""
        if self._signature is None:
            self._signature = resolved_signature(self.build, lambda model: model)
        return self._signature

    def __repr__(self) -> str:  # what help() on a resource shows (cut at 70 characters): names only
        return f"<operation {getattr(self.build, '__name__', '?')}{short_signature(self.signature())}>"

    @overload
    def __get__(self, obj: None, owner: Any) -> endpoint[P, T]: ...
    @overload
    def __get__(self, obj: Resource[Sync], owner: Any) -> Callable[P, T]: ...
    @overload
    def __get__(self, obj: Resource[Async], owner: Any) -> Callable[P, Awaitable[T]]: ...
    def __get__(self, obj: Any, owner: Any) -> Any:
        if obj is None:
            return self
        build, runner = self.build, obj._runner
        bound: Any  # a function; it gets a __signature__
        if obj._async:
            # A coroutine function, so inspect/asyncio.iscoroutinefunction tell the truth about it.
            async def bound_async(*args: Any, **kwargs: Any) -> Any:
                return await runner.execute(build(*args, **kwargs))

            bound = bound_async
        else:

            def bound_sync(*args: Any, **kwargs: Any) -> Any:
                return runner.execute(build(*args, **kwargs))

            bound = bound_sync
        return _dressed(bound, obj, build, self.signature())


class Page(Protocol[Item]):
    """An offset/limit page as WeChat Pay answers it (W16: ``offset``, ``limit``, ``count``,
    ``total_count``, ``data``)."""

    @property
    def count(self) -> int: ...
    @property
    def total_count(self) -> int: ...
    @property
    def data(self) -> Sequence[Item]: ...


class paged(Generic[P, Item]):
    """Turns ``def f(..., offset: int) -> Call[Page[X]]`` (``offset`` first) into a method that walks
    every page: an ``Iterator[X]`` on ``Client``, an ``AsyncIterator[X]`` on ``AsyncClient``. It asks
    for the next page until one comes back short or ``total_count`` is reached; offset paging over a list
    that changes meanwhile may skip or repeat an item, as the API itself does."""

    def __init__(self, build: Callable[Concatenate[int, P], Call[Page[Item]]]) -> None:
        self.build = build
        self.__doc__ = build.__doc__
        self._signature: inspect.Signature | None = None

    def signature(self) -> inspect.Signature:
        """The builder's parameters after ``offset``, which the walk supplies."""
        if self._signature is None:
            sig = resolved_signature(self.build, lambda _page: inspect.Signature.empty)
            self._signature = sig.replace(parameters=list(sig.parameters.values())[1:])
        return self._signature

    def __repr__(self) -> str:
        return f"<operation {getattr(self.build, '__name__', '?')}{short_signature(self.signature())}>"

    @overload
    def __get__(self, obj: None, owner: Any) -> paged[P, Item]: ...
    @overload
    def __get__(self, obj: Resource[Sync], owner: Any) -> Callable[P, Iterator[Item]]: ...
    @overload
    def __get__(self, obj: Resource[Async], owner: Any) -> Callable[P, AsyncIterator[Item]]: ...
    def __get__(self, obj: Any, owner: Any) -> Any:
        if obj is None:
            return self
        build, runner = self.build, obj._runner

        def more(page: Page[Item], offset: int) -> bool:
            return page.count > 0 and offset < page.total_count

        bound: Any  # a function; it gets a __signature__
        if obj._async:

            async def walk_async(*args: Any, **kwargs: Any) -> AsyncIterator[Item]:
                offset = 0
                while True:
                    page = await runner.execute(build(offset, *args, **kwargs))
                    for item in page.data:
                        yield item
                    offset += page.count
                    if not more(page, offset):
                        return

            bound = walk_async
        else:

            def walk_sync(*args: Any, **kwargs: Any) -> Iterator[Item]:
                offset = 0
                while True:
                    page = runner.execute(build(offset, *args, **kwargs))
                    yield from page.data
                    offset += page.count
                    if not more(page, offset):
                        return

            bound = walk_sync
        return _dressed(bound, obj, build, self.signature())


def resolved_signature(build: Callable[..., Any], returns: Callable[[Any], Any]) -> inspect.Signature:
    """``build``'s signature with its annotations evaluated (``help()`` showed the strings
    ``'w.IssueQuotaCardRequest | Body'``) and ``returns(X)`` for its ``Call[X]`` (it showed no return
    type, so the response model could only be found in the source). As written, if they do not evaluate."""
    sig = inspect.signature(build)
    try:
        hints = get_type_hints(build)
    except Exception:  # an annotation naming what only a type checker imports
        return sig.replace(return_annotation=inspect.Signature.empty)
    params = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in sig.parameters.values()]
    call_args = get_args(hints.get("return"))
    model = None if call_args and call_args[0] is type(None) else call_args[0] if call_args else None
    result = returns(model) if call_args else inspect.Signature.empty
    return sig.replace(parameters=params, return_annotation=result)


def short_signature(sig: inspect.Signature) -> str:
    """``(employee_id, request) -> IssueQuotaCardResponse``: parameter names, the model's bare name."""
    text = str(
        sig.replace(  # every operation takes timeout=: naming it would push the rest past help()'s cut
            parameters=[
                p.replace(annotation=p.empty) for p in sig.parameters.values() if p.name != "timeout"
            ],
            return_annotation=inspect.Signature.empty,
        )
    )
    returns = sig.return_annotation
    if returns is inspect.Signature.empty:
        return text
    return f"{text} -> {getattr(returns, '__name__', returns)}"


def operations_of(build: Callable[..., Any]) -> tuple[Op[Any], ...]:
    """The table rows (``Op``) a builder calls: the module-level ``Op`` constants its code names (every
    resource method builds its ``Call`` from one; ``tests/test_client_reprs.py`` checks they all do)."""
    code = getattr(build, "__code__", None)
    names = code.co_names if code is not None else ()
    found = getattr(build, "__globals__", {})
    ops: list[Op[Any]] = []
    for name in names:
        value = found.get(name)
        if isinstance(value, Op) and value not in ops:
            ops.append(value)
    return tuple(ops)


def describe(ops: Sequence[Op[Any]]) -> str:
    """``webizpay.issue_quota_card: POST /v3/webizpay/employees/{employee_id}/quota-cards``."""
    return "; ".join(f"{op.op_id}: {op.method} {op.template}" for op in ops) or "no operation"


class BoundOperation:
    """An operation of one client: ``client.webizpay.quota_cards.issue``. Called, it runs the operation;
    shown, it says which (``<operation webizpay.issue_quota_card: POST /v3/webizpay/employees/
    {employee_id}/quota-cards (QuotaCards.issue of Client(mchid=…, base_url=…))>``; it was a plain
    function's ``<function QuotaCards.issue at 0x…>``). ``help()``, IPython and ``inspect`` see a
    function: its name, parameters and return model, its docstring with the method, path and whether a
    repeat is safe, and an async one is a coroutine function (``inspect.iscoroutinefunction``)."""

    def __init__(
        self, run: Callable[..., Any], resource: Any, build: Callable[..., Any], signature: inspect.Signature
    ) -> None:
        self._run = run
        self._owner = resource._runner
        self.operations = operations_of(build)
        self.__name__ = getattr(build, "__name__", "operation")
        self.__qualname__ = f"{type(resource).__name__}.{self.__name__}"
        self.__module__ = build.__module__
        self.__signature__ = signature
        # What inspect reads to tell a function (and a coroutine function) from other callables.
        self.__code__ = run.__code__
        self.__defaults__: tuple[Any, ...] | None = None
        self.__kwdefaults__: dict[str, Any] | None = None
        self.__annotations__: dict[str, Any] = {}
        wire = "\n".join(
            f"``{op.method} {op.template}`` ({op.op_id}; "
            + (
                "repeated after an ambiguous failure"
                if op.idempotent
                else "never repeated after an ambiguous failure"
            )
            + ")"
            for op in self.operations
        )
        self.__doc__ = "\n\n".join(part for part in (inspect.cleandoc(build.__doc__ or ""), wire) if part)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._run(*args, **kwargs)

    def __get__(self, obj: object, owner: object = None) -> BoundOperation:
        return self  # already bound; this also makes pydoc document it as a routine

    def __repr__(self) -> str:
        return f"<operation {describe(self.operations)} ({self.__qualname__} of {self._owner!r})>"


def _dressed(bound: Any, resource: Any, build: Callable[..., Any], signature: inspect.Signature) -> Any:
    """``bound`` as ``help()``, IPython and ``inspect`` should show it: the builder's name, docstring and
    parameters, named after the resource (``QuotaCards.issue``), and its repr the operation it runs."""
    return BoundOperation(bound, resource, build, signature)


__all__ = [
    "Async",
    "BoundOperation",
    "Op",
    "Page",
    "Resource",
    "Sync",
    "endpoint",
    "fill",
    "paged",
    "raw_response",
]
