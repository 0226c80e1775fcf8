"""housekeeping: keep a process that runs for months bounded (daily in prefect.yaml).

Prefect's database grows by about 230 KB per flow run (an hourly cycle and a 5-minute monitor make
~310 runs a day): finished flow runs older than `retention_flow_runs_days` (QUORUM_RETENTION_FLOW_RUNS_DAYS,
default 14) are deleted through the Prefect API. Quorum's per-cycle analysis rows older than
`retention_analysis_days` (QUORUM_RETENTION_ANALYSIS_DAYS, default 90) are pruned as
store/retention.py documents (money, positions, events and the leaderboard's votes are kept).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from core.settings import load_settings
from tasks.housekeeping import prune_analysis_task, prune_flow_runs_task


@flow(name="housekeeping", log_prints=False)
def housekeeping(flow_runs_days: int | None = None, analysis_days: int | None = None) -> dict[str, Any]:
    logger = get_run_logger()
    settings = load_settings()
    runs_days = flow_runs_days or settings.retention_flow_runs_days
    rows_days = analysis_days or settings.retention_analysis_days
    from prefect.runtime import flow_run

    deleted = prune_flow_runs_task(runs_days, {str(flow_run.id)} if flow_run.id else set())
    logger.info("deleted %d finished Prefect flow run(s) older than %d days", deleted, runs_days)
    pruned = prune_analysis_task(settings, rows_days)
    logger.info("pruned Quorum analysis rows older than %d days: %s", rows_days, pruned)
    return {"flow_runs_deleted": deleted, "flow_runs_days": runs_days, "analysis": pruned,
            "analysis_days": rows_days}
