"""Running a backtest or a walk-forward and writing its reports (plain functions; the `backtest`
flow in flows/backtest.py and `quorum backtest --no-prefect` call `execute`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from backtest.engine import PANEL_MODES, run_backtest
from backtest.result import BacktestResult
from backtest.walkforward import WalkForwardResult, walk_forward
from core.errors import ConfigError
from core.frames import to_utc
from core.settings import STRATEGIES, Settings, load_settings

log = logging.getLogger("quorum.backtest")


def parse_range(start: str, end: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """A date without a time means the whole day: --to 2025-05-31 runs through 23:00 of that day."""
    s, e = to_utc(start), to_utc(end)
    if len(str(end).strip()) <= 10:  # YYYY-MM-DD
        e = e + pd.Timedelta(days=1) - pd.Timedelta(hours=1)
    if e < s:
        raise ConfigError(f"--to {end} is before --from {start}")
    return s, e


def replay_source(settings: Settings) -> Any:
    if settings.data_source != "replay":
        raise ConfigError("backtests replay stored history: set QUORUM_DATA_SOURCE=replay (the default)")
    from exchange.replay import ReplaySource

    return ReplaySource(settings.data_dir, settings.replay_exchange, settings.replay_spread_pct)


def response_cache(settings: Settings, panel: str) -> Any:
    if panel == "math":
        return None
    from store.db import get_session_factory
    from store.llm_cache import build_response_cache

    return build_response_cache(get_session_factory(settings), settings.redis_url)


def report_basename(result: BacktestResult, label: str = "") -> str:
    return f"backtest-{result.panel_mode}-{result.start:%Y%m%dT%H%M}-{result.end:%Y%m%dT%H%M}{label}"


def write_backtest_report(result: BacktestResult, out_dir: str | Path, basename: str | None = None,
                          extra_params: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """HTML + JSON report of one backtest (deterministic: no wall-clock values inside)."""
    from backtest.report import write_report

    params = {
        "panel": result.panel_mode, "start": result.start, "end": result.end, "symbols": result.symbols,
        **result.settings_summary, "counters": result.counters, "notes": result.notes,
        "open_at_end": result.open_at_end, "stopped_reason": result.stopped_reason, **(extra_params or {}),
    }
    return write_report(
        out_dir, title=f"Quorum backtest {result.start:%Y-%m-%d} .. {result.end:%Y-%m-%d} ({result.panel_mode})",
        metrics=result.metrics, monte_carlo=result.monte_carlo, equity=result.equity, trades=result.trades,
        buy_and_hold=result.buy_and_hold, leaderboard_rows=[r.to_dict() for r in result.leaderboard],
        params=params, basename=basename or report_basename(result),
    )


def execute(start: str, end: str, panel: str = "math", symbols: Sequence[str] | None = None,
            out_dir: str = "reports", train_days: int | None = None, test_days: int | None = None,
            progress: bool = True, settings: Settings | None = None, publish: bool = False,
            strategy: str | None = None) -> dict[str, Any]:
    """Run the backtest (or the walk-forward), write the report(s), optionally publish the artifacts.
    Returns a JSON-safe summary with the report paths. `strategy` defaults to the `strategy` setting;
    `trend` is the engine's own backtest, the others run through backtest/strategies.py."""
    if panel not in PANEL_MODES:
        raise ConfigError(f"--panel {panel!r}: expected one of {', '.join(PANEL_MODES)}")
    settings = settings or load_settings()
    strategy = strategy or settings.strategy
    if strategy not in STRATEGIES:
        raise ConfigError(f"--strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}")
    if strategy != "trend":
        return _execute_strategy(settings, strategy, start, end, panel, symbols, out_dir, train_days, test_days,
                                 publish)
    source = replay_source(settings)
    s, e = parse_range(start, end)
    cache = response_cache(settings, panel)
    kw: dict[str, Any] = dict(panel_mode=panel, symbols=list(symbols) if symbols else None, progress=progress,
                              cache=cache)
    if train_days is not None or test_days is not None:
        return _walk_forward(settings, source, s, e, train_days, test_days, out_dir, publish, run_backtest, "", kw)
    result = run_backtest(settings, source, s, e, **kw)
    html, js = write_backtest_report(result, out_dir)
    return _summary_with_report(result, html, js, publish)


def _execute_strategy(settings: Settings, strategy: str, start: str, end: str, panel: str,
                      symbols: Sequence[str] | None, out_dir: str, train_days: int | None, test_days: int | None,
                      publish: bool) -> dict[str, Any]:
    from backtest.strategies import PANEL_STRATEGIES, WHY_MATH, run_strategy_backtest

    if panel != "math" and strategy not in PANEL_STRATEGIES:
        raise ConfigError(f"--strategy {strategy}: --panel {panel}: {WHY_MATH}")
    s, e = parse_range(start, end)
    kw: dict[str, Any] = {"strategy": strategy, "symbols": list(symbols) if symbols else None}
    if panel != "math":
        kw.update(panel_mode=panel, cache=response_cache(settings, panel))
    if train_days is not None or test_days is not None:
        return _walk_forward(settings, replay_source(settings), s, e, train_days, test_days, out_dir, publish,
                             run_strategy_backtest, f"-{strategy}", kw, {"strategy": strategy})
    result = run_strategy_backtest(settings, replay_source(settings), s, e, **kw)
    html, js = write_backtest_report(result, out_dir, report_basename(result, f"-{strategy}"),
                                     {"strategy": strategy})
    return _summary_with_report(result, html, js, publish)


def _walk_forward(settings: Settings, source: Any, s: pd.Timestamp, e: pd.Timestamp, train_days: int | None,
                  test_days: int | None, out_dir: str, publish: bool, runner: Any, label: str, kw: dict[str, Any],
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Walk-forward windows of `runner` (the trend engine or a strategy's backtest), a report per window."""
    if not test_days:
        raise ConfigError("walk-forward needs --test-days > 0 (and --train-days >= 0)")
    wf: WalkForwardResult = walk_forward(settings, source, s, e, int(train_days or 0), int(test_days), runner=runner,
                                         **kw)
    reports = []
    for i, r in enumerate(wf.results):
        html, js = write_backtest_report(r, out_dir, report_basename(r, f"{label}-wf{i + 1}"),
                                         {"walk_forward": wf.note, **(extra or {})})
        reports.append({"html": str(html), "json": str(js)})
    out = {"walk_forward": wf.summary(), "reports": reports, "results": [r.summary() for r in wf.results]}
    if publish:
        _publish_walk_forward(wf, reports)
    return out


def _summary_with_report(result: BacktestResult, html: Path, js: Path, publish: bool) -> dict[str, Any]:
    """The run's summary with its report paths; the metrics/leaderboard artifacts when `publish`."""
    if publish:
        try:
            from backtest.report import publish_report_artifacts

            publish_report_artifacts(html, result.metrics, key_prefix="backtest",
                                     leaderboard_rows=[r.to_dict() for r in result.leaderboard])
        except Exception as exc:  # noqa: BLE001 - artifacts never fail the backtest
            log.warning("could not publish the backtest artifacts: %s", exc)
    return {**result.summary(), "report_html": str(html), "report_json": str(js)}


def _publish_walk_forward(wf: WalkForwardResult, reports: list[dict[str, str]]) -> None:
    try:
        from prefect.artifacts import create_markdown_artifact, create_table_artifact

        rows = [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in w.items()} for w in wf.windows]
        create_table_artifact(rows, key="backtest-walk-forward", description=wf.note)
        md = ["# Walk-forward test windows", wf.note, ""] + [
            f"- window {i + 1}: [{Path(r['html']).name}]({Path(r['html']).resolve().as_uri()})"
            for i, r in enumerate(reports)]
        create_markdown_artifact("\n".join(md), key="backtest-walk-forward-reports")
    except Exception as exc:  # noqa: BLE001
        log.warning("could not publish the walk-forward artifacts: %s", exc)
