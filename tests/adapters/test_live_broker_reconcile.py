"""Reconciliation against the local exchange (Bybit v5 and Binance USDⓈ-M through the real ccxt): what
happened on the exchange while Quorum was down ends up in the database, and the database equals the
exchange afterwards."""

from __future__ import annotations

from decimal import Decimal

import pytest

from exchange.broker import OpenRequest
from tests.fakes.exchange_private import TAKER, FakePrivateExchange
from tests.fakes.live_setup import (
    DECISION,
    EXCHANGES,
    MARKET,
    assert_db_equals_exchange,
    assert_reported_until_recorded,
    broker_for,
    plan,
)

pytestmark = pytest.mark.parametrize("ex", EXCHANGES)


def kinds(findings) -> list[str]:
    return sorted(f.kind for f in findings)


def test_stop_filled_while_down_is_recorded_at_the_exchange_price(ex: str, tmp_path) -> None:
    with FakePrivateExchange(ex) as fx:
        pid = broker_for(fx, tmp_path).open_position(OpenRequest(plan(), DECISION)).position_id
        fx.set_price(MARKET, "38900")  # the stop fires while Quorum is down (price gapped below 39000)
        assert fx.position(MARKET).size == 0
        b = broker_for(fx, tmp_path)  # restart
        findings = b.reconcile()
        assert kinds(findings) == ["orphan_cancelled", "orphan_cancelled", "protective_filled"]
        filled = next(f for f in findings if f.kind == "protective_filled")
        assert filled.price == Decimal("38900") and filled.qty == Decimal("0.012")
        assert filled.fee == (Decimal("0.012") * 38900 * TAKER).quantize(Decimal("0.00000001"))
        assert b.positions() == []
        [closed] = b.all_positions()
        assert closed.id == pid and closed.exit_reason == "stop" and closed.closed_at is not None
        assert closed.realised_pnl == pytest.approx((38900 - 40000) * 0.012)
        assert fx.open_protective(MARKET) == []  # TP1/TP2 were orphans: cancelled
        assert_db_equals_exchange(fx, b)
        assert_reported_until_recorded(b, "stop")


def test_tp1_filled_while_down_shrinks_the_stop(ex: str, tmp_path) -> None:
    with FakePrivateExchange(ex) as fx:
        broker_for(fx, tmp_path).open_position(OpenRequest(plan(), DECISION))
        fx.set_price(MARKET, "41600")
        b = broker_for(fx, tmp_path)
        assert kinds(b.reconcile()) == ["protective_filled", "stop_resized"]
        stops = [o for o in fx.open_protective(MARKET) if o.direction == 2]
        assert [(s.qty, s.trigger) for s in stops] == [(Decimal("0.006"), Decimal("39000"))]
        [pos] = b.positions()
        assert pos.tp1_done and pos.qty_open == Decimal("0.006")
        assert_db_equals_exchange(fx, b)
        assert_reported_until_recorded(b, "tp1")


def test_missing_stop_is_restored(ex: str, tmp_path) -> None:
    with FakePrivateExchange(ex) as fx:
        broker_for(fx, tmp_path).open_position(OpenRequest(plan(), DECISION))
        stop = next(o for o in fx.open_protective(MARKET) if o.direction == 2)
        fx.engine.cancel(stop.id)  # cancelled by hand on the exchange's website
        b = broker_for(fx, tmp_path)
        assert kinds(b.reconcile()) == ["stop_restored"]
        stops = [o for o in fx.open_protective(MARKET) if o.direction == 2]
        assert [(s.qty, s.trigger) for s in stops] == [(Decimal("0.012"), Decimal("39000"))]
        assert_db_equals_exchange(fx, b)
        assert b.reconcile() == []


def test_position_closed_by_hand_cancels_its_orphan_orders(ex: str, tmp_path) -> None:
    with FakePrivateExchange(ex) as fx:
        broker_for(fx, tmp_path).open_position(OpenRequest(plan(), DECISION))
        fx.engine.place(MARKET, "Sell", Decimal("0.012"), "by-hand-1", reduce_only=True)
        b = broker_for(fx, tmp_path)
        findings = b.reconcile()
        assert kinds(findings) == ["orphan_cancelled"] * 3 + ["position_closed_on_exchange"]
        assert fx.open_protective(MARKET) == [] and b.positions() == []
        assert b.all_positions()[0].exit_reason == "closed_on_exchange"
        assert b.reconcile() == []


def test_unknown_position_is_reported_and_left_alone(ex: str, tmp_path) -> None:
    with FakePrivateExchange(ex) as fx:
        broker_for(fx, tmp_path).open_position(OpenRequest(plan(), DECISION))
        fx.engine.place("ETHUSDT", "Buy", Decimal("1.5"), "someone-else")
        fx.engine.place("ETHUSDT", "Sell", Decimal("1.5"), "someone-elses-stop", True, Decimal("1900"), 2)
        before = len(fx.orders_of())
        b = broker_for(fx, tmp_path)
        findings = b.reconcile()
        assert kinds(findings) == ["unknown_position"]
        assert findings[0].symbol == "ETH/USDT:USDT" and findings[0].qty == Decimal("1.5")
        assert len(fx.orders_of()) == before
        assert fx.position("ETHUSDT").size == Decimal("1.5")
        assert [o.client_id for o in fx.open_protective("ETHUSDT")] == ["someone-elses-stop"]


def test_a_foreign_fill_on_the_same_symbol_is_never_attached(ex: str, tmp_path) -> None:
    with FakePrivateExchange(ex) as fx:
        b = broker_for(fx, tmp_path)
        b.open_position(OpenRequest(plan(), DECISION))
        fx.engine.place(MARKET, "Buy", Decimal("0.005"), "manual-add")  # another trade on the same symbol
        findings = b.reconcile()
        assert kinds(findings) == ["qty_mismatch"]
        assert findings[0].qty == Decimal("0.017")
        fills = b.fills()
        assert len(fills) == 1 and fills[0].qty == Decimal("0.012")  # only Quorum's own entry
        [pos] = b.positions()
        assert pos.qty_open == Decimal("0.012")



def test_in_doubt_entries_are_resolved_or_dropped_by_age(ex: str, tmp_path) -> None:
    from datetime import UTC, datetime, timedelta

    from store import orders_journal

    with FakePrivateExchange(ex) as fx:
        b = broker_for(fx, tmp_path, stale_entry_s=3600)
        now = datetime.now(UTC)
        # an intent committed but never sent, for an old decision and for a fresh one
        for dt in (now - timedelta(hours=3), now):
            cid = b._cid(dt, "BTC/USDT:USDT", "entry", 0)
            b._tx(lambda s, cid=cid, dt=dt: orders_journal.record_intent(
                s, client_id=cid, account=b.account, exchange=b.exchange_id, position_id="BTC-x",
                symbol="BTC/USDT:USDT", intent="entry", seq=0, side="buy", qty=Decimal("0.01"), decision_time=dt))
        found = b.reconcile()
        assert [(f.kind, f.action) for f in found] == [("order_resolved", "dropped")]
        states = sorted(o.state for o in b.journal())
        assert states == ["cancelled", "intent"]  # the fresh one waits for its decision to be retried
        assert fx.orders_of() == []


def test_a_missing_stop_already_crossed_closes_at_market(ex: str, tmp_path) -> None:
    with FakePrivateExchange(ex) as fx:
        broker_for(fx, tmp_path).open_position(OpenRequest(plan(), DECISION))
        stop = next(o for o in fx.open_protective(MARKET) if o.direction == 2)
        fx.engine.cancel(stop.id)
        fx.set_price(MARKET, "38800")  # below the stop that is no longer there
        b = broker_for(fx, tmp_path)
        found = b.reconcile()
        assert [(f.kind, f.action) for f in found] == [("stop_restored", "closed_at_market")]
        assert fx.position(MARKET).size == 0 and fx.open_protective(MARKET) == [] and b.positions() == []
        assert b.all_positions()[0].realised_pnl == pytest.approx((38800 - 40000) * 0.012)
        assert_db_equals_exchange(fx, b)
