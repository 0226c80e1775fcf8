"""The ccxt live broker against a local exchange speaking Bybit v5 / Binance USDⓈ-M private REST (HMAC
signatures verified), with the real ccxt client on the path: entries with their protective orders,
exactly one order per intent under every fault on every write."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.errors import ConfigError
from core.types import Side, TradePlan
from exchange.broker import OpenRequest
from tests.fakes.exchange_private import FakePrivateExchange
from tests.fakes.live_setup import (
    CANCEL_PATH,
    DECISION,
    ENTRY_PATH,
    EXCHANGES,
    MARKET,
    PROTECT_PATH,
    SYMBOL,
    assert_db_equals_exchange,
    broker_for,
    client_for,
    factory_for,
    plan,
)

pytestmark = pytest.mark.parametrize("ex", EXCHANGES)


def by_intent(fx: FakePrivateExchange) -> dict[str, list]:
    """Orders the exchange accepted, grouped by the intent code in their client id."""
    out: dict[str, list] = {}
    for o in fx.orders_of(MARKET):
        code = o.client_id.split("-")[0][-2]  # q<time><BASE><code><seq>-<hash>
        out.setdefault(code, []).append(o)
    return out


def test_entry_with_protective_orders_sized_to_precision(ex: str, tmp_path) -> None:
    with FakePrivateExchange(ex) as fx:
        b = broker_for(fx, tmp_path)
        res = b.open_position(OpenRequest(plan(qty="0.0129"), DECISION))
        assert res.status == "filled", res.note
        orders = fx.orders_of(MARKET)
        assert len(orders) == 4
        entry, stop, tp1, tp2 = orders
        assert (entry.side, entry.qty, entry.status, entry.reduce_only) == ("Buy", Decimal("0.012"), "Filled", False)
        assert (stop.side, stop.qty, stop.trigger, stop.reduce_only, stop.status) == \
            ("Sell", Decimal("0.012"), Decimal("39000"), True, "Untriggered")
        assert (tp1.qty, tp1.trigger, tp1.reduce_only) == (Decimal("0.006"), Decimal("41500"), True)
        assert (tp2.qty, tp2.trigger, tp2.reduce_only) == (Decimal("0.006"), Decimal("42500"), True)
        assert fx.position(MARKET).size == Decimal("0.012")
        assert fx.engine.isolated and fx.position(MARKET).leverage == 5
        # the fill is the exchange's: price and fee from its trade
        assert res.fill is not None and res.fill.price == Decimal("40000") and res.fill.fee == \
            (Decimal("0.012") * 40000 * Decimal("0.00055"))
        [pos] = b.positions()
        assert (pos.qty_open, pos.stop, pos.tp1, pos.tp2) == (Decimal("0.012"), 39000.0, 41500.0, 42500.0)
        assert fx.rejected_signatures == 0
        assert_db_equals_exchange(fx, b)


def test_short_entry_protective_directions(ex: str, tmp_path) -> None:
    with FakePrivateExchange(ex) as fx:
        b = broker_for(fx, tmp_path)
        assert b.open_position(OpenRequest(plan(Side.SHORT), DECISION)).status == "filled"
        entry, stop, tp1, tp2 = fx.orders_of(MARKET)
        assert entry.side == "Sell" and {o.side for o in (stop, tp1, tp2)} == {"Buy"}
        assert stop.direction == 1 and tp1.direction == 2 and tp2.direction == 2
        fx.set_price(MARKET, "41000")  # the short's stop fires
        assert fx.position(MARKET).size == 0


def test_same_decision_again_places_nothing(ex: str, tmp_path) -> None:
    with FakePrivateExchange(ex) as fx:
        b = broker_for(fx, tmp_path)
        assert b.open_position(OpenRequest(plan(), DECISION)).status == "filled"
        n = len(fx.requests)
        again = broker_for(fx, tmp_path)  # a new process, same database
        res = again.open_position(OpenRequest(plan(), DECISION))
        assert res.status == "skipped"
        assert len(fx.orders_of()) == 4
        assert not [r for r in fx.requests[n:] if r[0] == "POST" and "order" in r[1].lower()]


def test_bad_signature_is_refused_like_the_exchange(ex: str, tmp_path) -> None:
    with FakePrivateExchange(ex) as fx:
        from exchange.live_broker import LiveBroker

        b = LiveBroker(client_for(fx, secret="wrong-secret"), factory_for(tmp_path / "j.db"), read_delay=0)
        with pytest.raises(ConfigError, match="refused the API credentials") as err:
            b.open_position(OpenRequest(plan(), DECISION))
        assert "wrong-secret" not in str(err.value)
        assert fx.rejected_signatures >= 1 and fx.orders_of() == []


def _eth_plan() -> TradePlan:
    return TradePlan("ETH/USDT:USDT", Side.LONG, 2000.0, 1950.0, 2075.0, 2125.0, 5, Decimal("0.5"), 1000.0, 200.0,
                     25.0, 0.25, 1610.0, 2.5, reason="test eth long")


def test_caps_refuse_before_any_intent(ex: str, tmp_path) -> None:
    with FakePrivateExchange(ex) as fx:
        b = broker_for(fx, tmp_path, max_order_notional=100)
        res = b.open_position(OpenRequest(plan(), DECISION))
        assert res.status == "rejected" and "per-order cap" in res.note
        assert b.journal() == [] and fx.orders_of() == []


def test_cycle_cap_counts_every_order_and_never_skips_protection(ex: str, tmp_path) -> None:
    """QUORUM_MAX_ORDERS_PER_CYCLE counts every order a run writes; it is checked before each new entry with
    the orders that entry needs (entry, stop, TP1, TP2), so an entry it lets through always gets its whole
    protection, and stop moves and closes are never refused (they only count)."""
    with FakePrivateExchange(ex) as fx:
        b = broker_for(fx, tmp_path, max_orders_per_cycle=6)
        b.reconcile()  # a run begins
        assert b.open_position(OpenRequest(plan(), DECISION)).status == "filled"
        assert b.orders_written == 4 and len([o for o in fx.orders_of() if o.reduce_only]) == 3
        res = b.open_position(OpenRequest(_eth_plan(), DECISION))  # 4 + 4 > 6: refused before anything is sent
        assert res.status == "rejected" and "needs 4 orders" in res.note and "QUORUM_MAX_ORDERS_PER_CYCLE=6" in res.note
        assert fx.orders_of("ETHUSDT") == [] and all(o.symbol == SYMBOL for o in b.journal())
        [pos] = b.positions()
        b.move_stop(pos.id, Decimal("39200"), "breakeven")  # 5 (the cancel of the old stop is not an order)
        b.move_stop(pos.id, Decimal("39400"), "trailing")  # 6
        b.close_position(pos.id, "manual")  # 7 > 6: a close is never refused
        assert b.orders_written == 7 and fx.position(MARKET).size == 0
        assert not [o for o in fx.orders_of() if o.status in ("New", "Untriggered")]
        # the next run (every cycle and monitor run begins with reconciliation) starts counting again
        b.reconcile()
        assert b.orders_written == 0
        assert b.open_position(OpenRequest(_eth_plan(), DECISION)).status == "filled"
        assert b.orders_written == 4 and len([o for o in fx.orders_of("ETHUSDT") if o.reduce_only]) == 3
        assert_db_equals_exchange(fx, b)


def test_cycle_cap_of_one_trade_fits_its_protection(ex: str, tmp_path) -> None:
    """A cap of exactly one trade's orders: the entry and its three protective orders, then nothing new."""
    with FakePrivateExchange(ex) as fx:
        b = broker_for(fx, tmp_path, max_orders_per_cycle=4)
        res = b.open_position(OpenRequest(plan(), DECISION))
        assert res.status == "filled" and sorted(o.intent for o in res.orders) == ["entry", "stop", "tp1", "tp2"]
        assert b.open_position(OpenRequest(_eth_plan(), DECISION)).status == "rejected"
        # the same decision again is not a new entry: skipped, never refused by the cap, nothing sent
        n = len(fx.requests)
        assert b.open_position(OpenRequest(plan(), DECISION)).status == "skipped"
        assert not [r for r in fx.requests[n:] if r[0] != "GET"]


FAULTS = ("500", "429", "500-after", "timeout-after", "drop-after")


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("where", ("entry", "protective"))
def test_every_fault_on_order_writes_gives_exactly_one_order(ex: str, fault: str, where: str, tmp_path) -> None:
    with FakePrivateExchange(ex, late_s=1.5) as fx:
        b = broker_for(fx, tmp_path)
        path = ENTRY_PATH[ex] if where == "entry" else PROTECT_PATH[ex]
        if where == "protective" and ex == "bybit":  # same path as the entry: skip the entry's request
            fx.fault(path, "pass")
        fx.fault(path, fault)
        res = b.open_position(OpenRequest(plan(), DECISION))
        assert res.status == "filled", res.note
        groups = by_intent(fx)
        assert {k: len(v) for k, v in groups.items()} == {"E": 1, "S": 1, "T": 1, "U": 1}, fx.orders_of()
        assert fx.position(MARKET).size == Decimal("0.012")
        assert_db_equals_exchange(fx, b)


@pytest.mark.parametrize("fault", FAULTS)
def test_every_fault_on_stop_moves_keeps_one_stop_and_never_bare(ex: str, fault: str, tmp_path) -> None:
    with FakePrivateExchange(ex, late_s=1.5) as fx:
        b = broker_for(fx, tmp_path)
        pid = b.open_position(OpenRequest(plan(), DECISION)).position_id
        fx.watch_protection = True
        fx.fault(PROTECT_PATH[ex], fault)
        b.move_stop(pid, Decimal("39500"), "breakeven")
        fx.fault(CANCEL_PATH[ex] if ex == "bybit" else "DELETE /fapi/v1/algoOrder", fault)
        b.move_stop(pid, Decimal("39800"), "trailing")
        stops = [o for o in fx.open_protective(MARKET) if o.direction == 2]
        assert [s.trigger for s in stops] == [Decimal("39800")]
        assert fx.unprotected == []
        assert_db_equals_exchange(fx, b)


def test_leverage_and_margin_not_modified_are_not_errors(ex: str, tmp_path) -> None:
    with FakePrivateExchange(ex) as fx:
        b = broker_for(fx, tmp_path)
        first = b.prepare("BTC/USDT:USDT", 5)
        second = b.prepare("BTC/USDT:USDT", 5)
        assert first["leverage"] == "set"
        assert "unchanged" in second.values()


def test_hedge_mode_is_refused_with_one_clear_error(ex: str, tmp_path) -> None:
    with FakePrivateExchange(ex) as fx:
        fx.engine.hedge_mode = True
        b = broker_for(fx, tmp_path)
        with pytest.raises(ConfigError, match="one-way"):
            b.open_position(OpenRequest(plan(), DECISION))
        assert fx.orders_of() == []


@pytest.mark.parametrize("fault", FAULTS)
def test_every_fault_on_the_closing_order_closes_exactly_once(ex: str, fault: str, tmp_path) -> None:
    with FakePrivateExchange(ex, late_s=1.5) as fx:
        b = broker_for(fx, tmp_path)
        pid = b.open_position(OpenRequest(plan(), DECISION)).position_id
        fx.fault(f"POST {ENTRY_PATH[ex]}", fault)
        fill = b.close_position(pid, "manual exit")
        assert fill is not None and fill.qty == Decimal("0.012")
        closes = by_intent(fx)["X"]
        assert len(closes) == 1 and closes[0].status == "Filled"
        assert fx.position(MARKET).size == 0 and fx.open_protective(MARKET) == []
        assert b.positions() == []
        assert_db_equals_exchange(fx, b)


@pytest.mark.parametrize("fault", ("500", "429", "drop-after", "timeout-after"))
def test_faults_on_leverage_and_margin_settings_are_retried(ex: str, fault: str, tmp_path) -> None:
    lev = {"bybit": "/v5/position/set-leverage", "binanceusdm": "/fapi/v1/leverage"}[ex]
    margin = {"bybit": "/v5/account/set-margin-mode", "binanceusdm": "/fapi/v1/marginType"}[ex]
    with FakePrivateExchange(ex, late_s=1.5) as fx:
        fx.fault(lev, fault)
        fx.fault(margin, fault)
        b = broker_for(fx, tmp_path)
        assert b.open_position(OpenRequest(plan(), DECISION)).status == "filled"
        assert fx.position(MARKET).leverage == 5 and fx.engine.isolated
        assert len(fx.orders_of()) == 4


def test_an_order_that_shows_up_late_is_not_sent_twice(ex: str, tmp_path) -> None:
    """The answer times out and the exchange only lists the order a moment later: 'absent' is believed only
    after repeated lookups, so Binance (which would take the same client id again once the first order is
    filled) still gets one entry."""
    with FakePrivateExchange(ex, late_s=1.5) as fx:
        b = broker_for(fx, tmp_path)
        fx.engine.visibility_lag = 2
        fx.fault(ENTRY_PATH[ex], "timeout-after")
        assert b.open_position(OpenRequest(plan(), DECISION)).status == "filled"
        assert fx.engine.hidden_misses >= 2
        assert len(by_intent(fx)["E"]) == 1 and fx.position(MARKET).size == Decimal("0.012")


def test_the_binance_trap_the_lookup_avoids(ex: str, tmp_path) -> None:
    """Why a lost answer is looked up and never blindly resent: Binance USDⓈ-M takes the same
    newClientOrderId again once the first market order has filled (Bybit refuses it: 110072)."""
    import ccxt

    with FakePrivateExchange(ex) as fx:
        c = client_for(fx)
        c.create_order("BTC/USDT:USDT", "market", "buy", 0.01, None, {"clientOrderId": "same-id"})
        if ex == "binanceusdm":
            c.create_order("BTC/USDT:USDT", "market", "buy", 0.01, None, {"clientOrderId": "same-id"})
            assert fx.position(MARKET).size == Decimal("0.02")  # a blind retry doubled the position
        else:
            with pytest.raises(ccxt.InvalidOrder, match="110072"):
                c.create_order("BTC/USDT:USDT", "market", "buy", 0.01, None, {"clientOrderId": "same-id"})
            assert fx.position(MARKET).size == Decimal("0.01")


def test_a_stop_moved_through_the_price_closes_at_market(ex: str, tmp_path) -> None:
    from risk.exits import StepResult

    with FakePrivateExchange(ex) as fx:
        b = broker_for(fx, tmp_path)
        b.open_position(OpenRequest(plan(), DECISION))
        fx.engine.prices[MARKET] = Decimal("39650")  # the price fell below the stop the rules now want
        pos = b.positions()[0].with_(stop=39800.0, phase="breakeven")
        fills = b.apply_exit_step(StepResult(pos, [], []))
        assert [f.price for f in fills] == [Decimal("39650")]
        assert fx.position(MARKET).size == 0 and fx.open_protective(MARKET) == [] and b.positions() == []
