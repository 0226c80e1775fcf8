"""The paper implementation of the broker port, over exchange.paper.PaperAccount.

It keeps today's behaviour: an entry fills at the first price after the decision (`price_after`, e.g.
MarketDataSource.price_after), fees and slippage as the account sets them, and the exits (stop, TP1, TP2,
trailing, funding, liquidation) are simulated bar by bar on `broker.account` by `walk`
(exchange.walk.advance_position, the backtest's bar function). Its protective orders are virtual: they are derived from each open
position (the stop for what is open, TP1 until it is done, TP2 for the rest), so they can never be
orphaned, lost or doubled, and `reconcile()` has nothing to compare and returns [].

Client ids are the live broker's (exchange.broker.client_order_id), so the same decision maps to the same
ids in both modes. The caller persists `broker.account` (pipeline.account.save_account) as today.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

from core.errors import OrderRejected
from core.types import Fill, Position, RestingOrder, Side
from exchange.broker import Balance, Finding, OpenRequest, OpenResult, OrderView, Walked, client_order_id
from exchange.paper import PaperAccount
from exchange.walk import advance_position

PriceAfter = Callable[[str, datetime], "tuple[datetime, float] | None"]
ZERO = Decimal(0)


class PaperBroker:
    name = "paper"

    def __init__(self, account: PaperAccount, price_after: PriceAfter, *, now: Callable[[], datetime] | None = None,
                 account_name: str = "paper", qty_step: Callable[[str], Decimal] | None = None,
                 marks: Callable[[str], float | None] | None = None):
        self.account = account
        self.price_after = price_after
        self._now = now or (lambda: datetime.now(UTC))
        self.account_name = account_name
        self._qty_step = qty_step
        self._marks = marks

    # ------------------------------------------------------------------------------ helpers
    def _price(self, symbol: str) -> tuple[datetime, float]:
        now = self._now()
        nxt = self.price_after(symbol, now)
        if nxt is None:
            mark = self._marks(symbol) if self._marks else None
            if mark is None:
                raise OrderRejected(f"{symbol}: no price after {now.isoformat()} to fill at")
            return now, mark
        return nxt

    def _cid(self, pos: Position, intent: str, seq: int = 0) -> str:
        """The live broker's id for the same order: position ids are `<BASE>-<decision %Y%m%d%H%M>`."""
        stamp = pos.id.rsplit("-", 1)[-1]
        try:
            dt = datetime.strptime(stamp, "%Y%m%d%H%M").replace(tzinfo=UTC)
        except ValueError:  # an id from elsewhere (e.g. P000001): the opening time stands in
            dt = pos.opened_at
        return client_order_id(self.account_name, dt, pos.symbol, intent, seq)

    def _tp1_qty(self, pos: Position) -> Decimal:
        q = pos.qty_initial * Decimal("0.5")
        step = self._qty_step(pos.symbol) if self._qty_step else None
        if step:
            q = (q / step).to_integral_value(ROUND_DOWN) * step
        return min(q, pos.qty_open)

    def _virtual(self, pos: Position) -> list[OrderView]:
        exit_side = "sell" if pos.side is Side.LONG else "buy"
        out = [OrderView(self._cid(pos, "stop"), pos.id, pos.symbol, "stop", exit_side, pos.qty_open, "open",
                         Decimal(str(pos.stop)), True, meta={"phase": pos.phase})]
        q1 = ZERO if pos.tp1_done else self._tp1_qty(pos)
        if q1 > 0:
            out.append(OrderView(self._cid(pos, "tp1"), pos.id, pos.symbol, "tp1", exit_side, q1, "open",
                                 Decimal(str(pos.tp1)), True))
        if pos.qty_open - q1 > 0:
            out.append(OrderView(self._cid(pos, "tp2"), pos.id, pos.symbol, "tp2", exit_side, pos.qty_open - q1,
                                 "open", Decimal(str(pos.tp2)), True))
        return out

    def _open(self, position_id: str) -> Position:
        pos = self.account.positions.get(position_id)
        if pos is None or not pos.is_open:
            raise OrderRejected(f"position {position_id} is not open")
        return pos

    # ------------------------------------------------------------------------------- the port
    def open_position(self, req: OpenRequest) -> OpenResult:
        pid, plan = req.pid, req.plan
        if pid in self.account.positions:
            pos = self.account.positions[pid]
            return OpenResult("skipped", pid, "already executed for this decision time", position=pos,
                              orders=tuple(self._virtual(pos)) if pos.is_open else ())
        nxt = self.price_after(plan.symbol, req.decision_time)
        if nxt is None:
            return OpenResult("not_filled", pid, "no price after the decision time yet; order not placed")
        try:
            pos, fill = self.account.open(plan, nxt[1], nxt[0], position_id=pid, cycle_id=req.cycle_id)
        except OrderRejected as exc:
            return OpenResult("rejected", pid, str(exc))
        if req.extra:
            pos = self.account.positions[pid] = pos.with_(extra={**pos.extra, **req.extra})
        return OpenResult("filled", pid, position=pos, fill=fill, orders=tuple(self._virtual(pos)))

    def move_stop(self, position_id: str, new_stop: Decimal, phase: str | None = None) -> OrderView:
        pos = self._open(position_id)
        new = self.account.update_risk_state(pos.with_(stop=float(new_stop), phase=phase or pos.phase))
        return self._virtual(new)[0]

    def take_partial(self, position_id: str, qty: Decimal, reason: str = "") -> Fill:
        pos = self._open(position_id)
        q = min(Decimal(str(qty)), pos.qty_open)
        ts, px = self._price(pos.symbol)
        fill, _ = self.account.close(position_id, q, px, ts, reason=reason, kind="tp1" if reason == "tp1" else "manual")
        if reason == "tp1":
            self.account.update_risk_state(self.account.get(position_id).with_(tp1_done=True))
        return fill

    def close_position(self, position_id: str, reason: str = "", kind: str = "manual") -> Fill | None:
        pos = self.account.positions.get(position_id)
        if pos is None:
            raise OrderRejected(f"unknown position {position_id}")
        if not pos.is_open:
            return None
        ts, px = self._price(pos.symbol)
        fill, _ = self.account.close(position_id, pos.qty_open, px, ts, reason=reason, kind=kind)
        return fill

    def apply_exit_step(self, result: object) -> list[Fill]:
        """Carry out a risk.exits.StepResult (the monitor's bar-by-bar simulation fills the exits)."""
        return [fill for fill, _ in self.account.apply_exit_step(result)]

    def walk(self, position_id: str, bars: Any, funding: Any, profile: str, atr: Any = None,
             qty_step: Decimal | None = None) -> Walked:
        """Simulate the position on the bars: funding, the exit rules (stop, targets, trailing, stale/time),
        liquidation. Its fills and events are in the account (the caller stores `account_snapshot()`)."""
        n = len(self.account.fills)
        last = advance_position(self.account, self._open(position_id), bars, funding, profile, False, atr, qty_step)
        return Walked(last, tuple(self.account.fills[n:]))

    # ---------------------------------------------------------------- resting orders (a grid's levels)
    @staticmethod
    def _resting_view(o: RestingOrder, state: str = "open") -> OrderView:
        intent = "entry" if not o.reduce_only else ("tp2" if o.type == "limit" else "stop")
        return OrderView(o.id, o.position_id or o.id, o.symbol, intent, o.side, Decimal(o.amount), state,
                         Decimal(str(o.price)) if o.type == "stop_market" else None, o.reduce_only,
                         decision_time=o.created_at,
                         meta={"order_id": o.id, "tag": o.tag,
                               **({"limit_price": str(o.price)} if o.type == "limit" else {})})

    def place_order(self, order: RestingOrder) -> OrderView:
        """The order rests in the paper account until a bar trades through it (exchange/orders.py)."""
        return self._resting_view(self.account.place_order(order))

    def resting_orders(self, symbol: str | None = None) -> list[RestingOrder]:
        return self.account.open_orders(symbol)

    def cancel_order(self, order_id: str, ts: datetime | None = None, reason: str = "canceled") -> OrderView | None:
        o = self.account.cancel_order(order_id, ts or self._now(), reason)
        return None if o is None else self._resting_view(o, "cancelled")

    def cancel(self, client_id: str) -> OrderView:
        raise OrderRejected("paper protective orders follow their position: move the stop or close the position")

    def account_snapshot(self) -> PaperAccount:
        """The paper account itself (the caller stores it with pipeline.account.save_account)."""
        return self.account

    def positions(self) -> list[Position]:
        return self.account.open_positions()

    def open_orders(self) -> list[OrderView]:
        return [o for p in self.account.open_positions() for o in self._virtual(p)]

    def fills(self, since: datetime | None = None) -> list[Fill]:
        return [f for f in self.account.fills if since is None or f.ts >= since]

    def balance(self) -> Balance:
        prices = {}
        for p in self.account.open_positions():
            mark = self._marks(p.symbol) if self._marks else None
            if mark is not None:
                prices[p.symbol] = mark
        unreal = self.account.unrealised(prices)
        return Balance(equity=self.account.equity(prices), free=self.account.balance,
                       margin=self.account.margin_total, unrealised=unreal, fees_paid=self.account.fees_paid,
                       funding_paid=self.account.funding_paid)

    def reconcile(self) -> list[Finding]:
        return []
