"""Walk-forward: rolling [train | test] windows, each test window a fresh backtest."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from backtest.engine import run_backtest
from backtest.result import BacktestResult
from core.frames import to_utc
from core.metrics import (
    json_safe,
)
from core.settings import Settings

# ------------------------------------------------------------------------------------------------
# walk-forward


@dataclass
class WalkForwardResult:
    windows: list[dict[str, Any]]  # per test window: train (warm-up) range, test range, metrics
    results: list[BacktestResult]
    note: str

    def summary(self) -> dict[str, Any]:
        return json_safe({"note": self.note, "windows": self.windows})


WALK_FORWARD_NOTE = (
    "The math engine has no fitted parameters: each train window is used as indicator warm-up only "
    "(nothing is optimised on it). Only the test windows are reported; each starts with a fresh account."
)


def walk_forward(settings: Settings, source: Any, start: datetime | str, end: datetime | str, train_days: int,
                 test_days: int, **kwargs: Any) -> WalkForwardResult:
    """Rolling windows [train | test] from `start`: train_days of warm-up (honestly: the engine fits
    nothing, so the train window only guarantees the indicators are warm), then a backtest over the
    next test_days; the windows roll by test_days until `end`. Reports the test windows only."""
    if train_days < 0 or test_days <= 0:
        raise ValueError("train days must be >= 0 and test days > 0")
    s, e = to_utc(start), to_utc(end)
    windows, results = [], []
    cur = s + pd.Timedelta(days=train_days)
    while cur < e:
        t_end = min(cur + pd.Timedelta(days=test_days) - pd.Timedelta(minutes=settings.cycle_interval_minutes), e)
        res = run_backtest(settings, source, cur, t_end, **kwargs)
        results.append(res)
        m = res.metrics
        windows.append({"train_start": cur - pd.Timedelta(days=train_days), "train_end": cur,
                        "test_start": res.start, "test_end": res.end, "total_return": m.total_return,
                        "sharpe": m.sharpe, "max_drawdown": m.max_drawdown, "n_trades": m.n_trades,
                        "win_rate": m.win_rate, "profit_factor": m.profit_factor,
                        "open_at_end": len(res.open_at_end)})
        cur = cur + pd.Timedelta(days=test_days)
    return WalkForwardResult(windows, results, WALK_FORWARD_NOTE)
