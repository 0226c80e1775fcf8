"""SIGKILL in the middle of a cycle and of a monitor run (real subprocesses), then restart: the same
positions, balance and events as an uninterrupted run, nothing doubled."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import quorum_in_process

pytestmark = [pytest.mark.slow, pytest.mark.prefect]
ROOT = Path(__file__).resolve().parents[2]
FIRST = "2025-05-23T04:00:00Z"
LATER = "2025-05-31T23:00:00Z"


@pytest.fixture
def api_url(prefect_harness) -> str:  # noqa: ARG001
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value())


def quorum(db: Path, api_url: str, *args: str, crash: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUORUM_")}
    env.update(QUORUM_DATABASE_URL=f"sqlite:///{db}", PREFECT_API_URL=api_url, PYTHONPATH=str(ROOT))
    if crash:
        env["QUORUM_CRASH_AT"] = crash
    return subprocess.run([sys.executable, "-m", "cli.app", *args], cwd=db.parent, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


def state(db: Path) -> dict:
    with sqlite3.connect(db) as c:
        def rows(q: str) -> list:
            try:
                return sorted(c.execute(q).fetchall())
            except sqlite3.OperationalError:
                return []
        return {
            "positions": rows("select id, symbol, side, entry, qty_initial, qty_open, stop, phase, tp1_done, "
                              "round(realised_pnl, 6), round(fees_paid, 6), round(funding_paid, 6), closed_at, "
                              "exit_reason from positions"),
            "account": rows("select mode, balance, realised_pnl, fees_paid, funding_paid from accounts"),
            "events": rows("select position_id, kind, ts, price, qty, round(pnl, 6) from position_events"),
            "orders": rows("select position_id, kind, qty, status from orders"),
            "fills": rows("select symbol, qty, price, fee, ts from fills"),
            "outbox": len(rows("select key from outbox_posts")),
        }


def ok(r: subprocess.CompletedProcess[str]) -> None:
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]


def test_kill_mid_cycle_and_mid_monitor_then_restart(tmp_path: Path, api_url: str) -> None:
    ref, crashed = tmp_path / "ref" / "q.db", tmp_path / "crash" / "q.db"
    ref.parent.mkdir()
    crashed.parent.mkdir()

    # reference: no crash (in this process: the same code, without a new interpreter's start-up)
    quorum_in_process(f"sqlite:///{ref}", "cycle", "--as-of", FIRST)
    after_cycle = state(ref)
    assert after_cycle["positions"], "the reference cycle must open positions"

    # killed after executing the plans, before the transaction commits: nothing is written
    r = quorum(crashed, api_url, "cycle", "--as-of", FIRST, crash="cycle:before-commit")
    assert r.returncode == -9, r.stderr[-2000:]
    s = state(crashed)
    assert s["positions"] == [] and s["orders"] == [] and s["fills"] == [] and s["outbox"] == 0
    # restart: the same result as the uninterrupted run
    ok(quorum(crashed, api_url, "cycle", "--as-of", FIRST))
    assert state(crashed) == after_cycle

    # killed right after the commit: a rerun of the same decision time doubles nothing
    r = quorum(crashed, api_url, "cycle", "--as-of", FIRST, crash="cycle:after-commit")
    assert r.returncode == -9
    ok(quorum(crashed, api_url, "cycle", "--as-of", FIRST))
    assert state(crashed) == after_cycle

    # monitor: reference run, then a run killed before its first commit and one killed after it
    quorum_in_process(f"sqlite:///{ref}", "monitor", "--as-of", LATER)
    after_monitor = state(ref)
    assert after_monitor["events"] != after_cycle["events"]
    r = quorum(crashed, api_url, "monitor", "--as-of", LATER, crash="monitor:before-commit")
    assert r.returncode == -9
    assert state(crashed) == after_cycle
    r = quorum(crashed, api_url, "monitor", "--as-of", LATER, crash="monitor:after-commit")
    assert r.returncode == -9
    partial = state(crashed)
    assert after_cycle["events"] != partial["events"]  # the first position was committed
    ok(quorum(crashed, api_url, "monitor", "--as-of", LATER))
    assert state(crashed) == after_monitor
    ok(quorum(crashed, api_url, "monitor", "--as-of", LATER))  # and once more: idempotent
    assert state(crashed) == after_monitor
