"""Fault injection, hooked in as a pipeline before-handler: it runs after the request signature was
verified and before the handler, so a fault never changes anything in the store.

A fault comes from the request header (``Wechatpay-Sandbox-Fault``) or from a rule in the database (so
every process and host sees it). Rules are read through a short cache (RULE_CACHE_SECONDS); a rule's
count is taken with one conditional UPDATE, so ``count: 1`` fires exactly once across all processes, and
a rule deleted meanwhile (the UPDATE finds no row) does not fire from the cache.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import TYPE_CHECKING

from ..domain.faults import (
    ERROR_KINDS,
    ERROR_MESSAGES,
    FAULT_HEADER,
    Fault,
    FaultKind,
    FaultRule,
    FaultSpecError,
    parse_header,
)
from ..protocol.errors import ApiError
from ..store import ops_repo
from . import metrics
from .journal import writer
from .pipeline import DropConnection, Shaping

if TYPE_CHECKING:
    from .app import AppState
    from .context import Ctx

log = logging.getLogger("wxpartner.faults")

RULE_CACHE_SECONDS = 0.5


class FaultInjector:
    def __init__(self, state: AppState) -> None:
        self.state = state
        self._rules: list[FaultRule] = []
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()
        self.random = random.Random()

    def invalidate(self) -> None:
        with self._lock:
            self._loaded_at = float("-inf")

    def rules(self) -> list[FaultRule]:
        now = time.monotonic()
        with self._lock:
            if now - self._loaded_at < RULE_CACHE_SECONDS:
                return self._rules
        try:
            with self.state.db.read() as conn:
                rules = ops_repo.list_faults(conn, active_only=True)
        except Exception as exc:  # no rules table or no database: serve without rule faults
            log.warning("fault rules unavailable (%s)", type(exc).__name__)
            rules = []
        with self._lock:
            self._rules, self._loaded_at = rules, now
        return rules

    def choose(self, ctx: Ctx) -> list[Fault]:
        header = ctx.request.header(FAULT_HEADER)
        if header:
            try:
                return parse_header(header)
            except FaultSpecError as exc:
                raise ApiError(
                    "PARAM_ERROR",
                    f"Http头{FAULT_HEADER}无效：{exc}",
                    detail={"field": FAULT_HEADER, "location": "header", "issue": str(exc)},
                ) from None
        chosen: list[Fault] = []
        for rule in self.rules():
            if not rule.matches(ctx.operation.op_id, ctx.request.raw_path, ctx.mchid):
                continue
            if rule.probability < 1.0 and self.random.random() >= rule.probability:
                continue
            # Takes one use (and counts the hit) in the database. False: the rule's last use went to
            # another request, or the rule was deleted through another process or host since this
            # process read its rules: it does not fire (a deleted rule stops at once everywhere).
            with self.state.db.write() as conn:
                taken = ops_repo.consume_fault(conn, rule.id)
            if rule.remaining is not None or not taken:
                self.invalidate()
            if not taken:
                continue
            chosen.append(rule.fault())
        return chosen

    def __call__(self, ctx: Ctx, shaping: Shaping) -> None:
        faults = self.choose(ctx)
        if not faults:
            return
        writer(self.state).faults[ctx.request_id] = ",".join(f.label for f in faults)[:64]
        for fault in faults:
            metrics.fault_injected(fault.kind.value)
        for fault in faults:
            if fault.kind is FaultKind.LATENCY:
                shaping.delay_s += fault.latency_ms / 1000
            elif fault.kind is FaultKind.SIGNATURE_PROBE:
                shaping.probe = True
            elif fault.kind is FaultKind.BAD_SIGNATURE:
                shaping.tamper = True
        for fault in faults:  # the first terminal fault wins
            if fault.kind is FaultKind.DROP_CONNECTION:
                raise DropConnection()
            if fault.kind in ERROR_KINDS:
                raise _error(fault)


def _error(fault: Fault) -> ApiError:
    source = f"rule {fault.rule_id}" if fault.rule_id else f"header {FAULT_HEADER}"
    return ApiError(
        fault.kind.value,
        ERROR_MESSAGES[fault.kind],
        detail={"location": "sandbox", "issue": f"sandbox fault {fault.kind.value} injected by {source}"},
    )


def injector(state: AppState) -> FaultInjector:
    found = state.extensions.get("faults")
    if not isinstance(found, FaultInjector):
        found = FaultInjector(state)
        state.extensions["faults"] = found
    return found
