"""Resting limit orders on the exchange (a grid's levels), the live half of exchange/orders.py.

    broker.place_order(order)        # core.types.RestingOrder: an opening limit with its stop and take-profit
    broker.resting_orders(symbol)    # what rests, as RestingOrder (the paper account's `open_orders` shape)
    broker.cancel_order(order.id)    # idempotent; a cancel that finds the order filled records the fill
    broker.reconcile()               # finds the fills: each filled level gets its stop and take-profit

The same exactly-once rules as every live order (exchange/live_orders.py): the limit is an intent in the
journal before it is sent, its client id is deterministic (account, decision time = `order.created_at`,
symbol, intent, and the order's id, so several levels of one decision never share an id), an unknown
outcome is looked up by client id and never blindly resent. Opening limits are post-only (they rest as
makers, as the paper account fills them; one the exchange would fill at once is cancelled by it, never
taken). The position a level opens has the order's id as its position id; once its fill is found, its stop
(a reduce-only conditional market order, like a trend position's) and its take-profit (a reduce-only limit
at the next level) are placed; the exit rules leave it alone (`extra["managed"] == "orders"`).

One-way position mode nets a symbol's positions: a level that would open against an open position or a
resting entry of the other side in the same symbol is refused (run a live grid with `direction: long` or
`short`).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from core.errors import OrderRejected
from core.types import RestingOrder, Side
from exchange.broker import Finding, OrderView
from exchange.live_orders import OrderDesk, OrderSpec, limit_price
from exchange.reconcile import BookPosition, book_positions

ZERO = Decimal(0)


class RestingDesk(OrderDesk):
    """Mixin of exchange.live_broker.LiveBroker: resting limit orders through the order journal."""

    if TYPE_CHECKING:  # provided by LiveBroker
        def prepare(self, symbol: str, leverage: int) -> dict[str, str]: ...
        def _book(self, pid: str) -> BookPosition | None: ...
        def _orders_of(self, pid: str) -> list[OrderView]: ...
        def close_position(self, position_id: str, reason: str = "", kind: str = "manual") -> Any: ...

    def place_order(self, order: RestingOrder) -> OrderView:
        """Place an opening limit order (post-only) with its stop and take-profit, which are placed once it
        fills. Raises OrderRejected for what the exchange or the one-way mode cannot take."""
        if order.reduce_only or order.type != "limit":
            raise OrderRejected(f"order {order.id}: only opening limit orders rest on the exchange (a position's "
                                "stop and take-profit are placed with it when it fills)")
        if order.created_at is None:
            raise OrderRejected(f"order {order.id}: no created_at (its decision time, part of its client id)")
        side = order.position_side
        rows = self.journal()
        prior = any(o.intent == "entry" and (o.meta or {}).get("order_id") == order.id for o in rows)
        for b in book_positions(rows):
            if b.is_open and b.symbol == order.symbol and b.side is not side:
                raise OrderRejected(f"{order.symbol}: a {side.value} order against the open {b.side.value} "
                                    f"{b.position_id}; one-way mode nets them (use a one-sided grid live)")
        for o in rows:
            if (o.symbol == order.symbol and o.intent == "entry" and o.resting and limit_price(o) is not None
                    and (o.side == "buy") != (side is Side.LONG)):
                raise OrderRejected(f"{order.symbol}: a {side.value} order while {o.client_id} rests on the other "
                                    "side; one-way mode nets them (use a one-sided grid live)")
        qty = self.qty_to_precision(order.symbol, Decimal(order.amount))
        if qty <= 0 or qty < self.min_qty(order.symbol):
            raise OrderRejected(f"{order.symbol}: quantity {order.amount} is below the market minimum")
        px = self.price_to_precision(order.symbol, order.price)
        # the live safety caps, as for a trend entry (a rerun of the same order sends nothing); its stop and
        # take-profit are written when it fills, in a later run
        refused = None if prior else self.cap_refusal(order.symbol, qty * px, 1, "level")
        if refused:
            raise OrderRejected(refused)
        self.prepare(order.symbol, order.leverage)
        meta: dict[str, Any] = {"limit_price": str(px), "post_only": True, "order_id": order.id, "tag": order.tag,
                                "leverage": order.leverage, "tp1_fraction": 1.0, "plan_entry": float(px)}
        if order.stop is not None:
            meta["stop"] = str(self.price_to_precision(order.symbol, order.stop))
        if order.take_profit is not None:
            tp = str(self.price_to_precision(order.symbol, order.take_profit))
            meta.update(tp1=tp, tp2=tp)
        return self._place(OrderSpec(order.id, order.symbol, "entry", 0, order.side, qty, order.created_at,
                                     meta=meta))

    def resting_orders(self, symbol: str | None = None) -> list[RestingOrder]:
        """The resting orders (and those possibly resting: sent, answer unknown) as RestingOrder."""
        out = []
        for o in self.journal():
            oid = (o.meta or {}).get("order_id")
            if not o.resting or oid is None or (symbol is not None and o.symbol != symbol):
                continue
            lp = limit_price(o)
            m = o.meta
            if o.intent == "entry":
                out.append(RestingOrder(oid, o.symbol, "limit", o.side, o.qty, float(lp or 0), leverage=int(
                    m.get("leverage", 1)), stop=float(m["stop"]) if m.get("stop") else None,
                    take_profit=float(m["tp2"]) if m.get("tp2") else None, tag=str(m.get("tag", "")),
                    created_at=o.decision_time))
            else:
                price = lp if lp is not None else o.trigger_price
                out.append(RestingOrder(oid, o.symbol, "limit" if lp is not None else "stop_market", o.side, o.qty,
                                        float(price or 0), reduce_only=True, position_id=o.position_id,
                                        tag=str(m.get("tag", "")), created_at=o.decision_time))
        return out

    def cancel_order(self, order_id: str, ts: datetime | None = None, reason: str = "canceled") -> OrderView | None:
        """Cancel the resting order `order_id` (a RestingOrder id); None when nothing of that id rests."""
        rows = [o for o in self.journal() if (o.meta or {}).get("order_id") == order_id and o.resting]
        done = None
        for o in rows:
            done = self.cancel(o.client_id)
        return done

    def _protect_resting(self, pid: str) -> list[str]:
        """Place the stop and the take-profit of a position a resting entry opened, whichever is missing."""
        book = self._book(pid)
        if book is None or not book.is_open or book.order_id is None:
            return []
        rows = self._orders_of(pid)
        entry = next(o for o in rows if o.intent == "entry")
        meta, dt = entry.meta, entry.decision_time or book.opened_at
        assert dt is not None
        exit_side = "sell" if book.side is Side.LONG else "buy"
        placed = []
        if meta.get("stop") and not any(o.intent == "stop" for o in rows):
            self._place(OrderSpec(pid, book.symbol, "stop", 0, exit_side, book.qty_open, dt, Decimal(meta["stop"]),
                                  True, {"phase": "initial", "order_id": f"{book.order_id}:sl", "tag": book.tag}))
            placed.append(f"stop {meta['stop']}")
        if meta.get("tp2") and not any(o.intent == "tp2" for o in rows):
            self._place(OrderSpec(pid, book.symbol, "tp2", 0, exit_side, book.qty_open, dt, None, True,
                                  {"limit_price": meta["tp2"], "order_id": f"{book.order_id}:tp", "tag": book.tag}))
            placed.append(f"take-profit limit {meta['tp2']}")
        return placed

    def reconcile_resting(self) -> list[Finding]:
        """After the journal has the exchange's fills: every position a resting entry opened gets its stop and
        take-profit (a finding each time a level's fill is found)."""
        out = []
        for b in book_positions(self.journal()):
            if b.order_id is None or not b.is_open:
                continue
            try:
                placed = self._protect_resting(b.position_id)
            except OrderRejected as exc:  # the price is already through the stop: it would have fired
                self.close_position(b.position_id, f"stop already crossed when the fill of {b.order_id} was found")
                out.append(Finding("resting_filled", b.symbol, f"limit {b.order_id} filled; its stop was refused "
                                   f"({exc}); closed at market", b.position_id, "closed_at_market",
                                   price=b.entry_price, qty=b.qty_open))
                continue
            if placed:
                out.append(Finding("resting_filled", b.symbol, f"limit {b.order_id} filled: {b.side.value} "
                                   f"{b.qty_open} @ {b.entry_price} (fee {b.fees}); " + ", ".join(placed)
                                   + " placed", b.position_id, "protected", price=b.entry_price, qty=b.qty_open,
                                   fee=b.fees))
        return out
