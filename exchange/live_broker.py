"""The ccxt live broker: exchange.broker.Broker over a synchronous ccxt client and the order journal.

    broker = LiveBroker.from_settings(settings, factory)     # keys from QUORUM_EXCHANGE_* or a Secret block
    broker.reconcile()
    broker.open_position(OpenRequest(plan, decision_time=as_of, cycle_id=cid))

Exactly-once orders (`_place`):
1. the intent (deterministic client id, see exchange.broker.client_order_id) is committed to
   `broker_orders` BEFORE anything is sent;      crash points `live:intent-committed[:<intent>]`
2. the order is sent once; the answer (exchange id, state, fills) is committed;
                                                 crash points `live:sent-not-recorded[:<intent>]`
3. an unknown outcome (timeout, 5xx, 429, dropped connection, any unclassified error) is never retried
   blindly: the order is looked up by client id (open, closed, cancelled and trigger orders) and sent
   again, with the SAME client id, only when the exchange shows it does not exist. A duplicate answer
   (Bybit 110072, Binance -4116) is resolved the same way. Reads are retried; writes are not.
4. a row found in doubt after a restart (`intent` / `unknown`) is looked up first, then resolved.

Protective orders are reduce-only conditional market orders sized to the market's precision: the stop for
the whole filled quantity, TP1 for `tp1_fraction` of it and TP2 for the rest (exchange/capabilities.py says
how each exchange takes them). Moving or resizing a stop places the new one before cancelling the old, so
the position is never without a stop. Leverage and the margin mode are set before the first entry of a
symbol ("not modified" answers are fine) and one-way position mode is checked once.

`quorum live check` calls `live_check(settings, plan)`: it connects, shows the account and the market's
rules, and the orders a plan would place, placing nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import ccxt
from sqlalchemy.orm import Session, sessionmaker

from core.errors import ConfigError, ExchangeError, OrderRejected, TransientError
from core.faults import crash_point
from core.types import Fill, Position, Side, TradePlan
from exchange.broker import Balance, Finding, OpenRequest, OpenResult, OrderView, client_order_id
from exchange.capabilities import Capabilities, capabilities_for, classify, protective_params
from exchange.ccxt_errors import retry_reads, translate
from exchange.reconcile import BookPosition, ExchangeOrder, book_positions, diff
from store import orders_journal as journal
from store.db import transaction
from store.models import BrokerOrderRow

log = logging.getLogger("quorum.live")
ZERO = Decimal(0)
CCXT_STATE = {"open": "open", "closed": "filled", "canceled": "cancelled", "cancelled": "cancelled",
              "expired": "cancelled", "rejected": "rejected"}
STALE_ENTRY_S = 2 * 3600  # an entry intent never sent is dropped by reconcile after its decision is this old


def point_api_at(client: Any, base: str) -> None:
    """Send every REST call of a ccxt client to `base` (scheme://host:port), keeping each endpoint's path
    (Binance's `/fapi/v1` prefixes live in the URL, Bybit's in the request path)."""
    base = base.rstrip("/")

    def fix(url: Any) -> Any:
        if isinstance(url, dict):
            return {k: fix(v) for k, v in url.items()}
        if not isinstance(url, str):
            return url
        return base + urlsplit(url.replace("{hostname}", "host")).path.rstrip("/")

    client.urls["api"] = fix(client.urls["api"])


def _credentials(settings: Any) -> dict[str, str]:
    creds: dict[str, str] = {}
    if settings.exchange_secret_block:
        try:
            from prefect.blocks.system import Secret

            value = Secret.load(settings.exchange_secret_block).get()
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(f"QUORUM_EXCHANGE_SECRET_BLOCK={settings.exchange_secret_block!r}: cannot load the "
                              f"Prefect Secret block ({type(exc).__name__})") from None
        if not isinstance(value, dict):
            raise ConfigError(f"Prefect Secret block {settings.exchange_secret_block!r} must hold JSON with "
                              "api_key, secret (and password)")
        creds = {k: str(value[k]) for k in ("api_key", "secret", "password") if value.get(k)}
    for name in ("api_key", "secret", "password"):
        v = getattr(settings, f"exchange_{name}")
        if v is not None and v.get_secret_value():
            creds[name] = v.get_secret_value()
    return creds


def build_client(settings: Any) -> Any:
    """A ccxt client for live trading; ConfigError naming what is missing (never echoing a key)."""
    if settings.mode != "live" or not settings.live_trading_confirmed:
        raise ConfigError("live trading needs QUORUM_MODE=live and QUORUM_LIVE_TRADING_CONFIRMED=true")
    caps = capabilities_for(settings.exchange)
    creds = _credentials(settings)
    missing = [f"QUORUM_EXCHANGE_{k.upper()}" for k in ("api_key", "secret") if not creds.get(k)]
    if caps.needs_password and not creds.get("password"):
        missing.append("QUORUM_EXCHANGE_PASSWORD")
    if missing:
        raise ConfigError(f"live trading on {settings.exchange} needs {', '.join(missing)} (or "
                          "QUORUM_EXCHANGE_SECRET_BLOCK naming a Prefect Secret block)")
    cfg: dict[str, Any] = {"apiKey": creds["api_key"], "secret": creds["secret"], "enableRateLimit": True,
                           "timeout": settings.exchange_timeout_ms, "options": dict(caps.options)}
    if creds.get("password"):
        cfg["password"] = creds["password"]
    client = getattr(ccxt, settings.exchange)(cfg)
    if settings.exchange_sandbox:
        client.set_sandbox_mode(True)
    if settings.exchange_api_base:
        point_api_at(client, settings.exchange_api_base)
    return client


@dataclass(frozen=True)
class _Spec:
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


class LiveBroker:
    name = "live"

    def __init__(self, client: Any, factory: sessionmaker[Session], *, account: str = "live",
                 caps: Capabilities | None = None, max_order_notional: Decimal | float | None = None,
                 max_orders_per_cycle: int | None = None, margin_mode: str = "isolated", read_attempts: int = 3,
                 read_delay: float = 0.2, send_attempts: int = 3, sleep: Callable[[float], None] = time.sleep,
                 stale_entry_s: float = STALE_ENTRY_S):
        self.client = client
        self.factory = factory
        self.account = account
        self.exchange_id: str = client.id
        self.caps = caps or capabilities_for(client.id)
        self.max_order_notional = None if max_order_notional is None else Decimal(str(max_order_notional))
        self.max_orders_per_cycle = max_orders_per_cycle
        self.margin_mode = margin_mode
        self.read_attempts, self.read_delay, self.send_attempts = read_attempts, read_delay, send_attempts
        self._sleep = sleep
        self.stale_entry_s = stale_entry_s
        self._prepared: set[str] = set()
        self._mode_checked = False

    @classmethod
    def from_settings(cls, settings: Any, factory: sessionmaker[Session], client: Any = None) -> LiveBroker:
        return cls(client if client is not None else build_client(settings), factory,
                   account=settings.live_account, max_order_notional=settings.max_order_notional_usd,
                   max_orders_per_cycle=settings.max_orders_per_cycle, margin_mode=settings.live_margin_mode)

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

    def _cid(self, decision_time: datetime, symbol: str, intent: str, seq: int) -> str:
        return client_order_id(self.account, decision_time, symbol, intent, seq, max_len=self.caps.client_id_max,
                               style=self.caps.client_id_style)

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

    # ------------------------------------------------------------------------ account setup
    def check_position_mode(self) -> None:
        """One-way position mode is required (one position per symbol); ConfigError otherwise."""
        if self._mode_checked:
            return
        hedged = False
        if self.caps.position_mode == "fetch_position_mode":
            hedged = bool(self._read("fetch_position_mode", lambda: self.client.fetch_position_mode()).get("hedged"))
        elif self.caps.position_mode == "positions_idx":
            rows = self._read("fetch_positions", lambda: self.client.fetch_positions())
            hedged = any(str((r.get("info") or {}).get("positionIdx", "0")) not in ("0", "") for r in rows)
        if hedged:
            raise ConfigError(f"{self.exchange_id}: the account is in hedge (two-way) position mode; Quorum needs "
                              "one-way mode: switch it in the exchange's settings")
        self._mode_checked = True

    def _setting_write(self, what: str, fn: Callable[[], Any]) -> str:
        """leverage / margin mode: idempotent settings, so retried; 'not modified' is success."""
        for attempt in range(1, self.read_attempts + 1):
            try:
                fn()
                return "set"
            except ccxt.BaseError as exc:
                kind = classify(exc, self.caps)
                if kind == "not_modified" or "not modified" in str(exc).lower() or "no need to change" in \
                        str(exc).lower():
                    return "unchanged"
                if kind == "unknown" and attempt < self.read_attempts:
                    self._sleep(self.read_delay * attempt)
                    continue
                raise translate(exc, self.exchange_id) from exc
        return "unknown"

    def prepare(self, symbol: str, leverage: int) -> dict[str, str]:
        self.check_position_mode()
        out = {"margin_mode": self._setting_write(
            "set_margin_mode", lambda: self.client.set_margin_mode(self.margin_mode, symbol))}
        out["leverage"] = self._setting_write("set_leverage", lambda: self.client.set_leverage(leverage, symbol))
        self._prepared.add(f"{symbol}:{leverage}")
        return out

    # ----------------------------------------------------------------------- exactly-once
    def _place(self, spec: _Spec) -> OrderView:
        cid = self._cid(spec.decision_time, spec.symbol, spec.intent, spec.seq)

        def rec(s: Session) -> tuple[OrderView, bool]:
            row, created = journal.record_intent(
                s, client_id=cid, account=self.account, exchange=self.exchange_id, position_id=spec.position_id,
                symbol=spec.symbol, intent=spec.intent, seq=spec.seq, side=spec.side, qty=spec.qty,
                decision_time=spec.decision_time, trigger_price=spec.trigger, reduce_only=spec.reduce_only,
                meta=spec.meta)
            return _view(row), created

        view, created = self._tx(rec)
        if created:
            crash_point("live:intent-committed")
            crash_point(f"live:intent-committed:{spec.intent}")
        if view.state not in journal.IN_DOUBT:
            return view  # known outcome: never sent again
        if not created:
            found = self._lookup(view)
            if found is not None:
                return self._record(view, found)
        return self._send(view)

    def _order_params(self, view: OrderView) -> tuple[str, dict[str, Any]]:
        params: dict[str, Any] = {"clientOrderId": view.client_id}
        if view.reduce_only:
            params["reduceOnly"] = self.caps.reduce_only_value
        if view.trigger_price is not None:
            pos_side = Side.LONG if view.side == "sell" else Side.SHORT
            kind = "stop" if view.intent == "stop" else "tp"
            params.update(protective_params(self.caps, pos_side, kind, str(view.trigger_price)))
        return "market", params

    def _send(self, view: OrderView) -> OrderView:
        typ, params = self._order_params(view)
        price = None
        last: BaseException | None = None
        for attempt in range(1, self.send_attempts + 1):
            self._update(view.client_id, attempts=attempt)
            if self.caps.market_order_needs_price:
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
                found = self._lookup(view)
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
                full = self._lookup(replace(view, exchange_id=oid))
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

    # ------------------------------------------------------------------------ the port
    def open_position(self, req: OpenRequest) -> OpenResult:
        plan, pid, sym = req.plan, req.pid, req.plan.symbol
        entry_cid = self._cid(req.decision_time, sym, "entry", 0)
        prior = self._tx(lambda s: journal.get(s, entry_cid))
        if prior is not None and prior.state not in journal.IN_DOUBT:
            if prior.state == "filled":
                self._protect(pid)
            return OpenResult("skipped", pid, f"already executed for this decision time ({prior.state})",
                              position=self.position(pid), orders=tuple(self._orders_of(pid)))
        qty = self.qty_to_precision(sym, plan.qty)
        if qty <= 0 or qty < self.min_qty(sym):
            return OpenResult("rejected", pid, f"{sym}: quantity {plan.qty} is below the market minimum")
        if prior is None:
            notional = qty * Decimal(str(plan.entry))
            if self.max_order_notional is not None and notional > self.max_order_notional:
                return OpenResult("rejected", pid, f"{sym}: notional {notional:.2f} exceeds the per-order cap "
                                                   f"{self.max_order_notional} (QUORUM_MAX_ORDER_NOTIONAL_USD)")
            if self.max_orders_per_cycle is not None:
                n = self._tx(lambda s: journal.entries_for_decision(s, self.account, req.decision_time))
                if n >= self.max_orders_per_cycle:
                    return OpenResult("rejected", pid, f"{sym}: {n} entries already placed for this decision time "
                                                       f"(QUORUM_MAX_ORDERS_PER_CYCLE={self.max_orders_per_cycle})")
        self.prepare(sym, plan.leverage)
        meta = {"stop": str(plan.stop), "tp1": str(plan.tp1), "tp2": str(plan.tp2), "leverage": plan.leverage,
                "tp1_fraction": plan.tp1_fraction, "cycle_id": req.cycle_id, "plan_entry": plan.entry,
                "liquidation_price": plan.liquidation_price, "reason": plan.reason[:200]}
        try:
            entry = self._place(_Spec(pid, sym, "entry", 0, "buy" if plan.side is Side.LONG else "sell", qty,
                                      req.decision_time, meta=meta))
        except OrderRejected as exc:
            return OpenResult("rejected", pid, str(exc))
        if entry.state != "filled":
            return OpenResult("not_filled", pid, f"entry {entry.client_id} is {entry.state}",
                              orders=tuple(self._orders_of(pid)))
        self._protect(pid)
        pos = self.position(pid)
        fill = Fill(sym, plan.side, "open", entry.filled, entry.avg_price or ZERO, entry.fee,
                    entry.filled_at or datetime.now(UTC), reason=plan.reason[:200])
        return OpenResult("filled", pid, position=pos, fill=fill, orders=tuple(self._orders_of(pid)))

    def _orders_of(self, pid: str) -> list[OrderView]:
        return self._tx(lambda s: [_view(r) for r in journal.for_position(s, self.account, pid)])

    def _book(self, pid: str) -> BookPosition | None:
        return next((b for b in book_positions(self._orders_of(pid)) if b.position_id == pid), None)

    def _protect(self, pid: str) -> None:
        """Place whatever protective order of the position is missing (stop first). Idempotent."""
        rows = self._orders_of(pid)
        book = self._book(pid)
        if book is None or not book.is_open:
            return
        entry = next(o for o in rows if o.intent == "entry")
        exit_side = "sell" if book.side is Side.LONG else "buy"
        meta = entry.meta
        dt = entry.decision_time or datetime.now(UTC)
        if not any(o.intent == "stop" for o in rows):
            self._place(_Spec(pid, book.symbol, "stop", 0, exit_side, book.qty_open, dt,
                              self.price_to_precision(book.symbol, Decimal(meta["stop"])), True, {"phase": "initial"}))
        q1 = self.qty_to_precision(book.symbol, entry.filled * Decimal(str(meta.get("tp1_fraction", 0.5))))
        if q1 < self.min_qty(book.symbol) or q1 >= entry.filled:
            q1 = ZERO
        q2 = entry.filled - q1
        if q1 > 0 and not any(o.intent == "tp1" for o in rows):
            self._place(_Spec(pid, book.symbol, "tp1", 0, exit_side, q1, dt,
                              self.price_to_precision(book.symbol, Decimal(meta["tp1"])), True))
        if not any(o.intent == "tp2" for o in rows):
            self._place(_Spec(pid, book.symbol, "tp2", 0, exit_side, q2, dt,
                              self.price_to_precision(book.symbol, Decimal(meta["tp2"])), True))

    def _replace_stop(self, book: BookPosition, price: Decimal, qty: Decimal, phase: str) -> OrderView:
        """A new stop first, then cancel the old one: never a moment without a stop."""
        old = book.active_stop
        seq = self._tx(lambda s: journal.next_seq(s, self.account, book.position_id, "stop"))
        dt = self._orders_of(book.position_id)[0].decision_time or datetime.now(UTC)
        new = self._place(_Spec(book.position_id, book.symbol, "stop", seq, "sell" if book.side is Side.LONG
                                else "buy", qty, dt, self.price_to_precision(book.symbol, price), True,
                                {"phase": phase}))
        if new.state != "open":
            raise ExchangeError(f"{book.position_id}: new stop {new.client_id} is {new.state}; the old stop stays")
        if old is not None:
            self.cancel(old.client_id)
        return new

    def move_stop(self, position_id: str, new_stop: Decimal, phase: str | None = None) -> OrderView:
        book = self._book(position_id)
        if book is None or not book.is_open:
            raise OrderRejected(f"position {position_id} is not open")
        return self._replace_stop(book, Decimal(str(new_stop)), book.qty_open, phase or book.phase)

    def _reduce(self, book: BookPosition, qty: Decimal, reason: str) -> OrderView:
        seq = self._tx(lambda s: journal.next_seq(s, self.account, book.position_id, "close"))
        dt = self._orders_of(book.position_id)[0].decision_time or datetime.now(UTC)
        return self._place(_Spec(book.position_id, book.symbol, "close", seq,
                                 "sell" if book.side is Side.LONG else "buy", qty, dt, None, True,
                                 {"reason": reason[:200]}))

    def take_partial(self, position_id: str, qty: Decimal, reason: str = "") -> Fill:
        book = self._book(position_id)
        if book is None or not book.is_open:
            raise OrderRejected(f"position {position_id} is not open")
        q = min(self.qty_to_precision(book.symbol, Decimal(str(qty))), book.qty_open)
        if q <= 0:
            raise OrderRejected(f"{position_id}: partial quantity {qty} rounds to zero")
        done = self._reduce(book, q, reason)
        after = self._book(position_id)
        if after is not None and after.is_open and after.active_stop is not None:
            self._replace_stop(after, after.active_stop.trigger_price or after.stop_price or ZERO, after.qty_open,
                               after.phase)
        if reason == "tp1":
            for o in (after.resting if after else ()):
                if o.intent == "tp1":
                    self.cancel(o.client_id)
        return Fill(book.symbol, book.side, "close", done.filled, done.avg_price or ZERO, done.fee,
                    done.filled_at or datetime.now(UTC), reason)

    def close_position(self, position_id: str, reason: str = "") -> Fill | None:
        book = self._book(position_id)
        if book is None:
            raise OrderRejected(f"unknown position {position_id}")
        fill = None
        if book.is_open:
            done = self._reduce(book, book.qty_open, reason)
            fill = Fill(book.symbol, book.side, "close", done.filled, done.avg_price or ZERO, done.fee,
                        done.filled_at or datetime.now(UTC), reason)
        after = self._book(position_id)
        for o in (after.resting if after else ()):
            self.cancel(o.client_id)
        return fill

    def cancel(self, client_id: str) -> OrderView:
        row = self._tx(lambda s: journal.get(s, client_id))
        if row is None:
            raise OrderRejected(f"unknown order {client_id}")
        view = _view(row)
        if view.state in journal.IN_DOUBT:
            found = self._lookup(view)
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
                found = self._lookup(view)  # not found / unknown: the exchange says what happened
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

    # ---------------------------------------------------------------------------- reads
    def position(self, position_id: str) -> Position | None:
        book = self._book(position_id)
        return None if book is None else to_position(book)

    def positions(self) -> list[Position]:
        return [to_position(b) for b in book_positions(self.journal()) if b.is_open]

    def all_positions(self) -> list[Position]:
        return [to_position(b) for b in book_positions(self.journal())]

    def open_orders(self) -> list[OrderView]:
        return [o for o in self.journal() if o.state == "open"]

    def fills(self, since: datetime | None = None) -> list[Fill]:
        rows = self.journal()
        by_cid = {o.client_id: o for o in rows}
        entry_side = {o.position_id: (Side.LONG if o.side == "buy" else Side.SHORT) for o in rows
                      if o.intent == "entry"}

        def get(s: Session) -> list[Fill]:
            out = []
            for f in journal.fills_of(s, self.account):
                if since is not None and f.ts < since:
                    continue
                o = by_cid[f.client_id]
                out.append(Fill(f.symbol, entry_side.get(o.position_id, Side.LONG),
                                "open" if o.intent == "entry" else "close", Decimal(f.qty), Decimal(f.price),
                                Decimal(f.fee), f.ts, reason=o.intent))
            return out

        return self._tx(get)

    def exchange_positions(self, symbols: Sequence[str] | None = None) -> dict[str, Decimal]:
        rows = self._read("fetch_positions", lambda: self.client.fetch_positions(list(symbols) if symbols else None))
        out: dict[str, Decimal] = {}
        for r in rows:
            size = _d(r.get("contracts")) * _d(r.get("contractSize") or 1)
            if size == 0:
                continue
            out[r["symbol"]] = out.get(r["symbol"], ZERO) + (size if r.get("side") == "long" else -size)
        return out

    def balance(self) -> Balance:
        b = self._read("fetch_balance", lambda: self.client.fetch_balance())
        cur = "USDT" if "USDT" in (b.get("total") or {}) else next(iter(b.get("total") or {"USDT": 0}))
        total, free, used = (_d((b.get(k) or {}).get(cur)) for k in ("total", "free", "used"))
        rows = self._read("fetch_positions", lambda: self.client.fetch_positions())
        unreal = sum((_d(r.get("unrealizedPnl")) for r in rows), ZERO)
        fees = self._tx(lambda s: sum((Decimal(f.fee) for f in journal.fills_of(s, self.account)), ZERO))
        funding = ZERO
        if self.client.has.get("fetchFundingHistory"):
            try:
                hist = self._read("fetch_funding_history", lambda: self.client.fetch_funding_history())
                funding = -sum((_d(h.get("amount")) for h in hist), ZERO)
            except Exception as exc:  # noqa: BLE001 - funding is informative; the balance already holds it
                log.info("funding history unavailable: %s", exc)
        return Balance(equity=total + unreal, free=free, margin=used, unrealised=unreal, fees_paid=fees,
                       funding_paid=funding, currency=cur)

    def _exchange_open(self, symbols: Sequence[str]) -> list[ExchangeOrder]:
        out = []
        for sym in symbols:
            lists = [self._read("fetch_open_orders", lambda sym=sym: self.client.fetch_open_orders(sym))]
            if self.caps.list_protective:
                lists.append(self._read("fetch_open_orders", lambda sym=sym: self.client.fetch_open_orders(
                    sym, None, None, dict(self.caps.list_protective))))
            seen = set()
            for rows in lists:
                for r in rows:
                    if r["id"] in seen:
                        continue
                    seen.add(r["id"])
                    out.append(ExchangeOrder(str(r.get("clientOrderId") or ""), str(r["id"]), r["symbol"],
                                             _d(r.get("amount")), bool(r.get("reduceOnly")),
                                             _d(r.get("triggerPrice")) or None))
        return out

    # ------------------------------------------------------------------------ reconcile
    def reconcile(self) -> list[Finding]:
        """Bring the journal in line with the exchange and return what differed (an event each)."""
        findings: list[Finding] = []
        now = datetime.now(UTC)
        # 1. orders in doubt (a crash or a lost answer): the exchange says what happened
        for view in self._tx(lambda s: [_view(r) for r in journal.in_doubt(s, self.account)]):
            found = self._lookup(view)
            if found is not None:
                rec = self._record(view, found)
                findings.append(Finding("order_resolved", view.symbol, f"{view.intent} {view.client_id} was "
                                        f"{rec.state} on the exchange", view.position_id, "recorded",
                                        client_id=view.client_id))
            elif view.intent == "entry":
                age = (now - (view.decision_time or now)).total_seconds()
                if age > self.stale_entry_s:
                    self._update(view.client_id, state="cancelled", last_error="never reached the exchange")
                    findings.append(Finding("order_resolved", view.symbol, f"entry {view.client_id} never reached "
                                            "the exchange; dropped", view.position_id, "dropped",
                                            client_id=view.client_id))
            else:
                self._update(view.client_id, state="cancelled", last_error="never reached the exchange")
                if view.intent == "close":
                    book = self._book(view.position_id)
                    if book is not None and book.is_open:
                        self._reduce(book, book.qty_open, "close resent by reconciliation")
        # 2. resting orders that are no longer open on the exchange (filled / cancelled while we were away)
        symbols = sorted({o.symbol for o in self.journal() if o.state == "open"}
                         | {b.symbol for b in book_positions(self.journal()) if b.is_open})
        ex_pos = self.exchange_positions()
        symbols = sorted(set(symbols) | set(ex_pos))
        ex_open = self._exchange_open(symbols)
        resting = {o.client_id for o in ex_open}
        for view in self.journal():
            if view.state == "open" and view.client_id not in resting:
                found = self._lookup(view)
                rec = self._record(view, found) if found is not None else self._update(
                    view.client_id, state="cancelled", last_error="gone from the exchange")
                if rec.state == "filled" and rec.intent in ("stop", "tp1", "tp2"):
                    findings.append(Finding("protective_filled", rec.symbol, f"{rec.intent} of {rec.position_id} "
                                            f"filled on the exchange: {rec.filled} @ {rec.avg_price} (fee {rec.fee})",
                                            rec.position_id, "recorded", price=rec.avg_price, qty=rec.filled,
                                            fee=rec.fee, client_id=rec.client_id))
        # 3. the pure comparison, then its actions
        journal_map = {o.client_id: o for o in self.journal()}
        book = book_positions(journal_map.values())
        for f in diff(book, ex_pos, self._exchange_open(symbols), journal_map):
            findings.append(self._act(f, {b.position_id: b for b in book}))
        return findings

    def _act(self, f: Finding, book: dict[str, BookPosition]) -> Finding:
        try:
            if f.action == "cancel" and f.client_id:
                self.cancel(f.client_id)
            elif f.action in ("restore_stop", "resize_stop") and f.position_id:
                b = book[f.position_id]
                price = f.price if f.price is not None else b.stop_price
                if price is None:
                    return replace(f, action="failed", detail=f.detail + "; no stop price known")
                self._replace_stop(b, price, b.qty_open, b.phase)
            elif f.action == "mark_closed" and f.position_id:
                entry = next(o for o in self._orders_of(f.position_id) if o.intent == "entry")
                self._update(entry.client_id, meta={**entry.meta, "closed_external": True})
                for o in book[f.position_id].resting:
                    self.cancel(o.client_id)
        except Exception as exc:  # noqa: BLE001 - a failed action is a finding too; the next run retries
            log.warning("reconcile action %s failed: %s", f.action, exc)
            return replace(f, action=f"failed: {type(exc).__name__}")
        return f


def to_position(b: BookPosition) -> Position:
    entry = float(b.entry_price)
    stop = float(b.stop_price) if b.stop_price is not None else 0.0
    lev = max(1, b.leverage)
    return Position(id=b.position_id, symbol=b.symbol, side=b.side, entry=entry, qty_initial=b.qty_initial,
                    qty_open=b.qty_open, stop=stop, initial_stop=stop, tp1=float(b.tp1 or 0), tp2=float(b.tp2 or 0),
                    leverage=lev, margin=float(b.qty_open * b.entry_price / lev),
                    liquidation_price=entry * (1 - b.side.sign / lev), opened_at=b.opened_at or datetime.now(UTC),
                    best_price=entry, phase=b.phase, tp1_done=b.tp1_done, realised_pnl=float(b.realised),
                    fees_paid=float(b.fees), closed_at=b.closed_at, exit_reason=b.exit_reason)


# ------------------------------------------------------------------------------ live check
def planned_orders(broker: LiveBroker, plan: TradePlan, decision_time: datetime) -> list[dict[str, str]]:
    """The orders `open_position` would place for `plan` (nothing is sent)."""
    sym = plan.symbol
    qty = broker.qty_to_precision(sym, plan.qty)
    exit_side = "sell" if plan.side is Side.LONG else "buy"
    q1 = broker.qty_to_precision(sym, qty * Decimal(str(plan.tp1_fraction)))
    if q1 < broker.min_qty(sym) or q1 >= qty:
        q1 = ZERO
    rows = [("entry", "buy" if plan.side is Side.LONG else "sell", qty, None),
            ("stop", exit_side, qty, plan.stop), ("tp1", exit_side, q1, plan.tp1), ("tp2", exit_side, qty - q1, plan.tp2)]
    out = []
    for intent, side, q, px in rows:
        if q <= 0:
            continue
        out.append({"intent": intent, "side": side, "qty": str(q),
                    "trigger": "" if px is None else str(broker.price_to_precision(sym, px)),
                    "reduce_only": str(intent != "entry").lower(),
                    "client_id": broker._cid(decision_time, sym, intent, 0)})
    return out


def live_check(settings: Any, factory: sessionmaker[Session], plans: Sequence[TradePlan] = (),
               symbols: Sequence[str] = (), client: Any = None, now: datetime | None = None) -> dict[str, Any]:
    """`quorum live check`: connect, show the account, each market's rules, the leverage and margin mode that
    would be set and the orders the given plans would place. Places nothing, changes no setting."""
    broker = LiveBroker.from_settings(settings, factory, client=client)
    now = now or datetime.now(UTC)
    markets = broker.markets()
    bal = broker.balance()
    hedged = None
    try:
        broker.check_position_mode()
        hedged = False
    except ConfigError:
        hedged = True
    rules = {}
    for sym in sorted(set(symbols) | {p.symbol for p in plans}):
        m = markets.get(sym)
        if m is None:
            rules[sym] = {"error": "not listed on this exchange"}
            continue
        lim = m.get("limits") or {}
        rules[sym] = {"qty_step": str((m.get("precision") or {}).get("amount")),
                      "price_tick": str((m.get("precision") or {}).get("price")),
                      "min_qty": str((lim.get("amount") or {}).get("min")),
                      "min_notional": str((lim.get("cost") or {}).get("min")),
                      "max_leverage": str((lim.get("leverage") or {}).get("max"))}
    return {
        "exchange": broker.exchange_id, "account": broker.account,
        "balance": {k: str(getattr(bal, k)) for k in ("equity", "free", "margin", "unrealised", "fees_paid",
                                                       "funding_paid", "currency")},
        "position_mode": "hedge (NOT supported: switch to one-way)" if hedged else "one-way",
        "margin_mode_to_set": broker.margin_mode,
        "markets": rules,
        "exchange_positions": {k: str(v) for k, v in broker.exchange_positions().items()},
        "plans": [{"symbol": p.symbol, "side": p.side.value, "leverage_to_set": p.leverage,
                   "orders": planned_orders(broker, p, now)} for p in plans],
        "caps": {"max_order_notional_usd": str(broker.max_order_notional),
                 "max_orders_per_cycle": broker.max_orders_per_cycle},
    }


