"""What a flow run shows in Prefect: INFO logs per stage, its name from the decision time, the
account stages as tasks in the graph, and the artifacts (every vote with its full rationale)."""

from __future__ import annotations

import pytest

from tests.fakes.llm_servers import LocalPanel
from tests.fakes.panel_answers import panel_responder
from tests.fakes.prefect_runs import read_run

pytestmark = [pytest.mark.prefect]
AS_OF = "2025-05-23T04:00:00Z"
SYMS = ["SOL/USDT:USDT", "XRP/USDT:USDT"]


def _run_info(run_id, wait_for: str = ""):  # type: ignore[no-untyped-def]
    """The run, its logs (waiting up to 30 s for a line starting with `wait_for`: logs reach the API
    in batches), its task runs and artifacts."""
    import time

    deadline = time.monotonic() + 30
    while True:
        info = read_run(run_id)
        if not wait_for or any(lg.message.startswith(wait_for) for lg in info[1]) or time.monotonic() > deadline:
            return info
        time.sleep(0.5)


def test_cycle_run_logs_name_graph_and_votes_artifact(prefect_harness, monkeypatch) -> None:  # noqa: ARG001
    from flows.trading_cycle import trading_cycle

    with LocalPanel(responder=panel_responder) as p:
        for k, v in p.env.items():
            monkeypatch.setenv(k, v)
        state = trading_cycle(as_of=AS_OF, symbols=SYMS, broadcast=False, return_state=True)
    report = state.result()
    run, logs, tasks, arts = _run_info(state.state_details.flow_run_id, "broadcast:")
    assert run.name == "cycle-20250523T0400"
    infos = [lg.message for lg in logs if lg.level == 20]
    for stage in ("monitor:", "candidates", "math scores:", "panel: 6/6", "execution:", "broadcast:"):
        assert any(m.startswith(stage) or stage in m for m in infos), (stage, infos)
    for sym in SYMS:
        line = next(m for m in infos if m.startswith(f"decision {sym}:"))
        assert "-> risk" in line
    names = {t.name.split("-")[0] for t in tasks}
    assert {"monitor", "tickers", "collect", "score", "risk", "execute"} <= names, names  # broadcast=False: none
    by_key = {a.key: a for a in arts}
    assert {"cycle-candidates", "cycle-summary", "cycle-votes"} <= set(by_key)
    votes_md = str(by_key["cycle-votes"].data)
    n_votes = 0
    for c in report["candidates"]:
        for v in c["votes"]:
            n_votes += 1
            assert f"**{v['member']}**" in votes_md
            if v["action"]:
                assert f"confidence {v['confidence']:.2f}" in votes_md
            assert " ".join(v["rationale"].split()) in votes_md, "the full rationale, not a cut"
    assert n_votes == 12
    rows = by_key["cycle-candidates"].data
    assert all(len(str(r["why"])) <= 80 for r in (rows if isinstance(rows, list) else __import__("json").loads(rows)))


def test_monitor_and_daily_report_artifacts(prefect_harness) -> None:  # noqa: ARG001
    from flows.daily_report import daily_report
    from flows.position_monitor import position_monitor
    from flows.trading_cycle import trading_cycle

    trading_cycle(as_of=AS_OF, broadcast=False)
    state = position_monitor(as_of="2025-05-26T04:00:00Z", broadcast=False, return_state=True)
    res = state.result()
    assert res["events"], "positions opened at 04:00 move their stops or exit in three days"
    run, logs, tasks, arts = _run_info(state.state_details.flow_run_id, "broadcast:")
    assert run.name == "monitor-2025-05-26T04:00:00Z"
    assert {"monitor", "broadcast"} <= {t.name.split("-")[0] for t in tasks}
    table = next(a for a in arts if a.key == "monitor-events")
    for e in res["events"]:
        assert e in str(table.data)
    assert any(lg.message.startswith("monitor:") for lg in logs)
    state = daily_report(as_of="2025-05-26T04:00:00Z", return_state=True)
    _, logs, _, arts = _run_info(state.state_details.flow_run_id, "daily report for")
    md = next(a for a in arts if a.key == "daily-report")
    assert "Daily report 2025-05-25" in str(md.data) and "Market pulse" in str(md.data)
    assert any(lg.message.startswith("daily report for 2025-05-25") for lg in logs)
