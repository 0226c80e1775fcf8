"""The matching engine behind tests/fakes/exchange_private.py: balance, positions, orders, trades and prices
of one futures account (Decimal, thread-safe), plus the helpers the wire dialects share."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import threading
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any

D = Decimal
TAKER = D("0.00055")
MAKER = D("0.0002")  # a resting limit order that fills when the price comes to it
ZERO = D(0)


@dataclass
class Order:
    id: str
    client_id: str
    symbol: str
    side: str  # "Buy" | "Sell"
    qty: Decimal
    reduce_only: bool
    trigger: Decimal | None = None  # conditional when set
    direction: int = 0  # 1: triggers when price rises to trigger, 2: when it falls to it
    tp: bool = False  # Binance TAKE_PROFIT_MARKET vs STOP_MARKET
    status: str = "New"  # New, Untriggered, Filled, Cancelled, Deactivated, Rejected
    filled: Decimal = ZERO
    value: Decimal = ZERO
    fee: Decimal = ZERO
    created_ms: int = 0
    updated_ms: int = 0
    hidden: int = 0  # queries that still miss this order (visibility lag)
    limit: Decimal | None = None  # a resting limit order's price (None: market or conditional market)
    post_only: bool = False

    @property
    def conditional(self) -> bool:
        return self.trigger is not None

    @property
    def open(self) -> bool:
        return self.status in ("New", "Untriggered", "PartiallyFilled")

    @property
    def avg(self) -> Decimal:
        return (self.value / self.filled) if self.filled else ZERO


@dataclass
class Trade:
    id: str
    order_id: str
    client_id: str
    symbol: str
    side: str
    qty: Decimal
    price: Decimal
    fee: Decimal
    ts: int
    kind: str = "Trade"  # Trade | Funding
    maker: bool = False


@dataclass
class Pos:
    size: Decimal = ZERO  # signed: + long, - short
    entry: Decimal = ZERO
    leverage: int = 10
    realised: Decimal = ZERO


@dataclass
class Market:
    id: str
    base: str
    tick: Decimal
    step: Decimal
    min_qty: Decimal


class Engine:
    """The exchange's state: balance, positions, orders, trades, prices. Thread-safe (one lock)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.markets = {
            "BTCUSDT": Market("BTCUSDT", "BTC", D("0.10"), D("0.001"), D("0.001")),
            "ETHUSDT": Market("ETHUSDT", "ETH", D("0.01"), D("0.01"), D("0.01")),
        }
        self.prices: dict[str, Decimal] = {"BTCUSDT": D("40000"), "ETHUSDT": D("2000")}
        self.wallet = D("10000")
        self.positions: dict[str, Pos] = {m: Pos() for m in self.markets}
        self.orders: dict[str, Order] = {}
        self.trades: list[Trade] = []
        self.hedge_mode = False
        self.isolated = False
        self.now_ms = 1_748_000_000_000
        self.visibility_lag = 0  # > 0: a new order is missing from the next N order queries
        self.hidden_misses = 0
        self._ids = itertools.count(1)

    def tick(self) -> int:
        self.now_ms += 1000
        return self.now_ms

    def next_id(self) -> str:
        return str(1_000_000 + next(self._ids))

    # ------------------------------------------------------------------ orders
    def by_client(self, client_id: str) -> Order | None:
        for o in self.orders.values():
            if o.client_id == client_id:
                return o
        return None

    def place(self, symbol: str, side: str, qty: Decimal, client_id: str, reduce_only: bool = False,
              trigger: Decimal | None = None, direction: int = 0, tp: bool = False, limit: Decimal | None = None,
              post_only: bool = False) -> Order:
        """A market order fills now; a conditional one waits for its trigger; a limit order fills now (as a
        taker) when the price is already at or through it, else rests until the price comes to it (a
        post-only limit that would fill now is cancelled instead)."""
        with self.lock:
            ts = self.tick()
            o = Order(self.next_id(), client_id, symbol, side, qty, reduce_only, trigger, direction, tp,
                      "Untriggered" if trigger is not None else "New", created_ms=ts, updated_ms=ts,
                      hidden=self.visibility_lag, limit=limit, post_only=post_only)
            self.orders[o.id] = o
            if limit is not None:
                if self._crosses(o, self.prices[symbol]):
                    if post_only:
                        o.status = "Cancelled"
                    else:
                        self._fill(o)
            elif trigger is None:
                self._fill(o)
            return o

    @staticmethod
    def _crosses(o: Order, px: Decimal) -> bool:
        assert o.limit is not None
        return px <= o.limit if o.side == "Buy" else px >= o.limit

    def _fill(self, o: Order, price: Decimal | None = None, rate: Decimal = TAKER) -> None:
        pos = self.positions[o.symbol]
        sign = 1 if o.side == "Buy" else -1
        qty = o.qty
        if o.reduce_only:
            closable = -pos.size * sign  # > 0 when this order reduces the position
            if closable <= 0:
                o.status = "Deactivated"
                o.updated_ms = self.tick()
                return
            qty = min(qty, closable)
        px = self.prices[o.symbol] if price is None else price
        fee = (qty * px * rate).quantize(D("0.00000001"))
        self._apply(pos, sign * qty, px)
        self.wallet -= fee
        o.filled, o.value, o.fee = qty, qty * px, fee
        o.status = "Filled"
        o.updated_ms = self.tick()
        self.trades.append(Trade(self.next_id(), o.id, o.client_id, o.symbol, o.side, qty, px, fee, o.updated_ms,
                                 maker=rate == MAKER))

    def _apply(self, pos: Pos, delta: Decimal, px: Decimal) -> None:
        if pos.size == 0 or (pos.size > 0) == (delta > 0):
            new = pos.size + delta
            pos.entry = (pos.entry * abs(pos.size) + px * abs(delta)) / abs(new)
            pos.size = new
            return
        closed = min(abs(delta), abs(pos.size))
        pnl = (px - pos.entry) * closed * (1 if pos.size > 0 else -1)
        self.wallet += pnl
        pos.realised += pnl
        pos.size += delta
        if pos.size == 0:
            pos.entry = ZERO
        elif (pos.size > 0) == (delta > 0):  # flipped
            pos.entry = px

    def cancel(self, order_id: str | None = None, client_id: str | None = None) -> Order | None:
        with self.lock:
            o = self.orders.get(order_id) if order_id else (self.by_client(client_id) if client_id else None)
            if o is None or not o.open:
                return None
            o.status = "Cancelled"
            o.updated_ms = self.tick()
            return o

    def amend(self, o: Order, qty: Decimal | None, trigger: Decimal | None) -> None:
        with self.lock:
            if qty is not None:
                o.qty = qty
            if trigger is not None:
                o.trigger = trigger
            o.updated_ms = self.tick()

    def set_price(self, symbol: str, price: Any) -> list[Order]:
        """Move the price; conditional orders whose trigger is crossed fill now (oldest first), and resting
        limit orders the price reached fill at their limit price as makers."""
        with self.lock:
            self.prices[symbol] = D(str(price))
            px = self.prices[symbol]
            fired = []
            for o in sorted(self.orders.values(), key=lambda o: o.created_ms):
                if o.symbol != symbol or not o.open:
                    continue
                if o.limit is not None:
                    if self._crosses(o, px):
                        self._fill(o, o.limit, MAKER)
                        fired.append(o)
                    continue
                if o.status != "Untriggered" or o.trigger is None:
                    continue
                if (o.direction == 1 and px >= o.trigger) or (o.direction == 2 and px <= o.trigger):
                    self._fill(o)
                    fired.append(o)
            return fired

    def funding(self, symbol: str, rate: Any) -> Decimal:
        """Settle one funding payment on the open position (positive rate: longs pay)."""
        with self.lock:
            pos = self.positions[symbol]
            if pos.size == 0:
                return ZERO
            amount = (pos.size * self.prices[symbol] * D(str(rate))).quantize(D("0.00000001"))
            self.wallet -= amount
            self.trades.append(Trade(self.next_id(), "", "", symbol, "Buy" if pos.size > 0 else "Sell", abs(pos.size),
                                     self.prices[symbol], amount, self.tick(), kind="Funding"))
            return amount

    # ------------------------------------------------------------------ views
    def visible(self, o: Order) -> bool:
        """Whether an order query sees `o` (each miss of a lagging order counts down)."""
        if o.hidden > 0:
            o.hidden -= 1
            self.hidden_misses += 1
            return False
        return True

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        return [o for o in self.orders.values() if o.open and (symbol is None or o.symbol == symbol)]

    def query(self, orders: list[Order]) -> list[Order]:
        return [o for o in orders if self.visible(o)]

    def unrealised(self) -> Decimal:
        return sum(((self.prices[s] - p.entry) * p.size for s, p in self.positions.items() if p.size), ZERO)

    def margin(self) -> Decimal:
        return sum((abs(p.size) * p.entry / p.leverage for p in self.positions.values() if p.size), ZERO)


class Fault:
    def __init__(self, kind: str, times: int):
        self.kind, self.times = kind, times


@dataclass
class Reply:
    status: int
    body: Any
    after: str | None = None  # None | "timeout" | "drop"
    headers: dict[str, str] = field(default_factory=dict)


def _hmac(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def _dec(s: Any) -> Decimal:
    return D(str(s))


def _fmt(x: Decimal | None) -> str:
    if x is None:
        return ""
    s = format(x.normalize(), "f") if x else "0"
    return s


def round_step(x: Decimal, step: Decimal) -> Decimal:
    return (x / step).to_integral_value(ROUND_DOWN) * step
