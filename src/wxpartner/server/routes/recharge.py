"""Scan-to-recharge employees (平台收付通 可扫码充值员工): R1 add, R2 list, R3 delete, and their
per-platform-merchant rate limits (10 / 50 / 10 requests per second)."""

from __future__ import annotations

import datetime as dt

from ...domain import recharge
from ...models.recharge import (
    AddRechargeEmployeeRequest,
    RechargeEmployee,
    RechargeEmployeeList,
    RechargeEmployeePath,
    SubMchidPath,
)
from ...protocol.times import format_rfc3339
from ...store.recharge_repo import RechargeStore
from .. import (
    control_recharge,  # noqa: F401  (sandbox control routes, scenario section, resetter)
    rate_limits,
)
from ..context import Ctx
from ..operations import operation

BASE = "/v3/platsolution/ecommerce/recharge-employees"
TAGS = ("recharge",)

# Spec: 10 requests per second per platform merchant for add and for delete, 50 for list.
rate_limits.declare(
    "recharge",
    "platform merchant",
    {
        "recharge.add_employee": ("add", 10),
        "recharge.list_employees": ("list", 50),
        "recharge.delete_employee": ("delete", 10),
    },
)


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
    one = ctx.one_statement()
    if one is not None:  # PostgreSQL: adding a new employee is one statement; anything else as below
        with one as conn:
            added = recharge.add_at_once(
                RechargeStore(conn), ctx.now_ts, ctx.mchid, body.sub_mchid, body.sp_openid
            )
        if added is not None:
            return entity(added)
    with ctx.write() as conn:
        store = RechargeStore(conn)
        # The second-level merchant checks and the employee's row in one statement (the domain's
        # checks keep their order and read these answers instead of the database).
        store.prefetch_add(ctx.mchid, body.sub_mchid, body.sp_openid)
        e = recharge.add(store, ctx.now_ts, ctx.mchid, body.sub_mchid, body.sp_openid)
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
        store = RechargeStore(conn)
        store.prefetch_access(ctx.mchid, path.sub_mchid)  # the access check in one statement
        found = recharge.list_effective(store, ctx.mchid, path.sub_mchid)
    return RechargeEmployeeList(employees=[entity(e) for e in found])


@operation(
    "POST",
    # (an empty sub_mchid or sp_openid matches too: 400 PARAM_ERROR naming it, operations.py)
    BASE + "/sub-mchid/{sub_mchid}/sp-openid/{sp_openid}/delete",
    op_id="recharge.delete_employee",
    summary="删除二级商户可扫码充值员工 (delete a scan-to-recharge employee)",
    path=RechargeEmployeePath,
    response=RechargeEmployee,
    tags=TAGS,
)
def delete_employee(ctx: Ctx, path: RechargeEmployeePath) -> RechargeEmployee:
    # Body-less POST (seed 002): any body sent is ignored, as the official demo sends an empty one.
    with ctx.write() as conn:
        store = RechargeStore(conn)
        store.prefetch_access(ctx.mchid, path.sub_mchid)  # the access check in one statement
        e = recharge.delete(store, ctx.now_ts, ctx.mchid, path.sub_mchid, path.sp_openid)
    return entity(e)
