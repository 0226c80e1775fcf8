"""Reconciliation as pure functions: the journal's view of positions (`book_positions`) and the
differences between it and the exchange (`diff`), each a Finding with the action the broker takes.

A position in the book is derived from its journal orders only: the entry's fills open it, the fills of
its own reduce-only orders (stop, tp1, tp2, close) shrink it. A fill is attached to the order whose
exchange id it carries, never to a position by symbol.

Actions (the broker executes them, exchange/live_broker.py):
- restore_stop: an open position whose stop is not resting on the exchange → a new stop;
- resize_stop: the stop's quantity differs from what is open (TP1 filled) → replace it;
- cancel: a resting order of ours whose position is closed (an orphan) → cancel it;
- mark_closed: the exchange has no position where the book has one (closed by hand, liquidated) → the
  book closes it; reported;
- none: reported only (a position Quorum did not open is never touched; a size mismatch is reported).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from core.types import Fill, Position, PositionEvent, Side
from exchange.broker import Finding, OrderView

REDUCING = ("stop", "tp1", "tp2", "close")
PROTECTIVE = ("stop", "tp1", "tp2")
ZERO = Decimal(0)


@dataclass(frozen=True)
class BookPosition:
    position_id: str
    symbol: str
    side: Side
    entry_price: Decimal
    qty_initial: Decimal
    qty_open: Decimal
    opened_at: datetime | None
    stop_price: Decimal | None
    tp1: Decimal | None
    tp2: Decimal | None
    leverage: int
    phase: str
    tp1_done: bool
    realised: Decimal
    fees: Decimal
    closed_at: datetime | None
    exit_reason: str | None
    active_stop: OrderView | None
    resting: tuple[OrderView, ...]  # protective orders on (or possibly on) the exchange
    initial_stop: Decimal | None = None
    best_price: Decimal | None = None  # the exit rules' best price so far (trailing), kept in the entry's meta
    liquidation_price: float | None = None
    cycle_id: str | None = None
    extra: Mapping[str, Any] | None = None  # the caller's Position.extra, journalled with the entry
    order_id: str | None = None  # opened by a resting limit order (a grid level): that order's id; its exits
    tag: str = ""  # are its own resting take-profit and stop (the exit rules leave it alone)

    @property
    def is_open(self) -> bool:
        return self.qty_open > 0 and self.closed_at is None


def book_positions(orders: Iterable[OrderView]) -> list[BookPosition]:
    """Positions from journal orders (any order of rows; grouped by position id)."""
    by_pid: dict[str, list[OrderView]] = {}
    for o in orders:
        by_pid.setdefault(o.position_id, []).append(o)
    out = []
    for pid, rows in by_pid.items():
        entry = next((o for o in rows if o.intent == "entry"), None)
        if entry is None or entry.filled <= 0 or entry.avg_price is None:
            continue
        side = Side.LONG if entry.side == "buy" else Side.SHORT
        reducing = sorted((o for o in rows if o.intent in REDUCING and o.filled > 0),
                          key=lambda o: (o.filled_at is None, o.filled_at or datetime.min))
        closed_qty = sum((o.filled for o in reducing), ZERO)
        realised = sum(((o.avg_price or ZERO) - entry.avg_price) * o.filled * side.sign for o in reducing)
        fees = entry.fee + sum((o.fee for o in reducing), ZERO)
        qty_open = max(ZERO, entry.filled - closed_qty)
        stops = sorted((o for o in rows if o.intent == "stop"), key=lambda o: o.seq)
        active = [o for o in stops if o.resting]
        active_stop = active[-1] if active else None
        last_stop = active_stop or (stops[-1] if stops else None)
        meta = entry.meta or {}
        closed_at = None
        exit_reason = None
        if qty_open == 0:
            closed_at = max((o.filled_at for o in reducing if o.filled_at), default=None)
            exit_reason = exit_kind(reducing[-1]) if reducing else None
        if meta.get("closed_external"):
            qty_open, closed_at = ZERO, closed_at or entry.filled_at
            exit_reason = "closed_on_exchange"
        out.append(BookPosition(
            position_id=pid, symbol=entry.symbol, side=side, entry_price=entry.avg_price,
            qty_initial=entry.filled, qty_open=qty_open, opened_at=entry.filled_at,
            stop_price=last_stop.trigger_price if last_stop else _dec(meta.get("stop")),
            tp1=_dec(meta.get("tp1")), tp2=_dec(meta.get("tp2")), leverage=int(meta.get("leverage", 1)),
            phase=str((last_stop.meta or {}).get("phase", "initial")) if last_stop else "initial",
            tp1_done=any(o.intent == "tp1" and o.filled > 0 for o in rows), realised=realised, fees=fees,
            closed_at=closed_at, exit_reason=exit_reason, active_stop=active_stop,
            resting=tuple(o for o in rows if o.intent in PROTECTIVE and o.resting),
            initial_stop=stops[0].trigger_price if stops else _dec(meta.get("stop")),
            best_price=_dec(meta.get("best_price")) or entry.avg_price,
            liquidation_price=float(meta["liquidation_price"]) if meta.get("liquidation_price") else None,
            cycle_id=meta.get("cycle_id"), extra=dict(meta.get("extra") or {}), order_id=meta.get("order_id"),
            tag=str(meta.get("tag", ""))))
    return out


def _dec(x: object) -> Decimal | None:
    return None if x is None else Decimal(str(x))


@dataclass(frozen=True)
class ExchangeOrder:
    client_id: str
    exchange_id: str
    symbol: str
    qty: Decimal
    reduce_only: bool
    trigger_price: Decimal | None = None


def diff(book: Sequence[BookPosition], exchange_positions: Mapping[str, Decimal],
         exchange_open: Sequence[ExchangeOrder], journal: Mapping[str, OrderView]) -> list[Finding]:
    """Findings from the book, the exchange's signed position sizes per symbol and its resting orders.
    `journal` maps client id → journal order (to tell our orders from anybody else's)."""
    findings: list[Finding] = []
    resting_ids = {o.client_id for o in exchange_open}
    open_book = [p for p in book if p.is_open]
    book_by_pid = {p.position_id: p for p in book}
    net: dict[str, Decimal] = {}  # one-way mode: the exchange holds one net position per symbol
    for p in open_book:
        net[p.symbol] = net.get(p.symbol, ZERO) + p.qty_open * p.side.sign
    # positions Quorum holds
    for p in open_book:
        ex = exchange_positions.get(p.symbol, ZERO)
        if ex == 0:
            findings.append(Finding("position_closed_on_exchange", p.symbol,
                                    f"{p.position_id}: the exchange has no {p.symbol} position (closed outside "
                                    f"Quorum or liquidated); closed in the database", p.position_id, "mark_closed",
                                    qty=p.qty_open))
            continue
        if ex != net[p.symbol]:
            total = "" if net[p.symbol] == p.qty_open * p.side.sign else f" (all positions in {p.symbol}: {net[p.symbol]})"
            findings.append(Finding("qty_mismatch", p.symbol, f"{p.position_id}: database {p.side.value} "
                                    f"{p.qty_open}{total}, exchange {ex}", p.position_id, "none", qty=ex))
        stop = p.active_stop
        if stop is None or (stop.state == "open" and stop.client_id not in resting_ids):
            findings.append(Finding("stop_restored", p.symbol, f"{p.position_id}: no stop on the exchange; a new "
                                    f"stop at {p.stop_price} for {p.qty_open} is placed", p.position_id,
                                    "restore_stop", price=p.stop_price, qty=p.qty_open))
        elif stop.qty != p.qty_open:
            findings.append(Finding("stop_resized", p.symbol, f"{p.position_id}: stop for {stop.qty}, open "
                                    f"{p.qty_open}; replaced", p.position_id, "resize_stop",
                                    price=stop.trigger_price, qty=p.qty_open, client_id=stop.client_id))
    # resting orders of ours whose position is gone (orphans)
    for o in exchange_open:
        row = journal.get(o.client_id)
        if row is None:
            continue  # not Quorum's order: left alone
        if row.intent == "entry" and not row.reduce_only:
            continue  # a resting entry (a grid level's limit order): no position yet, none needed
        pos = book_by_pid.get(row.position_id)
        if pos is None or not pos.is_open or exchange_positions.get(o.symbol, ZERO) == 0:
            findings.append(Finding("orphan_cancelled", o.symbol, f"{row.intent} {o.client_id} of closed position "
                                    f"{row.position_id} cancelled", row.position_id, "cancel",
                                    client_id=o.client_id, price=o.trigger_price, qty=o.qty))
    # positions Quorum did not open
    held = {p.symbol for p in open_book}
    for sym, size in sorted(exchange_positions.items()):
        if size != 0 and sym not in held:
            findings.append(Finding("unknown_position", sym, f"{sym}: exchange position {size} that Quorum did "
                                    "not open; left alone (close it with an explicit command)", None, "none",
                                    qty=size))
    return findings


def to_position(b: BookPosition) -> Position:
    entry = float(b.entry_price)
    stop = float(b.stop_price) if b.stop_price is not None else 0.0
    lev = max(1, b.leverage)
    initial = float(b.initial_stop) if b.initial_stop is not None else stop
    liq = b.liquidation_price if b.liquidation_price is not None else entry * (1 - b.side.sign / lev)
    return Position(id=b.position_id, symbol=b.symbol, side=b.side, entry=entry, qty_initial=b.qty_initial,
                    qty_open=b.qty_open, stop=stop, initial_stop=initial, tp1=float(b.tp1 or 0),
                    tp2=float(b.tp2 or 0), leverage=lev, margin=float(b.qty_open * b.entry_price / lev),
                    liquidation_price=liq, opened_at=b.opened_at or datetime.now(UTC),
                    best_price=float(b.best_price) if b.best_price is not None else entry, phase=b.phase,
                    tp1_done=b.tp1_done, realised_pnl=float(b.realised), fees_paid=float(b.fees),
                    closed_at=b.closed_at, exit_reason=b.exit_reason, cycle_id=b.cycle_id,
                    extra={**(b.extra or {}), **({} if b.order_id is None else
                                                {"managed": "orders", "order_id": b.order_id, "tag": b.tag})})


def exit_kind(order: OrderView) -> str:
    """The exit kind of a filled protective order, named as the paper account and the backtest name it:
    a stop by its phase (stop | breakeven_stop | trailing_stop), a target by itself (tp1 | tp2)."""
    if order.intent == "tp2" and (order.meta or {}).get("order_id"):
        return "tp"  # a grid level's take-profit (a resting limit), named as the paper account names it
    if order.intent != "stop":
        return order.intent
    phase = str((order.meta or {}).get("phase", "initial"))
    return {"breakeven": "breakeven_stop", "trailing": "trailing_stop"}.get(phase, "stop")


def protective_exit(book: BookPosition, order: OrderView) -> tuple[Fill, PositionEvent]:
    """The fill and exit event of a protective order the exchange filled (at its price and fee): what the
    paper account records for the same exit (gross P&L of the quantity, R against the initial stop)."""
    kind = exit_kind(order)
    px, qty = order.avg_price or ZERO, order.filled
    ts = order.filled_at or datetime.now(UTC)
    pnl = (px - book.entry_price) * qty * book.side.sign
    risk = abs(book.entry_price - (book.initial_stop or book.entry_price))
    r_mult = 0.0 if risk <= 0 else float((px - book.entry_price) * book.side.sign / risk)
    reason = f"{kind} filled on the exchange ({order.client_id})"
    return (Fill(book.symbol, book.side, "close", qty, px, order.fee, ts, reason=kind),
            PositionEvent(book.position_id, book.symbol, kind, ts, float(px), qty, float(pnl), r_mult, reason))


# ------------------------------------------------------------------------------ live check


def finding_text(f: Finding) -> str:
    """One line for the channel post / Prefect artifact of a reconciliation finding."""
    what = {"protective_filled": "filled on the exchange", "position_closed_on_exchange": "closed on the exchange",
            "stop_restored": "stop restored", "orphan_cancelled": "orphan order cancelled",
            "unknown_position": "position Quorum did not open (left alone)", "qty_mismatch": "size differs",
            "order_resolved": "order in doubt resolved", "stop_resized": "stop resized",
            "resting_filled": "resting limit order filled"}.get(f.kind, f.kind)
    return f"reconcile · {f.symbol} · {what}: {f.detail} [{f.action}]"
