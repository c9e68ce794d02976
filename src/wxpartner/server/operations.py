"""The table of APIv3 operations: method + path template -> handler and its models.

Product families declare their operations with ``@operation(...)``; the pipeline routes, verifies,
validates and signs around them, so a handler reads like a table row: parse, call the domain, return.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from pydantic import BaseModel

Handler = Callable[..., Any]


@dataclass(frozen=True)
class Operation:
    op_id: str
    method: str
    template: str
    handler: Handler
    summary: str = ""
    path_model: type[BaseModel] | None = None
    query_model: type[BaseModel] | None = None
    body_model: type[BaseModel] | None = None
    response_model: type[BaseModel] | None = None
    status: int = 200
    # Body carries RSA-OAEP encrypted fields: Wechatpay-Serial must name a WeChat Pay key.
    encrypted_fields: bool = False
    tags: tuple[str, ...] = ()
    # The handler can take seconds (a quarter's bill): it runs in a thread even where the pipeline
    # runs on the event loop (SQLite), so the worker's other connections are not held up behind it.
    long: bool = False
    regex: re.Pattern[str] = field(init=False, compare=False, repr=False)
    param_names: tuple[str, ...] = field(init=False, compare=False)
    literal_segments: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        names: list[str] = []
        parts: list[str] = []
        literals = 0
        segments = self.template.split("/")
        for i, seg in enumerate(segments):
            if seg.startswith("{") and seg.endswith("}"):
                names.append(seg[1:-1])
                # A parameter between two segments may be empty (…/employees//quota-cards): it reaches
                # the path model, whose refusal names it (400 PARAM_ERROR), where a 404 NOT_FOUND said
                # nothing. A last one may not: a trailing slash stays another path.
                parts.append(f"(?P<{seg[1:-1]}>[^/]{'*' if i < len(segments) - 1 else '+'})")
            else:
                literals += 1
                parts.append(re.escape(seg))
        object.__setattr__(self, "regex", re.compile("/".join(parts) + r"\Z"))
        object.__setattr__(self, "param_names", tuple(names))
        object.__setattr__(self, "literal_segments", literals)


REGISTRY: list[Operation] = []


def operation(
    method: str,
    *templates: str,
    op_id: str,
    summary: str = "",
    path: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    body: type[BaseModel] | None = None,
    response: type[BaseModel] | None = None,
    status: int = 200,
    encrypted_fields: bool = False,
    tags: tuple[str, ...] = (),
    long: bool = False,
) -> Callable[[Handler], Handler]:
    """Register ``handler(ctx, path=..., [query=...], [body=...])`` for one or more path spellings."""

    def register(handler: Handler) -> Handler:
        for template in templates:
            REGISTRY.append(
                Operation(
                    op_id=op_id,
                    method=method,
                    template=template,
                    handler=handler,
                    summary=summary,
                    path_model=path,
                    query_model=query,
                    body_model=body,
                    response_model=response,
                    status=status,
                    encrypted_fields=encrypted_fields,
                    tags=tags,
                    long=long,
                )
            )
        return handler

    return register


class Router:
    """Matches the raw path; literal segments beat parameters; path values are percent-decoded."""

    def __init__(self, operations: list[Operation]) -> None:
        self._ops = sorted(operations, key=lambda o: -o.literal_segments)

    @property
    def operations(self) -> list[Operation]:
        return list(self._ops)

    def match(self, method: str, raw_path: str) -> tuple[Operation | None, dict[str, str], list[str]]:
        """(operation, decoded path params, allowed methods if the path matched only other methods)."""
        allowed: list[str] = []
        for op in self._ops:
            m = op.regex.match(raw_path)
            if m is None:
                continue
            if op.method != method:
                allowed.append(op.method)
                continue
            return op, {k: unquote(v) for k, v in m.groupdict().items()}, []
        return None, {}, sorted(set(allowed))
