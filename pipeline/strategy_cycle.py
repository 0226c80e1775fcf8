"""The strategies in the paper cycle: resting orders walked through the bars since their last walk,
then each non-trend symbol's strategy step, its intents checked by the risk manager and executed,
all stored with the account.

- `sync_orders` (the monitor's first step, before `sync_positions`): for every symbol with resting
  orders or order-managed positions, the 1h bars closed since the symbol was last walked
  (`acct.orders_checked`), one transaction per symbol: per bar the resting orders are matched
  (`PaperAccount.match_bar`), then the symbol's order-managed positions get funding and the
  liquidation check (`monitor_order_managed_bar`); new fills are stored as orders + fills, events
  go to the outbox. `sync_positions` leaves order-managed positions to this walk.
- `run_strategies`: per symbol whose strategy (`Settings.strategy_for`) is not `trend`, the strategy
  sees the cycle's facts (snapshot, math score and regime, the consensus decision, the 1h ATR, its
  features from the snapshot's closed bars, the account's positions and orders in the symbol, its
  previous state from the account) and its intents go through `pipeline.strategy.execute_intents`;
  market intents fill at the first price after the decision. One transaction for all of it.
  The strategy's state is stored in the account (`acct.strategy_state`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

import pandas as pd

from agents.math_engine import hourly_atr
from agents.strategies import build, state_from_data, state_to_data
from agents.strategies.base import AccountView, Facts, Open
from core.errors import ConfigError, DataError
from core.settings import Settings
from core.types import Decision, MarketSnapshot, NewsReport, Score
from exchange.base import MarketDataSource
from exchange.paper import PaperAccount
from pipeline.account import Factory, account_state, load, record_fills, save_account, snapshot_equity
from pipeline.execute import enqueue_entry_post
from pipeline.positions import limits_for, marks, track_record_from
from pipeline.stages import btc_change_4h_pct
from pipeline.strategy import ExecContext, execute_intents, monitor_order_managed_bar
from risk.profiles import get_profile
from store.db import transaction


def check_cycle_strategy(settings: Settings) -> None:
    """The paper cycle runs every strategy; rebalance trades the paper spot account only. A live cycle runs
    `trend` only: the strategy step (`run_strategies`, `sync_orders`) trades and simulates the paper
    account's resting orders, and is not wired to the live broker's (exchange/live_resting.py) yet, so a
    live grid would only simulate its orders on the account's mirror."""
    if settings.strategy == "rebalance" and settings.mode != "paper":
        raise ConfigError("strategy 'rebalance' trades the paper spot account only: set QUORUM_MODE=paper")
    if settings.mode == "live":
        other = sorted({settings.strategy, *settings.strategy_symbols.values()} - {"trend"})
        if other:
            raise ConfigError(f"strategy {', '.join(other)} in live mode: the cycle's strategy step trades the paper "
                              "account only (the live broker's resting orders are not wired into the cycle yet); "
                              "use QUORUM_MODE=paper, or strategy trend live")


def _walk_start(acct: PaperAccount, symbol: str) -> datetime | None:
    if symbol in acct.orders_checked:
        return acct.orders_checked[symbol]
    times = [o.created_at for o in acct.open_orders(symbol) if o.created_at is not None]
    times += [p.opened_at for p in acct.open_positions() if p.symbol == symbol]
    return min(times) if times else None


def sync_orders(factory: Factory, source: MarketDataSource, settings: Settings, until: datetime,
                acct: PaperAccount | None = None) -> tuple[PaperAccount, dict[str, Any]]:
    from pipeline.monitor import enqueue_event_posts

    acct = acct if acct is not None else load(factory, settings)
    summary: dict[str, Any] = {"symbols": 0, "fills": 0, "events": [], "quarantined": {}}
    managed = {p.symbol for p in acct.open_positions() if p.extra.get("managed") == "orders"}
    for sym in sorted({o.symbol for o in acct.open_orders()} | managed):
        start = _walk_start(acct, sym)
        if start is None or until <= start:
            continue
        try:
            bars = source.bars_between(sym, start, until)
            funding = list(source.funding_between(sym, start, until).items())
        except DataError as exc:  # as the position monitor: this symbol waits, the others are walked
            summary["quarantined"][sym] = str(exc)
            summary["events"].append(f"{sym} quarantined, its resting orders left unmatched: {exc}")
            continue
        with transaction(factory) as s:
            n_fills, n_events = len(acct.fills), len(acct.events)
            pids: list[str] = []
            fi = 0
            cols = bars[["open", "high", "low", "close"]].to_numpy(dtype=float)
            for t_open, (o, h, lo, c) in zip(bars.index, cols, strict=True):
                t_close = (t_open + pd.Timedelta(hours=1)).to_pydatetime()
                due = []
                while fi < len(funding) and funding[fi][0].to_pydatetime() <= t_close:
                    due.append(funding[fi])
                    fi += 1
                acct._fill_pids = []
                acct.match_bar(sym, o, h, lo, c, t_close)
                pids += acct._fill_pids  # the position of each order fill, in fill order
                for p in acct.open_positions():
                    if p.symbol == sym and p.extra.get("managed") == "orders":
                        k = len(acct.fills)
                        monitor_order_managed_bar(acct, p.id, t_open, float(o), float(h), float(lo), float(c), due)
                        pids += [p.id] * (len(acct.fills) - k)  # a liquidation
            record_fills(s, acct, settings.mode, None, n_fills, pids)
            acct.orders_checked[sym] = until
            events = save_account(s, settings, acct, until)
            enqueue_event_posts(s, acct, events)
            summary["symbols"] += 1
            summary["fills"] += len(acct.fills) - n_fills
            summary["events"] += [f"{e.symbol} {e.kind} @ {e.price:.6g} ({e.reason})" for e in acct.events[n_events:]
                                  if e.kind != "funding"]
        acct = acct.settled()
    return acct, summary


def run_strategies(factory: Factory, source: MarketDataSource, settings: Settings, cycle_id: str, as_of: datetime,
                   snapshots: Mapping[str, MarketSnapshot], scores: Mapping[str, Score],
                   decisions: Mapping[str, Decision], news: Mapping[str, NewsReport],
                   acct: PaperAccount) -> tuple[PaperAccount, dict[str, Any]]:
    """Run the non-trend strategies of the cycle's symbols; returns the account and, per symbol,
    the strategy's note and each intent's result."""
    syms = [s for s in snapshots if settings.strategy_for(s) not in ("trend", "rebalance") and s in scores]
    out: dict[str, Any] = {}
    if not syms:
        return acct, out
    prof = get_profile(settings.risk_profile)
    base = account_state(factory, source, settings, as_of, acct)
    track = track_record_from([p for p in acct.positions.values() if not p.is_open])
    btc_4h = btc_change_4h_pct(snapshots, source, as_of)  # the BTC-dump filter, as the trend risk step reads it
    with transaction(factory) as s:
        n_fills = len(acct.fills)
        pids: list[str] = []
        for sym in syms:
            name = settings.strategy_for(sym)
            strat = build(name, settings)
            snap = snapshots[sym]
            h1 = snap.candles.get("1h")
            atr = None
            feats: dict[str, float] = {}
            if h1 is not None and len(h1):
                a = hourly_atr(h1)[-1]
                atr = float(a) if a == a else None
                if name == "volatility":
                    from agents.strategies.volatility import features

                    feats = {k: float(v) for k, v in features(h1, settings.strategies.volatility).iloc[-1].items()}
            lim = limits_for(source, sym)
            rules = source.market_rules(sym)
            prices = marks(source, [p.symbol for p in acct.open_positions()], as_of, {sym: snap.last})
            eq = float(acct.equity(prices))
            view = AccountView(eq, float(acct.balance), tuple(p for p in acct.open_positions() if p.symbol == sym),
                               tuple(acct.open_orders(sym)))
            prev = acct.strategy_state.get(sym)
            state = state_from_data(prev["state"]) if prev and prev.get("strategy") == name else None
            facts = Facts(sym, as_of, snap.last, snap.bid, snap.ask, view, score=scores[sym], decision=decisions.get(sym),
                          atr_1h=atr, features=feats, qty_step=rules.qty_step, price_tick=rules.price_tick, state=state)
            step = strat.step(facts)
            nxt = source.price_after(sym, as_of)
            ctx = ExecContext(as_of, name, base, lim, prof, settings, fill_ts=nxt[0] if nxt else None,
                              fill_price=nxt[1] if nxt else None, score=scores[sym], snapshot=snap,
                              btc_4h=btc_4h, news=news.get(sym), track=track, cycle_id=cycle_id)
            k = len(acct.fills)
            results = execute_intents(acct, step.intents, ctx)
            # market intents (open, add, reduce) fill once each, for the position their result names
            filled = [r.position_id or "" for r in results if r.status == "filled"]
            if len(filled) != len(acct.fills) - k:
                raise RuntimeError(f"{sym}: {len(acct.fills) - k} fills for {len(filled)} filled intents")
            pids += filled
            for r in results:
                if isinstance(r.intent, Open) and r.status == "filled" and r.plan is not None and r.position_id:
                    pos = acct.get(r.position_id)
                    enqueue_entry_post(s, cycle_id, pos, replace(r.plan, entry=pos.entry), r.intent.decision)
            acct.strategy_state[sym] = {"strategy": name, "state": state_to_data(step.state),
                                        "as_of": as_of.isoformat()}
            out[sym] = {"strategy": name, "note": step.note,
                        "intents": [{"intent": type(r.intent).__name__, "status": r.status,
                                     "reasons": list(r.reasons)[:3], "position_id": r.position_id}
                                    for r in results]}
        record_fills(s, acct, settings.mode, cycle_id, n_fills, pids)
        save_account(s, settings, acct, as_of)
        prices_all = marks(source, [p.symbol for p in acct.open_positions()], as_of,
                           {k: v.last for k, v in snapshots.items()})
        snapshot_equity(s, settings.mode, acct, prices_all, as_of)
    return acct.settled(), out


__all__ = ["check_cycle_strategy", "run_strategies", "sync_orders"]
