"""Scan-to-recharge employees (平台收付通 可扫码充值员工): R1 add, R2 list, R3 delete, and their
per-platform-merchant rate limits (10 / 50 / 10 requests per second)."""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING

from ...domain import recharge
from ...models.recharge import (
    AddRechargeEmployeeRequest,
    RechargeEmployee,
    RechargeEmployeeList,
    RechargeEmployeePath,
    SubMchidPath,
)
from ...protocol.errors import ApiError
from ...protocol.times import format_rfc3339
from ...store.recharge_repo import RechargeStore, prune_rate_windows, take_rate_slot
from .. import control_recharge  # noqa: F401  (sandbox control routes, scenario section, resetter)
from ..app import STARTUP_HOOKS
from ..context import Ctx
from ..operations import operation

if TYPE_CHECKING:
    from ..app import AppState

BASE = "/v3/platsolution/ecommerce/recharge-employees"
TAGS = ("recharge",)

# op_id -> the rate-limit budget it draws from (one budget per operation and platform merchant).
RATE_LIMITED = {
    "recharge.add_employee": "add",
    "recharge.list_employees": "list",
    "recharge.delete_employee": "delete",
}
QPS_KEY = "recharge.qps"
SETTINGS_KEY = "recharge_rate_limits"  # Settings.extra[...] = {"add": n, "list": n, "delete": n}


def entity(e: recharge.Employee) -> RechargeEmployee:
    return RechargeEmployee(
        sub_mchid=e.sub_mchid,
        sp_openid=e.sp_openid,
        state="EFFECTIVE" if e.state == recharge.EFFECTIVE else "DELETED",
        create_time=format_rfc3339(dt.datetime.fromtimestamp(e.create_time, dt.UTC), millis=True),
        update_time=format_rfc3339(dt.datetime.fromtimestamp(e.update_time, dt.UTC), millis=True),
    )


@operation(
    "POST",
    BASE,
    op_id="recharge.add_employee",
    summary="添加二级商户可扫码充值员工 (add a scan-to-recharge employee)",
    body=AddRechargeEmployeeRequest,
    response=RechargeEmployee,
    tags=TAGS,
)
def add_employee(ctx: Ctx, path: dict[str, str], body: AddRechargeEmployeeRequest) -> RechargeEmployee:
    with ctx.write() as conn:
        e = recharge.add(RechargeStore(conn), ctx.clock.now_ts(), ctx.mchid, body.sub_mchid, body.sp_openid)
    return entity(e)


@operation(
    "GET",
    BASE + "/sub-mchid/{sub_mchid}",
    BASE + "/sub-mchid/",  # empty sub_mchid: 400 PARAM_ERROR naming the field, not 404
    op_id="recharge.list_employees",
    summary="查询二级商户可扫码充值员工列表 (list scan-to-recharge employees)",
    path=SubMchidPath,
    response=RechargeEmployeeList,
    tags=TAGS,
)
def list_employees(ctx: Ctx, path: SubMchidPath) -> RechargeEmployeeList:
    with ctx.read() as conn:
        found = recharge.list_effective(RechargeStore(conn), ctx.mchid, path.sub_mchid)
    return RechargeEmployeeList(employees=[entity(e) for e in found])


@operation(
    "POST",
    BASE + "/sub-mchid/{sub_mchid}/sp-openid/{sp_openid}/delete",
    # empty path values: 400 PARAM_ERROR naming the field, not 404
    BASE + "/sub-mchid//sp-openid/{sp_openid}/delete",
    BASE + "/sub-mchid/{sub_mchid}/sp-openid//delete",
    BASE + "/sub-mchid//sp-openid//delete",
    op_id="recharge.delete_employee",
    summary="删除二级商户可扫码充值员工 (delete a scan-to-recharge employee)",
    path=RechargeEmployeePath,
    response=RechargeEmployee,
    tags=TAGS,
)
def delete_employee(ctx: Ctx, path: RechargeEmployeePath) -> RechargeEmployee:
    # Body-less POST (seed 002): any body sent is ignored, as the official demo sends an empty one.
    with ctx.write() as conn:
        e = recharge.delete(
            RechargeStore(conn), ctx.clock.now_ts(), ctx.mchid, path.sub_mchid, path.sp_openid
        )
    return entity(e)


class _Pruner:
    """Old one-second counters are dropped now and then (housekeeping only; any process may do it)."""

    every = 1000

    def __init__(self) -> None:
        self.calls = 0

    def due(self) -> bool:
        self.calls += 1
        if self.calls >= self.every:
            self.calls = 0
            return True
        return False


_pruner = _Pruner()


def rate_limit(ctx: Ctx, _signing: dict[str, bool]) -> None:
    """Runs after the signature is verified and before the request is validated: every authenticated
    call counts (401s never do); a refused call counts nothing and changes nothing."""
    budget = RATE_LIMITED.get(ctx.operation.op_id)
    if budget is None or not ctx.state.settings.rate_limits:
        return
    limit = ctx.state.extensions[QPS_KEY][budget]
    if limit <= 0:
        return
    window = int(time.time())  # real time: the business clock never changes the wire rate
    with ctx.write() as conn:
        allowed = take_rate_slot(conn, budget, ctx.mchid, window, limit)
        if _pruner.due():
            prune_rate_windows(conn, window - 60)
    if not allowed:
        raise ApiError(
            "FREQUENCY_LIMITED",
            f"频率限制，请降低频率后重试 (at most {limit} {budget} requests per second per platform merchant)",
            detail={"operation": budget, "limit": limit, "window_seconds": 1},
        )


def _install(state: AppState) -> None:
    configured = state.settings.extra.get(SETTINGS_KEY)
    if configured is not None and not isinstance(configured, dict):
        raise ValueError(f"settings.extra[{SETTINGS_KEY!r}] must be a mapping such as {{'add': 10}}")
    state.extensions[QPS_KEY] = recharge.qps_limits(configured)
    state.before_handlers.append(rate_limit)


STARTUP_HOOKS.append(_install)
