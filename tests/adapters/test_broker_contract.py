"""One contract every broker passes (paper account; ccxt live broker on Bybit v5 and Binance USDⓈ-M through
a local exchange): the behaviour the cycle, the monitor and the CLI rely on, whichever broker they hold."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd
import pytest

from core.errors import OrderRejected
from core.types import Side
from exchange.broker import Broker, OpenRequest
from exchange.paper import PaperAccount
from exchange.paper_broker import PaperBroker
from tests.fakes.exchange_private import FakePrivateExchange
from tests.fakes.live_setup import DECISION, MARKET, SYMBOL, broker_for, plan


@dataclass
class Harness:
    broker: Any
    set_price: Any  # (price) -> None: the market moves
    stop_on_venue: Any  # () -> list[(qty, trigger)] of the resting stops


@pytest.fixture(params=["paper", "bybit", "binanceusdm"])
def harness(request, tmp_path) -> Iterator[Harness]:
    if request.param == "paper":
        price = {"px": 40000.0}
        acct = PaperAccount(Decimal(10_000), slippage_bps=Decimal(0), taker_fee=Decimal("0.00055"))
        b = PaperBroker(acct, lambda sym, t: (t + timedelta(minutes=1), price["px"]), now=lambda: DECISION,
                        qty_step=lambda sym: Decimal("0.001"), marks=lambda sym: price["px"])

        def stops() -> list[tuple[Decimal, Decimal]]:
            return [(o.qty, o.trigger_price) for o in b.open_orders() if o.intent == "stop"]

        yield Harness(b, lambda px: price.update(px=float(px)), stops)
        return
    with FakePrivateExchange(request.param) as fx:
        b = broker_for(fx, tmp_path)

        def stops() -> list[tuple[Decimal, Decimal]]:
            return [(o.qty, o.trigger) for o in fx.open_protective(MARKET) if o.direction == 2]

        yield Harness(b, lambda px: fx.engine.prices.__setitem__(MARKET, Decimal(str(px))), stops)


def test_it_is_a_broker(harness: Harness) -> None:
    assert isinstance(harness.broker, Broker)


def test_open_protect_move_partial_close(harness: Harness) -> None:
    b = harness.broker
    res = b.open_position(OpenRequest(plan(qty="0.012"), DECISION))
    assert res.status == "filled" and res.fill is not None
    assert res.fill.qty == Decimal("0.012") and res.fill.price == Decimal("40000") and res.fill.fee > 0
    [pos] = b.positions()
    assert (pos.id, pos.symbol, pos.side, pos.qty_open, pos.stop) == (res.position_id, SYMBOL, Side.LONG,
                                                                       Decimal("0.012"), 39000.0)
    orders = {o.intent: o for o in b.open_orders()}
    assert set(orders) == {"stop", "tp1", "tp2"} and all(o.reduce_only for o in orders.values())
    assert orders["tp1"].qty + orders["tp2"].qty == Decimal("0.012")
    assert harness.stop_on_venue() == [(Decimal("0.012"), Decimal("39000"))]

    # the same decision again: nothing new
    assert b.open_position(OpenRequest(plan(qty="0.012"), DECISION)).status == "skipped"
    assert len(b.positions()) == 1

    b.move_stop(pos.id, Decimal("39600"), "breakeven")
    assert b.positions()[0].stop == 39600.0 and b.positions()[0].phase == "breakeven"
    assert harness.stop_on_venue() == [(Decimal("0.012"), Decimal("39600"))]

    harness.set_price(40500)
    part = b.take_partial(pos.id, Decimal("0.006"), "manual partial")
    assert part.qty == Decimal("0.006") and part.price == Decimal("40500")
    assert b.positions()[0].qty_open == Decimal("0.006")
    assert harness.stop_on_venue() == [(Decimal("0.006"), Decimal("39600"))]

    harness.set_price(40700)
    last = b.close_position(pos.id, "manual exit")
    assert last is not None and last.qty == Decimal("0.006") and last.price == Decimal("40700")
    assert b.positions() == [] and b.open_orders() == [] and harness.stop_on_venue() == []
    kinds = [f.kind for f in b.fills()]
    assert kinds == ["open", "close", "close"]
    bal = b.balance()
    assert bal.fees_paid > 0 and bal.margin == 0
    assert b.reconcile() == []


def test_errors_are_order_rejected(harness: Harness) -> None:
    b = harness.broker
    with pytest.raises(OrderRejected):
        b.move_stop("NOPE-202505230400", Decimal("1"))
    with pytest.raises(OrderRejected):
        b.close_position("NOPE-202505230400")


def test_apply_exit_step_moves_the_stop_and_exits(harness: Harness) -> None:
    from risk.exits import ExitOrder, StepResult

    b = harness.broker
    pid = b.open_position(OpenRequest(plan(qty="0.012"), DECISION)).position_id
    pos = b.positions()[0]
    moved = pos.with_(stop=39700.0, phase="breakeven")
    assert b.apply_exit_step(StepResult(moved, [], [])) == []
    assert b.positions()[0].stop == 39700.0 and harness.stop_on_venue() == [(Decimal("0.012"), Decimal("39700"))]
    harness.set_price(40100)
    stale = ExitOrder(pid, SYMBOL, Side.LONG, Decimal("0.012"), 40100.0, "stale", DECISION + timedelta(hours=48),
                      "48 h with < 1% profit")
    fills = b.apply_exit_step(StepResult(b.positions()[0], [], [stale]))
    assert [(f.qty, f.price) for f in fills] == [(Decimal("0.012"), Decimal("40100"))]
    assert b.positions() == [] and harness.stop_on_venue() == []


def test_the_exit_rules_state_survives_a_reload(harness: Harness) -> None:
    """Best price (trailing), phase and initial stop are what the monitor feeds back into the rules."""
    from risk.exits import StepResult

    b = harness.broker
    b.open_position(OpenRequest(plan(qty="0.012"), DECISION))
    pos = b.positions()[0]
    harness.set_price(41200)
    b.apply_exit_step(StepResult(pos.with_(best_price=41200.0, stop=40060.0, phase="breakeven"), [], []))
    again = b.positions()[0]
    assert (again.best_price, again.stop, again.phase, again.initial_stop) == (41200.0, 40060.0, "breakeven", 39000.0)
    assert harness.stop_on_venue() == [(Decimal("0.012"), Decimal("40060"))]


def _bars(start: datetime, rows: list[tuple[float, float, float, float]]) -> pd.DataFrame:
    idx = pd.date_range(pd.Timestamp(start), periods=len(rows), freq="h")
    return pd.DataFrame(rows, columns=["open", "high", "low", "close"], index=idx).assign(volume=1.0)


def test_walk_applies_the_exit_rules_whichever_broker(harness: Harness) -> None:
    """`walk` is what the monitor calls: the exit rules on each new bar, the stop moved on the venue, and what
    the caller must store (fills, and the events the account snapshot does not hold itself)."""
    b = harness.broker
    b.open_position(OpenRequest(plan(qty="0.012"), DECISION))
    [pos] = b.positions()
    t0 = pos.opened_at.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    harness.set_price(41100)
    w = b.walk(pos.id, _bars(t0, [(40000.0, 41200.0, 39950.0, 41100.0)]), pd.Series(dtype=float), "default")
    assert w.last == t0 + timedelta(hours=1) and w.fills == ()
    assert harness.stop_on_venue() == [(Decimal("0.012"), Decimal("40060"))]  # +2.75 %: breakeven (entry +0.15 %)
    events = list(w.events) + list(b.account_snapshot().events)
    assert [e.kind for e in events if e.kind == "stop_moved"] == ["stop_moved"]
    assert b.positions()[0].phase == "breakeven"
    # a bar through the stop: a simulating broker fills it in the walk; an exchange's stop rests there and
    # the exchange fills it (reconcile records that); either way the stop is never lost
    harness.set_price(40060)
    w2 = b.walk(pos.id, _bars(t0 + timedelta(hours=1), [(40100.0, 40150.0, 39990.0, 40000.0)]),
                pd.Series(dtype=float), "default")
    assert w2.last == t0 + timedelta(hours=2)
    if w2.fills:
        assert [(f.kind, f.qty, f.price) for f in w2.fills] == [("close", Decimal("0.012"), Decimal("40060"))]
        assert b.positions() == [] and harness.stop_on_venue() == []
    else:
        assert harness.stop_on_venue() == [(Decimal("0.012"), Decimal("40060"))] and len(b.positions()) == 1
