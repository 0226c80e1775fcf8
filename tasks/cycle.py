"""Thin Prefect tasks around the cycle's plain functions: retries, caching and names only."""

from __future__ import annotations

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


@task(name="math-score", task_run_name="score-{snapshot.symbol}", cache_policy=NO_CACHE)
def score_task(snapshot: MarketSnapshot, signal: SignalSettings, news: NewsReport | None) -> Score:
    return score_snapshot(snapshot, signal, news)
