"""`quorum cycle` against a running Prefect server (PREFECT_API_URL), as the README tells users to
run it: the process ends without the interpreter's teardown (cli.lifecycle.quick_exit), and
everything Prefect sends in the background still arrives: the run's INFO lines up to the last one
(`cycle ... done`, logged just before the flow returns), its task runs (risk, execute, broadcast
in the graph) and its three artifacts."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.harness import BIN, ROOT, base_env
from tests.fakes.prefect_runs import read_run

pytestmark = pytest.mark.slow


@pytest.fixture
def stack(tmp_path: Path, prefect_api_url: str) -> dict:
    """The running server: this worker's Prefect test server (tests/conftest.py), already up, with the
    environment a user's shell has (PREFECT_API_URL set, no QUORUM_ settings)."""
    return {"api": prefect_api_url, "env": base_env(tmp_path, prefect_api_url), "tmp": tmp_path}


@pytest.mark.timeout(420)
def test_cli_cycle_on_a_running_server_delivers_logs_tasks_and_artifacts(stack: dict) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    db = stack["tmp"] / "quorum.db"
    r = subprocess.run([str(BIN / "quorum"), "cycle", "--as-of", "2025-05-23T04:00:00Z"],
                       env=dict(stack["env"], QUORUM_DATABASE_URL=f"sqlite:///{db}"), cwd=ROOT, capture_output=True,
                       text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "Decisions and risk" in r.stdout, "the console output is flushed before the quick exit"
    assert "temporary Prefect server" not in r.stderr
    with sqlite3.connect(db) as c:
        cycle_id, run_id, status = c.execute("select id, flow_run_id, status from cycles").fetchone()
    assert status == "completed"
    with temporary_settings(updates={PREFECT_API_URL: stack["api"]}):
        done = f"cycle {cycle_id} done"
        deadline = time.monotonic() + 60  # the server records what it received a moment later
        while True:
            run, logs, tasks, arts = read_run(run_id)
            logs = [lg.message for lg in logs]
            settled = any(m.startswith(done) for m in logs) and tasks and all(
                t.state and t.state.is_completed() for t in tasks)
            if settled or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert run.state.is_completed() and run.name == "cycle-20250523T0400"
    assert any(m.startswith(done) for m in logs), logs
    for stage in ("monitor:", "candidates", "math scores:", "execution:", "broadcast:"):
        assert any(stage in m for m in logs), (stage, logs)
    assert {"risk", "execute", "broadcast", "score"} <= {t.name.split("-")[0] for t in tasks}
    assert all(t.state and t.state.is_completed() for t in tasks), [(t.name, t.state) for t in tasks]
    assert {a.key for a in arts} == {"cycle-candidates", "cycle-summary", "cycle-votes"}
