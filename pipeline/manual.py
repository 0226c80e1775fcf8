"""Manual control through the same path as the cycle: `quorum enter SYMBOL long|short` (scored, sized and
checked by the risk manager like any decision, refused with its reasons), `quorum exit SYMBOL` (the
broker's reduce-only close and cancel of the position's protective orders) and `quorum reconcile`."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from agents.math_engine import score_snapshot
from core.errors import ConfigError
from core.settings import Settings
from core.types import Action, Candidate, Decision
from exchange.base import MarketDataSource
from pipeline import record
from pipeline.account import Factory, account_state, load, track_record
from pipeline.brokers import broker_for
from pipeline.execute import execute_and_persist
from pipeline.monitor import close_at_market, reconcile_and_store, sync_positions
from pipeline.positions import limits_for
from pipeline.stages import risk_verdict
from store.lock import account_lock

F = TypeVar("F", bound=Callable[..., Any])


def _one_run_at_a_time(what: str) -> Callable[[F], F]:
    """Hold the account's lock (store/lock.py) for the whole command, like a cycle or a monitor run: a
    manual entry, exit or reconciliation never interleaves with a run that loaded the same account."""
    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def run(factory: Factory, source: MarketDataSource, settings: Settings, *args: Any, **kw: Any) -> Any:
            with account_lock(settings, what):
                return fn(factory, source, settings, *args, **kw)
        return run  # type: ignore[return-value]
    return wrap


@_one_run_at_a_time("quorum enter")
def manual_entry(factory: Factory, source: MarketDataSource, settings: Settings, symbol: str, side: str,
                 now: datetime) -> dict[str, Any]:
    """Enter `symbol` long or short now: the positions are reconciled and brought up to now first, then
    the decision goes through the risk manager (sizing, breakers, limits) and the broker. Returns
    {"status": approved|denied, "reasons"|"execution", "plan"}."""
    side = side.upper()
    if side not in ("LONG", "SHORT"):
        raise ConfigError(f"side {side!r}: allowed long, short")
    now = now.replace(second=0, microsecond=0)
    acct, _ = sync_positions(factory, source, settings, now)
    snap = source.snapshot(symbol, now)
    score = score_snapshot(snap, settings.signal, None)
    decision = Decision(symbol, now, Action(side), 1.0, score.final, score.final, 0, 0, {}, (), False,
                        f"manual {side.lower()} entry by the operator")
    state = account_state(factory, source, settings, now, acct)
    verdict = risk_verdict(decision, score, snap, state, limits_for(source, symbol), settings, None, None,
                           track_record(factory, settings.mode, now, settings.risk_profile))
    plan = record.verdict_dict(verdict)
    if not verdict.approved or verdict.plan is None:
        return {"status": "denied", "reasons": list(verdict.reasons), "risk": plan}
    cycle_id = f"{settings.mode}-manual-{now:%Y%m%dT%H%M}-{uuid.uuid4().hex[:6]}"
    record.start_cycle(factory, cycle_id, now, settings.mode, source.name, None)
    try:
        acct, executed = execute_and_persist(
            factory, source, settings, cycle_id, now, [Candidate(symbol, "manual entry", "manual")],
            {symbol: score}, {}, [], {symbol: decision}, {symbol: verdict}, {symbol: snap.last}, acct)
    except BaseException as exc:
        record.fail_cycle(factory, cycle_id, exc)
        raise
    result = {"status": "approved", "execution": executed.get(symbol), "risk": plan, "cycle_id": cycle_id}
    record.finish_cycle(factory, cycle_id, {
        "panel": {"status": "manual entry (no panel)"}, "llm_cost": {"cost_usd": 0.0, "tokens": 0},
        "candidates": [{"symbol": symbol, "execution": result["execution"], "risk": plan}],
        "account": {"mode": settings.mode}, "timings_s": {}, "universe": "manual"})
    return result


@_one_run_at_a_time("quorum exit")
def manual_exit(factory: Factory, source: MarketDataSource, settings: Settings, symbol: str,
                now: datetime) -> list[str]:
    """Close the open position(s) of `symbol` at market through the broker (live: reduce-only, then its
    protective orders cancelled). Returns what closed."""
    acct, _ = sync_positions(factory, source, settings, now)
    if not any(p.symbol == symbol for p in acct.open_positions()):
        raise ConfigError(f"no open {settings.mode} position in {symbol}: see `quorum positions`")
    _, closed = close_at_market(factory, source, settings, now, lambda p: p.symbol == symbol,
                                "manual exit by the operator", "manual", acct)
    return closed


@_one_run_at_a_time("quorum reconcile")
def reconcile(factory: Factory, source: MarketDataSource, settings: Settings, now: datetime) -> list[str]:
    """Compare the broker's exchange with the database and act (see exchange/reconcile.py); each finding
    is stored as an event and a channel post. Returns the finding lines (none in paper)."""
    broker = broker_for(factory, source, settings, now, load(factory, settings))
    _, lines, _ = reconcile_and_store(factory, settings, broker, save_always=True)
    return lines
