"""End to end, the alternative to a work pool: `python -m deployments.serve` against a real
`prefect server start` on loopback serves the `*-served` deployments; one run of
`trading-cycle/hourly-served`, triggered as a user does (`prefect deployment run`), is picked up by
the serving process and Completed: a paper cycle on live public data (data_source: ccxt from
prefect.yaml's job env) served by the local exchange server. The scheduler is off on this server so
the only run is the triggered one."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import migrated_db, prefect, prefect_stack, spawn, tail
from tests.fakes.live_exchange import LiveFakeBybit

pytestmark = pytest.mark.slow
SERVED = "trading-cycle/hourly-served"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict]:
    with prefect_stack(tmp_path, PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false") as st:
        yield st


def _wait_for_deployments(client, names: list[str], server: subprocess.Popen, log: Path, timeout: float) -> None:  # type: ignore[no-untyped-def]
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + timeout
    for name in names:
        while True:
            assert server.poll() is None, "deployments.serve exited:\n" + tail(log)
            try:
                client.read_deployment_by_name(name)
                break
            except ObjectNotFound:
                assert time.monotonic() < deadline, f"{name} not served in {timeout:.0f} s:\n" + tail(log)
                time.sleep(1)


@pytest.mark.timeout(600)
def test_a_served_deployment_run_completes(stack: dict) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from deployments import serve

    env, tmp = stack["env"], stack["tmp"]
    db = migrated_db(tmp)
    with LiveFakeBybit() as fx:
        senv = dict(env, QUORUM_DATABASE_URL=f"sqlite:///{db}", QUORUM_EXCHANGE_API_BASE=fx.url,
                    QUORUM_SYMBOLS="BTC/USDT:USDT,ETH/USDT:USDT")
        slog = tmp / "serve.log"
        served = spawn(stack["procs"], [sys.executable, "-m", "deployments.serve"], senv, slog, signal.SIGINT)
        with temporary_settings(updates={PREFECT_API_URL: stack["api"]}), get_client(sync_client=True) as client:
            names = [f"{d.flow_name}/{d.name}" for d in serve.build()]
            assert SERVED in names and len(names) == 4
            _wait_for_deployments(client, names, served, slog, 240)
            out = prefect(env, "deployment", "run", SERVED)
            run_id = re.search(r"UUID: ([0-9a-f-]{36})", out).group(1)  # type: ignore[union-attr]
            deadline = time.monotonic() + 300
            while True:
                fr = client.read_flow_run(run_id)
                if fr.state and fr.state.is_final():
                    break
                assert served.poll() is None, "deployments.serve exited:\n" + tail(slog)
                assert time.monotonic() < deadline, f"run {fr.name} still {fr.state.name if fr.state else '?'}:\n" + (
                    tail(slog))
                time.sleep(2)
            assert fr.state.is_completed(), f"{fr.name} {fr.state.name}: {fr.state.message}\n" + tail(slog)
            dep = client.read_deployment(fr.deployment_id)
            assert dep.name == "hourly-served" and not dep.paused
        assert fx.calls("/v5/market/kline"), "the served cycle read live candles from the local exchange"
    assert fr.name.startswith("cycle-2"), fr.name
    with sqlite3.connect(db) as c:
        rows = {r[2]: r[:2] for r in c.execute("select status, source, flow_run_id from cycles")}
    assert rows == {str(fr.id): ("completed", "ccxt:bybit")}

