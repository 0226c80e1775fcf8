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
from exchange.money import BPS, MONEY_Q, PRICE_Q, D, _q  # noqa: F401 - D is part of this module's API
from exchange.orders import RestingOrders, order_from_dict, order_to_dict


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
class PaperAccount(RestingOrders):
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
    _fill_pids: list[str] = field(default_factory=list, repr=False, compare=False)  # position id per order fill
    orders_checked: dict[str, datetime] = field(default_factory=dict)  # symbol -> resting orders matched until
    strategy_state: dict[str, Any] = field(default_factory=dict)  # symbol -> a strategy's state (plain data)

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

    def apply_funding(self, position: Position | str, rate: Any, mark_price: Any, ts: datetime,
                      held_at_open: bool = False) -> Decimal:
        """Settle one funding payment. Returns the amount PAID (negative: received). A position opened at
        `ts` does not pay it, unless `held_at_open`: its fill is stamped at `ts` but happened before (a
        resting order filled inside the bar that closes at `ts`), so it was open at the funding time."""
        pid = position if isinstance(position, str) else position.id
        pos = self.get(pid)
        too_new = ts < pos.opened_at if held_at_open else ts <= pos.opened_at
        if not pos.is_open or (pos.last_funding_at is not None and ts <= pos.last_funding_at) or too_new:
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
        if (cur.stop, cur.phase, cur.best_price, cur.tp1_done) == (position.stop, position.phase,
                                                                   position.best_price, position.tp1_done):
            return cur  # nothing changed (most bars): no copy
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
            **({"orders_checked": {k: v.isoformat() for k, v in self.orders_checked.items()}}
               if self.orders_checked else {}),
            **({"strategy_state": dict(self.strategy_state)} if self.strategy_state else {}),
        }

    def compact_dict(self) -> dict[str, Any]:
        """What is stored: the open positions and their ledgers (closed ones live in their own rows),
        no fills or events (they are stored as rows when they happen)."""
        state = self.to_dict()
        open_ids = set(self._open)
        out = {**state, "positions": [p for p in state["positions"] if p["id"] in open_ids],
               "ledger": {k: v for k, v in state["ledger"].items() if k in open_ids}, "fills": [], "events": []}
        if "order_log" in out:  # final order states: the recent ones (their ids stay unique), not all history
            out["order_log"] = out["order_log"][-500:]
        return out

    def settled(self) -> PaperAccount:
        """The account as it reads back after `compact_dict()` was stored (no reload needed)."""
        return PaperAccount.from_dict(self.compact_dict())

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
        acct.orders_checked = {k: datetime.fromisoformat(v) for k, v in d.get("orders_checked", {}).items()}
        acct.strategy_state = dict(d.get("strategy_state", {}))
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
