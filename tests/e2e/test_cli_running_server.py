"""`quorum cycle` against a running Prefect server (PREFECT_API_URL), as the README tells users to
run it: the process ends without the interpreter's teardown (cli.lifecycle.quick_exit), and
everything Prefect sends in the background still arrives: the run's INFO lines up to the last one
(`cycle ... done`, logged just before the flow returns), its task runs (risk, execute, broadcast
in the graph) and its three artifacts."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.e2e.harness import BIN, ROOT, base_env, start_warm, stop_group
from tests.fakes.prefect_runs import read_run

pytestmark = pytest.mark.slow
STAGES = {"risk", "execute", "broadcast", "score"}  # task runs of a cycle, in the graph


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, prefect_api_url: str) -> Iterator[dict]:
    """The running server: this worker's Prefect test server (tests/conftest.py, already up, not a second
    one), with the environment a user's shell has (PREFECT_API_URL set, no QUORUM_ settings); what the
    tests start against it ("procs": (Popen, stop signal)) is stopped on the way out."""
    tmp = tmp_path_factory.mktemp("stack")
    procs: list[tuple[subprocess.Popen, int]] = []
    try:
        yield {"api": prefect_api_url, "env": base_env(tmp, prefect_api_url), "procs": procs, "tmp": tmp}
    finally:
        for p, sig in reversed(procs):
            stop_group(p, sig)


@pytest.mark.timeout(420)
@pytest.mark.parametrize("start", ["cold", "warm"])
def test_cli_cycle_on_a_running_server_delivers_logs_tasks_and_artifacts(stack: dict, start: str) -> None:
    """The same with the command handed to `quorum warm` (a forked child of a loaded process)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    db = stack["tmp"] / f"quorum-{start}.db"
    if start == "warm":
        env, log = start_warm(stack["procs"], stack["env"], stack["tmp"])
    else:
        env = dict(stack["env"], QUORUM_WARM="0")
    r = subprocess.run([str(BIN / "quorum"), "cycle", "--as-of", "2025-05-23T04:00:00Z"],
                       env=dict(env, QUORUM_DATABASE_URL=f"sqlite:///{db}"), cwd=ROOT, capture_output=True,
                       text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    if start == "warm":
        assert "runs `quorum cycle --as-of" in log.read_text()
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
            settled = any(m.startswith(done) for m in logs) and STAGES <= {t.name.split("-")[0] for t in tasks} and all(
                t.state and t.state.is_completed() for t in tasks)  # every stage's task run recorded, not only the first
            if settled or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert run.state.is_completed() and run.name == "cycle-20250523T0400"
    assert any(m.startswith(done) for m in logs), logs
    for stage in ("monitor:", "candidates", "math scores:", "execution:", "broadcast:"):
        assert any(stage in m for m in logs), (stage, logs)
    assert STAGES <= {t.name.split("-")[0] for t in tasks}
    assert all(t.state and t.state.is_completed() for t in tasks), [(t.name, t.state) for t in tasks]
    assert {a.key for a in arts} == {"cycle-candidates", "cycle-summary", "cycle-votes"}


@pytest.mark.timeout(300)
def test_with_a_running_server_a_bad_as_of_fails_the_run_with_the_same_line(stack: dict) -> None:
    """With a running server the --as-of and database checks are the flow's first steps (not repeated
    before it): the same one-line error and exit code 2 as a cold check, and nothing written."""
    db = stack["tmp"] / "quorum-bad.db"
    env = dict(stack["env"], QUORUM_WARM="0", QUORUM_DATABASE_URL=f"sqlite:///{db}")
    r = subprocess.run([str(BIN / "quorum"), "cycle", "--as-of", "1999-01-01T00:00:00Z"], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=240, check=False)
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    assert r.stderr.startswith("error: --as-of 1999-01-01T00:00:00+00:00 is outside the replay data"), r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    with sqlite3.connect(db) as c:
        assert c.execute("select count(*) from cycles").fetchone()[0] == 0
