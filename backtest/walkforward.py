"""Walk-forward: rolling [train | test] windows, each test window a fresh backtest."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from backtest.data import NoDecisionTime
from backtest.engine import run_backtest
from backtest.result import BacktestResult
from core.errors import DataError
from core.frames import to_utc
from core.metrics import json_safe
from core.settings import Settings

# ------------------------------------------------------------------------------------------------
# walk-forward


@dataclass
class WalkForwardResult:
    windows: list[dict[str, Any]]  # per test window: train (warm-up) range, test range, metrics
    results: list[BacktestResult]
    note: str
    skipped: list[dict[str, Any]] = field(default_factory=list)  # windows without a decision time in the data

    def summary(self) -> dict[str, Any]:
        return json_safe({"note": self.note, "windows": self.windows, "skipped": self.skipped})


WALK_FORWARD_NOTE = (
    "The math engine has no fitted parameters: each train window is used as indicator warm-up only "
    "(nothing is optimised on it). Only the test windows are reported; each starts with a fresh account."
)


def walk_forward(settings: Settings, source: Any, start: datetime | str, end: datetime | str, train_days: int,
                 test_days: int, runner: Callable[..., BacktestResult] = run_backtest,
                 **kwargs: Any) -> WalkForwardResult:
    """Rolling windows [train | test] from `start`: train_days of warm-up (honestly: the engine fits
    nothing, so the train window only guarantees the indicators are warm), then a backtest over the
    next test_days; the windows roll by test_days until `end`. Reports the test windows only.
    `runner(settings, source, start, end, **kwargs)` runs one window: the trend engine's `run_backtest`,
    or a strategy's (`backtest.strategies.run_strategy_backtest` with `strategy=`)."""
    if train_days < 0 or test_days <= 0:
        raise ValueError("train days must be >= 0 and test days > 0")
    s, e = to_utc(start), to_utc(end)
    windows: list[dict[str, Any]] = []
    results: list[BacktestResult] = []
    skipped: list[dict[str, Any]] = []
    cur = s + pd.Timedelta(days=train_days)
    while cur < e:
        t_end = min(cur + pd.Timedelta(days=test_days) - pd.Timedelta(minutes=settings.cycle_interval_minutes), e)
        try:
            res = runner(settings, source, cur, t_end, **kwargs)
        except NoDecisionTime as exc:
            # a window outside the data (typically past the end of the history) is reported as
            # skipped; the windows already finished are kept
            skipped.append({"test_start": cur, "test_end": t_end, "reason": str(exc)})
            cur = cur + pd.Timedelta(days=test_days)
            continue
        results.append(res)
        m = res.metrics
        windows.append({"train_start": cur - pd.Timedelta(days=train_days), "train_end": cur,
                        "test_start": res.start, "test_end": res.end, "total_return": m.total_return,
                        "sharpe": m.sharpe, "max_drawdown": m.max_drawdown, "n_trades": m.n_trades,
                        "win_rate": m.win_rate, "profit_factor": m.profit_factor,
                        "open_at_end": len(res.open_at_end)})
        cur = cur + pd.Timedelta(days=test_days)
    if not results:
        raise DataError("walk-forward: no test window has a decision time inside the data; "
                        + (skipped[0]["reason"] if skipped else f"the range {s.isoformat()} .. {e.isoformat()} is "
                           f"shorter than the {train_days} train day(s)"))
    return WalkForwardResult(windows, results, WALK_FORWARD_NOTE, skipped)
