"""The broker port: one execution interface for the paper account and the ccxt live broker.

Nothing outside the two implementations (exchange/paper_broker.py, exchange/live_broker.py) knows which
one it holds. Money and quantities are Decimal.

How the cycle, the monitor and the CLI call it (the wiring the lead does after the layout refactor):

    broker = build_broker(settings, factory, source)          # exchange/paper_broker.py | live_broker.py
    broker.reconcile()                                        # start of every cycle / monitor run / `quorum reconcile`
    res = broker.open_position(OpenRequest(plan, decision_time=as_of, cycle_id=cid))
    #   res.status: filled | skipped (this decision already executed) | rejected | not_filled
    broker.move_stop(pid, new_stop, phase="breakeven")        # place-new-then-cancel-old (never unprotected)
    broker.take_partial(pid, qty, reason="tp1")               # reduce-only; the stop shrinks to what is left
    broker.close_position(pid, reason="manual exit")          # reduce-only close, then cancel its protective orders
    broker.apply_exit_step(risk.exits.step(pos, bar, profile))  # moved stop, stale/time/news exits
    w = broker.walk(pid, bars, funding, profile)              # the monitor: a position through its new bars
    broker.positions(); broker.open_orders(); broker.fills(); broker.balance()
    broker.place_order(resting_order); broker.resting_orders(symbol); broker.cancel_order(order_id)  # grid levels

Exactly-once: every order a broker sends has a deterministic client id (`client_order_id`), derived from
what caused it (account, decision time, symbol, intent, sequence); calling `open_position` again with the
same plan and decision time never places a second entry.

`reconcile()` returns `Finding`s (an event each: the caller stores it, posts it to the channel and
publishes it as a Prefect artifact). The paper broker has nothing to reconcile and returns [].
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, Protocol, runtime_checkable

from core.types import Fill, Position, PositionEvent, RestingOrder, TradePlan

Intent = Literal["entry", "stop", "tp1", "tp2", "close"]
INTENT_CODES: dict[str, str] = {"entry": "E", "stop": "S", "tp1": "T", "tp2": "U", "close": "X"}
CLIENT_ID_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:/-")


def position_id_for(symbol: str, decision_time: datetime) -> str:
    """The id of the position a decision opens (the same in paper and live)."""
    return f"{symbol.split('/')[0]}-{decision_time:%Y%m%d%H%M}"


def client_order_id(account: str, decision_time: datetime, symbol: str, intent: str, seq: int = 0,
                    *, max_len: int = 36, style: str = "text", key: str = "") -> str:
    """Deterministic client order id for (account, decision time, symbol, intent, sequence).

    style "text": `q<yymmddHHMM><BASE≤6><intent code><seq>-<hash8>` (≤ 30 chars, `^[.A-Z:/a-z0-9_-]{1,36}$`,
    fits Bybit orderLinkId ≤ 36 and Binance newClientOrderId ≤ 36); the hash covers every part, so two
    accounts or two symbols with the same base never collide. style "alnum": the same without the dash (OKX
clOrdId). style "hex128": `0x` + 32 hex digits
    (Hyperliquid's cloid). `key`, when given, is hashed too: what tells apart orders of the same intent,
    decision time and symbol (one grid level of several, by its order id).
    """
    parts = f"{account}|{decision_time.isoformat()}|{symbol}|{intent}|{seq}" + (f"|{key}" if key else "")
    digest = hashlib.sha256(parts.encode()).hexdigest()
    if style == "hex128":
        return "0x" + digest[:32]
    base = "".join(ch for ch in symbol.split("/")[0] if ch.isalnum())[:6].upper()
    code = INTENT_CODES.get(intent, intent[:1].upper())
    cid = f"q{decision_time:%y%m%d%H%M}{base}{code}{seq}-{digest[:8]}"
    if style == "alnum":
        cid = cid.replace("-", "")
    if len(cid) > max_len:
        cid = f"q{code}{seq}-{digest[: max(8, max_len - 4 - len(str(seq)))]}"[:max_len]
    assert set(cid) <= CLIENT_ID_CHARS, cid
    return cid


@dataclass(frozen=True)
class OpenRequest:
    plan: TradePlan
    decision_time: datetime
    cycle_id: str | None = None
    position_id: str | None = None  # default: position_id_for(plan.symbol, decision_time)
    # what the caller keeps with the position (Position.extra, e.g. the entry post's key): the paper broker
    # puts it on the position, the live broker journals it with the entry so a position rebuilt from the
    # exchange keeps it
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> str:
        return self.position_id or position_id_for(self.plan.symbol, self.decision_time)


@dataclass(frozen=True)
class OrderView:
    """One order as the broker knows it (journal row joined with the exchange's answer)."""

    client_id: str
    position_id: str
    symbol: str
    intent: str
    side: str  # buy | sell
    qty: Decimal
    state: str  # intent | open | filled | cancelled | rejected | unknown
    trigger_price: Decimal | None = None
    reduce_only: bool = False
    exchange_id: str | None = None
    filled: Decimal = Decimal(0)
    avg_price: Decimal | None = None
    fee: Decimal = Decimal(0)
    seq: int = 0
    decision_time: datetime | None = None
    filled_at: datetime | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def resting(self) -> bool:
        """On the exchange or possibly on it (sent, answer unknown)."""
        return self.state in ("open", "intent", "unknown")


@dataclass(frozen=True)
class OpenResult:
    status: Literal["filled", "skipped", "rejected", "not_filled"]
    position_id: str
    note: str = ""
    position: Position | None = None
    fill: Fill | None = None
    orders: tuple[OrderView, ...] = ()


@dataclass(frozen=True)
class Balance:
    equity: Decimal
    free: Decimal
    margin: Decimal
    unrealised: Decimal = Decimal(0)
    fees_paid: Decimal = Decimal(0)
    funding_paid: Decimal = Decimal(0)  # positive = paid
    currency: str = "USDT"


@dataclass(frozen=True)
class Finding:
    """One difference between the exchange and the database, and what the broker did about it."""

    kind: Literal["protective_filled", "position_closed_on_exchange", "stop_restored", "orphan_cancelled",
                  "unknown_position", "qty_mismatch", "order_resolved", "stop_resized", "resting_filled"]
    symbol: str
    detail: str
    position_id: str | None = None
    action: str = "none"
    price: Decimal | None = None
    qty: Decimal | None = None
    fee: Decimal | None = None
    client_id: str | None = None
    data: dict[str, str] = field(default_factory=dict)
    # a stop or target the exchange filled (kind protective_filled): the exit as the paper account would
    # record it (the fill at the exchange's price and fee, the exit event named stop | breakeven_stop |
    # trailing_stop | tp1 | tp2), so the caller stores and posts it like any exit
    fill: Fill | None = None
    event: PositionEvent | None = None


@dataclass(frozen=True)
class Walked:
    """What `Broker.walk` did to one position: the close time of the last bar applied, the fills it made
    (the caller stores them as orders + fills rows) and the events the broker's account snapshot does not
    hold itself (the caller stores them and posts them with the snapshot's)."""

    last: datetime | None
    fills: tuple[Fill, ...] = ()
    events: tuple[PositionEvent, ...] = ()


@runtime_checkable
class Broker(Protocol):
    name: str

    def open_position(self, req: OpenRequest) -> OpenResult:
        """Enter `req.plan` and place its stop-loss, TP1 (partial) and TP2 as reduce-only orders."""
        ...

    def move_stop(self, position_id: str, new_stop: Decimal, phase: str | None = None) -> OrderView:
        """Replace the stop; the position is never without one."""
        ...

    def take_partial(self, position_id: str, qty: Decimal, reason: str = "") -> Fill:
        """Reduce-only close of `qty`; the stop shrinks to the quantity left."""
        ...

    def close_position(self, position_id: str, reason: str = "", kind: str = "manual") -> Fill | None:
        """Reduce-only close of what is left, then cancel the position's protective orders (`kind`: the
        exit's kind for the records, e.g. manual | news)."""
        ...

    def apply_exit_step(self, result: Any) -> list[Fill]:
        """Carry out what the exit rules decided (risk.exits.StepResult): moved stop, partial or full exits."""
        ...

    def walk(self, position_id: str, bars: Any, funding: Any, profile: str, atr: Any = None,
             qty_step: Decimal | None = None) -> Walked:
        """Bring an open position through `bars` (hourly, indexed by open time; `funding` a series of rates
        by funding time; `atr` the 1h ATR per bar) under the exit rules of `profile`. The paper broker
        simulates everything on the bars (funding, stop, targets, trailing, liquidation); the live broker
        carries out the stop moves and stale/time exits the rules decide and leaves the resting stop and
        targets to the exchange (reconcile() records their fills). The caller never needs to know which."""
        ...

    def cancel(self, client_id: str) -> OrderView:
        ...

    def place_order(self, order: RestingOrder) -> OrderView:
        """Rest an opening limit order (a grid level) with its stop and take-profit, placed when it fills
        (paper: exchange/orders.py fills it on the bars; live: exchange/live_resting.py, post-only, the
        fill found by reconcile())."""
        ...

    def resting_orders(self, symbol: str | None = None) -> list[RestingOrder]:
        """The resting orders (entries, and the take-profits and stops of the positions they opened)."""
        ...

    def cancel_order(self, order_id: str, ts: datetime | None = None, reason: str = "canceled") -> OrderView | None:
        """Cancel the resting order with this RestingOrder id; None when none rests."""
        ...

    def positions(self) -> list[Position]:
        """Open positions as Quorum knows them (after the last reconciliation)."""
        ...

    def open_orders(self) -> list[OrderView]:
        ...

    def fills(self, since: datetime | None = None) -> list[Fill]:
        ...

    def balance(self) -> Balance:
        ...

    def reconcile(self) -> list[Finding]:
        ...

    def account_snapshot(self) -> Any:
        """The account in the shape the pipeline stores and the risk manager reads (exchange.paper.PaperAccount):
        the paper broker's own account; the live broker's positions and balance as the exchange has them."""
        ...
