"""The ccxt live broker: exchange.broker.Broker over a synchronous ccxt client and the order journal.

    broker = LiveBroker.from_settings(settings, factory)     # keys from QUORUM_EXCHANGE_* or a Secret block
    broker.reconcile()
    broker.open_position(OpenRequest(plan, decision_time=as_of, cycle_id=cid))

Exactly-once orders come from exchange/live_orders.py (`OrderDesk`, which this class extends): every order is an
intent in the journal before it is sent, an unknown outcome is looked up by client id before anything is
resent, reads are retried and writes never blindly. Positions are derived from the journal
(exchange/reconcile.py `book_positions`): the entry's fills open them, their own reduce-only orders' fills
shrink them.

Protective orders are reduce-only conditional market orders sized to the market's precision: the stop for
the whole filled quantity, TP1 for `tp1_fraction` of it and TP2 for the rest (exchange/capabilities.py says
how each exchange takes them). Moving or resizing a stop places the new one before cancelling the old, so
the position is never without a stop. Leverage and the margin mode are set before the first entry of a
symbol ("not modified" answers are fine) and one-way position mode is checked once.

`quorum live check` calls exchange.live_check.live_check(settings, factory, plans): it connects, shows the
account and the market rules, and the orders a plan would place, placing nothing.

Wiring (for the cycle / monitor / CLI): build it with `LiveBroker.from_settings(settings, factory)` when
settings.mode == "live" (build_client raises one ConfigError unless QUORUM_MODE=live,
QUORUM_LIVE_TRADING_CONFIRMED=true and keys are set); call `reconcile()` at the start of each cycle and
monitor run and store each Finding as an event / channel post / artifact; mirror `all_positions()` into the
positions table for the dashboard and the risk manager, and `balance()` for equity, free balance and margin.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import ccxt
from sqlalchemy.orm import Session, sessionmaker

from core.errors import ConfigError, ExchangeError, OrderRejected
from core.types import Fill, Position, Side
from exchange.broker import Balance, Finding, OpenRequest, OpenResult, OrderView, Walked
from exchange.capabilities import Capabilities, classify
from exchange.ccxt_errors import translate
from exchange.live_client import build_client, point_api_at
from exchange.live_orders import OrderSpec, _d, _view
from exchange.live_resting import RestingDesk
from exchange.paper import PaperAccount, _Ledger
from exchange.reconcile import (
    EXIT_RECORDED,
    BookPosition,
    ExchangeOrder,
    book_positions,
    diff,
    protective_exit,
    to_position,
    unrecorded_exits,
)
from exchange.walk import follow_on_exchange
from risk.exits import RESTING_EXITS
from store import orders_journal as journal

log = logging.getLogger("quorum.live")
ZERO = Decimal(0)
STALE_ENTRY_S = 2 * 3600  # an entry intent never sent is dropped by reconcile after its decision is this old
__all__ = ["LiveBroker", "build_client", "point_api_at"]


class LiveBroker(RestingDesk):  # RestingDesk: resting limit orders (grid levels), on top of OrderDesk
    name = "live"

    def __init__(self, client: Any, factory: sessionmaker[Session], *, account: str = "live",
                 caps: Capabilities | None = None, max_order_notional: Decimal | float | None = None,
                 max_orders_per_cycle: int | None = None, margin_mode: str = "isolated", read_attempts: int = 3,
                 read_delay: float = 0.2, send_attempts: int = 3, sleep: Callable[[float], None] = time.sleep,
                 stale_entry_s: float = STALE_ENTRY_S):
        super().__init__(client, factory, account=account, caps=caps, read_attempts=read_attempts,
                         read_delay=read_delay, send_attempts=send_attempts, sleep=sleep, margin_mode=margin_mode)
        self.max_order_notional = None if max_order_notional is None else Decimal(str(max_order_notional))
        self.max_orders_per_cycle = max_orders_per_cycle
        self.stale_entry_s = stale_entry_s
        self._prepared: set[str] = set()
        self._mode_checked = False

    @classmethod
    def from_settings(cls, settings: Any, factory: sessionmaker[Session], client: Any = None) -> LiveBroker:
        return cls(client if client is not None else build_client(settings), factory,
                   account=settings.live_account, max_order_notional=settings.max_order_notional_usd,
                   max_orders_per_cycle=settings.max_orders_per_cycle, margin_mode=settings.live_margin_mode)

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
        extra_m = {"lever": leverage} if self.caps.margin_mode_per_order else {}
        extra_l = {"marginMode": self.margin_mode} if self.caps.margin_mode_per_order else {}
        out = {"margin_mode": self._setting_write(
            "set_margin_mode", lambda: self.client.set_margin_mode(self.margin_mode, symbol, dict(extra_m)))}
        out["leverage"] = self._setting_write(
            "set_leverage", lambda: self.client.set_leverage(leverage, symbol, dict(extra_l)))
        self._prepared.add(f"{symbol}:{leverage}")
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
            refused = self.cap_refusal(sym, qty * Decimal(str(plan.entry)),
                                       self.orders_needed(sym, qty, plan.tp1_fraction), "entry")
            if refused:
                return OpenResult("rejected", pid, refused)
        self.prepare(sym, plan.leverage)
        meta = {"stop": str(plan.stop), "tp1": str(plan.tp1), "tp2": str(plan.tp2), "leverage": plan.leverage,
                "tp1_fraction": plan.tp1_fraction, "cycle_id": req.cycle_id, "plan_entry": plan.entry,
                "liquidation_price": plan.liquidation_price, "reason": plan.reason[:200],
                "extra": dict(req.extra)}
        try:
            entry = self._place(OrderSpec(pid, sym, "entry", 0, "buy" if plan.side is Side.LONG else "sell", qty,
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

    def tp1_qty(self, symbol: str, qty: Decimal, fraction: float) -> Decimal:
        """TP1's share of `qty` at the market's step; zero (no TP1 order, TP2 takes all) when it rounds below
        the market's minimum or to the whole quantity."""
        q1 = self.qty_to_precision(symbol, qty * Decimal(str(fraction)))
        return ZERO if q1 < self.min_qty(symbol) or q1 >= qty else q1

    def orders_needed(self, symbol: str, qty: Decimal, tp1_fraction: float) -> int:
        """Orders an entry of `qty` writes: the entry, its stop, TP1 (unless it rounds away) and TP2."""
        return 3 + (1 if self.tp1_qty(symbol, qty, tp1_fraction) > 0 else 0)

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
            self._place(OrderSpec(pid, book.symbol, "stop", 0, exit_side, book.qty_open, dt,
                              self.price_to_precision(book.symbol, Decimal(meta["stop"])), True, {"phase": "initial"}))
        q1 = self.tp1_qty(book.symbol, entry.filled, meta.get("tp1_fraction", 0.5))
        q2 = entry.filled - q1
        if q1 > 0 and not any(o.intent == "tp1" for o in rows):
            self._place(OrderSpec(pid, book.symbol, "tp1", 0, exit_side, q1, dt,
                              self.price_to_precision(book.symbol, Decimal(meta["tp1"])), True))
        if not any(o.intent == "tp2" for o in rows):
            self._place(OrderSpec(pid, book.symbol, "tp2", 0, exit_side, q2, dt,
                              self.price_to_precision(book.symbol, Decimal(meta["tp2"])), True))

    def _replace_stop(self, book: BookPosition, price: Decimal, qty: Decimal, phase: str) -> OrderView:
        """A new stop first, then cancel the old one: never a moment without a stop."""
        old = book.active_stop
        seq = self._tx(lambda s: journal.next_seq(s, self.account, book.position_id, "stop"))
        dt = self._orders_of(book.position_id)[0].decision_time or datetime.now(UTC)
        new = self._place(OrderSpec(book.position_id, book.symbol, "stop", seq, "sell" if book.side is Side.LONG
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
        return self._place(OrderSpec(book.position_id, book.symbol, "close", seq,
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

    def close_position(self, position_id: str, reason: str = "", kind: str = "manual") -> Fill | None:
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

    def record_best_price(self, position_id: str, best: Decimal) -> None:
        """Keep the exit rules' best price (trailing) in the entry's journal meta; it only ever improves."""
        book = self._book(position_id)
        if book is None:
            return
        entry = next(o for o in self._orders_of(position_id) if o.intent == "entry")
        cur = book.best_price
        better = cur is None or (best > cur if book.side is Side.LONG else best < cur)
        if better:
            self._update(entry.client_id, meta={**entry.meta, "best_price": str(best)})

    def apply_exit_step(self, result: Any) -> list[Fill]:
        """Carry out a risk.exits.StepResult on the exchange: exits the rules decided that are not resting
        orders (stale, time, news, manual) close at market; stop / TP1 / TP2 rest on the exchange, which
        fills them (reconcile records the fill); a moved stop is replaced (never unprotected). A stop moved
        through the current price is refused by the exchange: the position is closed at market instead."""
        new_pos, _events, orders = result
        fills: list[Fill] = []
        for o in orders:
            if o.kind in RESTING_EXITS:  # the stop (in any phase) and the targets rest on the exchange
                continue
            book = self._book(o.position_id)
            if book is None or not book.is_open:
                break
            if Decimal(str(o.qty)) < book.qty_open:
                fills.append(self.take_partial(o.position_id, Decimal(str(o.qty)), o.kind))
            else:
                f = self.close_position(o.position_id, f"{o.kind}: {o.reason}"[:200])
                if f is not None:
                    fills.append(f)
        book = self._book(new_pos.id)
        if book is None or not book.is_open:
            return fills
        self.record_best_price(new_pos.id, Decimal(str(new_pos.best_price)))
        new_stop = self.price_to_precision(book.symbol, new_pos.stop)
        if book.stop_price is None or new_stop != book.stop_price:
            try:
                self.move_stop(new_pos.id, new_stop, new_pos.phase)
            except OrderRejected as exc:
                log.warning("%s: stop %s refused (%s); closing at market", new_pos.id, new_stop, exc)
                f = self.close_position(new_pos.id, f"stop {new_stop} already crossed")
                if f is not None:
                    fills.append(f)
        return fills

    def walk(self, position_id: str, bars: Any, funding: Any, profile: str, atr: Any = None,
             qty_step: Decimal | None = None) -> Walked:
        """The exit rules on each new bar; the stop moves and stale/time exits they decide are placed here,
        the stop and targets rest on the exchange (funding is the exchange's: reconcile and balance read it)."""
        pos = self.position(position_id)
        if pos is None or not pos.is_open:
            return Walked(None)
        last, fills, moved = follow_on_exchange(self, pos, bars, profile, atr, qty_step)
        return Walked(last, tuple(fills), tuple(moved))

    # ---------------------------------------------------------------------------- reads
    def position(self, position_id: str) -> Position | None:
        book = self._book(position_id)
        return None if book is None else to_position(book)

    def positions(self) -> list[Position]:
        return [to_position(b) for b in book_positions(self.journal()) if b.is_open]

    def account_snapshot(self) -> PaperAccount:
        """The account as the exchange has it, in the shape the pipeline stores and the risk manager reads:
        the journal's positions (open and closed), the exchange's wallet balance (equity less unrealised)
        less the open positions' margin as the free balance, so `equity(marks)` = wallet + unrealised at
        marks; fees and funding from the exchange. Read fresh on every access."""
        bal = self.balance()
        acct = PaperAccount(starting_balance=bal.equity, balance=ZERO)
        for p in self.all_positions():
            acct.positions[p.id] = p
            if p.is_open:
                acct._open[p.id] = None
                acct._ledger[p.id] = _Ledger(Decimal(str(p.entry)), Decimal(str(p.margin)),
                                             Decimal(str(p.realised_pnl)), Decimal(str(p.fees_paid)))
        acct.balance = bal.equity - bal.unrealised - acct.margin_total
        acct.realised_pnl = sum((Decimal(str(p.realised_pnl)) for p in acct.positions.values()), ZERO)
        acct.fees_paid, acct.funding_paid = bal.fees_paid, bal.funding_paid
        return acct

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
                total_amount = sum((_d(h.get("amount")) for h in hist), ZERO)
                funding = total_amount if self.caps.funding_amount_is_paid else -total_amount
            except Exception as exc:  # noqa: BLE001 - funding is informative; the balance already holds it
                log.info("funding history unavailable: %s", exc)
        return Balance(equity=total if self.caps.total_includes_unrealised else total + unreal, free=free, margin=used, unrealised=unreal, fees_paid=fees,
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
        """Bring the journal in line with the exchange and return what differed (an event each). Every cycle
        and monitor run begins here, so this is where a run's count of written orders starts again (the
        per-cycle cap counts the orders reconciliation itself writes too)."""
        self.orders_written = 0
        findings: list[Finding] = []
        now = datetime.now(UTC)
        # 1. orders in doubt (a crash or a lost answer): the exchange says what happened
        for view in self._tx(lambda s: [_view(r) for r in journal.in_doubt(s, self.account)]):
            found = self._lookup_settled(view)
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
                if found is not None:
                    self._record(view, found)
                else:
                    self._update(view.client_id, state="cancelled", last_error="gone from the exchange")
        # every protective fill whose exit the caller has not stored (exits_recorded): the ones just recorded,
        # and any a crash left between the journal's commit and the caller's, reported again until stored
        rows = self.journal()
        books = {b.position_id: b for b in book_positions(rows)}
        for rec in unrecorded_exits(rows):
            if rec.position_id in books:
                fill, event = protective_exit(books[rec.position_id], rec)
                findings.append(Finding("protective_filled", rec.symbol, f"{event.kind} of {rec.position_id} "
                                        f"filled on the exchange: {rec.filled} @ {rec.avg_price} (fee {rec.fee})",
                                        rec.position_id, "recorded", price=rec.avg_price, qty=rec.filled,
                                        fee=rec.fee, client_id=rec.client_id, fill=fill, event=event))
        # 2b. resting limit entries that filled (grid levels): their stop and take-profit are placed
        findings += self.reconcile_resting()
        # 3. the pure comparison, then its actions
        journal_map = {o.client_id: o for o in self.journal()}
        book = book_positions(journal_map.values())
        for f in diff(book, ex_pos, self._exchange_open(symbols), journal_map):
            findings.append(self._act(f, {b.position_id: b for b in book}))
        return findings

    def exits_recorded(self, session: Session, findings: Sequence[Finding]) -> None:
        """The caller stored the exits of these `protective_filled` findings in `session`, its open transaction:
        their journal rows are marked in that same transaction, so a fill is reported again by the next
        reconciliation exactly when the process died before its exit was committed."""
        for f in findings:
            row = journal.get(session, f.client_id) if f.kind == "protective_filled" and f.client_id else None
            if row is not None and row.account == self.account and not (row.meta or {}).get(EXIT_RECORDED):
                journal.update(session, f.client_id, meta={**(row.meta or {}), EXIT_RECORDED: True})

    def _act(self, f: Finding, book: dict[str, BookPosition]) -> Finding:
        try:
            if f.action == "cancel" and f.client_id:
                self.cancel(f.client_id)
            elif f.action in ("restore_stop", "resize_stop") and f.position_id:
                b = book[f.position_id]
                price = f.price if f.price is not None else b.stop_price
                if price is None:
                    return replace(f, action="failed", detail=f.detail + "; no stop price known")
                try:
                    self._replace_stop(b, price, b.qty_open, b.phase)
                except OrderRejected as exc:  # the price is already through the stop: it would have fired
                    self.close_position(b.position_id, f"stop {price} already crossed while unprotected")
                    return replace(f, action="closed_at_market", detail=f"{f.detail}; refused ({exc}); closed at "
                                                                        "market instead")
            elif f.action == "mark_closed" and f.position_id:
                entry = next(o for o in self._orders_of(f.position_id) if o.intent == "entry")
                self._update(entry.client_id, meta={**entry.meta, "closed_external": True})
                for o in book[f.position_id].resting:
                    self.cancel(o.client_id)
        except Exception as exc:  # noqa: BLE001 - a failed action is a finding too; the next run retries
            log.warning("reconcile action %s failed: %s", f.action, exc)
            return replace(f, action=f"failed: {type(exc).__name__}")
        return f
