"""Typed resources, one module per product family, each a table of operations (``Op`` rows) plus
one-line ``@endpoint`` methods. ``Families`` / ``AsyncFamilies`` attach them to the two clients."""

from __future__ import annotations

from typing import Any

from ..operations import Async, Sync
from .apply4subject import Apply4Subject
from .recharge import RechargeEmployees
from .webizpay import Webizpay


class Families:
    """The families as attributes of ``Client``: ``webizpay``, ``recharge_employees``, ``apply4subject``."""

    def __init__(self, runner: Any) -> None:
        self.webizpay: Webizpay[Sync] = Webizpay(runner)
        self.recharge_employees: RechargeEmployees[Sync] = RechargeEmployees(runner)
        self.apply4subject: Apply4Subject[Sync] = Apply4Subject(runner)


class AsyncFamilies:
    """The same families on ``AsyncClient`` (every method returns an awaitable)."""

    def __init__(self, runner: Any) -> None:
        self.webizpay: Webizpay[Async] = Webizpay(runner)
        self.recharge_employees: RechargeEmployees[Async] = RechargeEmployees(runner)
        self.apply4subject: Apply4Subject[Async] = Apply4Subject(runner)
