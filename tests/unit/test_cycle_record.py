"""The cycle's record: stale `running` rows (their process is gone) are reconciled, live ones are
left alone; a rerun of a decision time replaces the analysis rows of the symbols it analyses."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from core.settings import load_settings
from core.types import Action, Candidate, Vote
from pipeline import record
from store import repo
from store.db import get_session_factory, transaction
from store.models import CandidateRow, CycleRow, VoteRow

T = datetime(2025, 5, 23, 4, tzinfo=UTC)


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_running_cycles_are_marked_failed_live_ones_are_not() -> None:
    factory = get_session_factory(load_settings())
    record.start_cycle(factory, "live-one", T, "paper", "replay", None)  # this process: alive
    with transaction(factory) as s:
        dead = repo.start_cycle(s, "killed", T, "paper", "replay", datetime.now(UTC))
        dead.summary = {"owner": {"pid": _dead_pid(), "host": os.uname().nodename}}
        old = repo.start_cycle(s, "ancient", T, "paper", "replay", datetime.now(UTC) - timedelta(days=2))
        old.summary = {}
    assert sorted(r.id for r in record.stale_cycles(factory, "paper")) == ["ancient", "killed"]
    assert sorted(record.start_cycle(factory, "next", T, "paper", "replay", None)) == ["ancient", "killed"]
    with transaction(factory) as s:
        rows = {r.id: r for r in s.scalars(select(CycleRow))}
    assert rows["killed"].status == rows["ancient"].status == "failed"
    assert "stopped without finishing" in rows["killed"].summary["error"]
    assert rows["live-one"].status == rows["next"].status == "running"


def _analyse(factory, cycle_id: str, symbols: list[str]) -> None:  # type: ignore[no-untyped-def]
    with transaction(factory) as s:
        repo.start_cycle(s, cycle_id, T, "paper", "replay", datetime.now(UTC)).status = "completed"
    with transaction(factory) as s:
        repo.record_analysis(s, cycle_id, T, [Candidate(x, "fixed", "fixed") for x in symbols], {}, {},
                             [Vote("gpt", x, Action.LONG, 0.7) for x in symbols], {}, {}, {})


def test_a_rerun_replaces_the_analysis_of_its_symbols() -> None:
    factory = get_session_factory(load_settings())
    _analyse(factory, "c1", ["BTC/USDT:USDT", "ETH/USDT:USDT"])
    _analyse(factory, "c2", ["BTC/USDT:USDT"])  # reruns BTC only: ETH's rows of c1 stay
    with transaction(factory) as s:
        by_cycle = dict(s.execute(select(CandidateRow.cycle_id, func.count()).group_by(CandidateRow.cycle_id)).all())
        votes = s.scalar(select(func.count()).select_from(VoteRow))
        status = {r.id: r.status for r in s.scalars(select(CycleRow))}
    assert by_cycle == {"c1": 1, "c2": 1} and votes == 2
    assert status == {"c1": "completed", "c2": "completed"}
    _analyse(factory, "c3", ["BTC/USDT:USDT", "ETH/USDT:USDT"])
    with transaction(factory) as s:
        status = {r.id: r.status for r in s.scalars(select(CycleRow))}
        assert s.scalar(select(func.count()).select_from(VoteRow)) == 2
    assert status == {"c1": "superseded", "c2": "superseded", "c3": "completed"}


def test_the_account_before_a_decision_leaves_out_what_its_earlier_run_opened() -> None:
    from decimal import Decimal

    from core.settings import PaperSettings
    from core.types import Side, TradePlan
    from exchange.paper import PaperAccount
    from pipeline.account import as_before

    acct = PaperAccount.from_settings(PaperSettings())
    plan = TradePlan("SOL/USDT:USDT", Side.LONG, 180.0, 171.0, 193.5, 202.5, 3, Decimal("10"), 1800.0, 600.0,
                     90.0, 0.9, 120.0, 5.0)
    acct.open(plan, 180.0, T - timedelta(hours=1), position_id="SOL-earlier")
    balance, equity, fees = acct.balance, acct.equity({"SOL/USDT:USDT": 180.0}), acct.fees_paid
    acct.open(plan.__class__(**{**plan.__dict__, "symbol": "DOGE/USDT:USDT"}), 180.0, T, position_id="DOGE-now")
    view = as_before(acct, T)
    assert [p.id for p in view.open_positions()] == ["SOL-earlier"]
    assert view.balance == balance and view.fees_paid == fees
    assert view.equity({"SOL/USDT:USDT": 180.0}) == equity
    assert len(acct.open_positions()) == 2  # the real account is untouched
    assert as_before(acct, T + timedelta(hours=1)) is acct  # nothing opened at/after that time
