"""Enterprise payment bills (webizpay.md W11 funding proof, W12 trade bill) and the file download
(`GET /v3/billdownload/file?token=…`) their `download_url` points to."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import StringConstraints

from .common import Date, Mchid, WxModel
from .webizpay_merchants import OutId

BillType = Literal["QYZFALL"]


class ProofRequest(WxModel):
    sp_mchid: Mchid
    sub_mchid: Mchid
    start_date: Date
    end_date: Date
    entity_name: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    out_operation_id: OutId


class ProofResponse(WxModel):
    sp_mchid: str
    out_operation_id: str
    operation_id: str
    sub_mchid: str
    start_date: str
    end_date: str
    entity_name: str  # required per the YAML: "" when the request had none
    proof_id: str
    download_url: str
    create_time: str  # as received (common.py: answers' times)
    updated_time: str


class TradeBillRequest(WxModel):
    sp_mchid: Mchid
    sub_mchid: Mchid
    date: Date
    type: BillType


class TradeBillResponse(WxModel):
    sp_mchid: str
    sub_mchid: str
    date: str
    type: BillType | str
    download_url: str


class BillDownloadQuery(WxModel):
    token: Annotated[str, StringConstraints(min_length=1, max_length=128)]
