"""The employee's side, simulated: paying a store with a quota card and refunding it (sandbox only;
no APIv3 endpoint moves money in this family, spec §5.7)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from ...protocol.errors import ApiError, not_found
from . import quota_cards
from .entities import (
    ACTIVE,
    AUTHORIZED,
    Card,
    Event,
    Payment,
    PaymentLink,
    Policy,
    Refund,
    new_refund_id,
    new_transaction_id,
    rfc3339,
)
from .ports import Repo


@dataclass(frozen=True)
class Store:
    """Who is paid (the receiving merchant of PAYMENTSUCCESS)."""

    name: str = "沙箱便利店"
    full_name: str = "沙箱便利店有限公司"
    organization_code: str = "91440300MA5SANDBOX"
    acquirer: str = "财付通支付科技有限公司"


def unknown_link() -> ApiError:
    return ApiError("RESOURCE_NOT_EXISTS", "付款链接不存在 (unknown payment link)")


def live_payment_link(repo: Repo, token: str, now: float) -> PaymentLink:
    """The W7 link a person opened: unknown → RESOURCE_NOT_EXISTS, past its expiry → INVALID_REQUEST."""
    link = repo.payment_link(token)
    if link is None:
        raise unknown_link()
    if now >= link.expires_at:
        raise ApiError("INVALID_REQUEST", "付款链接已过期 (the payment link has expired)")
    return link


def payment_of(
    card: Card,
    transaction_id: str,
    amount: int,
    paid_at: float,
    *,
    store: Store,
    goods_name: str = "企业支付消费",
    out_trade_no: str | None = None,
    refunded_amount: int = 0,
) -> Payment:
    """The payment row of a spend with ``card`` (a scenario's recorded spend builds it too)."""
    return Payment(
        transaction_id=transaction_id,
        out_trade_no=out_trade_no or f"SBX{secrets.token_hex(8).upper()}",
        card_no=card.card_no,
        sp_mchid=card.sp_mchid,
        sub_mchid=card.sub_mchid,
        employee_id=card.employee_id,
        amount=amount,
        refunded_amount=refunded_amount,
        receive_mch_name=store.name,
        receive_mch_full_name=store.full_name,
        receive_mch_organization_code=store.organization_code,
        acquirer=store.acquirer,
        goods_name=goods_name,
        paid_at=paid_at,
    )


def pay(
    repo: Repo,
    policy: Policy,
    now: float,
    card: Card,
    amount: int,
    *,
    store: Store,
    goods_name: str = "企业支付消费",
    out_trade_no: str | None = None,
) -> Payment:
    """Spend ``amount`` fen. MULTIPLE: any number of payments while remain_amount lasts. SINGLE: exactly
    one payment (Unknown what consumes it; the emulator lets the first payment use it up)."""
    if amount <= 0:
        raise ApiError("PARAM_ERROR", "amount must be a positive number of fen", detail={"field": "amount"})
    card = quota_cards.expire(repo, policy, card, now)
    if card.state != ACTIVE:
        raise ApiError(
            "INVALID_REQUEST", f"额度卡已失效：card is DISABLED ({card.reason})", detail={"state": card.state}
        )
    relation = repo.relation(card.employee_id)
    if relation is None or relation.state != AUTHORIZED:
        raise ApiError("INVALID_REQUEST", "员工企业支付授权已解除 (the employee's authorization is revoked)")
    single = card.card_rule == "SINGLE"
    if single and card.transaction_id is not None:
        raise ApiError(
            "INVALID_REQUEST",
            f"单次卡已使用：SINGLE card {card.card_no} was already used by {card.transaction_id}",
            detail={"card_rule": "SINGLE"},
        )
    if amount > card.remain_amount:
        raise ApiError(
            "INVALID_REQUEST",
            f"额度不足：amount {amount} exceeds remain_amount {card.remain_amount}",
            detail={"remain_amount": card.remain_amount},
        )
    txid = new_transaction_id(now)
    if not repo.spend(card.card_no, amount, now, txid, single):
        raise ApiError("INVALID_REQUEST", "额度卡状态已变化，请重试 (the card changed meanwhile; retry)")
    payment = payment_of(
        card, txid, amount, now, store=store, goods_name=goods_name, out_trade_no=out_trade_no
    )
    repo.insert_payment(payment)
    repo.emit(
        Event(
            card.sp_mchid,
            "WEBIZPAY.PAYMENTSUCCESS",
            "企业支付成功",
            {
                "sp_mchid": card.sp_mchid,
                "sub_mchid": card.sub_mchid,
                "card_no": card.card_no,
                "employee_id": card.employee_id,
                "receive_mch_name": store.name,
                "receive_mch_full_name": store.full_name,
                "receive_mch_organization_code": store.organization_code,
                "acquirer": store.acquirer,
                "transaction_id": txid,
                "out_trade_no": payment.out_trade_no,
                "transaction_state": "SUCCESS",
                "amount": amount,
                "goods_name": goods_name,
                "pay_success_time": rfc3339(now),
            },
        ),
        now,
    )
    return payment


def refund(
    repo: Repo, now: float, transaction_id: str, amount: int, *, out_refund_no: str | None = None
) -> Refund:
    """Refund part or all of a payment. RETURN cards get the amount back into remain_amount;
    NOT_RETURN cards do not. Same out_refund_no again returns the first refund. The payment is
    locked first: a refund running at the same time (PostgreSQL) is seen whole, so ``refunded_amount``
    in the callback counts it and a repeated out_refund_no finds it."""
    payment = repo.payment_for_update(transaction_id)
    if payment is None:
        raise not_found(f"支付订单 {transaction_id}", f"payment {transaction_id}")
    out_no = out_refund_no or f"SBXR{secrets.token_hex(8).upper()}"
    previous = repo.refund_by_out_no(transaction_id, out_no)
    if previous is not None:
        return previous
    if amount <= 0:
        raise ApiError("PARAM_ERROR", "amount must be a positive number of fen", detail={"field": "amount"})
    if amount > payment.amount - payment.refunded_amount:
        raise ApiError(
            "INVALID_REQUEST",
            f"退款金额超过可退金额：{amount} > {payment.amount - payment.refunded_amount}",
            detail={"refundable": payment.amount - payment.refunded_amount},
        )
    card = repo.card(payment.card_no)
    assert card is not None
    result = Refund(new_refund_id(now), out_no, transaction_id, amount, now, now)
    added = repo.add_refund(result, card.refund_rule == "RETURN", card.card_no)
    if added is None:  # a concurrent refund with this out_refund_no committed first: the same answer
        winner = repo.refund_by_out_no(transaction_id, out_no)
        if winner is None:  # pragma: no cover - it committed, so it is there (or was reset meanwhile)
            raise ApiError("SYSTEM_ERROR", "系统繁忙，请稍后用相同参数重试")
        return winner
    if not added:
        raise ApiError("INVALID_REQUEST", "退款金额超过可退金额 (refunded meanwhile; query and retry)")
    repo.emit(
        Event(
            card.sp_mchid,
            "WEBIZPAY.PAYMENTREFUNDSUCCESS",
            "企业支付退款成功",
            {
                "sp_mchid": card.sp_mchid,
                "sub_mchid": card.sub_mchid,
                "card_no": card.card_no,
                "employee_id": card.employee_id,
                "transaction_id": transaction_id,
                "out_trade_no": payment.out_trade_no,
                "refund_id": result.refund_id,
                "out_refund_no": out_no,
                "amount": payment.amount,
                "pay_success_time": rfc3339(payment.paid_at),
                "refunded_amount": payment.refunded_amount + amount,
                "refund_amount": amount,
                "refund_state": "SUCCESS",
                "refund_create_time": rfc3339(now),
                "refund_success_time": rfc3339(now),
            },
        ),
        now,
    )
    return result
