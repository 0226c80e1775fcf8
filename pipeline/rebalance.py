"""The rebalance strategy's execution (shared by the paper cycle and the backtest) and its paper-cycle
step over a stored spot account.

`execute_rebalance` trades a `Rebalance` intent on a `SpotAccount`: sells first, then buys cut to the
cash available at their fill price (fees and slippage counted) and skipped below the minimum size;
each trade fills at the price `fill_at(asset)` gives (the first price after the decision).

`run_rebalance` (the paper cycle with `strategy: rebalance`): the spot account is its own account row
(mode "spot") with its own equity snapshots, so the loss breakers of the risk profile hold for it
across restarts; the strategy's drift check, the risk check (`risk.intents.check_rebalance`) and the
trades, the new state and the equity snapshot commit in one transaction. A decision time already
run is not traded twice. Every trade is also an order + fill row (`record_spot_trades`, mode "spot",
the cycle's id, position id `spot-<ASSET>`, a buy as an `open` of a long holding and a sell as a
`close`), with a deterministic client order id, as the futures account's fills are recorded, so the
exports, the dashboard's cycle page and the daily report see them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

from agents.strategies.base import Rebalance
from agents.strategies.rebalance import PortfolioFacts, RebalanceStrategy, weights
from core.errors import ConfigError, OrderRejected
from core.settings import RebalanceSettings, Settings
from core.types import Decision, Fill, Side
from exchange.base import MarketDataSource
from exchange.money import D
from exchange.spot import SpotAccount
from risk.breakers import account_state_from_history
from risk.intents import check_rebalance
from store import repo
from store.db import transaction

SPOT_MODE = "spot"


def execute_rebalance(spot: SpotAccount, rb: Rebalance, fill_at: Callable[[str], tuple[datetime, float] | None],
                      cfg: RebalanceSettings, steps: Mapping[str, Decimal]) -> dict[str, Any]:
    """Trade `rb` on `spot`; returns the trades made and what was skipped or rejected."""
    out: dict[str, Any] = {"trades": [], "skipped": [], "rejected": []}
    for tr in sorted(rb.trades, key=lambda x: x.side != "sell"):  # sells first: they pay for the buys
        nxt = fill_at(tr.asset)
        if nxt is None:
            out["skipped"].append(f"{tr.side} {tr.asset}: no price after the decision time")
            continue
        ts, px = nxt
        qty = tr.qty
        if tr.side == "buy":
            cash = float(spot.holdings.get(spot.quote, Decimal(0)))
            cost = px * (1 + cfg.fee + cfg.slippage_bps / 10_000) * 1.000001
            step = steps.get(tr.asset) or Decimal("0.00000001")
            cap = (Decimal(repr(cash / cost)) / step).to_integral_value(rounding=ROUND_DOWN) * step
            qty = min(qty, cap)
            if qty <= 0 or float(qty) * px < cfg.min_trade_usd:
                out["skipped"].append(f"buy {tr.asset}: {float(qty) * px:.2f} below the minimum after the sells")
                continue
        try:
            out["trades"].append(spot.trade(tr.asset, tr.side, qty, px, ts, rb.reason[:120]))
        except OrderRejected as exc:
            out["rejected"].append(str(exc))
    return out


def record_spot_trades(s: Any, trades: list[dict[str, Any]], quote: str, as_of: datetime,
                       cycle_id: str | None) -> list[str]:
    """Store the spot trades of one decision as orders + fills (the futures account's tables, mode "spot").
    A trade's client order id is `spot:<decision time>:<asset>:<side>:<n>`: a rerun stores nothing twice."""
    ids = []
    for n, t in enumerate(trades):
        coid = f"{SPOT_MODE}:{as_of:%Y%m%dT%H%M}:{t['asset']}:{t['side']}:{n}"
        ids.append(coid)
        if repo.order_exists(s, coid) is not None:
            continue
        fill = Fill(symbol_of(t["asset"], quote), Side.LONG, "open" if t["side"] == "buy" else "close", D(t["qty"]),
                    D(t["price"]), D(t["fee"]), t["ts"], reason=f"rebalance {t['side']}: {t.get('reason', '')}"[:200])
        repo.add_order_fill(s, coid, cycle_id, f"spot-{t['asset']}", fill, SPOT_MODE)
    return ids


def symbol_of(asset: str, quote: str) -> str:
    return f"{asset}/{quote}:{quote}"


def run_rebalance(factory: Any, source: MarketDataSource, settings: Settings, as_of: datetime,
                  decisions: Mapping[str, Decision], cycle_id: str | None = None) -> dict[str, Any]:
    cfg = settings.strategies.rebalance
    if settings.mode != "paper":
        raise ConfigError("strategy 'rebalance' trades the paper spot account only (mode=paper)")
    quote = cfg.quote
    assets = [a for a in cfg.targets if a != quote]
    syms = {a: symbol_of(a, quote) for a in assets}
    unknown = [s for s in syms.values() if s not in source.symbols()]
    if unknown:
        raise ConfigError(f"rebalance targets: the market data source has no {', '.join(unknown)}")
    strat = RebalanceStrategy(cfg)
    with transaction(factory) as s:
        row = repo.get_account(s, SPOT_MODE, settings.paper.starting_balance)
        state = dict(row.state or {})
        spot = (SpotAccount.from_dict(state["spot"]) if "spot" in state else
                SpotAccount(quote=quote, fee=D(cfg.fee), slippage_bps=D(cfg.slippage_bps),
                            holdings={quote: D(settings.paper.starting_balance)}))
        last = datetime.fromisoformat(state["as_of"]) if "as_of" in state else None
        prices = {a: float(source.snapshot(sym, as_of).last) for a, sym in syms.items()}
        equity = float(spot.value(prices))
        if last is not None and as_of <= last:
            return {"status": "skipped", "note": f"already run for {last.isoformat()}", "equity": equity,
                    "weights": weights({a: spot.holdings.get(a, Decimal(0)) for a in cfg.targets}, prices, quote)}
        acct = account_state_from_history(repo.equity_history(s, SPOT_MODE) + [(as_of, equity)], equity=equity,
                                          balance=float(spot.holdings.get(quote, Decimal(0))), positions=[],
                                          now=as_of, profile=settings.risk_profile)
        steps = {a: source.market_rules(sym).qty_step for a, sym in syms.items()}
        by_asset = {a: decisions[sym] for a, sym in syms.items() if sym in decisions}
        st = strat.step(PortfolioFacts(as_of, dict(spot.holdings), prices, by_asset, steps, acct.halted))
        result: dict[str, Any] = {"status": "held", "note": st.note}
        for rb in st.intents:
            v = check_rebalance(rb.weights, rb.trades, spot.holdings, quote, cfg.min_trade_usd, cfg.fee, acct.halted)
            if not v.approved:
                result = {"status": "denied", "note": st.note, "reasons": list(v.reasons)}
                continue
            done = execute_rebalance(spot, rb, lambda a: source.price_after(syms[a], as_of), cfg, steps)
            record_spot_trades(s, done["trades"], quote, as_of, cycle_id)
            result = {"status": "rebalanced", "note": rb.reason, "targets": dict(rb.weights),
                      "trades": [{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in t.items()}
                                 for t in done["trades"]],
                      "skipped": done["skipped"], "rejected": done["rejected"]}
        equity = float(spot.value(prices))
        row.state = {"spot": spot.to_dict(), "as_of": as_of.isoformat()}
        row.balance = spot.holdings.get(quote, Decimal(0))
        row.fees_paid = spot.fees_paid
        if row.clock is None or as_of > row.clock:
            row.clock = as_of
        repo.add_equity_snapshot(s, SPOT_MODE, as_of, equity, float(row.balance), 0.0,
                                 sum(1 for a in assets if spot.holdings.get(a, Decimal(0)) > 0))
        result.update(equity=equity, holdings={a: str(q) for a, q in sorted(spot.holdings.items())},
                      weights=weights({a: spot.holdings.get(a, Decimal(0)) for a in cfg.targets}, prices, quote))
    return result
