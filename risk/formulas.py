"""Small pure formulas of the risk manager: a symbol's base asset and correlation group, rounding to
the exchange's steps and ticks, the isolated-margin liquidation price, leverage from ATR, the Kelly
fraction, and UTC normalisation of a timestamp."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal

from core.types import Side
from risk.profiles import RiskProfile


def base_asset(symbol: str) -> str:
    """'BTC/USDT:USDT' → 'BTC'; '1000PEPE/USDT:USDT' → 'PEPE'; 'ETHUSDT' → 'ETH'."""
    base = symbol.split("/")[0].split(":")[0].upper()
    for quote in ("USDT", "USDC", "USD"):
        if "/" not in symbol and base.endswith(quote) and len(base) > len(quote):
            base = base[: -len(quote)]
            break
    for prefix in ("1000000", "10000", "1000", "1M"):
        if base.startswith(prefix) and len(base) > len(prefix):
            return base[len(prefix):]
    return base


def correlation_group(symbol: str, groups: Mapping[str, str]) -> str:
    base = base_asset(symbol)
    return groups.get(base, f"solo:{base}")


def round_down(value: Decimal, step: Decimal) -> Decimal:
    if step <= 0:
        return value
    return (value / step).to_integral_value(rounding=ROUND_DOWN) * step


def round_price(price: float, tick: Decimal, mode: str) -> float:
    """Round a float price to the tick: mode 'floor', 'ceil'."""
    if tick <= 0:
        return price
    d = Decimal(repr(float(price)))
    n = (d / tick).to_integral_value(rounding=ROUND_FLOOR if mode == "floor" else ROUND_CEILING)
    return float(n * tick)


def liquidation_price(entry: float, side: Side, leverage: int, mmr: float) -> float:
    """Isolated-margin liquidation price (linear contract, fees ignored):
    long entry·(1 − 1/L + mmr), short entry·(1 + 1/L − mmr)."""
    return entry * (1 - side.sign * (1.0 / leverage - mmr))


def leverage_for_atr(atr_pct: float, profile: RiskProfile) -> int:
    for threshold, lev in profile.leverage_by_atr:
        if atr_pct >= threshold:
            return min(lev, profile.max_leverage)
    return profile.max_leverage


def kelly_star(win_rate: float, win_loss_ratio: float) -> float:
    """Full Kelly fraction f* = W − (1 − W) / R."""
    if win_loss_ratio <= 0:
        return -1.0
    return win_rate - (1.0 - win_rate) / win_loss_ratio


def _utc(ts: datetime) -> datetime:
    tz = ts.tzinfo
    if tz is UTC:  # the common case (the backtest's and the store's times): no conversion
        return ts
    return ts.replace(tzinfo=UTC) if tz is None else ts.astimezone(UTC)
