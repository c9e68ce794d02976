"""Replays across hosts whose clocks differ (PostgreSQL: every host records and prunes the shared
``request_nonces`` table by its own clock). A host whose clock runs ahead must not prune a nonce that a
host whose clock runs behind still accepts a timestamp for: the prune keeps a margin for the hosts'
clock difference (verify.CLOCK_MARGIN_S). Driven through the ledger with explicit times, on both
backends' tables."""

from __future__ import annotations

import pytest

from support import SP_A
from wxpartner.server.app import WxPartnerApp
from wxpartner.server.verify import CLOCK_MARGIN_S, _TableLedger

T = 1_800_000_000.0


@pytest.mark.parametrize("ahead", [1.0, 30.0, CLOCK_MARGIN_S])
def test_a_host_ahead_prunes_no_nonce_a_host_behind_can_still_be_replayed_with(
    app: WxPartnerApp, ahead: float
) -> None:
    window = app.state.verifier.time_window
    keep = 2 * window
    with app.state.db.write() as conn:
        behind = _TableLedger(conn, lambda: False, keep)
        prunes = _TableLedger(conn, lambda: True, keep)  # prunes on every nonce it records
        assert behind.record(SP_A, "first-nonce", T)
        # The request was signed with a timestamp a window ahead of host "behind"'s clock (T + window);
        # 1 s before host "behind" stops accepting it, the host ahead records a nonce and prunes.
        last_accepted = T + 2 * window - 1
        assert abs((T + window) - last_accepted) <= window
        assert prunes.record(SP_A, "later-nonce", last_accepted + ahead)
        # A replay reaching host "behind" then is still known as one.
        assert behind.seen(SP_A, "first-nonce", last_accepted)
        assert not behind.record(SP_A, "first-nonce", last_accepted)


def test_nonces_older_than_the_window_and_the_margin_are_pruned(app: WxPartnerApp) -> None:
    keep = 2 * app.state.verifier.time_window
    with app.state.db.write() as conn:
        ledger = _TableLedger(conn, lambda: True, keep)
        assert ledger.record(SP_A, "old-nonce", T)
        assert ledger.record(SP_A, "new-nonce", T + keep + CLOCK_MARGIN_S + 1)
        assert not ledger.seen(SP_A, "old-nonce", T + keep + CLOCK_MARGIN_S + 1)  # the table stays bounded
