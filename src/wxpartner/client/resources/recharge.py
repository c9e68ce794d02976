"""Scan-to-recharge employees of a second-level merchant (R1–R3,
``/v3/platsolution/ecommerce/recharge-employees``). All three are safe to repeat: adding an effective
employee again and deleting a deleted one return the record unchanged (spec: recharge-employees.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...models import recharge as r
from ..core import Call
from ..operations import M, Op, Resource, endpoint
from ..policy import TimeoutLike

BASE = "/v3/platsolution/ecommerce/recharge-employees"
ADD = Op[r.RechargeEmployee](
    "recharge.add_employee",
    "POST",
    BASE,
    r.RechargeEmployee,
    body=r.AddRechargeEmployeeRequest,
    idempotent=True,
)
LIST = Op[r.RechargeEmployeeList](
    "recharge.list_employees", "GET", BASE + "/sub-mchid/{sub_mchid}", r.RechargeEmployeeList, idempotent=True
)
DELETE = Op[r.RechargeEmployee](
    "recharge.delete_employee",
    "POST",
    BASE + "/sub-mchid/{sub_mchid}/sp-openid/{sp_openid}/delete",
    r.RechargeEmployee,
    idempotent=True,
)
OPERATIONS = (ADD, LIST, DELETE)


class RechargeEmployees(Resource[M]):
    """``client.recharge_employees`` (the caller is the platform merchant)."""

    @endpoint
    def add(
        request: r.AddRechargeEmployeeRequest | Mapping[str, Any], *, timeout: TimeoutLike | None = None
    ) -> Call[r.RechargeEmployee]:
        """R1: add an employee (10 QPS per platform merchant)."""
        return ADD.call(body=request, timeout=timeout)

    @endpoint
    def list(sub_mchid: str, *, timeout: TimeoutLike | None = None) -> Call[r.RechargeEmployeeList]:
        """R2: the second-level merchant's effective employees."""
        return LIST.call({"sub_mchid": sub_mchid}, timeout=timeout)

    @endpoint
    def delete(
        sub_mchid: str, sp_openid: str, *, timeout: TimeoutLike | None = None
    ) -> Call[r.RechargeEmployee]:
        """R3: delete an employee (a body-less POST)."""
        return DELETE.call({"sub_mchid": sub_mchid, "sp_openid": sp_openid}, timeout=timeout)
