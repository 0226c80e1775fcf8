"""Resting orders of the paper futures account (a mixin of `PaperAccount`).

Orders rest until a bar trades through them (`match_bar`). Within a bar the path is taken as
open -> low -> high -> close when the bar closes up (open -> high -> low -> close when it closes
down), and orders fill in the order that path reaches them, so an entry filled on the way down can
take profit on the way back up in the same bar. A limit order fills at its price as a maker (at the
open, if the bar opens beyond it: a resting order never fills worse than its limit); a stop_market
fills at its trigger (at the open on a gap) as a taker with slippage. An opening order's attached
take-profit and stop become reduce-only orders of the position it opens; when a position closes,
its remaining reduce-only orders are cancelled (one cancels the other).

The order fields follow ccxt's unified order structure (see `core.types.RestingOrder.to_ccxt`);
`order_log` keeps each order's final state (filled, canceled, rejected) like ccxt's closed orders.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from core.errors import OrderRejected
from core.types import Fill, RestingOrder, Side, TradePlan
from exchange.money import D


class RestingOrders:
    """Mixin: needs `orders`, `order_log`, `_order_ids`, `fills`, `positions`, `open`, `close`, `get`."""

    orders: dict[str, RestingOrder]
    order_log: list[dict[str, Any]]
    _order_ids: set[str]
    fills: list[Fill]
    _fill_pids: list[str]

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
            self._fill_pids.append(pid)
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
        self._fill_pids.append(pos.id)
        self._log(od, "filled", ts, price=fill.price)


def order_to_dict(o: RestingOrder) -> dict[str, Any]:
    return {"id": o.id, "symbol": o.symbol, "type": o.type, "side": o.side, "amount": str(o.amount),
            "price": o.price, "reduce_only": o.reduce_only, "position_id": o.position_id, "leverage": o.leverage,
            "stop": o.stop, "take_profit": o.take_profit, "tag": o.tag,
            "created_at": None if o.created_at is None else o.created_at.isoformat()}


def order_from_dict(d: Mapping[str, Any]) -> RestingOrder:
    return RestingOrder(id=d["id"], symbol=d["symbol"], type=d["type"], side=d["side"], amount=Decimal(d["amount"]),
                        price=float(d["price"]), reduce_only=bool(d["reduce_only"]), position_id=d.get("position_id"),
                        leverage=int(d.get("leverage", 1)), stop=d.get("stop"), take_profit=d.get("take_profit"),
                        tag=d.get("tag", ""), created_at=None if d.get("created_at") is None else datetime.fromisoformat(d["created_at"]))
