"""The ``webizpay`` scenario section's available-merchant ranges (``ranges``, ``range_identifiers``:
W13–W17) and store entity-match batches (``match_batches``: W9/W10), with their ids and times, as they
were: loaded before the section's employees and cards (server/webizpay_scenario.py), written by its
export."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Connection

from ..domain import webizpay_merchants as merchants
from ..models.webizpay_merchants import (
    MAX_MATCH_DETAILS,
    IdentifierType,
    MatchDetail,
    MatchResult,
    OutId,
)
from ..sandbox import scenario
from ..store import registry
from ..store import webizpay_merchants_repo as ranges_store


class RangeSpec(BaseModel):
    """An available-merchant range (W13), as it was: its range_id and creation time."""

    model_config = ConfigDict(extra="forbid")
    sp_mchid: scenario.Mchid
    range_id: scenario.PathId
    identifier_type: IdentifierType
    create_time: scenario.EntryTime | None = None  # default: the clock's now


class RangeIdentifierSpec(BaseModel):
    """A merchant identifier of a range (W15), in W16's order (the file's)."""

    model_config = ConfigDict(extra="forbid")
    range_id: scenario.PathId
    merchant_identifier: str = Field(min_length=1, max_length=64)
    create_time: scenario.EntryTime | None = None  # default: the clock's now


class MatchDetailSpec(MatchDetail):
    model_config = ConfigDict(extra="forbid", strict=True)


class MatchResultSpec(MatchResult):
    model_config = ConfigDict(extra="forbid", strict=True)


class MatchBatchSpec(BaseModel):
    """A store entity-match batch (W9) as it was: its batch_id, state and, COMPLETED, its results."""

    model_config = ConfigDict(extra="forbid")
    sp_mchid: scenario.Mchid
    batch_id: scenario.PathId
    out_batch_id: OutId
    state: Literal["ACCEPTED", "IN_PROGRESS", "COMPLETED", "CLOSED"]
    match_details: list[MatchDetailSpec] = Field(default=[], max_length=MAX_MATCH_DETAILS)
    match_results: list[MatchResultSpec] | None = None  # COMPLETED only, and required there
    create_time: scenario.EntryTime | None = None  # default: the clock's now
    update_time: scenario.EntryTime | None = None  # default: create_time


def _signer(conn: Connection, sp_mchid: str, where: str) -> None:
    """W13 and W9 are signed by sp_mchid: a registered merchant (the file's merchants load first)."""
    if registry.get_merchant(conn, sp_mchid) is None:
        raise scenario.ScenarioError(f"{where}.sp_mchid: no merchant {sp_mchid} (give it under merchants)")


def load_ranges(
    conn: Connection, now: float, ranges: list[RangeSpec], identifiers: list[RangeIdentifierSpec]
) -> tuple[list[str], int]:
    """The file's ranges and their identifiers, as they were (range_id, times, W16's order). A range
    or identifier already there (the same file loaded again) is left as it is."""
    repo = ranges_store.RangeRepo(conn)
    created: dict[str, float] = {}  # range_id -> its creation time, the file's ranges
    for i, r in enumerate(ranges):
        where = f"webizpay.ranges[{i}]"
        if r.range_id in created:
            first = next(k for k, o in enumerate(ranges) if o.range_id == r.range_id)
            raise scenario.ScenarioError(f"{where}.range_id: ranges[{first}] has it already")
        _signer(conn, r.sp_mchid, where)
        at = scenario.entry_time(r.create_time, f"{where}.create_time", now)
        created[r.range_id] = at
        existing = repo.range(r.range_id)
        if existing is None:
            repo.insert_range(merchants.MchRange(r.range_id, r.sp_mchid, r.identifier_type), at)
        elif (existing.sp_mchid, existing.identifier_type) != (r.sp_mchid, r.identifier_type):
            raise scenario.ScenarioError(f"{where}.range_id: {r.range_id} is taken")
    seen: dict[tuple[str, str], int] = {}
    for i, m in enumerate(identifiers):
        where = f"webizpay.range_identifiers[{i}]"
        key = (m.range_id, m.merchant_identifier)
        if key in seen:
            raise scenario.ScenarioError(
                f"{where}.merchant_identifier: range_identifiers[{seen[key]}] has it already"
            )
        seen[key] = i
        rng = repo.range(m.range_id)
        if rng is None:
            raise scenario.ScenarioError(f"{where}.range_id: no range {m.range_id} (give it under ranges)")
        problem = merchants.identifier_problem(rng.identifier_type, m.merchant_identifier)
        if problem is not None:
            raise scenario.ScenarioError(f"{where}.merchant_identifier: {problem}")
        at = scenario.entry_time(m.create_time, f"{where}.create_time", now)
        began = created.get(m.range_id)
        if began is None:
            began = ranges_store.range_created_at(conn, m.range_id)
        if began is not None and at < began:
            raise scenario.ScenarioError(
                f"{where}.create_time: before its range was created ({scenario.export_time(began)})"
            )
        repo.add_identifier(m.range_id, m.merchant_identifier, at)  # there already: left as it is
    return list(created), len(identifiers)


def load_batches(conn: Connection, now: float, batches: list[MatchBatchSpec]) -> list[str]:
    """The file's entity-match batches as they were. One already there (by batch_id: the same file
    loaded again) is left as it is; W10 moves it on from its state and create_time as it would have."""
    repo = ranges_store.MatchRepo(conn)
    seen: dict[tuple[str, ...], int] = {}  # ("batch_id", id) and ("out_batch_id", sp, out) -> entry
    for i, b in enumerate(batches):
        where = f"webizpay.match_batches[{i}]"
        for name, key in (
            ("batch_id", ("batch_id", b.batch_id)),
            ("out_batch_id", ("out_batch_id", b.sp_mchid, b.out_batch_id)),
        ):
            first = seen.setdefault(key, i)
            if first != i:
                raise scenario.ScenarioError(f"{where}.{name}: match_batches[{first}] has it already")
        _signer(conn, b.sp_mchid, where)
        created_at = scenario.entry_time(b.create_time, f"{where}.create_time", now)
        updated_at = scenario.entry_time(b.update_time, f"{where}.update_time", created_at)
        if updated_at < created_at:
            raise scenario.ScenarioError(f"{where}.update_time: before its create_time")
        details = [d.model_dump() for d in b.match_details]
        results = None if b.match_results is None else [r.model_dump() for r in b.match_results]
        if (b.state == "COMPLETED") != (results is not None):  # W10 completes it with them, only then
            raise scenario.ScenarioError(
                f"{where}.match_results: a COMPLETED batch has them, "
                f"{'this one is' if results is None else 'only it; this one is'} {b.state}"
            )
        for k, (d, r) in enumerate(zip(details, results or [], strict=False)):
            if (r["organization_code"], r["store_name"]) != (d["organization_code"], d["store_name"]):
                raise scenario.ScenarioError(
                    f"{where}.match_results[{k}]: not the result of match_details[{k}] (one result per "
                    "detail, in their order)"
                )
        if results is not None and len(results) != len(details):
            raise scenario.ScenarioError(
                f"{where}.match_results: {len(results)} results of {len(details)} match_details"
            )
        existing = repo.batch(b.batch_id)
        if existing is not None:
            if (existing.sp_mchid, existing.out_batch_id) != (b.sp_mchid, b.out_batch_id):
                raise scenario.ScenarioError(f"{where}.batch_id: {b.batch_id} is taken")
            continue
        other = repo.batch_by_out_id(b.sp_mchid, b.out_batch_id)
        if other is not None:
            raise scenario.ScenarioError(
                f"{where}.out_batch_id: {b.out_batch_id} of {b.sp_mchid} is batch {other.batch_id} already"
            )
        batch = merchants.MatchBatch(
            b.batch_id,
            b.sp_mchid,
            b.out_batch_id,
            b.state,
            merchants.digest(details),
            details,
            results,
            created_at,
        )
        ranges_store.restore_batch(conn, batch, updated_at)
    return [b.batch_id for b in batches]


def _range_entry(r: merchants.MchRange, created_at: float) -> dict[str, Any]:
    return {
        "sp_mchid": r.sp_mchid,
        "range_id": r.range_id,
        "identifier_type": r.identifier_type,
        "create_time": scenario.export_time(created_at),
    }


def _batch_entry(b: merchants.MatchBatch, updated_at: float) -> dict[str, Any]:
    out: dict[str, Any] = {
        "sp_mchid": b.sp_mchid,
        "batch_id": b.batch_id,
        "out_batch_id": b.out_batch_id,
        "state": b.state,
        "match_details": b.details,
    }
    if b.results is not None:
        out["match_results"] = b.results
    out["create_time"] = scenario.export_time(b.created_at)
    out["update_time"] = scenario.export_time(updated_at)
    return out


def export_into(conn: Connection, out: dict[str, Any]) -> None:
    """The ranges, their identifiers and the batches, each list streamed as its rows are read."""
    batch = scenario.EXPORT_BATCH
    if ranges_store.any_range(conn):
        out["ranges"] = scenario.Rows(
            _range_entry(r, at) for r, at in ranges_store.export_ranges(conn, batch)
        )
    if ranges_store.any_identifier(conn):
        out["range_identifiers"] = scenario.Rows(
            {"range_id": r, "merchant_identifier": m, "create_time": scenario.export_time(at)}
            for r, m, at in ranges_store.export_identifiers(conn, batch)
        )
    if ranges_store.any_batch(conn):
        out["match_batches"] = scenario.Rows(
            _batch_entry(b, at) for b, at in ranges_store.export_batches(conn, batch)
        )
