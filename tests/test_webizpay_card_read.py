"""The W4/W5 card read (``WebizpayRepo.card_checking_bound`` and its by-out_card_no twin), which builds
the ``Card`` from its row by position: the row's columns must be the Card's fields in order, and every
field must come back as stored, the optional ones included."""

from __future__ import annotations

import dataclasses

import pytest

from support import SP_A, SUB_A, SUB_B
from wxpartner.domain.merchants import RelationKind
from wxpartner.domain.webizpay.entities import Card
from wxpartner.store import registry
from wxpartner.store.db import Database
from wxpartner.store.webizpay_repo import _CARD_AND_BOUND, _OUT_CARD_AND_BOUND, CARD_ROW_FIELDS, WebizpayRepo


def test_the_card_reads_give_the_card_fields_in_order() -> None:
    assert (*(f.name for f in dataclasses.fields(Card)), "wx_bound") == CARD_ROW_FIELDS
    assert _CARD_AND_BOUND.keys == CARD_ROW_FIELDS
    assert _OUT_CARD_AND_BOUND.keys == CARD_ROW_FIELDS


# Every field a value of its own (a field read into its neighbour's place would not compare equal).
_CARD = Card(
    card_no="8100000000000000001",
    sp_mchid=SP_A,
    sub_mchid=SUB_A,
    out_card_no="out-read-1",
    employee_id="emp-read-1",
    card_template_id="tpl-read-1",
    card_rule="SINGLE",
    refund_rule="NOT_RESTORE",
    amount=12345,
    remain_amount=678,
    card_name="read test",
    card_remark="a remark",
    begin_at=1_700_000_000.25,
    end_at=1_800_000_000.5,
    end_text="2027-01-15T08:00:00+08:00",
    state="DISABLED",
    disabled_at=1_750_000_000.75,
    reason="cancelled",
    used_at=1_740_000_000.125,
    transaction_id="tx-read-1",
    avail_mch_range_id="range-read-1",
)


@pytest.mark.parametrize("sub_mchid", [SUB_A, SUB_B])
def test_a_card_reads_back_as_stored(database_url: str, sub_mchid: str) -> None:
    card = dataclasses.replace(_CARD, sub_mchid=sub_mchid)
    db = Database(database_url)
    try:
        with db.write() as conn:
            assert WebizpayRepo(conn).insert_card(card)
        with db.read() as conn:
            bound = registry.is_related(conn, SP_A, sub_mchid, RelationKind.SUB_MERCHANT)
            repo = WebizpayRepo(conn)
            assert repo.card_checking_bound(SP_A, sub_mchid, card.card_no) == card
            assert repo.sub_bound(SP_A, sub_mchid) is bound
            again = WebizpayRepo(conn)
            assert again.card_by_out_no_checking_bound(SP_A, sub_mchid, card.out_card_no) == card
            assert again.sub_bound(SP_A, sub_mchid) is bound
            missing = WebizpayRepo(conn)
            assert missing.card_checking_bound(SP_A, sub_mchid, "8100000000000009999") is None
            assert missing.sub_bound(SP_A, sub_mchid) is bound
            assert missing.card_by_out_no_checking_bound(SP_A, sub_mchid, "no-such-out") is None
    finally:
        db.dispose()
