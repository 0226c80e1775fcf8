"""One interface for market data (replay or ccxt) and one for execution (paper or live)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

import pandas as pd

from core.types import MarketSnapshot


@dataclass(frozen=True)
class MarketRules:
    """Precision and minimums of one market, as the exchange states them (ccxt market structure)."""

    symbol: str
    qty_step: Decimal = Decimal("0.001")
    price_tick: Decimal = Decimal("0.01")
    min_qty: Decimal = Decimal("0.001")
    min_notional: Decimal = Decimal("5")
    max_leverage: int = 20
    contract_size: Decimal = Decimal(1)


@dataclass(frozen=True)
class TickerInfo:
    symbol: str
    last: float
    bid: float
    ask: float
    volume_24h_quote: float

    @property
    def spread_pct(self) -> float:
        mid = (self.bid + self.ask) / 2
        return 0.0 if mid <= 0 else (self.ask - self.bid) / mid * 100.0


class MarketDataSource(Protocol):
    name: str

    def symbols(self) -> list[str]:
        """Every tradable symbol the source knows (ccxt unified, e.g. BTC/USDT:USDT)."""
        ...

    def market_rules(self, symbol: str) -> MarketRules: ...

    def tickers(self, as_of: datetime | None = None) -> dict[str, TickerInfo]:
        """Ticker per symbol (24 h quote volume, bid/ask), as known at `as_of`."""
        ...

    def snapshot(self, symbol: str, as_of: datetime | None = None) -> MarketSnapshot:
        """Point-in-time view: only bars closed by `as_of`. Raises DataError on unknown symbol or as_of."""
        ...

    def price_after(self, symbol: str, t: datetime) -> tuple[datetime, float] | None:
        """First tradable price strictly after the decision at `t` (for fills); None if none yet."""
        ...

    def bars_between(self, symbol: str, start: datetime, end: datetime) -> pd.DataFrame:
        """1h bars (index = open time) whose open is >= start and whose close is <= end."""
        ...

    def funding_between(self, symbol: str, start: datetime, end: datetime) -> pd.Series:
        """Funding rates (index = funding time) with start < time <= end."""
        ...
