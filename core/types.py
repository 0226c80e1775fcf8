"""Frozen domain types shared by every layer.

Prices inside indicator math are floats; money and quantities crossing the exchange boundary
(orders, fills, stored positions) are Decimal.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

import pandas as pd


class Action(StrEnum):
    LONG = "LONG"
    SHORT = "SHORT"
    WAIT = "WAIT"


class Side(StrEnum):
    LONG = "LONG"
    SHORT = "SHORT"

    @property
    def sign(self) -> int:
        return 1 if self is Side.LONG else -1

    @classmethod
    def from_action(cls, action: Action) -> Side:
        if action is Action.WAIT:
            raise ValueError("WAIT has no side")
        return cls(action.value)


class Trend(StrEnum):
    UP = "TREND_UP"
    DOWN = "TREND_DOWN"
    RANGE = "RANGE"


class VolState(StrEnum):
    """Volatility regime: realised volatility relative to its normal level."""

    NORMAL = "NORMAL"
    DIGESTING = "DIGESTING"
    PANIC = "PANIC"


OrderType = Literal["limit", "stop_market"]
OrderSide = Literal["buy", "sell"]

TIMEFRAMES: tuple[str, ...] = ("1h", "4h", "1d")
CANDLE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class MarketSnapshot:
    """Everything known about one symbol at decision time `as_of` (nothing after it).

    `candles[tf]` is a DataFrame indexed by bar open time (UTC) with CANDLE_COLUMNS, holding only
    bars that had closed by `as_of`.
    """

    symbol: str
    as_of: datetime
    candles: dict[str, pd.DataFrame]
    last: float
    bid: float
    ask: float
    volume_24h_quote: float
    funding_rate: float | None = None
    next_funding_time: datetime | None = None
    open_interest: float | None = None
    open_interest_history: pd.Series | None = None
    source: str = "replay"
    notes: tuple[str, ...] = ()

    @property
    def spread_pct(self) -> float:
        mid = (self.bid + self.ask) / 2
        return 0.0 if mid <= 0 else (self.ask - self.bid) / mid * 100.0

    @property
    def has_open_interest(self) -> bool:
        return self.open_interest is not None


@dataclass(frozen=True)
class TimeframeScore:
    timeframe: str
    score: float
    components: dict[str, float]
    trend: Trend
    rsi: float
    atr_pct: float


@dataclass(frozen=True)
class Score:
    """Math engine output for one symbol at one time; `final` in [-1, 1]."""

    symbol: str
    as_of: datetime
    final: float
    signal: Action
    timeframes: dict[str, TimeframeScore]
    components: dict[str, float]
    weights: dict[str, float]
    trend: Trend
    vol_state: VolState
    vol_ratio: float
    atr_pct: float  # daily-equivalent ATR% from the last 30 days of 1h bars
    daily_veto: bool
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class NewsEvent:
    date: datetime
    headline: str
    impact: int  # -2..+2
    reason: str
    critical: bool = False
    source: str = ""


@dataclass(frozen=True)
class NewsReport:
    symbol: str
    as_of: datetime
    events: tuple[NewsEvent, ...] = ()
    score: float = 0.0  # decayed impact mapped to [-1, 1]
    critical_negative: bool = False
    available: bool = False
    note: str = "no news source configured"
    tokens: int = 0  # model tokens spent on this report (0 when cached or unavailable)
    cost_usd: float = 0.0


@dataclass(frozen=True)
class Candidate:
    symbol: str
    reason: str
    source: str  # "llm_hunter" | "volume_scanner" | "fixed"
    volume_24h_quote: float = 0.0
    spread_pct: float = 0.0


@dataclass(frozen=True)
class Vote:
    member_id: str
    symbol: str
    action: Action | None  # None when abstained
    confidence: float = 0.0
    rationale: str = ""
    key_factors: tuple[str, ...] = ()
    abstain_reason: str | None = None  # timeout, refused, invalid_output, unknown_symbol, unavailable, budget
    provider: str = ""
    model: str = ""
    prompt_version: str = ""
    latency_s: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    cached: bool = False

    @property
    def valid(self) -> bool:
        return self.action is not None and self.abstain_reason is None


@dataclass(frozen=True)
class Decision:
    symbol: str
    as_of: datetime
    action: Action
    confidence: float
    math_score: float
    combined_score: float
    votes_valid: int
    votes_total: int
    tally: dict[str, float]
    dissent: tuple[str, ...]
    fallback_to_math: bool
    reason: str


@dataclass(frozen=True)
class TradePlan:
    symbol: str
    side: Side
    entry: float
    stop: float
    tp1: float
    tp2: float
    leverage: int
    qty: Decimal
    notional: float
    margin: float
    risk_usd: float
    risk_pct: float
    liquidation_price: float
    stop_pct: float
    tp1_fraction: float = 0.5
    reason: str = ""

    @property
    def r_distance(self) -> float:
        return abs(self.entry - self.stop)


@dataclass(frozen=True)
class RiskVerdict:
    symbol: str
    approved: bool
    reasons: tuple[str, ...]
    plan: TradePlan | None = None
    profile: str = "default"


@dataclass(frozen=True)
class Fill:
    symbol: str
    side: Side  # side of the position this fill belongs to
    kind: str  # "open" | "close"
    qty: Decimal
    price: Decimal
    fee: Decimal
    ts: datetime
    reason: str = ""


@dataclass(frozen=True)
class Position:
    id: str
    symbol: str
    side: Side
    entry: float
    qty_initial: Decimal
    qty_open: Decimal
    stop: float
    initial_stop: float
    tp1: float
    tp2: float
    leverage: int
    margin: float
    liquidation_price: float
    opened_at: datetime
    best_price: float
    phase: str = "initial"  # initial | breakeven | trailing
    tp1_done: bool = False
    realised_pnl: float = 0.0
    fees_paid: float = 0.0
    funding_paid: float = 0.0
    last_funding_at: datetime | None = None
    closed_at: datetime | None = None
    exit_reason: str | None = None
    cycle_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_open(self) -> bool:
        return self.closed_at is None

    def with_(self, **changes: Any) -> Position:
        return replace(self, **changes)


@dataclass(frozen=True)
class PositionEvent:
    position_id: str
    symbol: str
    kind: str  # opened, stop_moved, tp1, tp2, stop, stale, time, news, funding, liquidation, manual
    ts: datetime
    price: float
    qty: Decimal = Decimal(0)
    pnl: float = 0.0
    r_multiple: float = 0.0
    reason: str = ""
    old_stop: float | None = None
    new_stop: float | None = None


@dataclass(frozen=True)
class RestingOrder:
    """A resting order (ccxt unified fields: clientOrderId, symbol, type, side, amount, price,
    triggerPrice, reduceOnly).

    - an OPENING order (`reduce_only=False`) opens a position of `amount` at `price` when it fills;
      `stop` and `take_profit` are the protective orders attached to it (ccxt `stopLoss` /
      `takeProfit` params): when it fills they are placed as reduce-only orders of that position;
    - a reduce-only order closes `amount` of `position_id`; `type="limit"` is a take-profit (maker),
      `type="stop_market"` a stop (taker, triggered when a bar trades through `price`).
    """

    id: str  # client order id, unique per account
    symbol: str
    type: OrderType
    side: OrderSide
    amount: Decimal
    price: float  # limit price, or trigger price of a stop_market
    reduce_only: bool = False
    position_id: str | None = None  # reduce-only: the position it closes
    leverage: int = 1
    stop: float | None = None  # opening order: the stop of the position it opens
    take_profit: float | None = None  # opening order: the take-profit of the position it opens
    tag: str = ""  # the strategy's label (e.g. "grid:-2")
    created_at: datetime | None = None

    @property
    def position_side(self) -> Side:
        """Side of the position this order opens or closes."""
        opens_long = self.side == "buy"
        return Side.LONG if opens_long != self.reduce_only else Side.SHORT

    def to_ccxt(self) -> dict[str, Any]:
        """Arguments of ccxt `create_order(symbol, type, side, amount, price, params)`."""
        params: dict[str, Any] = {"clientOrderId": self.id, "reduceOnly": self.reduce_only}
        if self.type == "stop_market":
            params["triggerPrice"] = self.price
            typ, price = "market", None
        else:
            typ, price = "limit", self.price
            params["postOnly"] = not self.reduce_only
        if self.stop is not None:
            params["stopLoss"] = {"triggerPrice": self.stop}
        if self.take_profit is not None:
            params["takeProfit"] = {"triggerPrice": self.take_profit, "price": self.take_profit, "type": "limit"}
        return {"symbol": self.symbol, "type": typ, "side": self.side, "amount": float(self.amount),
                "price": price, "params": params}
