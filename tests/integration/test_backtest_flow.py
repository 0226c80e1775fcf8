"""The `backtest` flow under the Prefect test harness: one flow run, the report written, and the
metrics table, the report link and (with a panel) the leaderboard attached as artifacts."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.prefect, pytest.mark.slow]


def test_backtest_flow_writes_the_report_and_attaches_artifacts(prefect_harness, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter

    from flows.backtest import backtest
    from tests.fakes.prefect_runs import read_run

    state = backtest(start="2025-03-01", end="2025-03-03", panel="math", symbols=["BTC/USDT:USDT", "ETH/USDT:USDT"],
                     out_dir=str(tmp_path / "rep"), progress=False, return_state=True)
    assert state.is_completed()
    summary = state.result()
    assert Path(summary["report_html"]).exists() and Path(summary["report_json"]).exists()
    assert summary["counters"]["decision_times"] == 3 * 24
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter())
        assert len([r for r in runs if r.id == run_id]) == 1  # one flow run for the whole backtest
    _, _, tasks, arts = read_run(run_id)
    assert tasks == []  # the bar loop is plain Python: no task per bar
    kinds = {(a.key, a.type) for a in arts}
    assert ("backtest-metrics", "table") in kinds
    link = next(a for a in arts if a.key == "backtest-report")  # a link, or markdown naming the file
    assert link.type in ("link", "markdown")
    assert Path(summary["report_html"]).name in str(link.data)
