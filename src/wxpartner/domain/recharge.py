"""Scan-to-recharge employees: the rules of add (R1), list (R2) and delete (R3), no HTTP, no SQL.

An employee is keyed by (platform mchid, sub_mchid, sp_openid): ``sp_openid`` is an OpenID under the
*platform's* app, so two platforms could never share one. The per-merchant limits (3 in effect, 3
configurations per natural day) count the second-level merchant across platforms and are enforced by
one conditional UPDATE in the store, so they hold across processes and hosts.

Emulator choices (see the README's recharge section):
- add of an EFFECTIVE employee: 200 with the record unchanged, no daily slot used (idempotent retry);
- add of a DELETED employee: EFFECTIVE again, new create_time/update_time, uses a daily slot;
- delete of a DELETED employee: 200 with the record unchanged (idempotent retry);
- delete of an sp_openid never added: 400 INVALID_REQUEST;
- list: EFFECTIVE employees only, oldest create_time first;
- sub_mchid not registered, or not a second-level merchant of the caller: 403 NO_AUTH.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, Protocol

from ..protocol.errors import ApiError, field_at
from ..protocol.times import CHINA_TZ

EFFECTIVE = "EFFECTIVE"
DELETED = "DELETED"
STATES = (EFFECTIVE, DELETED)
StateName = Literal["EFFECTIVE", "DELETED"]

MAX_EFFECTIVE = 3  # at most 3 scan-to-recharge employees per second-level merchant
MAX_PER_DAY = 3  # at most 3 employee configurations per second-level merchant per natural day

# Requests per second per platform merchant (seed 002; official pages 4013521743, 4013521757).


@dataclass(frozen=True, slots=True)
class Employee:
    mchid: str  # the platform merchant
    sub_mchid: str
    sp_openid: str
    state: str
    create_time: float
    update_time: float


class SlotRefusal(StrEnum):
    TOO_MANY = "too_many"  # already MAX_EFFECTIVE employees in effect
    DAILY = "daily"  # MAX_PER_DAY configurations used today


class RechargeRepo(Protocol):
    def merchant_exists(self, mchid: str) -> bool: ...
    def is_second_level(self, platform: str, sub_mchid: str) -> bool: ...
    def get(self, mchid: str, sub_mchid: str, sp_openid: str) -> Employee | None: ...
    def insert_effective(self, mchid: str, sub_mchid: str, sp_openid: str, now: float) -> Employee | None: ...
    def add_new(
        self,
        mchid: str,
        sub_mchid: str,
        sp_openid: str,
        now: float,
        day: str,
        max_effective: int,
        max_per_day: int,
    ) -> Employee | None: ...
    def reactivate(self, mchid: str, sub_mchid: str, sp_openid: str, now: float) -> Employee | None: ...
    def mark_deleted(self, mchid: str, sub_mchid: str, sp_openid: str, now: float) -> Employee | None: ...
    def reserve_slot(
        self, sub_mchid: str, day: str, max_effective: int, max_per_day: int
    ) -> SlotRefusal | None: ...
    def release_slot(self, sub_mchid: str) -> None: ...
    def list_effective(self, mchid: str, sub_mchid: str) -> list[Employee]: ...
    def upsert(self, employee: Employee) -> None: ...
    def recount(self, sub_mchid: str) -> int: ...


def natural_day(ts: float) -> str:
    """The calendar day in China Standard Time (the +08:00 of every timestamp in the family)."""
    return dt.datetime.fromtimestamp(ts, CHINA_TZ).strftime("%Y-%m-%d")


def check_access(repo: RechargeRepo, mchid: str, sub_mchid: str, location: str = "path") -> None:
    """403 NO_AUTH unless sub_mchid is a second-level merchant of the caller; the detail names the field
    as protocol.md §6 does (``/sub_mchid`` in R1's body, ``sub_mchid`` in R2/R3's path). Another
    platform's merchant and a number nobody registered get the same words: a caller cannot learn which
    merchant numbers exist (README: Scan-to-recharge employees, Rules)."""
    known = repo.merchant_exists(sub_mchid)  # both asked: the repo's prefetch answers each once
    related = repo.is_second_level(mchid, sub_mchid)
    if not (known and related):
        raise ApiError(
            "NO_AUTH",
            f"无权限：{sub_mchid}不是平台商户{mchid}的二级商户 "
            f"(sub_mchid {sub_mchid} is not a second-level merchant of platform {mchid})",
            detail={
                **field_at("sub_mchid", location),
                "value": sub_mchid,
                "issue": "not a second-level merchant of the caller",
            },
        )


def _refused(refusal: SlotRefusal, sub_mchid: str) -> ApiError:
    if refusal is SlotRefusal.TOO_MANY:
        return ApiError(
            "INVALID_REQUEST",
            f"二级商户可扫码充值员工已达上限{MAX_EFFECTIVE}个，请先删除员工 "
            f"(sub_mchid {sub_mchid} already has {MAX_EFFECTIVE} employees in effect; delete one first)",
            detail={"rule": "max_employees", "limit": MAX_EFFECTIVE},
        )
    return ApiError(
        "INVALID_REQUEST",
        f"二级商户当日配置员工次数已达上限{MAX_PER_DAY}次，请明日再试 "
        f"(sub_mchid {sub_mchid} has configured {MAX_PER_DAY} employees today, China time; "
        "an employee added and deleted the same day still uses a slot)",
        detail={"rule": "max_per_day", "limit": MAX_PER_DAY},
    )


def add(repo: RechargeRepo, now: float, mchid: str, sub_mchid: str, sp_openid: str) -> Employee:
    """R1. Change the employee row first (it is the row lock that orders concurrent adds of the same
    employee), then take a slot; a refused slot raises and the transaction undoes the row change."""
    check_access(repo, mchid, sub_mchid, "body")
    for _ in range(3):
        current = repo.get(mchid, sub_mchid, sp_openid)
        if current is not None and current.state == EFFECTIVE:
            return current  # idempotent: nothing changes, no slot used
        if current is None:
            changed = repo.insert_effective(mchid, sub_mchid, sp_openid, now)
        else:
            changed = repo.reactivate(mchid, sub_mchid, sp_openid, now)
        if changed is None:
            continue  # a concurrent add/delete of the same employee committed first: decide again
        refusal = repo.reserve_slot(sub_mchid, natural_day(now), MAX_EFFECTIVE, MAX_PER_DAY)
        if refusal is not None:
            raise _refused(refusal, sub_mchid)
        return changed
    raise ApiError("SYSTEM_ERROR", "系统繁忙，请稍后用相同参数重试 (concurrent changes to this employee)")


def add_at_once(
    repo: RechargeRepo, now: float, mchid: str, sub_mchid: str, sp_openid: str
) -> Employee | None:
    """R1's usual case, an employee never added, written by one statement (``RechargeRepo.add_new``,
    PostgreSQL): it is added EFFECTIVE, with a slot of its merchant taken, only if ``check_access`` would
    let it through and a slot is free (at most MAX_EFFECTIVE in effect, MAX_PER_DAY configurations this
    natural day). None: nothing written (the employee exists, a refusal, a race lost, or SQLite): the
    caller then runs ``add``, which answers precisely."""
    return repo.add_new(mchid, sub_mchid, sp_openid, now, natural_day(now), MAX_EFFECTIVE, MAX_PER_DAY)


def delete(repo: RechargeRepo, now: float, mchid: str, sub_mchid: str, sp_openid: str) -> Employee:
    """R3. EFFECTIVE -> DELETED with update_time = now; the daily slot it used stays used."""
    check_access(repo, mchid, sub_mchid)
    for _ in range(3):
        deleted = repo.mark_deleted(mchid, sub_mchid, sp_openid, now)
        if deleted is not None:
            repo.release_slot(sub_mchid)
            return deleted
        current = repo.get(mchid, sub_mchid, sp_openid)
        if current is None:
            raise ApiError(
                "INVALID_REQUEST",
                f"员工不存在：{sp_openid}不是二级商户{sub_mchid}的可扫码充值员工 "
                f"(sp_openid {sp_openid} was never added for sub_mchid {sub_mchid})",
                detail={**field_at("sp_openid", "path"), "value": sp_openid, "issue": "no such employee"},
            )
        if current.state != EFFECTIVE:
            return current  # already DELETED: idempotent, unchanged
        # A concurrent add made it EFFECTIVE again between our update and our read: decide again,
        # so a delete never answers with a state it did not produce.
    raise ApiError("SYSTEM_ERROR", "系统繁忙，请稍后用相同参数重试 (concurrent changes to this employee)")


def list_effective(repo: RechargeRepo, mchid: str, sub_mchid: str) -> list[Employee]:
    """R2: the employees in effect, oldest first (DELETED ones are history, not the list)."""
    check_access(repo, mchid, sub_mchid)
    return repo.list_effective(mchid, sub_mchid)


class PreloadError(ValueError):
    """A sandbox preload that would break an invariant; nothing is written. ``detail`` is what the
    business API's refusal of the same thing carries (``check_access``, ``_refused``), if anything."""

    def __init__(self, message: str, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.detail = detail


@dataclass(frozen=True, slots=True)
class PreloadEntry:
    sp_openid: str
    state: str = EFFECTIVE
    create_time: float | None = None
    update_time: float | None = None


def preload(
    repo: RechargeRepo, now: float, mchid: str, sub_mchid: str, entries: Iterable[PreloadEntry]
) -> list[Employee]:
    """Sandbox setup: put employees in place as if added earlier (no rate limit, no daily slot), but
    never more than MAX_EFFECTIVE in effect. The caller's transaction rolls back on PreloadError."""
    if not repo.is_second_level(mchid, sub_mchid):
        raise PreloadError(
            f"{sub_mchid} is not a second-level merchant of platform {mchid}",
            {"field": "sub_mchid", "value": sub_mchid, "issue": f"not a second-level merchant of {mchid}"},
        )
    out: list[Employee] = []
    for entry in entries:
        if entry.state not in STATES:
            raise PreloadError(f"state must be one of {', '.join(STATES)}, got {entry.state!r}")
        if not 1 <= len(entry.sp_openid) <= 32:
            raise PreloadError(f"sp_openid must be 1-32 characters, got {entry.sp_openid!r}")
        created = entry.create_time if entry.create_time is not None else now
        updated = entry.update_time if entry.update_time is not None else created
        out.append(Employee(mchid, sub_mchid, entry.sp_openid, entry.state, created, updated))
    # Written in one order (sp_openid; a stable sort, so of two entries for one employee the later still
    # wins): two preloads naming shared employees in other orders, through two hosts at once, wait for
    # each other instead of deadlocking. The answer keeps the order given.
    for employee in sorted(out, key=lambda e: e.sp_openid):
        repo.upsert(employee)
    effective = repo.recount(sub_mchid)
    if effective > MAX_EFFECTIVE:
        raise PreloadError(
            f"sub_mchid {sub_mchid} would have {effective} employees in effect (at most {MAX_EFFECTIVE})",
            {"rule": "max_employees", "limit": MAX_EFFECTIVE},
        )
    return out
