"""Enterprise payment, merchant side (webizpay.md W9–W10, W13–W17): store entity matching and
available-merchant ranges with their merchant identifiers. Shared by the server and the SDK."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, StringConstraints

from .common import ListOrAbsent, Mchid, WxModel

# out_batch_id / out_operation_id: 6–32 chars of digits, letters, _ - | * (spec §3, W3 pattern note).
OUT_ID_PATTERN = r"^[0-9A-Za-z_\-|*]{6,32}$"
OutId = Annotated[str, StringConstraints(min_length=6, max_length=32, pattern=OUT_ID_PATTERN)]

# The official page writes "CODEPAY"; the website and the YAML write CODE_PAY | NONE. All are accepted.
ProductType = Literal["CODE_PAY", "CODEPAY", "NONE"]
MatchState = Literal["ACCEPTED", "IN_PROGRESS", "COMPLETED", "CLOSED"]
IdentifierType = Literal["ORGANIZATION_CODE", "TRANSACTION_ID"]

BatchId = Annotated[str, StringConstraints(min_length=1, max_length=32)]
RangeId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
MerchantIdentifier = Annotated[str, StringConstraints(min_length=1, max_length=64)]

# Emulator choice: the pages give no maximum number of match details; 1000 keeps a batch bounded.
MAX_MATCH_DETAILS = 1000


class SpQuery(WxModel):
    sp_mchid: Mchid


# --- W9 / W10 store entity matching -------------------------------------------------------------


class MatchDetail(WxModel):
    organization_code: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    store_name: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    product_type: ProductType


class CreateEntityMatchRequest(WxModel):
    sp_mchid: Mchid
    out_batch_id: OutId
    match_details: Annotated[list[MatchDetail], Field(max_length=MAX_MATCH_DETAILS)] | None = None


class EntityMatchBatch(WxModel):
    """W9 response."""

    sp_mchid: str
    out_batch_id: str
    batch_id: str
    time: str  # as received (common.py: answers' times)
    state: MatchState | str


class EntityMatchPath(WxModel):
    batch_id: BatchId


class MatchResult(WxModel):
    organization_code: str
    store_name: str
    has_valid_mchid: bool


class EntityMatchResult(WxModel):
    """W10 response."""

    sp_mchid: str
    out_batch_id: str
    batch_id: str
    state: MatchState | str
    match_results: list[MatchResult] | None = None


# --- W13–W17 available-merchant ranges ----------------------------------------------------------


class CreateRangeRequest(WxModel):
    sp_mchid: Mchid
    identifier_type: IdentifierType


class RangeIdResponse(WxModel):
    """W13, W15 and W17 responses."""

    range_id: str


class RangeItem(WxModel):
    range_id: str
    identifier_type: IdentifierType | str


class RangeList(WxModel):
    """W14 response."""

    sp_mchid: str
    # Required per the sources, and always sent by wxpartner; WeChat Pay often leaves an empty array
    # out, so a client reads an absent one as empty.
    range_list: ListOrAbsent[RangeItem] = Field(default_factory=list)


class RangePath(WxModel):
    range_id: RangeId


class IdentifierPath(WxModel):
    range_id: RangeId
    merchant_identifier: MerchantIdentifier


class AddIdentifierRequest(WxModel):
    sp_mchid: Mchid
    merchant_identifier: MerchantIdentifier


class DeleteIdentifierRequest(WxModel):
    sp_mchid: Mchid


def _decimal_text(value: object) -> object:
    """A query value is text: a whole number is written in ASCII decimal digits. Pydantic's lax parse
    also took "1_0", "10.0", " 10" and "+10" as 10 (no integer is written so on the wire)."""
    if not isinstance(value, str):
        return value  # an int (the SDK builds the query from ints)
    if not (value.isascii() and value.isdigit()):
        # a minus sign is left to the bound's message ("greater than or equal to 0")
        if value.startswith("-") and value[1:].isascii() and value[1:].isdigit() and len(value) <= 21:
            return int(value)
        raise ValueError("expected a whole number written in decimal digits")
    return int(value) if len(value) <= 20 else 2**64  # past 64 bits: the bound refuses it


QueryInt = Annotated[int, BeforeValidator(_decimal_text)]


class ListIdentifiersQuery(WxModel):
    sp_mchid: Mchid
    # Bounded to a signed 64-bit value: SQL OFFSET takes a BIGINT, a larger one is a 400, not a 500.
    offset: Annotated[QueryInt, Field(ge=0, le=2**63 - 1)]
    # The page marks limit required and also gives "default 100": both an absent and a given limit work.
    limit: Annotated[QueryInt, Field(ge=1, le=500)] = 100


class IdentifierPage(WxModel):
    """W16 response."""

    offset: int
    limit: int
    count: int
    total_count: int
    data: ListOrAbsent[str] = Field(default_factory=list)  # absent or null = empty, like range_list
