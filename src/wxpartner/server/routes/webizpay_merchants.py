"""webizpay W9–W17: store entity matching, funding proofs, trade bills, available-merchant ranges; plus
the bill file download their download_url points to, a scenario section and a sandbox control route."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import anyio
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.engine import Connection
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ...domain import webizpay_bills as bills
from ...domain import webizpay_merchants as merchants
from ...models.webizpay_bills import (
    BillDownloadQuery,
    ProofRequest,
    ProofResponse,
    TradeBillRequest,
    TradeBillResponse,
)
from ...models.webizpay_merchants import (
    AddIdentifierRequest,
    CreateEntityMatchRequest,
    CreateRangeRequest,
    DeleteIdentifierRequest,
    EntityMatchBatch,
    EntityMatchPath,
    EntityMatchResult,
    IdentifierPage,
    IdentifierPath,
    ListIdentifiersQuery,
    RangeIdResponse,
    RangeList,
    RangePath,
    SpQuery,
)
from ...protocol.errors import ApiError
from ...sandbox import scenario
from ...store.webizpay_bills_repo import BillRepo
from ...store.webizpay_merchants_repo import (
    MatchRepo,
    RangeRepo,
    list_store_entities,
    reset,
    upsert_store_entity,
)
from ..app import STARTUP_HOOKS, AppState
from ..context import Ctx
from ..control import ControlError, control_route
from ..http import RawRequest, RawResponse
from ..operations import operation
from ..pipeline import Reply

TAGS = ("webizpay",)


# --- W9 / W10 --------------------------------------------------------------------------------------


@operation(
    "POST",
    "/v3/webizpay/stores/entity-matches",
    op_id="webizpay.start_entity_match",
    summary="发起门店匹配 (start store entity matching)",
    body=CreateEntityMatchRequest,
    response=EntityMatchBatch,
    tags=TAGS,
)
def start_entity_match(ctx: Ctx, path: dict[str, str], body: CreateEntityMatchRequest) -> EntityMatchBatch:
    with ctx.write() as conn:
        batch = merchants.start_match(MatchRepo(conn), ctx.now_ts, ctx.mchid, body)
    return batch.accepted_view()


@operation(
    "GET",
    "/v3/webizpay/stores/entity-matches/{batch_id}",
    op_id="webizpay.query_entity_match",
    summary="查询门店匹配结果 (query store entity matching)",
    path=EntityMatchPath,
    query=SpQuery,
    response=EntityMatchResult,
    tags=TAGS,
)
def query_entity_match(ctx: Ctx, path: EntityMatchPath, query: SpQuery) -> EntityMatchResult:
    with ctx.write() as conn:  # a query advances the batch (see domain.webizpay_merchants)
        batch = merchants.query_match(MatchRepo(conn), ctx.now_ts, ctx.mchid, query.sp_mchid, path.batch_id)
    return batch.result_view()


# --- W11 / W12 and the download -------------------------------------------------------------------


@operation(
    "POST",
    "/v3/webizpay/bill/proof",
    op_id="webizpay.apply_funding_proof",
    summary="申请出资凭证 (apply for a funding proof)",
    body=ProofRequest,
    response=ProofResponse,
    tags=TAGS,
    long=True,
)
def apply_funding_proof(ctx: Ctx, path: dict[str, str], body: ProofRequest) -> ProofResponse:
    # The document is built in a read transaction: on SQLite a write holds every writer's turn.
    with ctx.read() as conn:
        draft = bills.draft_proof(BillRepo(conn), ctx.now_ts, ctx.mchid, body)
    with ctx.write() as conn:
        base_url = ctx.state.settings.base_url()
        return bills.apply_proof(BillRepo(conn), ctx.now_ts, ctx.mchid, body, base_url, draft)


@operation(
    "POST",
    "/v3/webizpay/bill/trade-bill",
    op_id="webizpay.apply_trade_bill",
    summary="申请交易账单 (apply for a trade bill)",
    body=TradeBillRequest,
    response=TradeBillResponse,
    tags=TAGS,
    long=True,
)
def apply_trade_bill(ctx: Ctx, path: dict[str, str], body: TradeBillRequest) -> TradeBillResponse:
    with ctx.read() as conn:  # as W11: the bill is built outside the writers' turn
        content = bills.draft_trade_bill(BillRepo(conn), ctx.now_ts, ctx.mchid, body)
    with ctx.write() as conn:
        base_url = ctx.state.settings.base_url()
        return bills.apply_trade_bill(BillRepo(conn), ctx.now_ts, ctx.mchid, body, base_url, content)


DOWNLOAD_OP = "billdownload.file"


@operation(
    "GET",
    "/v3/billdownload/file",
    op_id=DOWNLOAD_OP,
    summary="下载账单文件 (download a bill or proof file)",
    query=BillDownloadQuery,
    tags=TAGS,
    long=True,  # a quarter's proof is 16 MB to read, hash for the signature and send
)
def download_file(ctx: Ctx, path: dict[str, str], query: BillDownloadQuery) -> Reply:
    with ctx.read() as conn:
        file = bills.download(BillRepo(conn), ctx.now_ts, ctx.mchid, query.token)
    return Reply(200, file.content.encode("utf-8"))


def _file_headers(
    ctx: Ctx | None,
    req: RawRequest,
    resp: RawResponse,
    request_id: str,
    op_id: str,
    started: float,
    refusal: ApiError | None,
) -> None:
    """The pipeline labels every body JSON; a successful file download is CSV. The signature covers
    the body only, so relabelling after signing keeps it valid."""
    if op_id != DOWNLOAD_OP or resp.status != 200:
        return
    resp.headers = [(k, v) for k, v in resp.headers if k.lower() != "content-type"]
    resp.headers.insert(0, ("Content-Type", "text/csv; charset=utf-8"))
    token = req.query_params().get("token", [""])[0]
    resp.headers.append(("Content-Disposition", f"attachment; filename*=UTF-8''{quote(token[:16])}.csv"))


def _install(state: AppState) -> None:
    state.observers.insert(0, _file_headers)


STARTUP_HOOKS.append(_install)


# --- W13–W17 --------------------------------------------------------------------------------------


@operation(
    "POST",
    "/v3/webizpay/avail-mch-ranges",
    op_id="webizpay.create_avail_mch_range",
    summary="创建可用商户范围 (create an available-merchant range)",
    body=CreateRangeRequest,
    response=RangeIdResponse,
    tags=TAGS,
)
def create_range(ctx: Ctx, path: dict[str, str], body: CreateRangeRequest) -> RangeIdResponse:
    with ctx.write() as conn:
        rng = merchants.create_range(RangeRepo(conn), ctx.now_ts, ctx.mchid, body)
    return RangeIdResponse(range_id=rng.range_id)


@operation(
    "GET",
    "/v3/webizpay/avail-mch-ranges",
    op_id="webizpay.list_avail_mch_ranges",
    summary="查询可用商户范围列表 (list available-merchant ranges)",
    query=SpQuery,
    response=RangeList,
    tags=TAGS,
)
def list_ranges(ctx: Ctx, path: dict[str, str], query: SpQuery) -> RangeList:
    with ctx.read() as conn:
        return merchants.list_ranges(RangeRepo(conn), ctx.mchid, query.sp_mchid)


@operation(
    "POST",
    "/v3/webizpay/avail-mch-ranges/{range_id}/merchant-identifiers",
    op_id="webizpay.add_merchant_identifier",
    summary="添加商户标识 (add a merchant identifier to a range)",
    path=RangePath,
    body=AddIdentifierRequest,
    response=RangeIdResponse,
    tags=TAGS,
)
def add_identifier(ctx: Ctx, path: RangePath, body: AddIdentifierRequest) -> RangeIdResponse:
    with ctx.write() as conn:
        range_id = merchants.add_identifier(RangeRepo(conn), ctx.now_ts, ctx.mchid, path.range_id, body)
    return RangeIdResponse(range_id=range_id)


@operation(
    "GET",
    "/v3/webizpay/avail-mch-ranges/{range_id}/merchant-identifiers",
    op_id="webizpay.list_merchant_identifiers",
    summary="查询商户标识列表 (list a range's merchant identifiers)",
    path=RangePath,
    query=ListIdentifiersQuery,
    response=IdentifierPage,
    tags=TAGS,
)
def list_identifiers(ctx: Ctx, path: RangePath, query: ListIdentifiersQuery) -> IdentifierPage:
    with ctx.read() as conn:
        return merchants.list_identifiers(RangeRepo(conn), ctx.mchid, path.range_id, query)


@operation(
    "DELETE",
    "/v3/webizpay/avail-mch-ranges/{range_id}/merchant-identifiers/{merchant_identifier}",
    op_id="webizpay.delete_merchant_identifier",
    summary="删除商户标识 (remove a merchant identifier from a range)",
    path=IdentifierPath,
    body=DeleteIdentifierRequest,
    response=RangeIdResponse,
    tags=TAGS,
)
def delete_identifier(ctx: Ctx, path: IdentifierPath, body: DeleteIdentifierRequest) -> RangeIdResponse:
    with ctx.write() as conn:
        range_id = merchants.delete_identifier(
            RangeRepo(conn), ctx.mchid, path.range_id, path.merchant_identifier, body.sp_mchid
        )
    return RangeIdResponse(range_id=range_id)


# --- sandbox: scenario section, reset, control ----------------------------------------------------


class StoreEntitySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    organization_code: str = Field(min_length=1, max_length=32)
    has_valid_mchid: bool = True
    products: list[str] = []


def _load_entities(conn: Connection, data: Any, lctx: scenario.LoadContext) -> None:
    if not isinstance(data, list):
        raise scenario.ScenarioError(
            "webizpay_store_entities: a list of {organization_code, has_valid_mchid}"
        )
    for i, item in enumerate(data):
        try:
            spec = StoreEntitySpec.model_validate(item)
        except ValidationError as exc:
            raise scenario.ScenarioError(f"webizpay_store_entities[{i}]: {exc.errors()[0]['msg']}") from exc
        upsert_store_entity(
            conn, merchants.StoreEntity(spec.organization_code, spec.has_valid_mchid, tuple(spec.products))
        )
    lctx.report["webizpay_store_entities"] = len(data)


def _export_entities(conn: Connection) -> list[dict[str, Any]]:
    return [
        {
            "organization_code": e.organization_code,
            "has_valid_mchid": e.has_valid_mchid,
            "products": list(e.products),
        }
        for e in list_store_entities(conn)
    ]


scenario.register_section(scenario.Section("webizpay_store_entities", _load_entities, _export_entities))
scenario.RESETTERS.append(reset)


@control_route("/webizpay/entity-matches/{batch_id}/close", ["POST"])
async def close_entity_match(request: Request) -> Response:
    """Sandbox: abandon a batch that has not completed (-> CLOSED), e.g. to test a client's handling."""
    st: AppState = request.app.state.wx
    batch_id = request.path_params["batch_id"]

    def apply() -> merchants.MatchBatch:
        with st.db.write() as conn:
            now = _clock_now(conn)
            return merchants.close_match(MatchRepo(conn), now, batch_id)

    try:
        batch = await anyio.to_thread.run_sync(apply)
    except ApiError as exc:
        raise ControlError(404, exc.code, exc.message) from exc
    return JSONResponse(batch.result_view().model_dump(exclude_none=True))


def _clock_now(conn: Connection) -> float:
    from ...store.sandbox import read_clock

    return read_clock(conn).now_ts()
