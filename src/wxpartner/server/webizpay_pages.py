"""The employee's pages (sandbox stand-ins for WeChat's): the W1 authorization link and the W7
payment link open here. Server-rendered in the dashboard's look (without its navigation: no dashboard
login, the link token is the only credential, as with a real short-lived link)."""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import parse_qs

import anyio
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from ..domain.webizpay import authorizations, payments
from ..domain.webizpay.entities import Policy, rfc3339
from ..protocol.detail import shown_value
from ..protocol.errors import ApiError, param_error
from ..store import registry
from ..store import sandbox as sandbox_store
from ..store.db import Database
from ..store.webizpay_repo import WebizpayRepo
from . import control_webizpay, webizpay_scenario  # noqa: F401  (control routes, scenario section)
from .control_webizpay import pay_from_body
from .dashboard.layout import fen, page
from .framing import unframed
from .params import ControlError, Endpoint, input_checked, refuse_nul
from .web import WEB_ROUTES

SUBTITLE = "模拟微信页面 · simulated WeChat page"


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return page(
        title,
        f'<section class="card">{body}</section>',
        nav=False,
        lang="zh-CN",
        narrow=True,
        subtitle=SUBTITLE,
        status=status,
    )


# What the detail of a refusal may show the employee, with the label the page gives it.
_SHOWN = (("field", "字段 field"), ("issue", "问题 issue"), ("value", "值 value"))


def _error(err: ApiError) -> HTMLResponse:
    """The refusal as a page: its message, then the field, issue and value its detail names (a form
    that was refused says which of its fields to change)."""
    detail = err.detail or {}
    facts = "".join(
        f'<dt>{label}</dt><dd id="error-{key}">{html.escape(str(detail[key]))}</dd>'
        for key, label in _SHOWN
        if detail.get(key) is not None
    )
    return _page(
        "无法继续",
        f'<p class="error" data-code="{html.escape(err.code)}">{html.escape(err.message)}</p>'
        + (f'<dl class="facts">{facts}</dl>' if facts else ""),
        err.status,
    )


def _refused(exc: ControlError) -> ApiError:
    """A ControlError from the form (params.py, or pay_from_body, which names the store's fields as
    the control API's body does: ``store.name``) as the page answers it, naming the form's field."""
    detail = dict(exc.detail or {})
    if "field" in detail:
        field = str(detail["field"])
        detail.update(field="store_name" if field.startswith("store.") else field, location="form")
    return ApiError(exc.code, exc.message, detail=detail or None, status=exc.status)


async def _form(request: Request) -> dict[str, str]:
    raw = (await request.body()).decode("utf-8", errors="replace")
    fields = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
    refuse_nul(fields.items(), "form")
    return fields


def _checked(fn: Endpoint) -> Endpoint:
    """Input the control API would refuse too (a NUL anywhere: PostgreSQL cannot compare it, so it was a
    500) is a 400 page; these pages need no login, so this is anyone's input."""
    return input_checked(fn, lambda refused: _error(_refused(refused)))


def _tx(db: Database, fn: Any, *, write: bool) -> Any:
    with db.write() if write else db.read() as conn:
        now = sandbox_store.read_clock(conn).now_ts()
        return fn(WebizpayRepo(conn), conn, now)


def _who(name: str, mchid: str) -> str:
    """A merchant as the employee sees it: its name and number (just the number when it has no name)."""
    return f"{html.escape(name)} ({html.escape(mchid)})" if name else html.escape(mchid)


async def authorize_page(request: Request) -> Response:
    """GET: who asks and a consent button; POST: consent (AUTHORIZED + WEBIZPAY.AUTHORIZED callback)."""
    db: Database = request.app.state.wx.db
    if request.method == "POST":
        token = (await _form(request)).get("token", "")
        try:
            relation = await anyio.to_thread.run_sync(
                lambda: _tx(
                    db, lambda repo, _c, now: authorizations.consent_by_token(repo, now, token), write=True
                )
            )
        except ApiError as err:
            return _error(err)
        return _page(
            "授权成功",
            '<p class="result">✓ 已开通企业支付 (authorized)</p>'
            f'<p>employee_id: <code id="employee_id">{html.escape(relation.employee_id)}</code></p>',
        )
    token = request.query_params.get("token", "")

    def show(repo: WebizpayRepo, conn: Any, now: float) -> str:
        link = authorizations.link_for_page(repo, token, now)
        sp = registry.get_merchant(conn, link.sp_mchid)
        sub = registry.get_merchant(conn, link.sub_mchid)
        done = link.consumed_at is not None
        return (
            '<dl class="facts">'
            f"<dt>服务商</dt><dd>{_who(sp.name if sp else '', link.sp_mchid)}</dd>"
            f"<dt>出资企业</dt><dd>{_who(sub.name if sub else '', link.sub_mchid)}</dd>"
            f"<dt>员工</dt><dd>{html.escape(link.user_id)}</dd>"
            f"<dt>链接有效期至</dt><dd>{rfc3339(link.expires_at)}</dd>"
            "</dl>"
            + (
                "<p>该链接已完成授权。</p>"
                if done
                else '<p class="muted">同意后，出资企业可为你发放额度卡，你可用卡在指定商户消费。</p>'
                '<form method="post" action="/webizpay/authorize">'
                f'<input type="hidden" name="token" value="{html.escape(token)}">'
                '<button type="submit" name="consent" value="1">同意开通企业支付</button></form>'
            )
        )

    try:
        body = await anyio.to_thread.run_sync(lambda: _tx(db, show, write=False))
    except ApiError as err:
        return _error(err)
    return _page("企业支付授权", body)


async def pay_page(request: Request) -> Response:
    """GET: the card and an amount form; POST: pay (spends quota, WEBIZPAY.PAYMENTSUCCESS)."""
    db: Database = request.app.state.wx.db
    pol = Policy.from_settings(request.app.state.wx.settings.extra)
    if request.method == "POST":
        form = await _form(request)
        try:
            amount = int(form.get("amount", ""))
        except ValueError:
            return _error(
                param_error(
                    "amount",
                    "not an integer",
                    value=shown_value("amount", form.get("amount")),
                    location="form",
                    message="amount must be an integer number of fen",
                )
            )
        token = form.get("token", "")
        if not token:  # the page pays through its link only (pay_from_body would ask for a card_no)
            return _error(payments.unknown_link())
        body: dict[str, Any] = {"token": token, "amount": amount}
        if form.get("goods_name"):
            body["goods_name"] = form["goods_name"]
        if form.get("store_name"):
            body["store"] = {"name": form["store_name"], "full_name": form["store_name"]}
        try:
            result = await anyio.to_thread.run_sync(
                lambda: _tx(db, lambda repo, _c, now: pay_from_body(repo, pol, now, body), write=True)
            )
        except ApiError as err:
            return _error(err)
        return _page(
            "支付成功",
            f'<p class="result">✓ 支付 <span id="amount">{result["amount"]}</span> 分 '
            f"({fen(result['amount'])})</p>"
            f'<p>transaction_id: <code id="transaction_id">{html.escape(result["transaction_id"])}</code></p>'
            f'<p>剩余额度 <span id="remain_amount">{result["remain_amount"]}</span> 分 '
            f"({fen(result['remain_amount'])})</p>",
        )
    token = request.query_params.get("token", "")

    def show(repo: WebizpayRepo, _conn: Any, now: float) -> str:
        link = payments.live_payment_link(repo, token, now)
        card = repo.card(link.card_no)
        assert card is not None
        return (
            '<dl class="facts">'
            f"<dt>额度卡</dt><dd>{html.escape(card.card_name)} ({html.escape(card.card_no)})</dd>"
            f"<dt>使用规则</dt><dd>{card.card_rule}</dd>"
            f'<dt>剩余额度 (分)</dt><dd id="remain_amount">{card.remain_amount}</dd>'
            f"<dt>状态</dt><dd>{card.state if not card.due(now) else 'DISABLED'}</dd>"
            "</dl>"
            '<form method="post" action="/webizpay/pay">'
            f'<input type="hidden" name="token" value="{html.escape(token)}">'
            '<label>金额（分）<input name="amount" type="number" min="1" required></label>'
            '<label>商品 <input name="goods_name" value="企业支付消费"></label>'
            '<label>门店 <input name="store_name" value="沙箱便利店"></label>'
            '<button type="submit">付款</button></form>'
        )

    try:
        body_html = await anyio.to_thread.run_sync(lambda: _tx(db, show, write=False))
    except ApiError as err:
        return _error(err)
    return _page("企业支付付款码", body_html)


WEB_ROUTES.append(Route("/webizpay/authorize", unframed(_checked(authorize_page)), methods=["GET", "POST"]))
WEB_ROUTES.append(Route("/webizpay/pay", unframed(_checked(pay_page)), methods=["GET", "POST"]))
