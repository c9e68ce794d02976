"""webizpay W11 (funding proof, 出资凭证) and W12 (trade bill, 交易账单): plain rules and the files.

Both hand out a `download_url` on this server (`/v3/billdownload/file?token=…`); the file is built when
applied for and kept with the link, so a download always returns what the application described.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import NamedTuple, Protocol

from ..models.webizpay_bills import ProofRequest, ProofResponse, TradeBillRequest, TradeBillResponse
from ..protocol.errors import ApiError, param_error
from ..protocol.times import CHINA_TZ
from .webizpay_merchants import (
    check_signer,
    check_sub_merchant,
    conflicting_repeat,
    digest,
    new_digits,
    rfc3339,
)

# Emulator choice: a download link lives 5 minutes of business time (WeChat's bill links are short-lived;
# the exact lifetime for webizpay is Unknown). Each application hands out a fresh link.
DOWNLOAD_TTL = 300.0
# "Only ranges within the last three months" (W11, W12).
MONTHS_BACK = 3


class TradeRow(NamedTuple):
    """One enterprise-payment transaction as bills list it (provided by the quota-card family). A
    named tuple, not a frozen dataclass: a quarter's bill makes 100,000 of them, each 5x cheaper."""

    time: float
    sp_mchid: str
    sub_mchid: str
    card_no: str
    employee_id: str
    transaction_id: str
    out_trade_no: str
    receive_mch_name: str
    receive_mch_full_name: str
    receive_mch_organization_code: str
    state: str  # SUCCESS | REFUND
    amount: int  # fen
    refund_amount: int = 0  # fen


@dataclass(frozen=True, slots=True)
class Proof:
    proof_id: str
    operation_id: str
    sp_mchid: str
    sub_mchid: str
    out_operation_id: str
    start_date: str
    end_date: str
    entity_name: str
    digest: str
    content: str  # the document; "" as read back (proof_by_out_id): only its download reads it
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class BillFile:
    token: str
    sp_mchid: str
    sub_mchid: str
    kind: str  # PROOF | TRADE_BILL
    filename: str
    content: str
    created_at: float
    expires_at: float
    proof_id: str | None = None  # a proof's link: "" content here, the proof's document served


class BillRepo(Protocol):
    def is_sub_merchant(self, sp_mchid: str, sub_mchid: str) -> bool: ...
    def proof_by_out_id(self, sp_mchid: str, out_operation_id: str) -> Proof | None: ...
    def insert_proof(self, proof: Proof) -> bool: ...
    def touch_proof(self, proof_id: str, now: float) -> None: ...
    def trades(self, sp_mchid: str, sub_mchid: str, start: float, end: float) -> list[TradeRow]: ...
    def add_file(self, file: BillFile) -> None: ...
    def file(self, token: str) -> BillFile | None: ...


# --- dates ---------------------------------------------------------------------------------------


def business_today(now: float) -> dt.date:
    return dt.datetime.fromtimestamp(now, CHINA_TZ).date()


def earliest_date(today: dt.date) -> dt.date:
    """The same day MONTHS_BACK calendar months ago (clamped to the month's end)."""
    month = today.month - MONTHS_BACK
    year = today.year
    while month < 1:
        month += 12
        year -= 1
    for day in (today.day, 30, 29, 28):
        try:
            return dt.date(year, month, day)
        except ValueError:
            continue
    raise AssertionError("unreachable")


def day_bounds(first: dt.date, last: dt.date) -> tuple[float, float]:
    """[start of first, start of the day after last) in China time, as epoch seconds."""
    start = dt.datetime.combine(first, dt.time(), CHINA_TZ)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), CHINA_TZ)
    return start.timestamp(), end.timestamp()


def _check_window(field: str, value: dt.date, earliest: dt.date, latest: dt.date, why: str) -> None:
    if not earliest <= value <= latest:
        raise param_error(
            field,
            f"must be between {earliest.isoformat()} and {latest.isoformat()} ({why})",
            value=value.isoformat(),
            message=f"参数“{field}”超出可查询范围：仅支持近三个月 (only the last three months)",
        )


# --- files ---------------------------------------------------------------------------------------


def _yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def _csv(rows: Iterable[Iterable[str]]) -> str:
    """WeChat bill style: every value prefixed with a backquote so spreadsheets keep it as text."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows(["`" + v for v in row] for row in rows)
    return out.getvalue()


TRADE_HEADER = (
    "交易时间",
    "服务商商户号",
    "出资子商户号",
    "额度卡号",
    "员工授权关系ID",
    "微信支付订单号",
    "商户订单号",
    "收款商户简称",
    "收款商户全称",
    "收款商户统一社会信用代码",
    "交易状态",
    "订单金额(元)",
    "退款金额(元)",
)


def _trade_lines(rows: list[TradeRow]) -> list[tuple[str, ...]]:
    return [
        (
            rfc3339(r.time),
            r.sp_mchid,
            r.sub_mchid,
            r.card_no,
            r.employee_id,
            r.transaction_id,
            r.out_trade_no,
            r.receive_mch_name,
            r.receive_mch_full_name,
            r.receive_mch_organization_code,
            r.state,
            _yuan(r.amount),
            _yuan(r.refund_amount),
        )
        for r in rows
    ]


def _payments(rows: list[TradeRow]) -> list[TradeRow]:
    """The payment lines. A REFUND line carries its order's amount too, for reference: an order's
    amount counts once, on its SUCCESS line."""
    return [r for r in rows if r.state == "SUCCESS"]


def trade_bill_csv(rows: list[TradeRow]) -> str:
    """Header, one line per transaction, then a summary header and line (WeChat's bill layout)."""
    total = sum(r.amount for r in _payments(rows))
    refunded = sum(r.refund_amount for r in rows)
    body = [TRADE_HEADER, *_trade_lines(rows)]
    summary = [
        ("总交易单数", "总交易额(元)", "总退款金额(元)"),
        (str(len(rows)), _yuan(total), _yuan(refunded)),
    ]
    return _csv(body) + _csv(summary)


def proof_document(proof: Proof, rows: list[TradeRow]) -> str:
    """The funding proof: who funded what, over which dates, for which payee entity; then the payments."""
    payments = _payments(rows)
    funded = sum(r.amount for r in payments) - sum(r.refund_amount for r in rows)
    head = [
        ("企业支付出资凭证", "funding proof"),
        ("凭证编号", proof.proof_id),
        ("申请单号", proof.operation_id),
        ("服务商商户号", proof.sp_mchid),
        ("出资子商户号", proof.sub_mchid),
        ("起始日期", proof.start_date),
        ("结束日期", proof.end_date),
        ("收款主体名称", proof.entity_name or "全部 (all)"),
        ("生成时间", rfc3339(proof.created_at)),
    ]
    summary = [("出资总笔数", "出资总金额(元)"), (str(len(payments)), _yuan(funded))]
    return _csv(head) + _csv([TRADE_HEADER, *_trade_lines(rows)]) + _csv(summary)


def _new_file(
    now: float,
    sp_mchid: str,
    sub_mchid: str,
    kind: str,
    filename: str,
    content: str,
    proof_id: str | None = None,
) -> BillFile:
    return BillFile(
        token=secrets.token_urlsafe(24),
        sp_mchid=sp_mchid,
        sub_mchid=sub_mchid,
        kind=kind,
        filename=filename,
        content=content,
        created_at=now,
        expires_at=now + DOWNLOAD_TTL,
        proof_id=proof_id,
    )


def download_url(base_url: str, token: str) -> str:
    return f"{base_url}/v3/billdownload/file?token={token}"


# --- W11 -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ProofAsk:
    """A W11 request, checked: its trades' span and the fingerprint a repeat must match."""

    lo: float
    hi: float
    entity: str
    fingerprint: str


def _check_proof(repo: BillRepo, now: float, signer: str, body: ProofRequest) -> _ProofAsk:
    check_signer(signer, body.sp_mchid)
    check_sub_merchant(repo.is_sub_merchant(body.sp_mchid, body.sub_mchid), body.sp_mchid, body.sub_mchid)
    today = business_today(now)
    earliest = earliest_date(today)
    start = dt.date.fromisoformat(body.start_date)
    end = dt.date.fromisoformat(body.end_date)
    _check_window("/start_date", start, earliest, today, "the last three months, up to today")
    _check_window("/end_date", end, earliest, today, "the last three months, up to today")
    if end < start:
        raise param_error(
            "/end_date",
            f"must not be before start_date {body.start_date}",
            value=body.end_date,
            message="参数“end_date”不能早于start_date",
        )
    entity = body.entity_name or ""
    lo, hi = day_bounds(start, end)
    return _ProofAsk(lo, hi, entity, digest([body.sub_mchid, body.start_date, body.end_date, entity]))


def _new_proof(repo: BillRepo, now: float, body: ProofRequest, ask: _ProofAsk) -> Proof:
    draft = Proof(
        proof_id=new_digits("2000", 24),
        operation_id=new_digits("1000", 24),
        sp_mchid=body.sp_mchid,
        sub_mchid=body.sub_mchid,
        out_operation_id=body.out_operation_id,
        start_date=body.start_date,
        end_date=body.end_date,
        entity_name=ask.entity,
        digest=ask.fingerprint,
        content="",
        created_at=now,
        updated_at=now,
    )
    rows = [
        r
        for r in repo.trades(body.sp_mchid, body.sub_mchid, ask.lo, ask.hi)
        if not ask.entity or r.receive_mch_full_name == ask.entity
    ]
    return replace(draft, content=proof_document(draft, rows))


def draft_proof(repo: BillRepo, now: float, signer: str, body: ProofRequest) -> Proof | None:
    """W11's first half, for a read transaction: the checks, and the proof of an ``out_operation_id``
    not seen yet with its document (a quarter's trades can be 100,000 lines, seconds of work that
    must not hold the writers' turn); None for a repeat. ``apply_proof`` stores it."""
    ask = _check_proof(repo, now, signer, body)
    found = repo.proof_by_out_id(body.sp_mchid, body.out_operation_id)
    if found is not None:
        if found.digest != ask.fingerprint:
            raise conflicting_repeat("out_operation_id", body.out_operation_id)
        return None
    return _new_proof(repo, now, body, ask)


def apply_proof(
    repo: BillRepo, now: float, signer: str, body: ProofRequest, base_url: str, draft: Proof | None = None
) -> ProofResponse:
    """W11: the proof of ``out_operation_id``, stored from ``draft`` (``draft_proof``'s) when new and
    built here when there is none; a repeat gets a new download link of the same proof."""
    ask = _check_proof(repo, now, signer, body)  # again: the state may have moved since the draft
    proof = repo.proof_by_out_id(body.sp_mchid, body.out_operation_id)
    if proof is None:
        made = (
            draft
            if draft is not None and draft.digest == ask.fingerprint
            else _new_proof(repo, now, body, ask)
        )
        if repo.insert_proof(made):
            proof = made
        else:  # another process inserted the same out_operation_id first
            proof = repo.proof_by_out_id(body.sp_mchid, body.out_operation_id)
            assert proof is not None
            if proof.digest != ask.fingerprint:
                raise conflicting_repeat("out_operation_id", body.out_operation_id)
    else:
        if proof.digest != ask.fingerprint:
            raise conflicting_repeat("out_operation_id", body.out_operation_id)
        # Emulator choice: a repeat hands out a fresh download link and moves updated_time.
        repo.touch_proof(proof.proof_id, now)
        proof = replace(proof, updated_at=now)
    name = f"proof_{proof.proof_id}.csv"
    file = _new_file(now, proof.sp_mchid, proof.sub_mchid, "PROOF", name, "", proof.proof_id)
    repo.add_file(file)
    return ProofResponse(
        sp_mchid=proof.sp_mchid,
        out_operation_id=proof.out_operation_id,
        operation_id=proof.operation_id,
        sub_mchid=proof.sub_mchid,
        start_date=proof.start_date,
        end_date=proof.end_date,
        entity_name=proof.entity_name,
        proof_id=proof.proof_id,
        download_url=download_url(base_url, file.token),
        create_time=rfc3339(proof.created_at),
        updated_time=rfc3339(proof.updated_at),
    )


# --- W12 -----------------------------------------------------------------------------------------


def _check_trade_bill(repo: BillRepo, now: float, signer: str, body: TradeBillRequest) -> tuple[float, float]:
    """W12's checks; the day's span."""
    check_signer(signer, body.sp_mchid)
    check_sub_merchant(repo.is_sub_merchant(body.sp_mchid, body.sub_mchid), body.sp_mchid, body.sub_mchid)
    today = business_today(now)
    day = dt.date.fromisoformat(body.date)
    # Emulator choice: a day's bill exists once the day is over (yesterday at the latest).
    _check_window("/date", day, earliest_date(today), today - dt.timedelta(days=1), "a finished day")
    return day_bounds(day, day)


def draft_trade_bill(repo: BillRepo, now: float, signer: str, body: TradeBillRequest) -> str:
    """W12's first half, for a read transaction: the checks and the bill (a day's trades, built
    outside the writers' turn). ``apply_trade_bill`` stores it behind a download link."""
    lo, hi = _check_trade_bill(repo, now, signer, body)
    return trade_bill_csv(repo.trades(body.sp_mchid, body.sub_mchid, lo, hi))


def apply_trade_bill(
    repo: BillRepo, now: float, signer: str, body: TradeBillRequest, base_url: str, content: str | None = None
) -> TradeBillResponse:
    """W12: a download link to the day's bill, ``content`` (``draft_trade_bill``'s) or built here."""
    lo, hi = _check_trade_bill(repo, now, signer, body)  # again: the state may have moved since the draft
    if content is None:
        content = trade_bill_csv(repo.trades(body.sp_mchid, body.sub_mchid, lo, hi))
    name = f"{body.type}_{body.sub_mchid}_{body.date}.csv"
    file = _new_file(now, body.sp_mchid, body.sub_mchid, "TRADE_BILL", name, content)
    repo.add_file(file)
    return TradeBillResponse(
        sp_mchid=body.sp_mchid,
        sub_mchid=body.sub_mchid,
        date=body.date,
        type=body.type,
        download_url=download_url(base_url, file.token),
    )


# --- the download --------------------------------------------------------------------------------


def download(repo: BillRepo, now: float, signer: str, token: str) -> BillFile:
    """Only the merchant that applied may download; someone else's token looks like an unknown one."""
    file = repo.file(token)
    if file is None or file.sp_mchid != signer:
        raise ApiError(
            "RESOURCE_NOT_EXISTS",
            "账单文件不存在 (the bill file does not exist; apply again for a new download_url)",
        )
    if now >= file.expires_at:
        raise ApiError(
            "INVALID_REQUEST",
            "下载链接已过期：download_url expired, apply for the bill or proof again to get a new link",
            detail={"field": "token", "location": "query", "issue": "expired"},
        )
    return file
