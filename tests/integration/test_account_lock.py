"""One run per account at a time (store/lock.py), tried from outside with real processes: the first
run is held mid-way (QUORUM_PAUSE_AT, after it loaded the account) while the second starts. The
second waits for the lock, then runs on what the first committed: the end state equals the two
commands run one after the other, nothing doubled. SQLite (file lock) and PostgreSQL (advisory lock)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.integration.conftest import quorum_in_process

pytestmark = [pytest.mark.slow, pytest.mark.prefect]
ROOT = Path(__file__).resolve().parents[2]
FIRST = "2025-05-23T04:00:00Z"
HOUR_LATER = "2025-05-23T05:00:00Z"
LATER = "2025-05-25T04:00:00Z"
MUCH_LATER = "2025-05-27T04:00:00Z"
PAUSE_S = "180"  # at most: the first run is released as soon as the second is seen waiting


@pytest.fixture
def api_url(prefect_harness) -> str:  # noqa: ARG001
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value())


def _env(db_url: str, api_url: str, pause_at: str | None = None, release: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUORUM_")}
    env.update(QUORUM_DATABASE_URL=db_url, PREFECT_API_URL=api_url, PYTHONPATH=str(ROOT))
    if pause_at:
        env.update(QUORUM_PAUSE_AT=pause_at, QUORUM_PAUSE_S=PAUSE_S, QUORUM_PAUSE_RELEASE=str(release))
    return env


def start(db_url: str, api_url: str, cwd: Path, *args: str, pause_at: str | None = None,
          release: Path | None = None, stderr=subprocess.PIPE) -> subprocess.Popen[str]:  # type: ignore[no-untyped-def]
    return subprocess.Popen([sys.executable, "-m", "cli.app", *args], cwd=cwd,
                            env=_env(db_url, api_url, pause_at, release), stdout=subprocess.PIPE, stderr=stderr,
                            text=True)


def finish(p: subprocess.Popen[str]) -> tuple[str, str]:
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, out[-2000:] + (err or "")[-2000:]
    return out, err or ""


def run(db_url: str, api_url: str, cwd: Path, *args: str) -> str:  # noqa: ARG001
    """A reference run, one command after the other: in this process (same code, no start-up cost)."""
    return quorum_in_process(db_url, *args)


def state(db_url: str) -> dict:
    eng = create_engine(db_url.replace("postgresql+psycopg", "postgresql+psycopg"))
    try:
        with eng.connect() as c:
            def rows(q: str) -> list:
                return sorted(tuple(r) for r in c.execute(text(q)).fetchall())
            return {
                "positions": rows("select symbol, side, entry, qty_initial, qty_open, stop, phase, closed_at, "
                                  "exit_reason from positions"),
                "account": rows("select mode, balance, realised_pnl, fees_paid, clock from accounts"),
                "events": rows("select kind, ts, price, qty from position_events"),
                "orders": rows("select kind, qty, status from orders"),
                "fills": rows("select symbol, qty, price, fee, ts from fills"),
                "outbox": rows("select kind, symbol from outbox_posts"),
            }
    finally:
        eng.dispose()


def wait_until_holding(db_url: str, p: subprocess.Popen[str], what: str) -> None:
    """Until the first run holds the account: its cycle row is written (cycle) or its lock is
    visible (file content / pg_locks)."""
    deadline = time.monotonic() + 120
    eng = create_engine(db_url)
    try:
        while time.monotonic() < deadline:
            assert p.poll() is None, p.communicate()
            try:
                with eng.connect() as c:
                    if what == "cycle" and c.execute(text("select count(*) from cycles")).scalar():
                        return
                    if what == "monitor" and db_url.startswith("postgresql") and c.execute(text(
                            "select count(*) from pg_locks where locktype = 'advisory' and granted")).scalar():
                        return
            except Exception:  # noqa: BLE001 - tables not created yet
                pass
            if what == "monitor" and db_url.startswith("sqlite"):
                lock = Path(db_url.removeprefix("sqlite:///") + ".lock")
                if lock.exists() and lock.read_text().strip():
                    return
            time.sleep(0.2)
        raise AssertionError("the first run never took the account")
    finally:
        eng.dispose()


def overlap(db_url: str, api_url: str, cwd: Path, first: tuple[str, ...], second: tuple[str, ...],
            pause_at: str) -> tuple[str, str]:
    """Start `first` held mid-way, start `second` once the first holds the account; both must succeed.
    Returns (second's stdout, second's stderr)."""
    import uuid

    release = cwd / f"release-{uuid.uuid4().hex[:8]}"
    a = start(db_url, api_url, cwd, *first, pause_at=pause_at, release=release)
    wait_until_holding(db_url, a, "cycle" if first[0] == "cycle" else "monitor")
    err_path = release.with_suffix(".stderr")
    with open(err_path, "w") as err_file:
        b = start(db_url, api_url, cwd, *second, stderr=err_file)
        deadline = time.monotonic() + 180
        while "waiting for the paper account" not in err_path.read_text():
            assert b.poll() is None, f"the second run did not wait: {err_path.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "the second run never reached the lock"
            time.sleep(0.2)
        release.touch()  # the first run carries on and finishes; then the second takes the account
        finish(a)
        out, _ = finish(b)
    return out, err_path.read_text()


def no_doubles(s: dict) -> None:
    open_syms = [p[0] for p in s["positions"] if p[7] is None]
    assert len(open_syms) == len(set(open_syms)), f"two open positions in one symbol: {open_syms}"
    assert len(s["fills"]) == len(set(s["fills"]))
    assert len(s["events"]) == len(set(s["events"]))


def sqlite_url(tmp_path: Path, name: str) -> str:
    d = tmp_path / name
    d.mkdir()
    return f"sqlite:///{d / 'q.db'}"


def copy_db(src: str, tmp_path: Path, name: str) -> str:
    """A copy of a SQLite database (sqlite3's backup API: WAL included)."""
    import sqlite3

    dst = sqlite_url(tmp_path, name)
    with sqlite3.connect(src.removeprefix("sqlite:///")) as a, sqlite3.connect(dst.removeprefix("sqlite:///")) as b:
        a.backup(b)
    return dst


CYC, CYC2 = ("cycle", "--as-of", FIRST), ("cycle", "--as-of", HOUR_LATER)
MON, MON2 = ("monitor", "--as-of", LATER), ("monitor", "--as-of", MUCH_LATER)
# name: (the first run, held mid-way; the second, started while it holds the account; where the first
# is held; does the pair start from the first cycle's database (else from an empty one))
PAIRS = {
    "cycle-cycle": (CYC, CYC2, "cycle:after-load", False),  # a manual run during a scheduled one
    "cycle-monitor": (CYC, MON, "cycle:after-load", False),
    "monitor-monitor": (MON, MON2, "monitor:after-load", True),  # on the positions of the first cycle
    "cycle-positions": (CYC, ("positions", "--json"), "cycle:after-load", False),
    "cycle-halt": (CYC, ("halt", "--close-all"), "cycle:after-load", False),
}


@pytest.mark.timeout(600)  # 2 real `quorum` processes, the references in this process
@pytest.mark.parametrize("pair", list(PAIRS))
def test_command_pairs_never_interleave_sqlite(tmp_path: Path, api_url: str, pair: str) -> None:
    first, second, pause_at, seeded = PAIRS[pair]
    # the reference: the same commands one after the other (from one cycle's database when seeded)
    seed = sqlite_url(tmp_path, "seed")
    run(seed, api_url, tmp_path, *CYC)
    after_cycle = state(seed)
    assert [p for p in after_cycle["positions"] if p[7] is None], "the first cycle must open positions"
    ref = copy_db(seed, tmp_path, "ref")
    if seeded:  # (otherwise the pair's first command is the seed's cycle)
        run(ref, api_url, tmp_path, *first)
    if second[0] != "positions":
        run(ref, api_url, tmp_path, *second)

    db = copy_db(seed, tmp_path, "db") if seeded else sqlite_url(tmp_path, "db")
    out, _ = overlap(db, api_url, tmp_path, first, second, pause_at)
    s = state(db)
    no_doubles(s)
    if pair == "cycle-positions":  # positions waits, then shows what the cycle opened
        import json

        shown = sorted(p["symbol"] for p in json.loads(out)["open_positions"])
        assert shown == sorted(p[0] for p in after_cycle["positions"] if p[7] is None)
        assert s == after_cycle
    elif pair == "cycle-halt":
        # the halt is recorded at once (the cycle's risk stage may see it and open nothing), the
        # close-all waits for the cycle; no position is left open, nothing doubled
        assert not [p for p in s["positions"] if p[7] is None]
        assert s == state(ref) or (s["positions"] == [] and s["orders"] == [] and s["fills"] == [])
    else:
        assert s == state(ref)


def test_two_cycles_at_once_postgresql(tmp_path: Path, api_url: str, pg_url: str) -> None:
    import uuid

    import psycopg

    raw = pg_url.replace("postgresql+psycopg", "postgresql")
    schemas = [f"ql_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    with psycopg.connect(raw, autocommit=True) as c:
        for sch in schemas:
            c.execute(f'CREATE SCHEMA "{sch}"')
    try:
        ref, db = (f"{pg_url}?options=-csearch_path%3D{sch}" for sch in schemas)
        run(ref, api_url, tmp_path, "cycle", "--as-of", FIRST)
        run(ref, api_url, tmp_path, "cycle", "--as-of", HOUR_LATER)
        overlap(db, api_url, tmp_path, ("cycle", "--as-of", FIRST), ("cycle", "--as-of", HOUR_LATER),
                "cycle:after-load")
        s = state(db)
        no_doubles(s)
        assert s == state(ref)
    finally:
        with psycopg.connect(raw, autocommit=True) as c:
            for sch in schemas:
                c.execute(f'DROP SCHEMA "{sch}" CASCADE')


def test_busy_account_without_waiting_is_a_clear_error(tmp_path: Path) -> None:
    from core.settings import load_settings
    from store.lock import AccountBusy, account_lock

    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'q.db'}")
    code = ("import sys, time; from core.settings import load_settings; from store.lock import account_lock\n"
            f"with account_lock(load_settings(database_url={settings.database_url!r}), 'a holder'):\n"
            "    print('held', flush=True); time.sleep(30)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        msgs: list[str] = []
        with pytest.raises(AccountBusy, match=r"paper account is busy: a holder \(pid \d+\) is running"):
            with account_lock(settings, "a cycle", wait_s=0.5, on_wait=msgs.append):
                pass
        assert msgs and "waiting for the paper account" in msgs[0]
    finally:
        holder.kill()
        holder.wait()
    with account_lock(settings, "a cycle", wait_s=0):  # released with its holder's process (killed)
        pass
