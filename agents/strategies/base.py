"""The strategy interface: a strategy is a pure function of the cycle's facts to intents.

    Strategy.step(Facts) -> Step(intents, state)

`Facts` is what the cycle knows about one symbol at decision time `as_of` (nothing after it): the
last price, bid/ask, the 1h ATR, per-strategy features computed causally from closed bars, the math
engine's `Score` (its `trend` is the regime), the panel's `Decision` and votes, a view of the
account (equity, free balance, this symbol's open positions and resting orders) and the strategy's
own state from the previous cycle (`None` the first time). A strategy reads no clock, file or
network; the same facts give the same intents.

Intents are frozen values. The risk manager checks every one (`risk.intents.check` for the new
kinds, `risk.manager.evaluate` for an `Open` of the trend kind); the broker executes the approved
ones; the monitor and the backtest run them through the same functions.

Resting orders are shaped like ccxt's unified order structure (`RestingOrder.to_ccxt()` gives the
arguments of `exchange.create_order`), so the live broker port maps them one to one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, Protocol

from core.types import Decision, Position, RestingOrder, Score, Side, Vote

__all__ = ["RestingOrder"]  # re-exported: the order type lives in core (the brokers read it too)

OrderSide = Literal["buy", "sell"]


# ------------------------------------------------------------------------------------------------
# intents


@dataclass(frozen=True)
class Open:
    """Open a position now (market). With `decision` (the trend kind) the risk manager sizes it
    (stop, targets, leverage, quantity) exactly as today; `hold_hours` adds a time exit."""

    symbol: str
    side: Side
    decision: Decision
    reason: str = ""
    hold_hours: float | None = None


@dataclass(frozen=True)
class Add:
    """Add `qty` to an open position at the next price (its entry becomes the average)."""

    symbol: str
    position_id: str
    qty: Decimal
    reason: str = ""


@dataclass(frozen=True)
class Reduce:
    """Close `qty` of a position at the next price (`qty=None`: all of it)."""

    symbol: str
    position_id: str
    qty: Decimal | None = None
    reason: str = ""
    kind: str = "strategy"


@dataclass(frozen=True)
class Place:
    order: RestingOrder
    reason: str = ""

    @property
    def symbol(self) -> str:
        return self.order.symbol


@dataclass(frozen=True)
class Cancel:
    symbol: str
    order_id: str
    reason: str = ""


@dataclass(frozen=True)
class SpotTrade:
    """One spot trade of a rebalance: `qty` of `asset` bought or sold against the quote at ~`price`."""

    asset: str
    side: OrderSide
    qty: Decimal
    price: float

    @property
    def notional(self) -> float:
        return float(self.qty) * self.price


@dataclass(frozen=True)
class Rebalance:
    """Trade the spot portfolio to `weights` (asset -> fraction of equity; the quote included)."""

    weights: Mapping[str, float]
    trades: tuple[SpotTrade, ...]
    reason: str = ""
    symbol: str = "portfolio"


Intent = Open | Add | Reduce | Place | Cancel | Rebalance


# ------------------------------------------------------------------------------------------------
# facts and the protocol


@dataclass(frozen=True)
class AccountView:
    equity: float
    balance: float  # free balance
    positions: tuple[Position, ...] = ()  # open positions of this symbol
    orders: tuple[RestingOrder, ...] = ()  # resting orders of this symbol


@dataclass(frozen=True)
class Facts:
    symbol: str
    as_of: datetime
    last: float
    bid: float
    ask: float
    account: AccountView
    score: Score | None = None  # the math engine's score (its `trend` is the regime)
    decision: Decision | None = None  # the consensus decision (panel + math) after the daily veto
    votes: tuple[Vote, ...] = ()
    atr_1h: float | None = None  # absolute 1h ATR (price units), known at as_of
    features: Mapping[str, float] = field(default_factory=dict)  # strategy features of the last closed bar
    qty_step: Decimal = Decimal("0.001")
    price_tick: Decimal = Decimal("0.01")
    state: Any = None  # the strategy's own state from the previous cycle
    regime: str | None = None  # the math engine's regime when no Score is materialised (else score.trend)


@dataclass(frozen=True)
class Step:
    intents: tuple[Intent, ...] = ()
    state: Any = None
    note: str = ""


class Strategy(Protocol):
    name: str

    def step(self, facts: Facts) -> Step: ...


def regime(facts: Facts) -> str:
    """"TREND_UP" | "TREND_DOWN" | "RANGE" (the math engine's 4h state), RANGE without a score."""
    if facts.score is not None:
        return facts.score.trend.value
    return facts.regime or "RANGE"
