"""Exactly-once orders: the live broker's client-order-id journal logic (`OrderDesk`).

1. the intent (deterministic client id, see exchange.broker.client_order_id) is committed to
   `broker_orders` BEFORE anything is sent;      crash points `live:intent-committed[:<intent>]`
2. the order is sent once; the answer (exchange id, state, fills) is committed;
                                                 crash points `live:sent-not-recorded[:<intent>]`
3. an unknown outcome (timeout, 5xx, 429, dropped connection, any unclassified error) is never retried
   blindly: the order is looked up by client id (open, closed, cancelled and trigger orders) and sent
   again, with the SAME client id, only when the exchange shows it does not exist. A duplicate answer
   (Bybit 110072, Binance -4116) is resolved the same way. Reads are retried; writes are not.
4. a row found in doubt after a restart (`intent` / `unknown`) is looked up first, then resolved.
Cancels are idempotent and may be repeated; a cancel that fails is looked up too (the order may have
filled meanwhile: then its fill is recorded).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import ccxt
from sqlalchemy.orm import Session, sessionmaker

from core.errors import ExchangeError, OrderRejected, TransientError
from core.faults import crash_point
from core.types import Side
from exchange.broker import OrderView, client_order_id, position_id_for
from exchange.capabilities import Capabilities, capabilities_for, classify, protective_params
from exchange.ccxt_errors import retry_reads, translate
from store import orders_journal as journal
from store.db import transaction
from store.models import BrokerOrderRow

log = logging.getLogger("quorum.live")
ZERO = Decimal(0)
CCXT_STATE = {"open": "open", "closed": "filled", "canceled": "cancelled", "cancelled": "cancelled",
              "expired": "cancelled", "rejected": "rejected"}


@dataclass(frozen=True)
class OrderSpec:
    position_id: str
    symbol: str
    intent: str
    seq: int
    side: str
    qty: Decimal
    decision_time: datetime
    trigger: Decimal | None = None
    reduce_only: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """What tells this order's client id apart beyond (account, decision time, symbol, intent, seq): the
        position id when it is not the one a decision gives (`position_id_for`), e.g. one grid level of
        several placed at the same decision time; empty for a trend position (its ids are unchanged)."""
        return "" if self.position_id == position_id_for(self.symbol, self.decision_time) else self.position_id


def limit_price(view: OrderView) -> Decimal | None:
    """A resting limit order's price (kept in the journal row's meta), or None for a market / conditional one."""
    lp = (view.meta or {}).get("limit_price")
    return None if lp in (None, "") else Decimal(str(lp))


def _view(row: BrokerOrderRow) -> OrderView:
    return OrderView(client_id=row.client_id, position_id=row.position_id, symbol=row.symbol, intent=row.intent,
                     side=row.side, qty=Decimal(row.qty), state=row.state,
                     trigger_price=None if row.trigger_price is None else Decimal(row.trigger_price),
                     reduce_only=row.reduce_only, exchange_id=row.exchange_order_id, filled=Decimal(row.filled),
                     avg_price=None if row.avg_price is None else Decimal(row.avg_price), fee=Decimal(row.fee),
                     seq=row.seq, decision_time=row.decision_time, filled_at=row.filled_at,
                     meta=dict(row.meta or {}))


def _d(x: Any) -> Decimal:
    return ZERO if x is None or x == "" else Decimal(str(x))


class OrderDesk:
    """Exactly-once orders over a ccxt client and the order-intent journal (see the module docstring)."""

    # the live safety caps (LiveBroker sets them from settings); None: no cap
    max_order_notional: Decimal | None = None
    max_orders_per_cycle: int | None = None

    def __init__(self, client: Any, factory: sessionmaker[Session], *, account: str = "live",
                 caps: Capabilities | None = None, read_attempts: int = 3, read_delay: float = 0.2,
                 send_attempts: int = 3, sleep: Callable[[float], None] = time.sleep, absent_checks: int = 2,
                 absent_wait_s: float = 1.0, margin_mode: str = "isolated"):
        self.client = client
        self.margin_mode = margin_mode
        self.factory = factory
        self.account = account
        self.exchange_id: str = client.id
        self.caps = caps or capabilities_for(client.id)
        self.read_attempts, self.read_delay, self.send_attempts = read_attempts, read_delay, send_attempts
        self._sleep = sleep
        # an order accepted a moment ago may not show in queries yet: "absent" is believed only after
        # `absent_checks` more lookups `absent_wait_s` apart
        self.absent_checks, self.absent_wait_s = absent_checks, absent_wait_s
        self.orders_written = 0  # new order intents journalled since the run began (the per-cycle cap)

    def cap_refusal(self, symbol: str, notional: Decimal, need: int, what: str) -> str | None:
        """Why the safety caps refuse a new opening order (`what`: entry, level) of `notional` that makes this
        run write `need` more orders (it and the protective orders it brings), or None when they allow it."""
        if self.max_order_notional is not None and notional > self.max_order_notional:
            return (f"{symbol}: notional {notional:.2f} exceeds the per-order cap {self.max_order_notional} "
                    "(QUORUM_MAX_ORDER_NOTIONAL_USD)")
        if self.max_orders_per_cycle is not None and self.orders_written + need > self.max_orders_per_cycle:
            return (f"{symbol}: this {what} needs {need} order{'s' * (need != 1)} and this run has written "
                    f"{self.orders_written} "
                    f"(QUORUM_MAX_ORDERS_PER_CYCLE={self.max_orders_per_cycle}); no new {what} this cycle")
        return None

    # ------------------------------------------------------------------------------ plumbing
    def _read(self, what: str, fn: Callable[[], Any]) -> Any:
        """A read, retried on transient errors (ccxt errors translated to Quorum's)."""
        return retry_reads(fn, self.read_attempts, self.read_delay, sleep=self._sleep,
                           what=f"{self.exchange_id} {what}")

    def _tx(self, fn: Callable[[Session], Any]) -> Any:
        with transaction(self.factory) as s:
            return fn(s)

    def _update(self, cid: str, **fields: Any) -> OrderView:
        return self._tx(lambda s: _view(journal.update(s, cid, **fields)))

    def journal(self) -> list[OrderView]:
        return self._tx(lambda s: [_view(r) for r in journal.all_orders(s, self.account)])

    def _cid(self, decision_time: datetime, symbol: str, intent: str, seq: int, key: str = "") -> str:
        return client_order_id(self.account, decision_time, symbol, intent, seq, max_len=self.caps.client_id_max,
                               style=self.caps.client_id_style, key=key)

    def markets(self) -> dict[str, Any]:
        if not self.client.markets:
            self._read("load_markets", self.client.load_markets)
        return self.client.markets

    def qty_to_precision(self, symbol: str, qty: Decimal) -> Decimal:
        self.markets()
        return Decimal(self.client.amount_to_precision(symbol, str(qty)))  # ccxt truncates to the step

    def price_to_precision(self, symbol: str, price: Decimal | float) -> Decimal:
        self.markets()
        return Decimal(self.client.price_to_precision(symbol, str(price)))

    def min_qty(self, symbol: str) -> Decimal:
        m = self.markets()[symbol]
        return _d(((m.get("limits") or {}).get("amount") or {}).get("min")) or ZERO

    # ----------------------------------------------------------------------- exactly-once
    def _place(self, spec: OrderSpec) -> OrderView:
        cid = self._cid(spec.decision_time, spec.symbol, spec.intent, spec.seq, spec.key)

        def rec(s: Session) -> tuple[OrderView, bool]:
            row, created = journal.record_intent(
                s, client_id=cid, account=self.account, exchange=self.exchange_id, position_id=spec.position_id,
                symbol=spec.symbol, intent=spec.intent, seq=spec.seq, side=spec.side, qty=spec.qty,
                decision_time=spec.decision_time, trigger_price=spec.trigger, reduce_only=spec.reduce_only,
                meta=spec.meta)
            return _view(row), created

        view, created = self._tx(rec)
        if created:
            self.orders_written += 1
            crash_point("live:intent-committed")
            crash_point(f"live:intent-committed:{spec.intent}")
        if view.state not in journal.IN_DOUBT:
            return view  # known outcome: never sent again
        if not created:
            found = self._lookup_settled(view)
            if found is not None:
                return self._record(view, found)
        return self._send(view)

    def _order_params(self, view: OrderView) -> tuple[str, dict[str, Any]]:
        params: dict[str, Any] = {"clientOrderId": view.client_id}
        if view.reduce_only:
            params["reduceOnly"] = self.caps.reduce_only_value
        if self.caps.margin_mode_per_order:
            params["marginMode"] = self.margin_mode
        if limit_price(view) is not None:  # a resting limit order (a grid level, its take-profit)
            if (view.meta or {}).get("post_only"):
                params["postOnly"] = True
            return "limit", params
        if view.trigger_price is not None:
            pos_side = Side.LONG if view.side == "sell" else Side.SHORT
            kind = "stop" if view.intent == "stop" else "tp"
            params.update(protective_params(self.caps, pos_side, kind, str(view.trigger_price)))
        return "market", params

    def _send(self, view: OrderView) -> OrderView:
        typ, params = self._order_params(view)
        lp = limit_price(view)
        price = None if lp is None else float(lp)
        last: BaseException | None = None
        for attempt in range(1, self.send_attempts + 1):
            self._update(view.client_id, attempts=attempt)
            if self.caps.market_order_needs_price and lp is None:
                price = float(self._read("fetch_ticker", lambda: self.client.fetch_ticker(view.symbol))["last"])
            try:
                answer = self.client.create_order(view.symbol, typ, view.side, float(view.qty), price, dict(params))
            except ccxt.BaseError as exc:
                kind = classify(exc, self.caps)
                msg = " ".join(str(exc).split())[:300]
                if kind == "rejected":
                    self._update(view.client_id, state="rejected", last_error=msg)
                    raise OrderRejected(f"{self.exchange_id}: {view.intent} {view.symbol} rejected: {msg}") from exc
                if kind == "auth":
                    raise translate(exc, self.exchange_id) from exc
                # unknown outcome or duplicate id: look it up before anything else
                self._update(view.client_id, state="unknown", last_error=f"{kind}: {msg}")
                log.warning("%s %s: outcome unknown (%s); looking it up by client id", view.intent, view.client_id,
                            kind)
                found = self._lookup_settled(view)
                if found is not None:
                    return self._record(view, found)
                if kind == "duplicate":
                    raise ExchangeError(f"{self.exchange_id}: {view.client_id} refused as a duplicate but not found; "
                                        "left unknown for reconciliation") from exc
                last = exc
                self._sleep(self.read_delay * attempt)
                continue  # the exchange shows it does not exist: send again (same client id)
            crash_point("live:sent-not-recorded")
            crash_point(f"live:sent-not-recorded:{view.intent}")
            return self._record(view, answer)
        raise TransientError(f"{self.exchange_id}: {view.intent} {view.client_id} not placed after "
                             f"{self.send_attempts} attempts (the exchange has no such order): {last}")

    def _lookup_settled(self, view: OrderView) -> dict | None:
        """`_lookup`, believing "absent" only after `absent_checks` more looks (exchanges can show an order a
        moment after accepting it; resending on the first miss could double it on Binance)."""
        found = self._lookup(view)
        for _ in range(self.absent_checks):
            if found is not None:
                break
            self._sleep(self.absent_wait_s)
            found = self._lookup(view)
        return found

    def _lookup(self, view: OrderView) -> dict | None:
        """The exchange's order with this client id, or None when it shows none (reads retried)."""
        cid = view.client_id
        trig = self.caps.conditional_params if view.trigger_price is not None else {}
        sym = view.symbol
        if self.caps.lookup == "bybit_link_id":
            q = {"orderLinkId": cid, **trig}
            for fn in (self.client.fetch_open_orders, self.client.fetch_canceled_and_closed_orders):
                rows = self._read("lookup", lambda fn=fn: fn(sym, None, None, dict(q)))
                hit = [r for r in rows if r.get("clientOrderId") == cid]
                if hit:
                    return hit[0]
            return None
        if self.caps.lookup == "fetch_order":
            def one() -> dict | None:
                try:
                    return self.client.fetch_order(None, sym, {"clientOrderId": cid, **trig})
                except ccxt.BaseError as exc:
                    if classify(exc, self.caps) == "not_found":
                        return None
                    raise
            return self._read("lookup", one)
        for fn in (self.client.fetch_open_orders, self.client.fetch_closed_orders):
            rows = self._read("lookup", lambda fn=fn: fn(sym, None, None, dict(trig)))
            hit = [r for r in rows if r.get("clientOrderId") == cid]
            if hit:
                return hit[0]
        return None

    def _record(self, view: OrderView, order: dict) -> OrderView:
        """Commit the exchange's answer; fills come from the trades carrying this order's id."""
        oid = str(order.get("id") or view.exchange_id or "")
        state = CCXT_STATE.get(str(order.get("status") or ""), None)
        if state is None:  # Bybit answers a create with the ids only
            if view.trigger_price is None:
                full = self._lookup_settled(replace(view, exchange_id=oid))
                if full is not None:
                    order, state = full, CCXT_STATE.get(str(full.get("status")), "open")
            state = state or "open"
        fields: dict[str, Any] = {"exchange_order_id": oid or None, "state": state}
        if state == "filled" or _d(order.get("filled")) > 0:
            fills = self._trades_of(view, oid)
            qty = sum((t["qty"] for t in fills), ZERO) or _d(order.get("filled"))
            fee = sum((t["fee"] for t in fills), ZERO)
            value = sum((t["qty"] * t["price"] for t in fills), ZERO)
            avg = (value / qty) if fills and qty else _d(order.get("average")) or None
            last_ts = max((t["ts"] for t in fills), default=None)
            if not fills and order.get("lastTradeTimestamp") or order.get("timestamp"):
                last_ts = last_ts or datetime.fromtimestamp(
                    (order.get("lastTradeTimestamp") or order["timestamp"]) / 1000, tz=UTC)
            fields.update(filled=qty, avg_price=avg, fee=fee, filled_at=last_ts or datetime.now(UTC))

            def store(s: Session) -> OrderView:
                for t in fills:
                    journal.add_fill(s, account=self.account, client_id=view.client_id, exchange_order_id=oid,
                                     symbol=view.symbol, side=view.side, **t)
                return _view(journal.update(s, view.client_id, **fields))

            return self._tx(store)
        return self._update(view.client_id, **fields)

    def _trades_of(self, view: OrderView, oid: str) -> list[dict[str, Any]]:
        if not oid:
            return []
        rows = self._read("fetch_my_trades", lambda: self.client.fetch_my_trades(view.symbol, None, None,
                                                                                  {"orderId": oid}))
        out = []
        for t in rows:
            if str(t.get("order")) != oid:  # attached only to the order it belongs to
                continue
            fee = (t.get("fee") or {}).get("cost")
            out.append({"trade_id": str(t["id"]), "qty": _d(t["amount"]), "price": _d(t["price"]), "fee": _d(fee),
                        "ts": datetime.fromtimestamp(t["timestamp"] / 1000, tz=UTC)})
        return out

    def cancel(self, client_id: str) -> OrderView:
        row = self._tx(lambda s: journal.get(s, client_id))
        if row is None:
            raise OrderRejected(f"unknown order {client_id}")
        view = _view(row)
        if view.state in journal.IN_DOUBT:
            found = self._lookup_settled(view)
            if found is None:
                return self._update(client_id, state="cancelled", last_error="never reached the exchange")
            view = self._record(view, found)
        if view.state != "open":
            return view
        params = dict(self.caps.conditional_params) if view.trigger_price is not None else {}
        last: BaseException | None = None
        for attempt in range(1, self.send_attempts + 1):  # a cancel is idempotent: safe to repeat
            try:
                answer = self.client.cancel_order(view.exchange_id, view.symbol, dict(params))
            except ccxt.BaseError as exc:
                kind = classify(exc, self.caps)
                if kind == "auth":
                    raise translate(exc, self.exchange_id) from exc
                found = self._lookup_settled(view)  # not found / unknown: the exchange says what happened
                if found is None:
                    return self._update(client_id, state="cancelled", last_error=f"cancel: {kind}")
                rec = self._record(view, found)
                if rec.state != "open":
                    return rec
                last = exc
                self._sleep(self.read_delay * attempt)
                continue
            status = CCXT_STATE.get(str(answer.get("status") or ""), "cancelled")
            return self._update(client_id, state="cancelled" if status in ("open", "cancelled") else status)
        raise TransientError(f"{self.exchange_id}: cancel of {client_id} failed {self.send_attempts} times; still "
                             f"open ({last})")
