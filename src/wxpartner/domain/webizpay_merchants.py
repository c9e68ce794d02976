"""webizpay W9–W10 (store entity matching) and W13–W17 (available-merchant ranges): plain rules.

The repository protocols below are implemented in store/webizpay_merchants_repo.py; every function here
runs inside one write (or read) transaction opened by the caller, after all its checks.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Protocol

from ..models.webizpay_merchants import (
    AddIdentifierRequest,
    CreateEntityMatchRequest,
    CreateRangeRequest,
    EntityMatchBatch,
    EntityMatchResult,
    IdentifierPage,
    ListIdentifiersQuery,
    MatchResult,
    RangeItem,
    RangeList,
)
from ..protocol.errors import ApiError, field_at, not_found, param_error
from ..protocol.times import CHINA_TZ

# --- rules shared by every webizpay W9–W17 operation (spec §5 rules 1–2) ----------------------


def check_signer(signer: str, sp_mchid: str, location: str = "body") -> None:
    """sp_mchid must be the merchant that signed the request: 403 NO_AUTH, the same answer as W1–W8
    (spec §5.1 leaves the real code Unknown; the issue asks NO_AUTH for a foreign sp_mchid)."""
    if sp_mchid != signer:
        raise ApiError(
            "NO_AUTH",
            f"无权限：sp_mchid与请求签名的商户号不一致 (sp_mchid {sp_mchid} is not the signing merchant {signer})",
            # named as protocol.md §6 names a parameter: a JSON pointer in a body, the name in a query
            detail={
                **field_at("sp_mchid", location),
                "value": sp_mchid,
                "issue": "must equal the mchid of Authorization",
            },
        )


def check_sub_merchant(related: bool, sp_mchid: str, sub_mchid: str, location: str = "body") -> None:
    """The sp/sub pair must be a configured service-provider relation (Emulator choice: 403 NO_AUTH)."""
    if not related:
        raise ApiError(
            "NO_AUTH",
            f"无权限：{sub_mchid} 不是服务商 {sp_mchid} 的子商户 (not a sub-merchant of this service provider)",
            detail={
                **field_at("sub_mchid", location),
                "value": sub_mchid,
                "issue": "not a sub-merchant of sp_mchid",
            },
        )


def digest(payload: object) -> str:
    """Fingerprint of a request's business fields: equal requests are idempotent repeats."""
    text = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def conflicting_repeat(what: str, out_id: str) -> ApiError:
    return ApiError(
        "INVALID_REQUEST",
        f"{what} {out_id} 已被使用且请求参数不同：repeat it with the original parameters, or use a new {what}",
        # A JSON pointer like every body field (protocol.md §6), as W3 names /out_card_no.
        detail={
            "field": f"/{what}",
            "value": out_id,
            "location": "body",
            "issue": "already used with different parameters",
        },
    )


def new_digits(prefix: str, total: int) -> str:
    """A WeChat-style numeric id: a fixed prefix and random digits (unique constraints catch clashes)."""
    return prefix + "".join(secrets.choice("0123456789") for _ in range(total - len(prefix)))


def rfc3339(ts: float) -> str:
    # format_rfc3339 of the UTC time, made in China time at once: a bill formats one per line.
    return dt.datetime.fromtimestamp(ts, CHINA_TZ).isoformat(timespec="seconds")


# --- W9 / W10 store entity matching -----------------------------------------------------------

# Emulator choice (documented in the README's webizpay W9–W17 section): a batch is ACCEPTED when created;
# each W10 query moves it one step (ACCEPTED -> IN_PROGRESS -> COMPLETED); once COMPLETE_AFTER seconds
# of business time have passed it is COMPLETED at the next query whatever the count. CLOSED is only
# reached through the sandbox control API.
COMPLETE_AFTER = 10.0

# GB 32100-2015 unified social credit code: 18 chars, check digit over the first 17.
_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def uscc_valid(code: str) -> bool:
    if len(code) != 18 or any(ch not in _USCC_ALPHABET for ch in code):
        return False
    total = sum(_USCC_ALPHABET.index(ch) * w for ch, w in zip(code[:17], _USCC_WEIGHTS, strict=True))
    return _USCC_ALPHABET[(31 - total % 31) % 31] == code[17]


@dataclass(frozen=True, slots=True)
class StoreEntity:
    """A sandbox-configured entity: whether it has a WeChat Pay merchant number, with which products."""

    organization_code: str
    has_valid_mchid: bool
    products: tuple[str, ...] = ()


def has_valid_mchid(code: str, product_type: str, entity: StoreEntity | None) -> bool:
    """Configured entities decide; any other code counts as matched iff it is a well-formed unified
    social credit code (check digit valid). CODE_PAY/CODEPAY also needs that product when configured."""
    if entity is None:
        return uscc_valid(code)
    if not entity.has_valid_mchid:
        return False
    if product_type == "NONE" or not entity.products:
        return True
    return "CODE_PAY" in entity.products or "CODEPAY" in entity.products


@dataclass(frozen=True, slots=True)
class MatchBatch:
    batch_id: str
    sp_mchid: str
    out_batch_id: str
    state: str
    digest: str
    details: list[dict[str, str]]
    results: list[dict[str, object]] | None
    created_at: float

    def accepted_view(self) -> EntityMatchBatch:
        return EntityMatchBatch(
            sp_mchid=self.sp_mchid,
            out_batch_id=self.out_batch_id,
            batch_id=self.batch_id,
            time=rfc3339(self.created_at),
            state=self.state,  # type: ignore[arg-type]
        )

    def result_view(self) -> EntityMatchResult:
        results = None
        if self.results is not None:
            results = [MatchResult.model_validate(r) for r in self.results]
        return EntityMatchResult(
            sp_mchid=self.sp_mchid,
            out_batch_id=self.out_batch_id,
            batch_id=self.batch_id,
            state=self.state,  # type: ignore[arg-type]
            match_results=results,
        )


class MatchRepo(Protocol):
    def batch_by_out_id(self, sp_mchid: str, out_batch_id: str) -> MatchBatch | None: ...
    def batch(self, batch_id: str) -> MatchBatch | None: ...
    def insert_batch(self, batch: MatchBatch, now: float) -> bool: ...
    def move_batch(
        self,
        batch_id: str,
        from_state: str,
        to_state: str,
        results: list[dict[str, object]] | None,
        now: float,
    ) -> bool: ...
    def store_entities(self, codes: list[str]) -> dict[str, StoreEntity]: ...


def start_match(repo: MatchRepo, now: float, signer: str, body: CreateEntityMatchRequest) -> MatchBatch:
    check_signer(signer, body.sp_mchid)
    details = [d.model_dump() for d in body.match_details or []]
    fingerprint = digest(details)
    existing = repo.batch_by_out_id(body.sp_mchid, body.out_batch_id)
    if existing is None:
        batch = MatchBatch(
            batch_id=new_digits("1030000071", 25),
            sp_mchid=body.sp_mchid,
            out_batch_id=body.out_batch_id,
            state="ACCEPTED",
            digest=fingerprint,
            details=details,
            results=None,
            created_at=now,
        )
        if repo.insert_batch(batch, now):
            return batch
        # Another process inserted the same out_batch_id between our read and our insert.
        existing = repo.batch_by_out_id(body.sp_mchid, body.out_batch_id)
        assert existing is not None
    if existing.digest != fingerprint:
        raise conflicting_repeat("out_batch_id", body.out_batch_id)
    return existing


def _owned_batch(repo: MatchRepo, sp_mchid: str, batch_id: str) -> MatchBatch:
    batch = repo.batch(batch_id)
    if batch is None or batch.sp_mchid != sp_mchid:
        raise not_found(f"门店匹配批次 {batch_id}", f"store entity-match batch {batch_id}")
    return batch


def _results(repo: MatchRepo, details: list[dict[str, str]]) -> list[dict[str, object]]:
    entities = repo.store_entities(sorted({d["organization_code"] for d in details}))
    return [
        {
            "organization_code": d["organization_code"],
            "store_name": d["store_name"],
            "has_valid_mchid": has_valid_mchid(
                d["organization_code"], d["product_type"], entities.get(d["organization_code"])
            ),
        }
        for d in details
    ]


def query_match(repo: MatchRepo, now: float, signer: str, sp_mchid: str, batch_id: str) -> MatchBatch:
    check_signer(signer, sp_mchid, "query")
    batch = _owned_batch(repo, sp_mchid, batch_id)
    for _ in range(3):  # a concurrent query may move the batch first: re-read and try again
        if batch.state in ("COMPLETED", "CLOSED"):
            return batch
        done = batch.state == "IN_PROGRESS" or now - batch.created_at >= COMPLETE_AFTER
        target = "COMPLETED" if done else "IN_PROGRESS"
        results = _results(repo, batch.details) if done else None
        if repo.move_batch(batch.batch_id, batch.state, target, results, now):
            return _owned_batch(repo, sp_mchid, batch_id)
        batch = _owned_batch(repo, sp_mchid, batch_id)
    return batch


def close_match(repo: MatchRepo, now: float, batch_id: str) -> MatchBatch:
    """Sandbox: abandon a batch that has not completed (ACCEPTED/IN_PROGRESS -> CLOSED)."""
    batch = repo.batch(batch_id)
    if batch is None:
        raise not_found(f"门店匹配批次 {batch_id}", f"store entity-match batch {batch_id}")
    if batch.state in ("ACCEPTED", "IN_PROGRESS"):
        repo.move_batch(batch_id, batch.state, "CLOSED", None, now)  # lost race: report what won
    return repo.batch(batch_id) or batch


# --- W13–W17 available-merchant ranges --------------------------------------------------------

# Emulator choice: identifiers are checked against the range's type (the pages give only examples).
_IDENTIFIER_RULES = {
    "ORGANIZATION_CODE": (
        re.compile(r"[0-9A-Z]{18}"),
        "a unified social credit code is 18 characters of digits and upper-case letters",
    ),
    "TRANSACTION_ID": (
        re.compile(r"[0-9]{1,32}"),
        "a WeChat Pay order number (transaction_id) is digits only, e.g. 4200000123202306081234567890",
    ),
}


def identifier_problem(identifier_type: str, identifier: str) -> str | None:
    """Why ``identifier`` cannot be in a range of ``identifier_type`` (W15, a scenario's range), or None."""
    pattern, hint = _IDENTIFIER_RULES[identifier_type]
    if pattern.fullmatch(identifier):
        return None
    return f"does not fit the range's identifier_type {identifier_type}: {hint}"


@dataclass(frozen=True, slots=True)
class MchRange:
    range_id: str
    sp_mchid: str
    identifier_type: str


class RangeRepo(Protocol):
    def insert_range(self, rng: MchRange, now: float) -> None: ...
    def range(self, range_id: str) -> MchRange | None: ...
    def ranges(self, sp_mchid: str) -> list[MchRange]: ...
    def add_identifier(self, range_id: str, identifier: str, now: float) -> bool: ...
    def identifiers(self, range_id: str, offset: int, limit: int) -> tuple[list[str], int]: ...
    def delete_identifier(self, range_id: str, identifier: str) -> bool: ...


def create_range(repo: RangeRepo, now: float, signer: str, body: CreateRangeRequest) -> MchRange:
    check_signer(signer, body.sp_mchid)
    rng = MchRange(str(uuid.uuid4()), body.sp_mchid, body.identifier_type)
    repo.insert_range(rng, now)
    return rng


def list_ranges(repo: RangeRepo, signer: str, sp_mchid: str) -> RangeList:
    check_signer(signer, sp_mchid, "query")
    items = [
        RangeItem(range_id=r.range_id, identifier_type=r.identifier_type)  # type: ignore[arg-type]
        for r in repo.ranges(sp_mchid)
    ]
    return RangeList(sp_mchid=sp_mchid, range_list=items)


def _owned_range(repo: RangeRepo, sp_mchid: str, range_id: str) -> MchRange:
    rng = repo.range(range_id)
    if rng is None or rng.sp_mchid != sp_mchid:
        raise not_found(
            f"可用商户范围 {range_id}",
            f"available-merchant range {range_id}",
            detail=field_at("range_id", "path"),
        )
    return rng


def add_identifier(
    repo: RangeRepo, now: float, signer: str, range_id: str, body: AddIdentifierRequest
) -> str:
    """Adding an identifier that is already in the range is a no-op answered like the first add."""
    check_signer(signer, body.sp_mchid)
    rng = _owned_range(repo, body.sp_mchid, range_id)
    problem = identifier_problem(rng.identifier_type, body.merchant_identifier)
    if problem is not None:
        raise param_error(
            "/merchant_identifier",
            problem,
            value=body.merchant_identifier,
            message=f"参数“merchant_identifier”与范围类型{rng.identifier_type}不符",
        )
    repo.add_identifier(range_id, body.merchant_identifier, now)
    return range_id


def list_identifiers(
    repo: RangeRepo, signer: str, range_id: str, query: ListIdentifiersQuery
) -> IdentifierPage:
    check_signer(signer, query.sp_mchid, "query")
    _owned_range(repo, query.sp_mchid, range_id)
    data, total = repo.identifiers(range_id, query.offset, query.limit)
    return IdentifierPage(
        offset=query.offset, limit=query.limit, count=len(data), total_count=total, data=data
    )


def delete_identifier(repo: RangeRepo, signer: str, range_id: str, identifier: str, sp_mchid: str) -> str:
    check_signer(signer, sp_mchid)
    _owned_range(repo, sp_mchid, range_id)
    if not repo.delete_identifier(range_id, identifier):
        # detail names the identifier (the range exists): a repeat of a delete that took effect gets this
        # answer, and the SDK tells it from an unknown range's (client/resources/webizpay.py, W17)
        raise not_found(
            f"商户标识 {identifier}",
            f"merchant identifier {identifier} in range {range_id}",
            detail=field_at("merchant_identifier", "path"),
        )
    return range_id
