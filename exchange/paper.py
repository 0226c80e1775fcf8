"""PaperAccount: a deterministic in-memory futures account (isolated margin, Decimal money).

A pure state machine: no clock, no I/O. Every method takes the price and time it acts on; the
caller (paper broker / store layer) decides which price is "the next one after the decision".

Money is Decimal, every amount is quantized to 1e-8 before it moves, and it moves between
buckets in equal amounts, so this identity holds exactly (and a fortiori to the cent):

    balance + Σ margin(open)                 == starting + realised − fees − funding_paid
    equity(prices) = balance + Σ margin + Σ unrealised(prices)

where `realised` is the gross price P&L of closed quantity, `fees` every open/close fee, and
`funding_paid` the net funding paid (negative when received).

Conventions
- Slippage is against the trader: buys fill at price × (1 + bps/10 000), sells at × (1 − bps/10 000).
  A maker fill (resting take-profit) pays the maker fee and no slippage; everything else is taker.
- Isolated margin per position = notional / leverage at entry; released pro rata on partial close.
- Liquidation price (linear, fees ignored): long entry·(1 − 1/L + mmr), short entry·(1 + 1/L − mmr).
  `check_liquidation` closes a position at that price when a bar touches it.
- Funding: amount = qty × mark × rate × side (long +1, short −1); positive = paid. A positive rate
  makes longs pay and shorts receive. Funding settles against the free balance. A funding time at
  or before the position's `last_funding_at` is ignored, so replaying a funding series after a
  restart never charges twice.
- Serialisation: `to_dict()` returns plain JSON-safe data (Decimals as strings, datetimes as ISO
  8601); `PaperAccount.from_dict(d)` restores the account exactly (`from_dict(a.to_dict()).to_dict()
  == a.to_dict()`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from core.errors import OrderRejected
from core.settings import PaperSettings
from core.types import Fill, Position, PositionEvent, RestingOrder, Side, TradePlan

MONEY_Q = Decimal("0.00000001")
PRICE_Q = Decimal("0.00000001")
BPS = Decimal(10_000)


def D(x: Any) -> Decimal:
    """Decimal from Decimal, int, str, float or a numpy scalar (floats by their shortest repr)."""
    if isinstance(x, Decimal):
        return x
    if isinstance(x, int | str):
        return Decimal(str(x))
    return Decimal(repr(float(x)))


def _q(x: Decimal) -> Decimal:
    return x.quantize(MONEY_Q)


def liquidation_price_d(entry: Decimal, side: Side, leverage: int, mmr: Decimal) -> Decimal:
    return (entry * (1 - side.sign * (Decimal(1) / Decimal(leverage) - mmr))).quantize(PRICE_Q)


@dataclass
class _Ledger:
    """Exact per-position money (the Position's float fields mirror these)."""

    entry: Decimal
    margin: Decimal
    realised: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)
    funding: Decimal = Decimal(0)

    def to_dict(self) -> dict[str, str]:
        return {f.name: str(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, str]) -> _Ledger:
        return cls(**{k: Decimal(v) for k, v in d.items()})


@dataclass
class PaperAccount:
    starting_balance: Decimal
    taker_fee: Decimal = Decimal("0.0005")
    maker_fee: Decimal = Decimal("0.0002")
    slippage_bps: Decimal = Decimal("2")
    maintenance_margin_rate: Decimal = Decimal("0.005")
    balance: Decimal = None  # type: ignore[assignment]  # None: starts at starting_balance
    realised_pnl: Decimal = Decimal(0)
    fees_paid: Decimal = Decimal(0)
    funding_paid: Decimal = Decimal(0)
    positions: dict[str, Position] = field(default_factory=dict)  # open AND closed, by id
    fills: list[Fill] = field(default_factory=list)
    events: list[PositionEvent] = field(default_factory=list)
    next_id: int = 1
    _ledger: dict[str, _Ledger] = field(default_factory=dict, repr=False)
    # ids of the open positions in opening order (an index; `positions` keeps closed ones too)
    _open: dict[str, None] = field(default_factory=dict, repr=False, compare=False)
    orders: dict[str, RestingOrder] = field(default_factory=dict)  # resting (open) orders by client id
    order_log: list[dict[str, Any]] = field(default_factory=list)  # final states: filled, canceled, rejected
    _order_ids: set[str] = field(default_factory=set, repr=False, compare=False)  # every id ever placed

    def __post_init__(self) -> None:
        self.starting_balance = D(self.starting_balance)
        self.taker_fee = D(self.taker_fee)
        self.maker_fee = D(self.maker_fee)
        self.slippage_bps = D(self.slippage_bps)
        self.maintenance_margin_rate = D(self.maintenance_margin_rate)
        self.balance = _q(self.starting_balance) if self.balance is None else D(self.balance)

    @classmethod
    def from_settings(cls, settings: PaperSettings, maintenance_margin_rate: float = 0.005) -> PaperAccount:
        return cls(
            starting_balance=D(settings.starting_balance),
            taker_fee=D(settings.taker_fee),
            maker_fee=D(settings.maker_fee),
            slippage_bps=D(settings.slippage_bps),
            maintenance_margin_rate=D(maintenance_margin_rate),
        )

    # ---------------------------------------------------------------------------------- queries

    def open_positions(self) -> list[Position]:
        return [self.positions[pid] for pid in self._open]

    def get(self, position_id: str) -> Position:
        try:
            return self.positions[position_id]
        except KeyError:
            raise KeyError(f"unknown position {position_id!r}") from None

    def entry_price(self, position_id: str) -> Decimal:
        return self._ledger[position_id].entry

    def margin_of(self, position_id: str) -> Decimal:
        return self._ledger[position_id].margin

    @property
    def margin_total(self) -> Decimal:
        return sum((self._ledger[p.id].margin for p in self.open_positions()), Decimal(0))

    def unrealised(self, prices: Mapping[str, Any]) -> Decimal:
        """Σ (price − entry) × qty_open × side over open positions; a missing price counts at entry."""
        total = Decimal(0)
        for p in self.open_positions():
            led = self._ledger[p.id]
            px = D(prices[p.symbol]) if p.symbol in prices else led.entry
            total += (px - led.entry) * p.qty_open * p.side.sign
        return total

    def equity(self, prices: Mapping[str, Any] | None = None) -> Decimal:
        return self.balance + self.margin_total + self.unrealised(prices or {})

    def liquidation_price(self, position_id: str) -> Decimal:
        p = self.get(position_id)
        return liquidation_price_d(self._ledger[p.id].entry, p.side, p.leverage, self.maintenance_margin_rate)

    # --------------------------------------------------------------------------------- commands

    def _fill_price(self, price: Any, buy: bool, slippage_bps: Any | None, maker: bool) -> Decimal:
        px = D(price)
        if px <= 0:
            raise OrderRejected(f"price {price} is not positive")
        if maker:
            return px.quantize(PRICE_Q)
        bps = self.slippage_bps if slippage_bps is None else D(slippage_bps)
        adj = bps / BPS
        return (px * (1 + adj) if buy else px * (1 - adj)).quantize(PRICE_Q)

    def open(
        self,
        plan: TradePlan,
        fill_price: Any,
        ts: datetime,
        fee_rate: Any | None = None,
        slippage_bps: Any | None = None,
        *,
        maker: bool = False,
        position_id: str | None = None,
        cycle_id: str | None = None,
    ) -> tuple[Position, Fill]:
        """Open `plan.qty` at `fill_price` (+ slippage against the trader). Raises OrderRejected
        when the free balance cannot pay margin + fee or the inputs are unusable."""
        qty = D(plan.qty)
        if qty <= 0:
            raise OrderRejected(f"{plan.symbol}: quantity {qty} is not positive")
        if plan.leverage < 1:
            raise OrderRejected(f"{plan.symbol}: leverage {plan.leverage} < 1")
        pid = position_id or f"P{self.next_id:06d}"
        if pid in self.positions:
            raise OrderRejected(f"position id {pid} already exists")
        side = plan.side
        px = self._fill_price(fill_price, buy=side is Side.LONG, slippage_bps=slippage_bps, maker=maker)
        rate = D(fee_rate) if fee_rate is not None else (self.maker_fee if maker else self.taker_fee)
        notional = px * qty
        margin = _q(notional / Decimal(plan.leverage))
        fee = _q(notional * rate)
        if margin + fee > self.balance:
            raise OrderRejected(f"{plan.symbol}: margin {margin} + fee {fee} exceeds free balance {self.balance}")
        self.balance -= margin + fee
        self.fees_paid += fee
        if position_id is None:
            self.next_id += 1
        self._ledger[pid] = _Ledger(entry=px, margin=margin, fees=fee)
        liq = liquidation_price_d(px, side, plan.leverage, self.maintenance_margin_rate)
        pos = Position(
            id=pid,
            symbol=plan.symbol,
            side=side,
            entry=float(px),
            qty_initial=qty,
            qty_open=qty,
            stop=plan.stop,
            initial_stop=plan.stop,
            tp1=plan.tp1,
            tp2=plan.tp2,
            leverage=plan.leverage,
            margin=float(margin),
            liquidation_price=float(liq),
            opened_at=ts,
            best_price=float(px),
            fees_paid=float(fee),
            cycle_id=cycle_id,
        )
        self.positions[pid] = pos
        self._open[pid] = None
        fill = Fill(plan.symbol, side, "open", qty, px, fee, ts, reason=plan.reason[:200])
        self.fills.append(fill)
        self.events.append(PositionEvent(pid, plan.symbol, "opened", ts, float(px), qty, 0.0, 0.0,
                                         f"{side.value} {qty} @ {px} {plan.leverage}x"))
        return pos, fill

    def close(
        self,
        position_id: str,
        qty: Any,
        price: Any,
        ts: datetime,
        reason: str = "",
        fee_rate: Any | None = None,
        slippage_bps: Any | None = None,
        *,
        maker: bool = False,
        kind: str | None = None,
    ) -> tuple[Fill, Decimal]:
        """Close `qty` (≤ qty_open) at `price` (+ slippage unless maker). Returns the fill and the
        realised gross price P&L of that quantity (the fee is in the fill)."""
        pos = self.get(position_id)
        if not pos.is_open:
            raise OrderRejected(f"position {position_id} is already closed")
        q = D(qty)
        if q <= 0 or q > pos.qty_open:
            raise OrderRejected(f"close qty {q} must be in (0, {pos.qty_open}]")
        led = self._ledger[pos.id]
        s = pos.side.sign
        px = self._fill_price(price, buy=pos.side is Side.SHORT, slippage_bps=slippage_bps, maker=maker)
        rate = D(fee_rate) if fee_rate is not None else (self.maker_fee if maker else self.taker_fee)
        pnl = _q((px - led.entry) * q * s)
        fee = _q(px * q * rate)
        released = led.margin if q == pos.qty_open else _q(led.margin * q / pos.qty_open)
        led.margin -= released
        led.realised += pnl
        led.fees += fee
        self.balance += released + pnl - fee
        self.realised_pnl += pnl
        self.fees_paid += fee
        left = pos.qty_open - q
        changes: dict[str, Any] = dict(
            qty_open=left,
            margin=float(led.margin),
            realised_pnl=float(led.realised),
            fees_paid=float(led.fees),
        )
        if left == 0:
            changes.update(closed_at=ts, exit_reason=kind or reason or "close")
        self.positions[pos.id] = pos.with_(**changes)
        if left == 0:
            self._open.pop(pos.id, None)
            for oid in [o.id for o in self.orders.values() if o.position_id == pos.id]:
                self.cancel_order(oid, ts, "position closed")
        fill = Fill(pos.symbol, pos.side, "close", q, px, fee, ts, reason=reason)
        self.fills.append(fill)
        r = abs(pos.entry - pos.initial_stop)
        r_mult = 0.0 if r <= 0 else (float(px) - pos.entry) * s / r
        self.events.append(PositionEvent(pos.id, pos.symbol, kind or "manual", ts, float(px), q, float(pnl),
                                         r_mult, reason))
        return fill, pnl

    def apply_funding(self, position: Position | str, rate: Any, mark_price: Any, ts: datetime) -> Decimal:
        """Settle one funding payment. Returns the amount PAID (negative: received)."""
        pid = position if isinstance(position, str) else position.id
        pos = self.get(pid)
        if not pos.is_open or (pos.last_funding_at is not None and ts <= pos.last_funding_at) or ts <= pos.opened_at:
            return Decimal(0)
        led = self._ledger[pid]
        amount = _q(pos.qty_open * D(mark_price) * D(rate) * pos.side.sign)
        self.balance -= amount
        self.funding_paid += amount
        led.funding += amount
        self.positions[pid] = pos.with_(funding_paid=float(led.funding), last_funding_at=ts)
        self.events.append(PositionEvent(pid, pos.symbol, "funding", ts, float(D(mark_price)), pos.qty_open,
                                         float(-amount), 0.0, f"funding rate {rate} at mark {mark_price}"))
        return amount

    def check_liquidation(self, position_id: str, high: Any, low: Any, ts: datetime) -> Fill | None:
        """Close the whole position at its liquidation price when [low, high] reaches it."""
        pos = self.get(position_id)
        if not pos.is_open:
            return None
        liq = self.liquidation_price(position_id)
        touched = D(low) <= liq if pos.side is Side.LONG else D(high) >= liq
        if not touched:
            return None
        fill, _ = self.close(position_id, pos.qty_open, liq, ts, reason=f"liquidated at {liq}",
                             maker=True, fee_rate=self.taker_fee, kind="liquidation")
        return fill

    def update_risk_state(self, position: Position) -> Position:
        """Copy the exit rules' state (stop, phase, best price, TP1 flag) from `position`
        (e.g. the result of risk.exits.step) without touching quantities or money."""
        cur = self.get(position.id)
        new = cur.with_(stop=position.stop, phase=position.phase, best_price=position.best_price,
                        tp1_done=position.tp1_done)
        self.positions[cur.id] = new
        return new

    def apply_exit_step(self, result: Any, fee_rate: Any | None = None) -> list[tuple[Fill, Decimal]]:
        """Apply a risk.exits.StepResult: copy rule state, then execute each ExitOrder."""
        new_pos, events, orders = result
        self.update_risk_state(new_pos)
        for ev in events:
            if ev.kind == "stop_moved":
                self.events.append(ev)
        out = []
        for o in orders:
            cur = self.get(o.position_id)
            if not cur.is_open:
                break
            out.append(self.close(o.position_id, min(D(o.qty), cur.qty_open), o.price, o.ts, o.reason,
                                  fee_rate, maker=o.maker, kind=o.kind))
        return out

    def add(self, position_id: str, qty: Any, price: Any, ts: datetime, fee_rate: Any | None = None,
            slippage_bps: Any | None = None, reason: str = "add") -> Fill:
        """Add `qty` to an open position at `price` (+ slippage): entry becomes the quantity-weighted
        average, margin grows by the added notional / leverage."""
        pos = self.get(position_id)
        if not pos.is_open:
            raise OrderRejected(f"position {position_id} is closed: nothing to add to")
        q = D(qty)
        if q <= 0:
            raise OrderRejected(f"add qty {q} is not positive")
        led = self._ledger[pos.id]
        px = self._fill_price(price, buy=pos.side is Side.LONG, slippage_bps=slippage_bps, maker=False)
        rate = D(fee_rate) if fee_rate is not None else self.taker_fee
        margin = _q(px * q / Decimal(pos.leverage))
        fee = _q(px * q * rate)
        if margin + fee > self.balance:
            raise OrderRejected(f"{pos.symbol}: margin {margin} + fee {fee} exceeds free balance {self.balance}")
        self.balance -= margin + fee
        self.fees_paid += fee
        total = pos.qty_open + q
        led.entry = ((led.entry * pos.qty_open + px * q) / total).quantize(PRICE_Q)
        led.margin += margin
        led.fees += fee
        liq = liquidation_price_d(led.entry, pos.side, pos.leverage, self.maintenance_margin_rate)
        self.positions[pos.id] = pos.with_(entry=float(led.entry), qty_initial=pos.qty_initial + q, qty_open=total,
                                           margin=float(led.margin), fees_paid=float(led.fees),
                                           liquidation_price=float(liq))
        fill = Fill(pos.symbol, pos.side, "open", q, px, fee, ts, reason=reason[:200])
        self.fills.append(fill)
        self.events.append(PositionEvent(pos.id, pos.symbol, "added", ts, float(px), q, 0.0, 0.0,
                                         f"added {q} @ {px}; entry now {led.entry}"))
        return fill

    # --------------------------------------------------------------------------- resting orders
    #
    # Orders rest until a bar trades through them (`match_bar`). Within a bar the path is taken as
    # open -> low -> high -> close when the bar closes up (open -> high -> low -> close when it
    # closes down), and orders fill in the order that path reaches them, so an entry filled on the
    # way down can take profit on the way back up in the same bar. A limit order fills at its price
    # as a maker (at the open, if the bar opens beyond it: a resting order never fills worse than its
    # limit); a stop_market fills at its trigger (at the open on a gap) as a taker with slippage.

    def open_orders(self, symbol: str | None = None) -> list[RestingOrder]:
        return [o for o in self.orders.values() if symbol is None or o.symbol == symbol]

    def place_order(self, order: RestingOrder) -> RestingOrder:
        if order.id in self._order_ids:
            raise OrderRejected(f"order id {order.id} already used")
        if D(order.amount) <= 0:
            raise OrderRejected(f"{order.symbol}: order amount {order.amount} is not positive")
        if not (order.price > 0):
            raise OrderRejected(f"{order.symbol}: order price {order.price} is not positive")
        if order.reduce_only:
            if order.position_id is None or order.position_id not in self.positions:
                raise OrderRejected(f"reduce-only order {order.id}: unknown position {order.position_id!r}")
            pos = self.get(order.position_id)
            if not pos.is_open:
                raise OrderRejected(f"reduce-only order {order.id}: position {pos.id} is closed")
            if order.position_side is not pos.side:
                raise OrderRejected(f"reduce-only order {order.id}: a {order.side} does not reduce a {pos.side.value}")
        elif order.type != "limit":
            raise OrderRejected(f"opening order {order.id}: only limit orders open positions")
        self.orders[order.id] = order
        self._order_ids.add(order.id)
        return order

    def cancel_order(self, order_id: str, ts: datetime | None = None, reason: str = "canceled") -> RestingOrder | None:
        o = self.orders.pop(order_id, None)
        if o is not None:
            self._log(o, "canceled", ts, reason)
        return o

    def _log(self, o: RestingOrder, status: str, ts: datetime | None, note: str = "",
             price: Decimal | None = None) -> None:
        self.order_log.append({"id": o.id, "symbol": o.symbol, "type": o.type, "side": o.side,
                               "amount": str(o.amount), "price": o.price, "reduceOnly": o.reduce_only,
                               "position_id": o.position_id, "tag": o.tag, "status": status,
                               "average": None if price is None else str(price),
                               "ts": None if ts is None else ts.isoformat(), "note": note})

    def match_bar(self, symbol: str, o: Any, h: Any, lo: Any, c: Any, ts: datetime) -> list[Fill]:
        """Fill the resting orders of `symbol` that the bar (o, h, lo, c) trades through; `ts` is the
        time the fills are stamped with (the bar's close)."""
        if not any(od.symbol == symbol for od in self.orders.values()):
            return []
        o, h, lo, c = float(o), float(h), float(lo), float(c)
        path = [o, lo, h, c] if c >= o else [o, h, lo, c]
        fills: list[Fill] = []
        n0 = len(self.fills)
        # orders the open has already gone through (a gap)
        while True:
            hit = [od for od in self._sorted(symbol) if self._crossed_at_open(od, o)]
            if not hit:
                break
            self._execute(hit[0], o, ts)
        for a, b in zip(path, path[1:], strict=False):
            cur = a
            while b != cur:
                down = b < cur
                best: tuple[float, RestingOrder] | None = None
                for od in self._sorted(symbol):
                    p = od.price
                    if not (b <= p <= cur if down else cur <= p <= b):
                        continue
                    if not self._triggers(od, down):
                        continue
                    if best is None or (p > best[0] if down else p < best[0]):
                        best = (p, od)
                if best is None:
                    break
                self._execute(best[1], best[0], ts)
                cur = best[0]
        fills.extend(self.fills[n0:])
        return fills

    def _sorted(self, symbol: str) -> list[RestingOrder]:
        return sorted((od for od in self.orders.values() if od.symbol == symbol), key=lambda x: x.id)

    @staticmethod
    def _triggers(od: RestingOrder, down: bool) -> bool:
        """Does price moving down (or up) through od.price execute it?"""
        if od.type == "limit":
            return down if od.side == "buy" else not down
        return not down if od.side == "buy" else down  # stop: buy-stop on the way up, sell-stop down

    @staticmethod
    def _crossed_at_open(od: RestingOrder, o: float) -> bool:
        if od.type == "limit":
            return o <= od.price if od.side == "buy" else o >= od.price
        return o >= od.price if od.side == "buy" else o <= od.price

    def _execute(self, od: RestingOrder, price: float, ts: datetime) -> None:
        self.orders.pop(od.id, None)
        maker = od.type == "limit"
        if not od.reduce_only:
            side = od.position_side
            px = D(price)
            stop = od.stop if od.stop is not None else 0.0
            tp = od.take_profit if od.take_profit is not None else 0.0
            qty = D(od.amount)
            plan = TradePlan(symbol=od.symbol, side=side, entry=float(px), stop=stop, tp1=tp, tp2=tp,
                             leverage=od.leverage, qty=qty, notional=float(px * qty),
                             margin=float(px * qty) / od.leverage,
                             risk_usd=abs(float(px) - stop) * float(qty) if stop else 0.0, risk_pct=0.0,
                             liquidation_price=0.0, stop_pct=0.0, tp1_fraction=1.0,
                             reason=f"resting {od.type} {od.side} {od.id} ({od.tag})")
            pid = f"{od.id}"
            try:
                pos, fill = self.open(plan, px, ts, maker=maker, position_id=pid)
            except OrderRejected as exc:
                self._log(od, "rejected", ts, str(exc))
                return
            self.positions[pid] = pos.with_(extra={"tag": od.tag, "managed": "orders", "order_id": od.id})
            self._log(od, "filled", ts, price=fill.price)
            close_side = "sell" if side is Side.LONG else "buy"
            if od.take_profit is not None:
                self.place_order(RestingOrder(f"{od.id}:tp", od.symbol, "limit", close_side, qty, od.take_profit,
                                              reduce_only=True, position_id=pid, leverage=od.leverage,
                                              tag=od.tag, created_at=ts))
            if od.stop is not None:
                self.place_order(RestingOrder(f"{od.id}:sl", od.symbol, "stop_market", close_side, qty, od.stop,
                                              reduce_only=True, position_id=pid, leverage=od.leverage,
                                              tag=od.tag, created_at=ts))
            return
        pos = self.get(od.position_id or "")
        if not pos.is_open:
            self._log(od, "canceled", ts, "position already closed")
            return
        qty = min(D(od.amount), pos.qty_open)
        kind = "tp" if od.type == "limit" else "stop"
        fill, _ = self.close(pos.id, qty, price, ts, reason=f"{kind} order {od.id} @ {price:.8g}", maker=maker,
                             kind=kind)
        self._log(od, "filled", ts, price=fill.price)

    # ---------------------------------------------------------------------------- serialisation

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "starting_balance": str(self.starting_balance),
            "taker_fee": str(self.taker_fee),
            "maker_fee": str(self.maker_fee),
            "slippage_bps": str(self.slippage_bps),
            "maintenance_margin_rate": str(self.maintenance_margin_rate),
            "balance": str(self.balance),
            "realised_pnl": str(self.realised_pnl),
            "fees_paid": str(self.fees_paid),
            "funding_paid": str(self.funding_paid),
            "next_id": self.next_id,
            "positions": [position_to_dict(p) for p in self.positions.values()],
            "ledger": {pid: led.to_dict() for pid, led in self._ledger.items()},
            "fills": [fill_to_dict(f) for f in self.fills],
            "events": [event_to_dict(e) for e in self.events],
            **({"orders": [order_to_dict(o) for o in self.orders.values()]} if self.orders else {}),
            **({"order_log": list(self.order_log)} if self.order_log else {}),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PaperAccount:
        acct = cls(
            starting_balance=Decimal(d["starting_balance"]),
            taker_fee=Decimal(d["taker_fee"]),
            maker_fee=Decimal(d["maker_fee"]),
            slippage_bps=Decimal(d["slippage_bps"]),
            maintenance_margin_rate=Decimal(d["maintenance_margin_rate"]),
            balance=Decimal(d["balance"]),
            realised_pnl=Decimal(d["realised_pnl"]),
            fees_paid=Decimal(d["fees_paid"]),
            funding_paid=Decimal(d["funding_paid"]),
            next_id=int(d["next_id"]),
        )
        for pd_ in d["positions"]:
            p = position_from_dict(pd_)
            acct.positions[p.id] = p
            if p.is_open:
                acct._open[p.id] = None
        acct._ledger = {pid: _Ledger.from_dict(v) for pid, v in d["ledger"].items()}
        acct.fills = [fill_from_dict(f) for f in d["fills"]]
        acct.events = [event_from_dict(e) for e in d["events"]]
        acct.orders = {o["id"]: order_from_dict(o) for o in d.get("orders", [])}
        acct.order_log = [dict(r) for r in d.get("order_log", [])]
        acct._order_ids = set(acct.orders) | {r["id"] for r in acct.order_log}
        return acct


# ------------------------------------------------------------------------------------------------
# plain-data conversion of domain objects (usable by a store layer)

_DEC_POS = {"qty_initial", "qty_open"}
_DT_POS = {"opened_at", "last_funding_at", "closed_at"}


def _dt(x: str | None) -> datetime | None:
    return None if x is None else datetime.fromisoformat(x)


def position_to_dict(p: Position) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(p):
        v = getattr(p, f.name)
        if f.name in _DEC_POS:
            v = str(v)
        elif f.name in _DT_POS:
            v = None if v is None else v.isoformat()
        elif f.name == "side":
            v = v.value
        elif f.name == "extra":
            v = dict(v)
        out[f.name] = v
    return out


def position_from_dict(d: Mapping[str, Any]) -> Position:
    kw = dict(d)
    for k in _DEC_POS:
        kw[k] = Decimal(kw[k])
    for k in _DT_POS:
        kw[k] = _dt(kw.get(k))
    kw["side"] = Side(kw["side"])
    kw["extra"] = dict(kw.get("extra") or {})
    return Position(**kw)


def fill_to_dict(f: Fill) -> dict[str, Any]:
    return {"symbol": f.symbol, "side": f.side.value, "kind": f.kind, "qty": str(f.qty), "price": str(f.price),
            "fee": str(f.fee), "ts": f.ts.isoformat(), "reason": f.reason}


def fill_from_dict(d: Mapping[str, Any]) -> Fill:
    return Fill(d["symbol"], Side(d["side"]), d["kind"], Decimal(d["qty"]), Decimal(d["price"]),
                Decimal(d["fee"]), datetime.fromisoformat(d["ts"]), d.get("reason", ""))


def event_to_dict(e: PositionEvent) -> dict[str, Any]:
    return {"position_id": e.position_id, "symbol": e.symbol, "kind": e.kind, "ts": e.ts.isoformat(),
            "price": e.price, "qty": str(e.qty), "pnl": e.pnl, "r_multiple": e.r_multiple, "reason": e.reason,
            "old_stop": e.old_stop, "new_stop": e.new_stop}


def event_from_dict(d: Mapping[str, Any]) -> PositionEvent:
    return PositionEvent(d["position_id"], d["symbol"], d["kind"], datetime.fromisoformat(d["ts"]), d["price"],
                         Decimal(d["qty"]), d["pnl"], d["r_multiple"], d.get("reason", ""), d.get("old_stop"),
                         d.get("new_stop"))


def order_to_dict(o: RestingOrder) -> dict[str, Any]:
    return {"id": o.id, "symbol": o.symbol, "type": o.type, "side": o.side, "amount": str(o.amount),
            "price": o.price, "reduce_only": o.reduce_only, "position_id": o.position_id, "leverage": o.leverage,
            "stop": o.stop, "take_profit": o.take_profit, "tag": o.tag,
            "created_at": None if o.created_at is None else o.created_at.isoformat()}


def order_from_dict(d: Mapping[str, Any]) -> RestingOrder:
    return RestingOrder(id=d["id"], symbol=d["symbol"], type=d["type"], side=d["side"], amount=Decimal(d["amount"]),
                        price=float(d["price"]), reduce_only=bool(d["reduce_only"]), position_id=d.get("position_id"),
                        leverage=int(d.get("leverage", 1)), stop=d.get("stop"), take_profit=d.get("take_profit"),
                        tag=d.get("tag", ""), created_at=_dt(d.get("created_at")))


# ------------------------------------------------------------------------------------------------
# spot


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
