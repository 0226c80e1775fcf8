"""The `backtest` flow: ONE Prefect flow run for a whole backtest (the bar loop is plain Python in
backtest/engine.py, no task per bar), then the HTML + JSON report (backtest/report.py) and the
flow-run artifacts (a metrics table, a link to the report, the model leaderboard).

Deployment (parameters, no schedule), for prefect.yaml:

    - name: backtest
      description: Replay a date range through the live cycle's functions; writes the report.
      entrypoint: flows/backtest.py:backtest
      parameters: {start: "2025-01-01", end: "2025-05-31", panel: "math"}
      work_pool: {name: quorum}
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from backtest.run import execute


@flow(name="backtest", log_prints=False, retries=0)
def backtest(start: str = "2025-01-01", end: str = "2025-05-31", panel: str = "math",
             symbols: list[str] | None = None, out_dir: str = "reports", train_days: int | None = None,
             test_days: int | None = None, progress: bool = True, strategy: str | None = None) -> dict[str, Any]:
    """Replay [start, end] through the live cycle's functions (one flow run), write the HTML/JSON
    report under `out_dir` and attach the metrics table, the report link and the leaderboard."""
    return execute(start, end, panel, symbols, out_dir, train_days, test_days, progress, publish=True,
                   strategy=strategy)
