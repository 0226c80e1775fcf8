"""`quorum live check`: connect, show the account, each market's rules, the leverage and margin mode that would
be set and the orders given plans would place. Places nothing and changes no setting."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from core.errors import ConfigError
from core.types import Side, TradePlan
from exchange.broker import OrderView, position_id_for
from exchange.live_broker import LiveBroker

ZERO = Decimal(0)


ORDER_TYPE = {"entry": "market", "stop": "stop_market", "tp1": "take_profit_market", "tp2": "take_profit_market"}


def planned_orders(broker: LiveBroker, plan: TradePlan, decision_time: datetime) -> list[dict[str, Any]]:
    """The orders `open_position` would place for `plan`, as the broker would send them (nothing is sent):
    quantities and triggers at the market's precision, the exact `create_order` arguments the exchange's
    capability entry gives (exchange/capabilities.py), and each order's notional."""
    sym = plan.symbol
    qty = broker.qty_to_precision(sym, plan.qty)
    exit_side = "sell" if plan.side is Side.LONG else "buy"
    q1 = broker.tp1_qty(sym, qty, plan.tp1_fraction)
    rows = [("entry", "buy" if plan.side is Side.LONG else "sell", qty, None),
            ("stop", exit_side, qty, plan.stop), ("tp1", exit_side, q1, plan.tp1), ("tp2", exit_side, qty - q1, plan.tp2)]
    pid = position_id_for(sym, decision_time)
    out: list[dict[str, Any]] = []
    for intent, side, q, px in rows:
        if q <= 0:
            continue
        trigger = None if px is None else broker.price_to_precision(sym, px)
        view = OrderView(broker._cid(decision_time, sym, intent, 0), pid, sym, intent, side, q, "intent", trigger,
                         intent != "entry")
        typ, params = broker._order_params(view)
        price = trigger if trigger is not None else broker.price_to_precision(sym, plan.entry)
        out.append({"intent": intent, "side": side, "type": ORDER_TYPE[intent], "qty": str(q),
                    "trigger": "" if trigger is None else str(trigger),
                    "price": "market" if trigger is None else f"market when {trigger} trades",
                    "reduce_only": view.reduce_only, "notional": str((q * price).quantize(Decimal("0.01"))),
                    "client_id": view.client_id,
                    "create_order": {"type": typ, "side": side, "amount": str(q), "params": params}})
    return out


def live_check(settings: Any, factory: sessionmaker[Session], plans: Sequence[TradePlan] = (),
               symbols: Sequence[str] = (), client: Any = None, now: datetime | None = None,
               broker: Any = None) -> dict[str, Any]:
    """`quorum live check`: connect, show the account, each market's rules, the leverage and margin mode that
    would be set and the orders the given plans would place (`quorum live check` gives it the plans the next
    cycle's decision stages approve: pipeline/preview.py). Places nothing, changes no setting; `broker`: the
    process's live broker (else one is built from settings, over `client`)."""
    broker = broker if broker is not None else LiveBroker.from_settings(settings, factory, client=client)
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
                   "margin_mode_to_set": broker.margin_mode, "risk_usd": round(p.risk_usd, 2),
                   "orders": (orders := planned_orders(broker, p, now)),
                   "orders_needed": len(orders)} for p in plans],
        "caps": {"max_order_notional_usd": str(broker.max_order_notional),
                 "max_orders_per_cycle": broker.max_orders_per_cycle},
    }
