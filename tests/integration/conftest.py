"""A database of real demo cycles for the dashboard tests (built once per run, shared by the xdist workers): three trading
cycles and a position monitor run as Prefect flows on the bundled history, with the six-model panel
on local wire-protocol servers (real SDKs on the code path; qwen-local votes its own way, so its
shadow account differs), and a math backtest report."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

SYMS = ["SOL/USDT:USDT", "XRP/USDT:USDT", "BTC/USDT:USDT"]
CYCLES = ["2025-05-23T04:00:00Z", "2025-05-27T04:00:00Z", "2025-05-30T04:00:00Z"]
MONITOR = "2025-05-26T00:00:00Z"
QWEN_RATIONALE = "picky view on {symbol}: only XRP has a clean breakout on the 4h chart"


def picky(body: dict) -> str:
    from tests.fakes.panel_answers import decision_input, panel_responder, verdict_for

    payload = decision_input(body)
    if payload is None:
        return panel_responder(body)
    out = []
    for c in payload.get("candidates", []):
        v = verdict_for(c)
        v["action"] = "LONG" if c["symbol"].startswith("XRP") else "WAIT"
        v["confidence"] = 0.8
        v["rationale"] = QWEN_RATIONALE.format(symbol=c["symbol"])
        v["key_factors"] = ["4h breakout", "volume"]
        out.append(v)
    return json.dumps({"verdicts": out})


@dataclass(frozen=True)
class DemoDB:
    dir: Path
    url: str
    reports: Path
    cycle_ids: tuple[str, ...]

    def copy(self, dest: Path) -> str:
        """A private copy of the database (for tests that change it), as a URL."""
        import sqlite3

        dest.mkdir(parents=True, exist_ok=True)
        src, dst = sqlite3.connect(self.dir / "demo.db"), sqlite3.connect(dest / "demo.db")
        try:
            src.backup(dst)  # a consistent copy (WAL included), while other workers read the original
        finally:
            dst.close()
            src.close()
        return f"sqlite:///{dest / 'demo.db'}"

    def settings(self, url: str | None = None, **kw):  # type: ignore[no-untyped-def]
        from core.settings import Settings

        return Settings(database_url=url or self.url, **kw)


def _build_demo_db(d: Path) -> tuple[str, ...]:
    """Three trading cycles, a position monitor run and a math backtest report into `d` (the cycle ids)."""
    from tests.fakes.llm_servers import LocalPanel
    from tests.fakes.panel_answers import panel_responder

    url = f"sqlite:///{d / 'demo.db'}"
    reports = d / "reports"
    with pytest.MonkeyPatch.context() as mp, LocalPanel(responder=panel_responder) as panel:
        import os

        for k in list(os.environ):
            if k.startswith("QUORUM_") and k not in ("QUORUM_TEST_PG_URL", "QUORUM_TEST_REDIS_URL"):
                mp.delenv(k, raising=False)
        mp.setenv("QUORUM_DATABASE_URL", url)
        mp.chdir(d)
        panel.servers["ollama"].responder = picky
        for k, v in panel.env.items():
            mp.setenv(k, v)
        from backtest.run import execute
        from core.settings import load_settings
        from flows.position_monitor import position_monitor
        from flows.trading_cycle import trading_cycle

        ids = [trading_cycle(as_of=CYCLES[0], symbols=SYMS, broadcast=False)["cycle_id"]]
        position_monitor(as_of=MONITOR, broadcast=False)
        ids += [trading_cycle(as_of=t, symbols=SYMS, broadcast=False)["cycle_id"] for t in CYCLES[1:]]
        execute(start="2025-03-01", end="2025-03-03", panel="math", symbols=["BTC/USDT:USDT", "ETH/USDT:USDT"],
                out_dir=str(reports), progress=False, settings=load_settings())
    from store.db import dispose_all

    dispose_all()
    import sqlite3

    c = sqlite3.connect(d / "demo.db")
    try:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the main file: read-only from here on
    finally:
        c.close()
    return tuple(ids)


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> DemoDB:
    """Built once per run: under pytest-xdist the first worker that needs it builds it (with its Prefect
    harness) in the run's shared temporary folder, under a file lock; the other workers wait for it and
    use the same files. Read-only for the tests: those that change the database work on copy()."""
    import fcntl
    import os

    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:
        d = tmp_path_factory.mktemp("dashboard-demo")
        request.getfixturevalue("prefect_harness")
        ids = _build_demo_db(d)
        return DemoDB(d, f"sqlite:///{d / 'demo.db'}", d / "reports", ids)
    shared = tmp_path_factory.getbasetemp().parent  # one folder per run, the same for every worker
    meta = shared / "dashboard-demo.json"
    with open(shared / "dashboard-demo.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not meta.exists():
                d = shared / f"dashboard-demo-{worker}"  # a worker's own folder: a failed build is not reused
                d.mkdir()
                request.getfixturevalue("prefect_harness")
                ids = _build_demo_db(d)
                meta.write_text(json.dumps({"dir": str(d), "cycle_ids": list(ids)}))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    built = json.loads(meta.read_text())
    d = Path(built["dir"])
    return DemoDB(d, f"sqlite:///{d / 'demo.db'}", d / "reports", tuple(built["cycle_ids"]))


def quorum_in_process(db_url: str, *args: str) -> str:
    """A `quorum` command run in this process on `db_url` (the same code as the CLI, without the start-up
    of a new interpreter: for reference runs of tests whose runs under test are real processes). Its output;
    a failure shows it."""
    import os

    from typer.testing import CliRunner

    from cli.app import app

    old = os.environ.get("QUORUM_DATABASE_URL")
    os.environ["QUORUM_DATABASE_URL"] = db_url
    try:
        r = CliRunner().invoke(app, list(args), catch_exceptions=False)
    finally:
        if old is None:
            os.environ.pop("QUORUM_DATABASE_URL", None)
        else:
            os.environ["QUORUM_DATABASE_URL"] = old
    assert r.exit_code == 0, r.output[-2000:]
    return r.output


@contextmanager
def account_held(settings, what: str = "a trading cycle") -> Iterator[None]:  # type: ignore[no-untyped-def]
    """Another run holding `settings`' account (store/lock.py) for the block, from its own thread (so its
    own lock handle, as a second process would have)."""
    import threading

    from store.lock import account_lock

    held, release = threading.Event(), threading.Event()

    def run() -> None:
        with account_lock(settings, what):
            held.set()
            release.wait(60)

    t = threading.Thread(target=run)
    t.start()
    try:
        assert held.wait(10), "the lock holder did not start"
        yield
    finally:
        release.set()
        t.join(10)
