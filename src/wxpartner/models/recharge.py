"""Scan-to-recharge employees (可扫码充值员工) of a second-level merchant: R1 add, R2 list, R3 delete
(spec: recharge-employees.md; seed 002 for the delete and the RechargeEmployee shape)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from .common import ListOrAbsent, NotBlank, WxModel

# string(32) in every source; at least one character (an empty value names nothing).
SubMchid = Annotated[str, StringConstraints(min_length=1, max_length=32)]
SpOpenid = Annotated[str, StringConstraints(min_length=1, max_length=32), NotBlank]

RechargeEmployeeState = Literal["EFFECTIVE", "DELETED"]
EFFECTIVE: RechargeEmployeeState = "EFFECTIVE"  # 生效中
DELETED: RechargeEmployeeState = "DELETED"  # 已删除


class RechargeEmployee(WxModel):
    """Returned by add and delete, and the items of the list. The seed marks ``sp_openid`` required;
    the website/YAML mark it optional, so a client accepts its absence."""

    sub_mchid: str
    sp_openid: str | None = None
    state: RechargeEmployeeState | str | None = None  # open, like every answer's enum (common.py)
    create_time: str | None = None  # as received (seed 001 shows WeChat times without seconds)
    update_time: str | None = None


class AddRechargeEmployeeRequest(WxModel):
    """R1 body: ``POST /v3/platsolution/ecommerce/recharge-employees``."""

    sub_mchid: SubMchid
    sp_openid: SpOpenid


class RechargeEmployeeList(WxModel):
    """R2 response; ``employees`` may be absent when there are none (read as empty; wxpartner sends ``[]``)."""

    employees: ListOrAbsent[RechargeEmployee] = Field(default_factory=list)


class SubMchidPath(WxModel):
    sub_mchid: SubMchid


class RechargeEmployeePath(WxModel):
    sub_mchid: SubMchid
    sp_openid: SpOpenid
