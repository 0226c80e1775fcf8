"""End to end, as a user runs Quorum unattended: a real `prefect server start`, a process work pool,
`prefect --no-prompt deploy --all` of the project's prefect.yaml (its trading-cycle and position-monitor
deployments on a 30 s interval instead of hourly / 5 min), a worker, and the SCHEDULER creating runs
that complete: paper cycles on live public data (data_source: ccxt from prefect.yaml's job env)
served by the local exchange server. Everything started is killed by process group, even on failure
(the worker stops on SIGINT)."""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.harness import BIN, ROOT, migrated_db, prefect, prefect_stack, spawn, tail
from tests.fakes.live_exchange import LiveFakeBybit

pytestmark = pytest.mark.slow
POOL = "quorum-e2e"
INTERVAL_S = 30
WANT = {"trading-cycle": "hourly", "position-monitor": "every-5-minutes"}


def e2e_yaml(tmp_path: Path, root: Path = ROOT) -> Path:
    """prefect.yaml with only the two scheduled deployments, on a short interval and the test's pool."""
    spec = yaml.safe_load((root / "prefect.yaml").read_text())
    deps = [d for d in spec["deployments"] if d["name"] in WANT.values()]
    assert len(deps) == 2
    for d in deps:
        d["schedules"] = [{"interval": INTERVAL_S}]
        d["work_pool"]["name"] = POOL
        assert d["work_pool"]["job_variables"]["env"]["QUORUM_DATA_SOURCE"] == "ccxt"
    spec["deployments"] = deps
    spec.pop("definitions", None)
    path = tmp_path / "prefect-e2e.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict]:
    # the scheduler keeps a few runs ahead (by default up to 100 per deployment, an hour ahead: on a 30 s
    # interval, hundreds of scheduled runs the server keeps topping up)
    with prefect_stack(tmp_path, PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="5",
                       PREFECT_SERVER_SERVICES_SCHEDULER_MIN_RUNS="2", PREFECT_SERVER_SERVICES_SCHEDULER_MAX_RUNS="3",
                       PREFECT_SERVER_SERVICES_SCHEDULER_MIN_SCHEDULED_TIME="PT60S",
                       PREFECT_WORKER_QUERY_SECONDS="3") as st:
        yield st


@pytest.mark.timeout(660)
def test_scheduled_cycle_and_monitor_runs_complete(stack: dict) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # the runs that started (not those still waiting for their time): a bounded query never misses the
    # completed ones behind runs scheduled ahead
    started = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(not_any_=[StateType.SCHEDULED])))
    env, tmp = stack["env"], stack["tmp"]
    prefect(env, "work-pool", "create", POOL, "--type", "process")
    prefect(env, "--no-prompt", "deploy", "--all", "--prefect-file", str(e2e_yaml(tmp)))

    db = migrated_db(tmp)  # the cycle and the monitor start together on it
    with LiveFakeBybit() as fx:
        wenv = dict(env, QUORUM_DATABASE_URL=f"sqlite:///{db}", QUORUM_EXCHANGE_API_BASE=fx.url,
                    QUORUM_SYMBOLS="BTC/USDT:USDT,ETH/USDT:USDT")
        worker = spawn(stack["procs"], [str(BIN / "prefect"), "worker", "start", "--pool", POOL], wenv,
                       tmp / "worker.log", signal.SIGINT)
        done: dict[str, list] = {}
        deadline = time.monotonic() + 480
        seen: dict[str, str] = {}
        flows: dict = {}  # flow id -> name (two flows: read once each)
        with temporary_settings(updates={PREFECT_API_URL: stack["api"]}):
            while time.monotonic() < deadline and len(done) < len(WANT):
                assert worker.poll() is None, tail(tmp / "worker.log")
                done = {}
                with get_client(sync_client=True) as client:
                    for fr in client.read_flow_runs(flow_run_filter=started, limit=200):
                        if fr.flow_id not in flows:
                            flows[fr.flow_id] = client.read_flow(fr.flow_id).name
                        flow = flows[fr.flow_id]
                        assert fr.deployment_id is not None, fr
                        seen[f"{flow}/{fr.name}"] = f"{fr.state.name if fr.state else '?'} auto={fr.auto_scheduled}"
                        if fr.auto_scheduled and fr.state and fr.state.is_completed():
                            done.setdefault(flow, []).append(fr)
                        assert not (fr.state and (fr.state.is_failed() or fr.state.is_crashed())), (
                            f"{flow} run {fr.name} {fr.state.name}: {fr.state.message}\n"
                            + tail(tmp / "worker.log"))
                time.sleep(2)
        assert set(done) == set(WANT), f"scheduled runs completed: {sorted(done)}; runs: {seen}; worker log: " + (
            tmp / "worker.log").read_text()[-3000:]
        assert fx.calls("/v5/market/kline"), "the scheduled cycle read live candles from the local exchange"
    cycle_runs = done["trading-cycle"]
    assert all(fr.name.startswith("cycle-2") for fr in cycle_runs), [fr.name for fr in cycle_runs]
    with sqlite3.connect(db) as c:
        rows = {r[2]: r[:2] for r in c.execute("select status, source, flow_run_id from cycles")}
    for fr in cycle_runs:  # every completed scheduled cycle run stored its completed cycle on live data
        assert rows.get(str(fr.id)) == ("completed", "ccxt:bybit"), (fr.name, rows)
