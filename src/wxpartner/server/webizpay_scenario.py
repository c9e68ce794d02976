"""The scenario section ``webizpay`` (templates, pre-authorized employees, cards, spends, refunds):
loaded through ``POST /sandbox/scenario`` and written by its export.

Section::

    webizpay:
      templates:
        - {sp_mchid: "1230000001", card_template_id: tpl_travel, card_rule: MULTIPLE, refund_rule: RETURN}
      employees:   # pre-authorized relations (no AUTHORIZED callback)
        - {sp_mchid: "1230000001", sub_mchid: "1230000101", user_id: emp_001, employee_id: WeBizPay_fixed}
      cards:       # issued to the AUTHORIZED relation of (sp, sub, user_id), as W3 would
        - {sp_mchid: "1230000001", sub_mchid: "1230000101", user_id: emp_001, out_card_no: card_0001,
           card_template_id: template_123, amount: 10000, card_name: 差旅费用卡,
           effective_end_time: "2030-12-31T23:59:59+08:00"}
      spends:      # payments already made with a card (PAYMENTSUCCESS callbacks are queued as usual)
        - {sp_mchid: "1230000001", sub_mchid: "1230000101", out_card_no: card_0001, amount: 1500,
           goods_name: 午餐, store: {name: 食堂}}

An export writes every relation (``state``, its times), card (``card_no``, ``state``, ``remain_amount``,
its times), payment (``transaction_id``, ``success_time``, ``refunded_amount``) and refund (``refunds``:
``transaction_id``, ``refund_id``, ``out_refund_no``, ``amount``, ``create_time``, ``success_time``):
entries with those fields are restored as they were (no W3 issue, no payment now, no callback), so an
export loads back into the same W2/W4/W5 answers and W11/W12 bills; entries without them load as they
always did. It also writes the available-merchant ranges (``ranges``, ``range_identifiers``: W13–W17)
and the store entity-match batches (``match_batches``: W9/W10) with their ids and times, loaded first
and as they were (server/webizpay_ranges_scenario.py).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.engine import Connection

from ..domain.webizpay import payments, quota_cards
from ..domain.webizpay.entities import (
    ACTIVE,
    AUTHORIZED,
    DISABLED,
    REVOKED,
    Card,
    Payment,
    Policy,
    Refund,
    Relation,
    Template,
    new_card_no,
    new_employee_id,
)
from ..models.webizpay import (
    FEN_MAX,
    AuthorizationState,
    CardRule,
    CardState,
    IssueQuotaCardRequest,
    RefundRule,
)
from ..protocol.detail import first_problem
from ..protocol.errors import ApiError
from ..sandbox import scenario
from ..store import sandbox as sandbox_store
from ..store import webizpay_merchants_repo as ranges_store
from ..store.webizpay_repo import WebizpayRepo
from ..store.webizpay_tables import webizpay_payments
from . import webizpay_ranges_scenario as ranges_scenario
from .control import ControlError
from .control_webizpay import STORE_COLUMNS, TemplateSpec, body_str, pay_from_body
from .params import length_of, string


def _validated(model: type[BaseModel], data: Any, where: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise scenario.ScenarioError(first_problem(exc, f"{where}.")) from None


# An amount in fen as the export writes it: an integer, not true (1), 900.0 or "900" taken as one.
Fen = Annotated[int, Field(strict=True)]


class EmployeeSpec(BaseModel):
    """An authorization relation: AUTHORIZED (a pre-authorized employee: no callback), or, as an
    export writes every relation, REVOKED with its times and reason."""

    model_config = ConfigDict(extra="forbid")
    sp_mchid: scenario.Mchid
    sub_mchid: scenario.Mchid
    user_id: str = Field(min_length=6, max_length=32, pattern=r"^[0-9A-Za-z_\-|*]{6,32}$")
    employee_id: scenario.PathId | None = None
    state: AuthorizationState = "AUTHORIZED"
    authorization_time: scenario.EntryTime | None = None  # default: the clock's now
    authorization_revoked_time: scenario.EntryTime | None = None  # REVOKED only, and required there
    reason: str | None = Field(default=None, min_length=1, max_length=64)  # REVOKED only, and required there


class CardSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sp_mchid: scenario.Mchid
    sub_mchid: scenario.Mchid
    user_id: str
    out_card_no: str
    card_template_id: str = "template_123"
    amount: Fen
    card_name: str
    effective_end_time: str
    card_remark: str | None = None
    avail_mch_range_id: str | None = None
    # A card restored as it was (an export writes them): any of these given, the card is written with
    # them rather than issued now as W3 would (no W3 check of the clock: a card past its end loads).
    card_no: scenario.PathId | None = None
    employee_id: scenario.PathId | None = None  # the relation it was issued to (default: the AUTHORIZED one)
    state: CardState | None = None  # default ACTIVE
    card_rule: CardRule | None = None  # default: the template's
    refund_rule: RefundRule | None = None
    remain_amount: Fen | None = Field(default=None, ge=0, le=FEN_MAX)  # default: amount
    effective_begin_time: scenario.EntryTime | None = None  # default: the clock's now
    card_disabled_time: scenario.EntryTime | None = None  # DISABLED only; default: the clock's now
    reason: str | None = Field(default=None, min_length=1, max_length=128)  # DISABLED only
    # its last payment, as W4 shows it (a recorded spend does not change its card)
    card_usage_time: scenario.EntryTime | None = None
    transaction_id: scenario.PathId | None = None


_RESTORED_CARD = frozenset(
    {
        "card_no",
        "employee_id",
        "state",
        "card_rule",
        "refund_rule",
        "remain_amount",
        "effective_begin_time",
        "card_disabled_time",
        "reason",
        "card_usage_time",
        "transaction_id",
    }
)


class StoreSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    full_name: str | None = None
    organization_code: str | None = None
    acquirer: str | None = None


class SpendSpec(BaseModel):
    """A payment already made with a card (by the card's out_card_no), as the payment page would; with
    its ``transaction_id`` (an export writes it), a payment recorded as it was made: no callback, and
    the card's remain_amount is the card entry's."""

    model_config = ConfigDict(extra="forbid")
    sp_mchid: scenario.Mchid
    sub_mchid: scenario.Mchid
    out_card_no: str
    amount: Fen
    goods_name: str | None = None
    out_trade_no: str | None = None
    store: StoreSpec | None = None
    transaction_id: scenario.PathId | None = None
    success_time: scenario.EntryTime | None = None  # with transaction_id; default: the clock's now
    refunded_amount: Fen | None = Field(default=None, ge=0, le=FEN_MAX)  # with transaction_id


class RefundSpec(BaseModel):
    """A refund of a spend of the same file (by its ``transaction_id``), written as it was: the spend's
    ``refunded_amount`` is the sum of its refunds, its card's remain_amount the card entry's."""

    model_config = ConfigDict(extra="forbid")
    transaction_id: scenario.PathId
    refund_id: scenario.PathId
    out_refund_no: scenario.PathId
    amount: Fen = Field(gt=0, le=FEN_MAX)
    create_time: scenario.EntryTime | None = None  # default: the clock's now
    success_time: scenario.EntryTime | None = None  # default: create_time


class SectionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    templates: list[TemplateSpec] = []
    ranges: list[ranges_scenario.RangeSpec] = []
    range_identifiers: list[ranges_scenario.RangeIdentifierSpec] = []
    match_batches: list[ranges_scenario.MatchBatchSpec] = []
    employees: list[EmployeeSpec] = []
    cards: list[CardSpec] = []
    spends: list[SpendSpec] = []
    refunds: list[RefundSpec] = []


def _refused(where: str, err: ApiError | ControlError, fallback: str) -> scenario.ScenarioError:
    """The W3 or payment refusal of an entry, at the field its detail names (a JSON pointer, ``/amount``,
    or a dotted name, ``store.name``), else at ``fallback``: the field whose value it refused."""
    field = (err.detail or {}).get("field")
    name = field.strip("/").replace("/", ".") if isinstance(field, str) and field.strip("/") else fallback
    return scenario.ScenarioError(f"{where}.{name}: {err.message}")


def _only_when(given: Any, state: str, wanted: str, where: str, name: str) -> None:
    if given is not None and state != wanted:
        raise scenario.ScenarioError(f"{where}.{name}: only a {wanted} entry has one (this one is {state})")


def _load_employee(repo: WebizpayRepo, i: int, e: EmployeeSpec, now: float) -> str:
    """The relation's employee_id: the one already there (the same file loaded again), else the new one's."""
    where = f"webizpay.employees[{i}]"
    if not repo.sub_bound(e.sp_mchid, e.sub_mchid):
        raise scenario.ScenarioError(
            f"{where}.sub_mchid: {e.sub_mchid} is not a sub-merchant of {e.sp_mchid}"
        )
    _only_when(e.authorization_revoked_time, e.state, REVOKED, where, "authorization_revoked_time")
    _only_when(e.reason, e.state, REVOKED, where, "reason")
    authorized_at = scenario.entry_time(e.authorization_time, f"{where}.authorization_time", now)
    if e.state == AUTHORIZED:
        relation = repo.authorized_relation(e.sp_mchid, e.sub_mchid, e.user_id)
        if relation is not None and e.employee_id not in (None, relation.employee_id):
            raise scenario.ScenarioError(
                f"{where}.employee_id: {e.user_id} is authorized already, as {relation.employee_id}"
            )
        if relation is None:
            relation = Relation(
                e.employee_id or new_employee_id(),
                e.sp_mchid,
                e.sub_mchid,
                e.user_id,
                AUTHORIZED,
                authorized_at,
            )
            if not repo.insert_relation(relation):
                raise scenario.ScenarioError(f"{where}.employee_id: {e.employee_id} is taken")
        return relation.employee_id
    if e.employee_id is None:  # else the same file loaded twice made two
        raise scenario.ScenarioError(f"{where}.employee_id: a {REVOKED} relation needs its employee_id")
    # every revoke (W8, the employee's deregistering) stores both; W2 and W8 answer them, and W8's
    # reason is required in its answer
    for name in ("authorization_revoked_time", "reason"):
        if getattr(e, name) is None:
            raise scenario.ScenarioError(
                f"{where}.{name}: a {REVOKED} relation has one (when and why it was)"
            )
    revoked_at = scenario.entry_time(
        e.authorization_revoked_time, f"{where}.authorization_revoked_time", authorized_at
    )
    if revoked_at < authorized_at:
        raise scenario.ScenarioError(f"{where}.authorization_revoked_time: before its authorization_time")
    existing = repo.relation(e.employee_id)
    if existing is not None:
        if (existing.sp_mchid, existing.sub_mchid, existing.user_id, existing.state) != (
            e.sp_mchid,
            e.sub_mchid,
            e.user_id,
            REVOKED,
        ):
            raise scenario.ScenarioError(f"{where}.employee_id: {e.employee_id} is taken")
        return existing.employee_id
    relation = Relation(
        e.employee_id, e.sp_mchid, e.sub_mchid, e.user_id, REVOKED, authorized_at, revoked_at, e.reason
    )
    if not repo.insert_relation(relation):
        raise scenario.ScenarioError(f"{where}.employee_id: {e.employee_id} is taken")
    return relation.employee_id


def _card_owner(repo: WebizpayRepo, c: CardSpec, where: str) -> Relation:
    if c.employee_id is None:
        owner = repo.authorized_relation(c.sp_mchid, c.sub_mchid, c.user_id)
        if owner is None:
            raise scenario.ScenarioError(
                f"{where}.user_id: {c.user_id} has no AUTHORIZED relation under {c.sp_mchid}/{c.sub_mchid}"
            )
        return owner
    owner = repo.relation(c.employee_id)
    if owner is None or (owner.sp_mchid, owner.sub_mchid, owner.user_id) != (
        c.sp_mchid,
        c.sub_mchid,
        c.user_id,
    ):
        raise scenario.ScenarioError(
            f"{where}.employee_id: no relation {c.employee_id} of {c.user_id} under {c.sp_mchid}/{c.sub_mchid}"
        )
    return owner


def _check_card_times(
    where: str,
    c: CardSpec,
    owner: Relation,
    begin_at: float,
    end_at: float,
    disabled_at: float | None,
    used_at: float | None,
) -> None:
    """A restored card's times in the order the sandbox makes them: W3 issues it to an AUTHORIZED
    relation with an end later than its now (its begin); a cancel, a revoke (by its relation's revoke
    time) or its end disables it; a payment, while it is ACTIVE, sets card_usage_time and
    transaction_id together. A payment or disable at the very instant of the next step is one the
    sandbox makes too (a frozen clock)."""

    def refuse(name: str, why: str) -> scenario.ScenarioError:
        return scenario.ScenarioError(f"{where}.{name}: {why}")

    if begin_at >= end_at:
        raise refuse("effective_begin_time", "not before its effective_end_time (W3 takes a later end only)")
    if begin_at < owner.authorized_at:
        raise refuse("effective_begin_time", f"before its relation {owner.employee_id} was authorized")
    revoked_at = owner.revoked_at
    if revoked_at is not None and begin_at > revoked_at:
        raise refuse("effective_begin_time", f"after its relation {owner.employee_id} was revoked")
    if disabled_at is not None:
        if not begin_at <= disabled_at <= end_at:
            raise refuse("card_disabled_time", "not between its effective_begin_time and effective_end_time")
        if revoked_at is not None and disabled_at > revoked_at:
            raise refuse(
                "card_disabled_time",
                f"after its relation {owner.employee_id} was revoked (which disables it)",
            )
    if (used_at is None) != (c.transaction_id is None):  # a payment sets both
        missing = "card_usage_time" if used_at is None else "transaction_id"
        raise refuse(missing, "a used card has both card_usage_time and transaction_id (its last payment)")
    if used_at is not None:
        last = min(end_at, disabled_at if disabled_at is not None else end_at)
        if not begin_at <= used_at <= last:
            raise refuse(
                "card_usage_time", "not while the card was usable (from its begin to its end or disable)"
            )


def _restore_card(repo: WebizpayRepo, pol: Policy, now: float, i: int, c: CardSpec) -> str:
    """A card written as the entry says (an exported one): its card_no, state, amounts and times."""
    where = f"webizpay.cards[{i}]"
    fields = c.model_dump(include=set(IssueQuotaCardRequest.model_fields), exclude_none=True)
    body: IssueQuotaCardRequest = _validated(IssueQuotaCardRequest, fields, where)
    owner = _card_owner(repo, c, where)
    state = c.state or ACTIVE
    if state == ACTIVE and owner.state != AUTHORIZED:
        raise scenario.ScenarioError(
            f"{where}.state: an {ACTIVE} card of a {owner.state} relation (a revoke disables its cards)"
        )
    _only_when(c.card_disabled_time, state, DISABLED, where, "card_disabled_time")
    _only_when(c.reason, state, DISABLED, where, "reason")
    if state == DISABLED:  # every card the sandbox disables has both (W4/W5 and the callback show them)
        for name in ("card_disabled_time", "reason"):
            if getattr(c, name) is None:
                raise scenario.ScenarioError(
                    f"{where}.{name}: a {DISABLED} card has one (when and why it was)"
                )
    remain = body.amount if c.remain_amount is None else c.remain_amount
    if remain > body.amount:
        raise scenario.ScenarioError(f"{where}.remain_amount: {remain} is more than the amount {body.amount}")
    end_at = scenario.entry_time(body.effective_end_time, f"{where}.effective_end_time", now)
    if end_at > quota_cards.LATEST_END_AT:
        raise scenario.ScenarioError(f"{where}.effective_end_time: later than {quota_cards.LATEST_END}")
    begin_at = scenario.entry_time(c.effective_begin_time, f"{where}.effective_begin_time", now)
    disabled = state == DISABLED
    disabled_at = (
        scenario.entry_time(c.card_disabled_time, f"{where}.card_disabled_time", now) if disabled else None
    )
    used_at = (
        None
        if c.card_usage_time is None
        else scenario.entry_time(c.card_usage_time, f"{where}.card_usage_time", now)
    )
    _check_card_times(where, c, owner, begin_at, end_at, disabled_at, used_at)
    existing = repo.card_by_out_no(c.sp_mchid, c.sub_mchid, body.out_card_no)
    if existing is not None:  # the same file loaded again: left as it is
        if c.card_no is not None and existing.card_no != c.card_no:
            raise scenario.ScenarioError(
                f"{where}.out_card_no: {body.out_card_no} is card {existing.card_no} already, not {c.card_no}"
            )
        return existing.card_no
    if c.card_no is not None and repo.card(c.card_no) is not None:
        raise scenario.ScenarioError(f"{where}.card_no: {c.card_no} is taken")
    template = repo.template(c.sp_mchid, body.card_template_id) or pol.builtin(body.card_template_id)
    if template is None and (c.card_rule is None or c.refund_rule is None):
        raise scenario.ScenarioError(
            f"{where}.card_template_id: unknown card template {body.card_template_id} (give card_rule and "
            "refund_rule, or configure it under templates)"
        )
    # avail_mch_range_id: checked against the file's ranges when it has them (_check_card_ranges); an
    # older export, without them, keeps it as written
    card = Card(
        card_no=c.card_no or new_card_no(),
        sp_mchid=c.sp_mchid,
        sub_mchid=c.sub_mchid,
        out_card_no=body.out_card_no,
        employee_id=owner.employee_id,
        card_template_id=body.card_template_id,
        card_rule=c.card_rule or (template.card_rule if template else ""),
        refund_rule=c.refund_rule or (template.refund_rule if template else ""),
        amount=body.amount,
        remain_amount=remain,
        card_name=body.card_name,
        card_remark=body.card_remark,
        begin_at=begin_at,
        end_at=end_at,
        end_text=body.effective_end_time,
        state=state,
        disabled_at=disabled_at,
        reason=c.reason if disabled else None,
        used_at=used_at,
        transaction_id=c.transaction_id,
        avail_mch_range_id=body.avail_mch_range_id,
    )
    if not repo.insert_card(card):  # a race on card_no or out_card_no: refused, as the look above
        raise scenario.ScenarioError(f"{where}.card_no: {card.card_no} is taken")
    return card.card_no


def _record_spend(repo: WebizpayRepo, now: float, i: int, sp: SpendSpec, card: Card) -> str:
    """A payment written as the entry says (an exported one): no callback, and its card left as its
    entry gave it (remain_amount, card_usage_time, transaction_id)."""
    where = f"webizpay.spends[{i}]"
    txid = sp.transaction_id
    assert txid is not None
    at = scenario.entry_time(sp.success_time, f"{where}.success_time", now)
    # paid while its card was usable (a card of a revoked relation was disabled by the revoke)
    if at < card.begin_at:
        raise scenario.ScenarioError(
            f"{where}.success_time: before its card {card.card_no} began ({scenario.export_time(card.begin_at)})"
        )
    if at > card.end_at:
        raise scenario.ScenarioError(
            f"{where}.success_time: after its card {card.card_no} ended ({card.end_text})"
        )
    if card.disabled_at is not None and at > card.disabled_at:
        raise scenario.ScenarioError(
            f"{where}.success_time: after its card {card.card_no} was disabled ({scenario.export_time(card.disabled_at)})"
        )
    paid = repo.payment(txid)
    if paid is not None:  # the same file loaded again: left as it is
        if (paid.card_no, paid.amount) != (card.card_no, sp.amount):
            raise scenario.ScenarioError(f"{where}.transaction_id: {txid} is taken")
        return txid
    if sp.amount <= 0 or sp.amount > FEN_MAX:
        raise scenario.ScenarioError(f"{where}.amount: must be a positive number of fen")
    refunded = sp.refunded_amount or 0
    if refunded > sp.amount:
        raise scenario.ScenarioError(
            f"{where}.refunded_amount: {refunded} is more than the amount {sp.amount}"
        )
    raw = sp.store.model_dump(exclude_none=True) if sp.store else {}
    body = {"goods_name": sp.goods_name, "out_trade_no": sp.out_trade_no}
    try:
        goods = body_str(body, "goods_name", webizpay_payments.c.goods_name, required=False)
        out_trade_no = body_str(body, "out_trade_no", webizpay_payments.c.out_trade_no, required=False)
        given = {
            k: string(raw.get(k), f"store.{k}", location="body", max_length=length_of(column), required=False)
            for k, column in STORE_COLUMNS.items()
        }
    except ControlError as err:
        raise _refused(where, err, "store") from None
    if out_trade_no is not None:
        other = repo.payment_by_out_trade_no(card.card_no, out_trade_no)
        if other is not None:
            raise scenario.ScenarioError(
                f"{where}.out_trade_no: {out_trade_no} of card {sp.out_card_no} is payment {other.transaction_id}"
            )
    store = payments.Store(**{k: v for k, v in given.items() if v is not None})
    repo.insert_payment(
        payments.payment_of(
            card,
            txid,
            sp.amount,
            at,
            store=store,
            goods_name=goods or "企业支付消费",
            out_trade_no=out_trade_no,
            refunded_amount=refunded,
        )
    )
    return txid


def _no_twice(spec: SectionSpec) -> None:
    """An entry given twice in one file is a mistake in it (loaded again, the second one was taken for
    the first and left out silently): a relation's employee_id, or a user's AUTHORIZED relation; a
    card's out_card_no or card_no; a spend's transaction_id, or its card's out_trade_no."""
    keys: list[tuple[str, str, list[tuple[str, tuple[str, ...] | None]]]] = []
    for i, e in enumerate(spec.employees):
        authorized = (e.sp_mchid, e.sub_mchid, e.user_id) if e.state == AUTHORIZED else None
        by_id = None if e.employee_id is None else (e.employee_id,)
        keys.append(("employees", str(i), [("employee_id", by_id), ("user_id", authorized)]))
    for i, c in enumerate(spec.cards):
        card_no = None if c.card_no is None else (c.card_no,)
        keys.append(
            (
                "cards",
                str(i),
                [("out_card_no", (c.sp_mchid, c.sub_mchid, c.out_card_no)), ("card_no", card_no)],
            )
        )
    for i, sp in enumerate(spec.spends):
        txid = None if sp.transaction_id is None else (sp.transaction_id,)
        trade = (
            None if sp.out_trade_no is None else (sp.sp_mchid, sp.sub_mchid, sp.out_card_no, sp.out_trade_no)
        )
        keys.append(("spends", str(i), [("transaction_id", txid), ("out_trade_no", trade)]))
    seen: dict[tuple[str, str, tuple[str, ...]], str] = {}
    for name, at, fields in keys:
        for field, key in fields:
            if key is None:
                continue
            first = seen.setdefault((name, field, key), at)
            if first != at:
                raise scenario.ScenarioError(f"webizpay.{name}[{at}].{field}: {name}[{first}] has it already")


def _check_restored_cards(repo: WebizpayRepo, spec: SectionSpec) -> None:
    """A restored card against the file's spends of it (what every export is): its ``transaction_id``
    is its own payment and no other card's; a SINGLE card is paid once; a card with recorded spends
    (all of its spends in the file recorded) names the last of them, as every payment sets the card's
    ``transaction_id`` and ``card_usage_time``, and a ``remain_amount`` given with them is what they
    left: amount - paid (+ refunded, a RETURN card's)."""
    spends_of: dict[tuple[str, str, str], list[int]] = {}
    paid_now: set[tuple[str, str, str]] = set()  # cards a spend of the file paid with now
    for k, sp in enumerate(spec.spends):
        key = (sp.sp_mchid, sp.sub_mchid, sp.out_card_no)
        if sp.transaction_id is None:
            paid_now.add(key)
        else:
            spends_of.setdefault(key, []).append(k)
    restored = [(i, c) for i, c in enumerate(spec.cards) if c.model_fields_set & _RESTORED_CARD]
    for _, c in restored:  # first: the spend to blame
        ks = spends_of.get((c.sp_mchid, c.sub_mchid, c.out_card_no), [])
        card = repo.card_by_out_no(c.sp_mchid, c.sub_mchid, c.out_card_no)
        if card is not None and card.card_rule == "SINGLE" and len(ks) > 1:
            raise scenario.ScenarioError(
                f"webizpay.spends[{ks[1]}]: card {c.out_card_no} is SINGLE, paid once already (spends[{ks[0]}])"
            )
    named: dict[str, int] = {}
    for i, c in restored:
        where = f"webizpay.cards[{i}]"
        key = (c.sp_mchid, c.sub_mchid, c.out_card_no)
        card = repo.card_by_out_no(*key)
        assert card is not None  # loaded above
        if c.transaction_id is not None:
            if c.transaction_id in named:
                raise scenario.ScenarioError(
                    f"{where}.transaction_id: cards[{named[c.transaction_id]}] names {c.transaction_id} already"
                )
            named[c.transaction_id] = i
            paid = repo.payment(c.transaction_id)
            if paid is not None and paid.card_no != card.card_no:
                raise scenario.ScenarioError(
                    f"{where}.transaction_id: {c.transaction_id} is a payment of card {paid.card_no}"
                )
            if paid is None and key not in paid_now:
                raise scenario.ScenarioError(
                    f"{where}.transaction_id: no payment is {c.transaction_id} (give its spend, with its "
                    "transaction_id)"
                )
        ks = spends_of.get(key, [])
        if not ks or key in paid_now:
            continue
        _check_last_payment(repo, where, c, card, ks, spec)
        if c.remain_amount is None:
            continue
        paid_sum = sum(spec.spends[k].amount for k in ks)
        back = sum(spec.spends[k].refunded_amount or 0 for k in ks) if card.refund_rule == "RETURN" else 0
        left = c.amount - paid_sum + back
        if c.remain_amount != left:
            raise scenario.ScenarioError(
                f"{where}.remain_amount: {c.remain_amount} is not what its spends left ({left}: amount {c.amount} "
                f"- paid {paid_sum}" + (f" + refunded {back}" if back else "") + ")"
            )


def _check_last_payment(
    repo: WebizpayRepo, where: str, c: CardSpec, card: Card, ks: list[int], spec: SectionSpec
) -> None:
    """A card with recorded spends names the last of them (the latest ``success_time``; one of those at
    that instant, a frozen clock's) as its ``transaction_id``, and its ``card_usage_time`` is that
    payment's ``success_time``: W4 shows what the last payment set."""
    paid_at: dict[str, tuple[int, float]] = {}
    for k in ks:
        txid = spec.spends[k].transaction_id
        assert txid is not None  # recorded spends only
        payment = repo.payment(txid)
        assert payment is not None  # recorded above
        paid_at[txid] = (k, payment.paid_at)
    latest = max(at for _, at in paid_at.values())
    last_k, last_tx = next((k, tx) for tx, (k, at) in paid_at.items() if at == latest)
    rule = "SINGLE " if card.card_rule == "SINGLE" else ""
    if c.transaction_id not in paid_at or paid_at[c.transaction_id][1] != latest:
        raise scenario.ScenarioError(
            f"{where}.transaction_id: a used {rule}card names its last payment ({last_tx}, spends[{last_k}])"
        )
    if card.used_at != latest:
        raise scenario.ScenarioError(
            f"{where}.card_usage_time: not its last payment's success_time ({scenario.export_time(latest)}, spends[{last_k}])"
        )


def _load_refunds(repo: WebizpayRepo, now: float, spec: SectionSpec, recorded: dict[str, int]) -> list[str]:
    """The file's refunds, each of a spend of the file recorded with its transaction_id (``recorded``:
    transaction_id -> the spend's index); each such spend's refunded_amount must be their sum. A
    refund already there (the same file loaded again) is left as it is."""
    given: dict[str, int] = {}
    seen: dict[str, int] = {}  # refund_id, and transaction_id/out_refund_no -> the entry that gave it
    for i, r in enumerate(spec.refunds):
        where = f"webizpay.refunds[{i}]"
        for name, key in (
            ("refund_id", r.refund_id),
            ("out_refund_no", f"{r.transaction_id}/{r.out_refund_no}"),
        ):
            if key in seen:
                raise scenario.ScenarioError(f"{where}.{name}: refunds[{seen[key]}] has it already")
            seen[key] = i
        k = recorded.get(r.transaction_id)
        if k is None:
            raise scenario.ScenarioError(
                f"{where}.transaction_id: no spend of this file is {r.transaction_id} (with its transaction_id)"
            )
        created_at = scenario.entry_time(r.create_time, f"{where}.create_time", now)
        succeeded_at = scenario.entry_time(r.success_time, f"{where}.success_time", created_at)
        if succeeded_at < created_at:
            raise scenario.ScenarioError(f"{where}.success_time: before its create_time")
        payment = repo.payment(r.transaction_id)
        assert payment is not None  # recorded above
        if created_at < payment.paid_at:
            raise scenario.ScenarioError(
                f"{where}.create_time: before its payment's success_time ({scenario.export_time(payment.paid_at)})"
            )
        given[r.transaction_id] = given.get(r.transaction_id, 0) + r.amount
        existing = repo.refund_by_id(r.refund_id)
        if existing is not None:
            if (existing.transaction_id, existing.out_refund_no, existing.amount) != (
                r.transaction_id,
                r.out_refund_no,
                r.amount,
            ):
                raise scenario.ScenarioError(f"{where}.refund_id: {r.refund_id} is taken")
            continue
        if repo.refund_by_out_no(r.transaction_id, r.out_refund_no) is not None:
            raise scenario.ScenarioError(
                f"{where}.out_refund_no: {r.out_refund_no} of payment {r.transaction_id} is taken"
            )
        repo.insert_refund(
            Refund(r.refund_id, r.out_refund_no, r.transaction_id, r.amount, created_at, succeeded_at)
        )
    for txid, k in recorded.items():
        sp = spec.spends[k]
        refunded, summed = sp.refunded_amount or 0, given.get(txid, 0)
        if refunded != summed:
            raise scenario.ScenarioError(
                f"webizpay.spends[{k}].refunded_amount: {refunded} is not the sum of its refunds ({summed})"
            )
        paid = repo.payment(txid)
        if paid is not None and paid.refunded_amount != refunded:  # loaded before, refunded since
            raise scenario.ScenarioError(
                f"webizpay.spends[{k}].refunded_amount: payment {txid} has {paid.refunded_amount} refunded already"
            )
    return [r.refund_id for r in spec.refunds]


def _check_card_ranges(conn: Connection, spec: SectionSpec) -> None:
    """With the file's ranges (an export gives every one), a restored card's avail_mch_range_id is a
    range of its service provider, as W3 holds an issued one to."""
    repo = ranges_store.RangeRepo(conn)
    for i, c in enumerate(spec.cards):
        if c.avail_mch_range_id is None or not c.model_fields_set & _RESTORED_CARD:
            continue
        rng = repo.range(c.avail_mch_range_id)
        if rng is None or rng.sp_mchid != c.sp_mchid:
            raise scenario.ScenarioError(
                f"webizpay.cards[{i}].avail_mch_range_id: no range {c.avail_mch_range_id} of {c.sp_mchid}"
            )


def _load_section(conn: Connection, data: Any, lctx: scenario.LoadContext) -> None:
    spec: SectionSpec = _validated(SectionSpec, data, "webizpay")
    repo = WebizpayRepo(conn)
    now = sandbox_store.read_clock(conn).now_ts()
    for t in spec.templates:
        repo.put_template(t.sp_mchid, Template(t.card_template_id, t.card_rule, t.refund_rule), now)
    given = data if isinstance(data, dict) else {}
    range_ids, identifiers = ranges_scenario.load_ranges(conn, now, spec.ranges, spec.range_identifiers)
    batch_ids = ranges_scenario.load_batches(conn, now, spec.match_batches)
    if "ranges" in given:
        _check_card_ranges(conn, spec)
    _no_twice(spec)
    # a generated one is what W-calls and the pages name
    employee_ids = [_load_employee(repo, i, e, now) for i, e in enumerate(spec.employees)]
    card_nos: list[str] = []
    transaction_ids: list[str] = []
    recorded: dict[str, int] = {}  # transaction_id -> the index of the spend that recorded it
    pol = Policy()
    restored = {
        (c.sp_mchid, c.sub_mchid, c.out_card_no) for c in spec.cards if c.model_fields_set & _RESTORED_CARD
    }
    for i, c in enumerate(spec.cards):
        if c.model_fields_set & _RESTORED_CARD:
            card_nos.append(_restore_card(repo, pol, now, i, c))
            continue
        owner = repo.authorized_relation(c.sp_mchid, c.sub_mchid, c.user_id)
        if owner is None:
            raise scenario.ScenarioError(
                f"webizpay.cards[{i}].user_id: {c.user_id} has no AUTHORIZED relation under "
                f"{c.sp_mchid}/{c.sub_mchid}"
            )
        fields = c.model_dump(exclude={"user_id"}, exclude_none=True)
        body = _validated(IssueQuotaCardRequest, fields, f"webizpay.cards[{i}]")
        try:
            card_nos.append(quota_cards.issue(repo, pol, now, owner.employee_id, body).card_no)
        except ApiError as err:  # W3's refusal (a field's, else its relation's: the user's)
            raise _refused(f"webizpay.cards[{i}]", err, "user_id") from None
    for i, sp in enumerate(spec.spends):
        card = repo.card_by_out_no(sp.sp_mchid, sp.sub_mchid, sp.out_card_no)
        if card is None:
            raise scenario.ScenarioError(
                f"webizpay.spends[{i}].out_card_no: no card {sp.out_card_no} of {sp.sp_mchid}/{sp.sub_mchid}"
            )
        if sp.transaction_id is not None:
            if (sp.sp_mchid, sp.sub_mchid, sp.out_card_no) not in restored:
                # its card's remain_amount and last use come from the card's entry, checked against
                # its spends (_check_restored_cards): a card issued now would show neither
                raise scenario.ScenarioError(
                    f"webizpay.spends[{i}].transaction_id: a spend recorded as it was needs its card "
                    f"{sp.out_card_no} restored in the same file too (with its card_no, state and "
                    "remain_amount, as an export writes it)"
                )
            transaction_ids.append(_record_spend(repo, now, i, sp, card))
            recorded[sp.transaction_id] = i
            continue
        for name in ("success_time", "refunded_amount"):
            if getattr(sp, name) is not None:
                raise scenario.ScenarioError(
                    f"webizpay.spends[{i}].{name}: only a spend recorded with its transaction_id has one"
                )
        paid = (
            None if sp.out_trade_no is None else repo.payment_by_out_trade_no(card.card_no, sp.out_trade_no)
        )
        if paid is not None:
            # loaded before: the same file loaded again changes nothing (no second payment, no second
            # PAYMENTSUCCESS); another amount under that out_trade_no is a mistake in the file
            if paid.amount != sp.amount:
                raise scenario.ScenarioError(
                    f"webizpay.spends[{i}]: out_trade_no {sp.out_trade_no} of card {sp.out_card_no} was "
                    f"paid already with amount {paid.amount}, not {sp.amount}"
                )
            transaction_ids.append(paid.transaction_id)
            continue
        body = {
            "card_no": card.card_no,
            **sp.model_dump(include={"amount", "goods_name", "out_trade_no"}),
            "store": sp.store.model_dump(exclude_none=True) if sp.store else {},
        }
        try:
            transaction_ids.append(str(pay_from_body(repo, pol, now, body)["transaction_id"]))
        except (ApiError, ControlError) as err:  # a field's, short of remain_amount, else its card's
            short = err.detail is not None and "remain_amount" in err.detail
            raise _refused(f"webizpay.spends[{i}]", err, "amount" if short else "out_card_no") from None
    # A file with refunds gives each recorded spend's: its refunded_amount is their sum (an older
    # export, without the list, kept only the refunded_amount).
    refund_ids = _load_refunds(repo, now, spec, recorded) if "refunds" in given else []
    _check_restored_cards(repo, spec)
    # What was loaded, for each list the section had, as the other sections report theirs: templates
    # counted (they have no id), employees, cards and payments by the ids the sandbox gave them.
    loaded: dict[str, tuple[str, Any]] = {
        "templates": ("templates", len(spec.templates)),
        "ranges": ("range_ids", range_ids),
        "range_identifiers": ("range_identifiers", identifiers),
        "match_batches": ("batch_ids", batch_ids),
        "employees": ("employee_ids", employee_ids),
        "cards": ("card_nos", card_nos),
        "spends": ("transaction_ids", transaction_ids),
        "refunds": ("refund_ids", refund_ids),
    }
    report = {name: value for key, (name, value) in loaded.items() if key in given}
    lctx.report["webizpay"] = report


def _employee_entry(r: Relation) -> dict[str, Any]:
    out: dict[str, Any] = {
        "sp_mchid": r.sp_mchid,
        "sub_mchid": r.sub_mchid,
        "user_id": r.user_id,
        "employee_id": r.employee_id,
        "state": r.state,
        "authorization_time": scenario.export_time(r.authorized_at),
    }
    if r.state != AUTHORIZED:
        if r.revoked_at is not None:
            out["authorization_revoked_time"] = scenario.export_time(r.revoked_at)
        if r.reason:
            out["reason"] = r.reason
    return out


def _card_entry(card: Card, user_id: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "sp_mchid": card.sp_mchid,
        "sub_mchid": card.sub_mchid,
        "user_id": user_id,
        "employee_id": card.employee_id,
        "out_card_no": card.out_card_no,
        "card_no": card.card_no,
        "card_template_id": card.card_template_id,
        "card_rule": card.card_rule,
        "refund_rule": card.refund_rule,
        "amount": card.amount,
        "remain_amount": card.remain_amount,
        "card_name": card.card_name,
        "card_remark": card.card_remark or None,
        "effective_begin_time": scenario.export_time(card.begin_at),
        "effective_end_time": card.end_text,
        "avail_mch_range_id": card.avail_mch_range_id,
        "state": card.state,
    }
    if card.used_at is not None:
        out["card_usage_time"] = scenario.export_time(card.used_at)
    out["transaction_id"] = card.transaction_id
    if card.state == DISABLED:
        out["card_disabled_time"] = (
            scenario.export_time(card.disabled_at) if card.disabled_at is not None else None
        )
        out["reason"] = card.reason or None
    return {k: v for k, v in out.items() if v is not None}


def _spend_entry(p: Payment, out_card_no: str | None) -> dict[str, Any]:
    return {
        "sp_mchid": p.sp_mchid,
        "sub_mchid": p.sub_mchid,
        "out_card_no": out_card_no,
        "transaction_id": p.transaction_id,
        "out_trade_no": p.out_trade_no,
        "amount": p.amount,
        **({"refunded_amount": p.refunded_amount} if p.refunded_amount else {}),
        "goods_name": p.goods_name,
        "store": {
            "name": p.receive_mch_name,
            "full_name": p.receive_mch_full_name,
            "organization_code": p.receive_mch_organization_code,
            "acquirer": p.acquirer,
        },
        "success_time": scenario.export_time(p.paid_at),
    }


def _refund_entry(r: Refund) -> dict[str, Any]:
    return {
        "transaction_id": r.transaction_id,
        "refund_id": r.refund_id,
        "out_refund_no": r.out_refund_no,
        "amount": r.amount,
        "create_time": scenario.export_time(r.created_at),
        "success_time": scenario.export_time(r.succeeded_at),
    }


def _export_section(conn: Connection) -> dict[str, Any] | None:
    """Templates, then every relation, card, payment and refund, oldest first, each list streamed as its rows
    are read (``scenario.Rows``): what loads back into the same answers of W2, W4 and W5."""
    repo = WebizpayRepo(conn)
    out: dict[str, Any] = {}
    data = repo.templates_of()
    if data:
        out["templates"] = data
    ranges_scenario.export_into(conn, out)
    batch = scenario.EXPORT_BATCH
    if repo.any_relation():
        out["employees"] = scenario.Rows(_employee_entry(r) for r in repo.export_relations(batch))
    if repo.any_card():
        out["cards"] = scenario.Rows(_card_entry(c, u) for c, u in repo.export_cards(batch))
    if repo.any_payment():
        out["spends"] = scenario.Rows(_spend_entry(p, o) for p, o in repo.export_payments(batch))
    if repo.any_refund():
        out["refunds"] = scenario.Rows(_refund_entry(r) for r in repo.export_refunds(batch))
    return out or None


scenario.register_section(scenario.Section("webizpay", _load_section, _export_section))
