"""SpotAccount: a deterministic in-memory spot account (holdings per asset, Decimal money)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from core.errors import OrderRejected
from exchange.money import BPS, PRICE_Q, D, _q


@dataclass
class SpotAccount:
    """A deterministic in-memory spot account: holdings per asset (the quote included), Decimal money.

    A trade moves `qty` of an asset against the quote at `price` × (1 ± slippage) (against the
    trader) and pays `fee` × notional in the quote. Invariant: no holding ever goes negative (an
    order that would need more than is held is rejected)."""

    quote: str = "USDT"
    fee: Decimal = Decimal("0.001")
    slippage_bps: Decimal = Decimal("2")
    holdings: dict[str, Decimal] = field(default_factory=dict)
    fees_paid: Decimal = Decimal(0)
    trades: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.fee = D(self.fee)
        self.slippage_bps = D(self.slippage_bps)
        self.holdings = {k: D(v) for k, v in self.holdings.items()}

    def value(self, prices: Mapping[str, Any]) -> Decimal:
        total = Decimal(0)
        for a, q in self.holdings.items():
            total += q if a == self.quote else q * D(prices[a])
        return total

    def trade(self, asset: str, side: str, qty: Any, price: Any, ts: datetime, reason: str = "") -> dict[str, Any]:
        q = D(qty)
        if q <= 0:
            raise OrderRejected(f"spot {side} {asset}: quantity {q} is not positive")
        if asset == self.quote:
            raise OrderRejected(f"spot {side}: {asset} is the quote asset")
        adj = self.slippage_bps / BPS
        px = (D(price) * (1 + adj if side == "buy" else 1 - adj)).quantize(PRICE_Q)
        if px <= 0:
            raise OrderRejected(f"spot {side} {asset}: price {price} is not positive")
        notional = _q(px * q)
        fee = _q(notional * self.fee)
        cash = self.holdings.get(self.quote, Decimal(0))
        have = self.holdings.get(asset, Decimal(0))
        if side == "buy":
            if notional + fee > cash:
                raise OrderRejected(f"spot buy {q} {asset}: {notional} + fee {fee} exceeds the {self.quote} {cash}")
            self.holdings[self.quote] = cash - notional - fee
            self.holdings[asset] = have + q
        elif side == "sell":
            if q > have:
                raise OrderRejected(f"spot sell {q} {asset}: exceeds the holding {have}")
            self.holdings[asset] = have - q
            self.holdings[self.quote] = cash + notional - fee
        else:
            raise OrderRejected(f"spot order side {side!r}: expected buy or sell")
        self.fees_paid += fee
        rec = {"ts": ts, "asset": asset, "side": side, "qty": str(q), "price": str(px), "notional": str(notional),
               "fee": str(fee), "reason": reason}
        self.trades.append(rec)
        return rec

    # ---------------------------------------------------------------------------- serialisation

    def to_dict(self, keep_trades: int = 500) -> dict[str, Any]:
        """Plain JSON data (Decimals as strings, times ISO 8601); the last `keep_trades` trades."""
        return {"version": 1, "quote": self.quote, "fee": str(self.fee), "slippage_bps": str(self.slippage_bps),
                "holdings": {a: str(q) for a, q in sorted(self.holdings.items())}, "fees_paid": str(self.fees_paid),
                "trades": [{**t, "ts": t["ts"].isoformat() if isinstance(t["ts"], datetime) else t["ts"]}
                           for t in self.trades[-keep_trades:]]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SpotAccount:
        return cls(quote=d["quote"], fee=Decimal(d["fee"]), slippage_bps=Decimal(d["slippage_bps"]),
                   holdings={a: Decimal(q) for a, q in d["holdings"].items()}, fees_paid=Decimal(d["fees_paid"]),
                   trades=[{**t, "ts": datetime.fromisoformat(t["ts"])} for t in d.get("trades", [])])
