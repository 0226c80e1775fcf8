"""Thin Prefect tasks around the cycle's plain functions: retries, caching and names only."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from prefect import task
from prefect.cache_policies import NO_CACHE

from agents.math_engine import score_snapshot
from core.errors import TransientError
from core.settings import SignalSettings
from core.types import MarketSnapshot, NewsReport, Score
from exchange.base import MarketDataSource, TickerInfo


def _transient(task, task_run, state) -> bool:  # type: ignore[no-untyped-def]
    """Retry only transient failures (network, rate limits); never bad input or rejected orders."""
    try:
        state.result()
    except TransientError:
        return True
    except Exception:  # noqa: BLE001
        return False
    return False


@task(name="tickers", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=_transient, cache_policy=NO_CACHE)
def tickers_task(source: MarketDataSource, as_of: datetime) -> dict[str, TickerInfo]:
    return source.tickers(as_of)


@task(name="collect", task_run_name="collect-{symbol}", retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=_transient, cache_policy=NO_CACHE)
def collect_task(source: MarketDataSource, symbol: str, as_of: datetime) -> MarketSnapshot:
    return source.snapshot(symbol, as_of)


@task(name="math-score", task_run_name="score-candidates", cache_policy=NO_CACHE)
def score_task(snapshots: Mapping[str, MarketSnapshot], signal: SignalSettings,
               news: Mapping[str, NewsReport]) -> dict[str, Score]:
    """The math engine over every candidate: one task for the stage. Scoring is pandas under the GIL,
    so one task per symbol ran one after another anyway and added a task run's bookkeeping each."""
    return {s: score_snapshot(snap, signal, news.get(s)) for s, snap in snapshots.items()}


# ---- the account's stages: one task each, so they show in the run graph. Writes are never retried.
@task(name="monitor", cache_policy=NO_CACHE)
def monitor_task(factory, source, settings, until: datetime, acct=None):  # type: ignore[no-untyped-def]
    from pipeline.monitor import sync_positions
    from pipeline.strategy_cycle import sync_orders

    acct, orders = sync_orders(factory, source, settings, until, acct)
    acct, summary = sync_positions(factory, source, settings, until, acct)
    if summary.get("findings"):
        from tasks.artifacts import publish_findings

        publish_findings(summary["findings"])
    if orders["symbols"] or orders["quarantined"]:
        summary["orders"] = {k: v for k, v in orders.items() if k != "events"}
        summary["events"] = orders["events"] + summary["events"]
    return acct, summary


@task(name="risk", cache_policy=NO_CACHE)
def risk_task(factory, source, settings, decision_time: datetime, scores, snapshots, votes, news,  # type: ignore[no-untyped-def]
              acct):
    from pipeline.decide import decide_and_check

    return decide_and_check(factory, source, settings, decision_time, scores, snapshots, votes, news, acct)


@task(name="execute", cache_policy=NO_CACHE)
def execute_task(factory, source, settings, cycle_id: str, decision_time: datetime, candidates, scores,  # type: ignore[no-untyped-def]
                 news, votes, decisions, verdicts, prices, acct):
    from pipeline.execute import execute_and_persist

    return execute_and_persist(factory, source, settings, cycle_id, decision_time, candidates, scores, news, votes,
                               decisions, verdicts, prices, acct)


@task(name="strategy", cache_policy=NO_CACHE)
def strategy_task(factory, source, settings, cycle_id: str, decision_time: datetime, snapshots, scores,  # type: ignore[no-untyped-def]
                  decisions, news, acct):
    from pipeline.strategy_cycle import run_strategies

    return run_strategies(factory, source, settings, cycle_id, decision_time, snapshots, scores, decisions, news,
                          acct)


@task(name="rebalance", cache_policy=NO_CACHE)
def rebalance_task(factory, source, settings, decision_time: datetime, decisions, cycle_id=None):  # type: ignore[no-untyped-def]
    from pipeline.rebalance import run_rebalance

    return run_rebalance(factory, source, settings, decision_time, decisions, cycle_id)


@task(name="broadcast", cache_policy=NO_CACHE)
def broadcast_task(factory, settings, console: bool = True):  # type: ignore[no-untyped-def]
    from pipeline.broadcast import deliver

    return deliver(factory, settings, console=console)
