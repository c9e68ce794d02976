"""Sandbox control of enterprise payment (``/sandbox/webizpay/...``, token-guarded): the employee's
actions that happen inside WeChat (consent, deregister, pay, refund), card templates and the expiry
sweep. Its scenario section is in ``webizpay_scenario.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar

import anyio
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..domain.webizpay import authorizations, payments
from ..domain.webizpay.entities import (
    REVOKE_BY_EMPLOYEE,
    Policy,
    Relation,
    Template,
)
from ..models.webizpay import (
    Mchid,
    UserId,
)
from ..protocol.errors import ApiError
from ..sandbox import scenario
from ..store import sandbox as sandbox_store
from ..store.db import Database
from ..store.webizpay_repo import WebizpayRepo
from ..store.webizpay_tables import (
    webizpay_auth_links,
    webizpay_cards,
    webizpay_payment_links,
    webizpay_payments,
    webizpay_refunds,
)
from .control import ControlError, control_route, json_body
from .params import bad, integer, known_fields, length_of, string, validated
from .webizpay_background import sweep_all

T = TypeVar("T")


def run_in_tx(db: Database, fn: Callable[[WebizpayRepo, float], T]) -> T:
    """One write transaction at business time; a domain refusal (ApiError) rolls it back and is answered
    by the control API's guard with its WeChat code, status and detail."""
    with db.write() as conn:
        now = sandbox_store.read_clock(conn).now_ts()
        return fn(WebizpayRepo(conn), now)


def _policy(request: Request) -> Policy:
    return Policy.from_settings(request.app.state.wx.settings.extra)


def _relation_view(r: Relation) -> dict[str, Any]:
    from ..domain.webizpay.entities import rfc3339

    return {
        "employee_id": r.employee_id,
        "sp_mchid": r.sp_mchid,
        "sub_mchid": r.sub_mchid,
        "user_id": r.user_id,
        "authorization_state": r.state,
        "authorization_time": rfc3339(r.authorized_at),
        **({"authorization_revoked_time": rfc3339(r.revoked_at)} if r.revoked_at is not None else {}),
        **({"reason": r.reason} if r.reason else {}),
    }


def body_str(body: dict[str, Any], name: str, column: sa.Column[Any], *, required: bool = True) -> str | None:
    return string(body.get(name), name, location="body", max_length=length_of(column), required=required)


def _fen(body: dict[str, Any], name: str) -> int:
    return integer(body.get(name), name, location="body", text=False, what="an integer number of fen")


class ConsentBody(BaseModel):
    """Who consents, with W1's own rules for these fields (so a relation W1 could not name is refused)."""

    model_config = ConfigDict(extra="forbid")
    sp_mchid: Mchid
    sub_mchid: Mchid
    user_id: UserId


@control_route("/webizpay/authorizations", ["POST"])
async def consent(request: Request) -> Response:
    """The employee consents: {"token": ...} (from the W1 link) or {"sp_mchid","sub_mchid","user_id"}."""
    body = await json_body(request)
    db = request.app.state.wx.db
    token = body_str(body, "token", webizpay_auth_links.c.token, required=False)
    who = None if token else validated(ConsentBody, body, location="body")

    def apply(repo: WebizpayRepo, now: float) -> Relation:
        if token:
            return authorizations.consent_by_token(repo, now, token)
        assert who is not None
        if not repo.sub_bound(who.sp_mchid, who.sub_mchid):
            raise ControlError(
                400,
                "PARAM_ERROR",
                f"{who.sub_mchid} is not a sub-merchant of {who.sp_mchid}",
                {
                    "field": "/sub_mchid",
                    "location": "body",
                    "value": who.sub_mchid,
                    "issue": "not a sub-merchant",
                },
            )
        return authorizations.consent(
            repo, now, sp_mchid=who.sp_mchid, sub_mchid=who.sub_mchid, user_id=who.user_id
        )

    relation = await anyio.to_thread.run_sync(lambda: run_in_tx(db, apply))
    return JSONResponse(_relation_view(relation))


@control_route("/webizpay/employees/{employee_id}/deregister", ["POST"])
async def deregister(request: Request) -> Response:
    """The employee cancels enterprise payment in WeChat (REVOKED, reason 员工注销)."""
    db = request.app.state.wx.db
    employee_id = request.path_params["employee_id"]
    pol = _policy(request)

    def apply(repo: WebizpayRepo, now: float) -> dict[str, Any]:
        relation = repo.relation(employee_id)
        if relation is None:
            raise ControlError(404, "RESOURCE_NOT_EXISTS", f"no relation {employee_id}")
        return authorizations.revoke(
            repo,
            pol,
            now,
            employee_id=employee_id,
            sp_mchid=relation.sp_mchid,
            sub_mchid=relation.sub_mchid,
            reason=REVOKE_BY_EMPLOYEE,
        ).model_dump(exclude_none=True)

    return JSONResponse(await anyio.to_thread.run_sync(lambda: run_in_tx(db, apply)))


# Where each field of the paying store is kept.
STORE_COLUMNS = {
    "name": webizpay_payments.c.receive_mch_name,
    "full_name": webizpay_payments.c.receive_mch_full_name,
    "organization_code": webizpay_payments.c.receive_mch_organization_code,
    "acquirer": webizpay_payments.c.acquirer,
}


def pay_from_body(repo: WebizpayRepo, pol: Policy, now: float, body: dict[str, Any]) -> dict[str, Any]:
    """Shared by the control API, the payment page and the scenario's spends: {"card_no"|"token",
    "amount", ...}. Bad input is a ControlError (params.py: what the columns cannot hold), raised before
    anything is written; the business refusals are ApiErrors."""
    amount = _fen(body, "amount")
    goods = body_str(body, "goods_name", webizpay_payments.c.goods_name, required=False)
    out_trade_no = body_str(body, "out_trade_no", webizpay_payments.c.out_trade_no, required=False)
    raw = body.get("store") or {}
    if not isinstance(raw, dict):
        raise bad("store must be an object", field="store", location="body", issue="not an object", value=raw)
    given = {
        k: string(raw.get(k), f"store.{k}", location="body", max_length=length_of(column), required=False)
        for k, column in STORE_COLUMNS.items()
    }
    store = payments.Store(**{k: v for k, v in given.items() if v is not None})
    token = body_str(body, "token", webizpay_payment_links.c.token, required=False)
    if token:
        card_no = payments.live_payment_link(repo, token, now).card_no
    else:
        card_no = body_str(body, "card_no", webizpay_cards.c.card_no) or ""
    card = repo.card(card_no)
    if card is None:
        raise ApiError("RESOURCE_NOT_EXISTS", f"额度卡 {card_no} 不存在")
    payment = payments.pay(
        repo,
        pol,
        now,
        card,
        amount,
        store=store,
        goods_name=goods or "企业支付消费",
        out_trade_no=out_trade_no,
    )
    after = repo.card(card.card_no)
    return {
        "transaction_id": payment.transaction_id,
        "out_trade_no": payment.out_trade_no,
        "card_no": payment.card_no,
        "amount": payment.amount,
        "remain_amount": after.remain_amount if after else None,
    }


@control_route("/webizpay/payments", ["POST"])
async def pay(request: Request) -> Response:
    """The employee pays a store with a card: {"card_no" or "token", "amount", "goods_name"?, "store"?,
    "out_trade_no"?}. A misspelt field is refused (it would pay without it)."""
    body = await json_body(request)
    known_fields(body, "card_no", "token", "amount", "goods_name", "store", "out_trade_no", location="body")
    db = request.app.state.wx.db
    pol = _policy(request)
    result = await anyio.to_thread.run_sync(
        lambda: run_in_tx(db, lambda r, n: pay_from_body(r, pol, n, body))
    )
    return JSONResponse(result)


@control_route("/webizpay/refunds", ["POST"])
async def refund(request: Request) -> Response:
    """Refund a card payment: {"transaction_id", "amount", "out_refund_no"?}."""
    body = await json_body(request)
    known_fields(body, "transaction_id", "amount", "out_refund_no", location="body")
    db = request.app.state.wx.db
    txid = body_str(body, "transaction_id", webizpay_refunds.c.transaction_id) or ""
    amount = _fen(body, "amount")
    out_no = body_str(body, "out_refund_no", webizpay_refunds.c.out_refund_no, required=False)

    def apply(repo: WebizpayRepo, now: float) -> dict[str, Any]:
        r = payments.refund(repo, now, txid, amount, out_refund_no=out_no)
        payment = repo.payment(txid)
        card = repo.card(payment.card_no) if payment else None
        return {
            "refund_id": r.refund_id,
            "out_refund_no": r.out_refund_no,
            "transaction_id": txid,
            "refund_amount": r.amount,
            "refunded_amount": payment.refunded_amount if payment else None,
            "remain_amount": card.remain_amount if card else None,
        }

    return JSONResponse(await anyio.to_thread.run_sync(lambda: run_in_tx(db, apply)))


class TemplateSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sp_mchid: scenario.Mchid
    card_template_id: str = Field(min_length=1, max_length=64)
    card_rule: Literal["SINGLE", "MULTIPLE"] = "MULTIPLE"
    refund_rule: Literal["RETURN", "NOT_RETURN"] = "RETURN"


@control_route("/webizpay/templates", ["GET", "POST"])
async def templates(request: Request) -> Response:
    """GET: configured templates (+ the built-in ones); POST a TemplateSpec to add or replace one."""
    db = request.app.state.wx.db
    pol = _policy(request)
    if request.method == "POST":
        spec = validated(
            TemplateSpec, await json_body(request), location="body"
        )  # a 400 PARAM_ERROR naming the field

        def put(repo: WebizpayRepo, now: float) -> None:
            repo.put_template(
                spec.sp_mchid, Template(spec.card_template_id, spec.card_rule, spec.refund_rule), now
            )

        await anyio.to_thread.run_sync(lambda: run_in_tx(db, put))
        return JSONResponse(spec.model_dump())

    known_fields(dict(request.query_params), "sp_mchid", location="query")  # ?sp_mchd= listed all

    def read() -> list[dict[str, Any]]:
        with db.read() as conn:  # not the single writer's turn (SQLite): a GET waited behind writes
            return WebizpayRepo(conn).templates_of(request.query_params.get("sp_mchid"))

    data = await anyio.to_thread.run_sync(read)
    builtin = [
        {"card_template_id": t.card_template_id, "card_rule": t.card_rule, "refund_rule": t.refund_rule}
        for t in pol.builtin_templates
    ]
    return JSONResponse({"data": data, "builtin": builtin})


@control_route("/webizpay/sweep", ["POST"])
async def sweep(request: Request) -> Response:
    """Disable every ACTIVE card past effective_end_time now (the background sweep does it too)."""
    n = await anyio.to_thread.run_sync(sweep_all, request.app.state.wx)
    return JSONResponse({"expired": n})
