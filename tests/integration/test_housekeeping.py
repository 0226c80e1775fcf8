"""Housekeeping: old finished Prefect flow runs are deleted through the API (scheduled ones stay);
old analysis rows are pruned as store/retention.py documents (money, positions and votes kept)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

pytestmark = pytest.mark.prefect
FIRST = "2025-05-23T04:00:00Z"


def test_prune_flow_runs_deletes_old_finished_runs_only(prefect_harness) -> None:  # noqa: ARG001
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Scheduled

    from tasks.housekeeping import prune_flow_runs

    @flow(name="hk-probe")
    def probe() -> int:
        return 1

    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    probes = FlowFilter(name=FlowFilterName(any_=["hk-probe"]))
    for _ in range(3):
        probe()
    with get_client(sync_client=True) as client:
        mine = client.read_flow_runs(flow_filter=probes, limit=200)
        assert len(mine) == 3
        pending = client.create_flow_run(probe, state=Scheduled(scheduled_time=datetime.now(UTC) + timedelta(days=1)))
    assert prune_flow_runs(datetime.now(UTC) - timedelta(days=1), flow_names=["hk-probe"]) == 0  # none that old
    with get_client(sync_client=True) as client:
        assert {str(r.id) for r in mine} <= {str(r.id) for r in client.read_flow_runs(flow_filter=probes, limit=200)}
    # only this test's flow (the session's other runs stay for their tests); the flow deletes any flow's
    assert prune_flow_runs(datetime.now(UTC) + timedelta(seconds=1), flow_names=["hk-probe"]) == 3
    with get_client(sync_client=True) as client:
        left = {str(r.id) for r in client.read_flow_runs(flow_filter=probes, limit=200)}
    assert not ({str(r.id) for r in mine} & left)
    assert str(pending.id) in left, "a scheduled run is never deleted"


def test_prune_analysis_keeps_money_trades_and_votes(prefect_harness, tmp_path) -> None:  # noqa: ARG001
    from core.settings import load_settings
    from flows.housekeeping import housekeeping
    from flows.trading_cycle import trading_cycle
    from store.db import get_session_factory, transaction
    from store.models import (
        CandidateRow,
        CycleRow,
        DecisionRow,
        FillRow,
        OrderRow,
        PositionRow,
        RiskVerdictRow,
        ScoreRow,
        VoteRow,
    )

    traded = trading_cycle(as_of=FIRST, broadcast=False)
    assert any(c["execution"] for c in traded["candidates"])
    quiet = trading_cycle(as_of="2025-05-23T05:00:00Z", broadcast=False)
    factory = get_session_factory(load_settings())
    with transaction(factory) as s:
        s.add(VoteRow(cycle_id=quiet["cycle_id"], symbol="BTC/USDT:USDT", member_id="gpt", action="LONG",
                      confidence=0.7, rationale="a long free-text rationale " * 20, key_factors=["trend"],
                      as_of=datetime(2025, 5, 23, 5, tzinfo=UTC), price_at_vote=100.0))
        s.execute(update(CycleRow).where(CycleRow.id == traded["cycle_id"])
                  .values(started_at=datetime.now(UTC) - timedelta(days=100)))
        s.execute(update(CycleRow).where(CycleRow.id == quiet["cycle_id"])
                  .values(started_at=datetime.now(UTC) - timedelta(days=100)))

        def count(model) -> int:  # type: ignore[no-untyped-def]
            return s.scalar(select(func.count()).select_from(model))
        before = {m.__tablename__: count(m) for m in (PositionRow, OrderRow, FillRow, DecisionRow)}
    res = housekeeping(flow_runs_days=30)
    assert res["analysis_days"] == 90 and res["flow_runs_days"] == 30
    n_sym = len(traded["candidates"])
    assert res["analysis"]["candidates"] == 2 * n_sym and res["analysis"]["scores"] == 2 * n_sym
    with transaction(factory) as s:
        assert count(CandidateRow) == 0 and count(ScoreRow) == 0
        assert count(PositionRow) == before["positions"] and count(OrderRow) == before["orders"]
        assert count(FillRow) == before["fills"]
        kept = set(s.scalars(select(DecisionRow.cycle_id)))
        assert kept == {traded["cycle_id"]}, "decisions of the cycle that traded are the audit: kept"
        assert set(s.scalars(select(RiskVerdictRow.cycle_id))) == {traded["cycle_id"]}
        vote = s.scalar(select(VoteRow))
        assert vote.rationale == "" and vote.key_factors == [] and vote.action == "LONG" and vote.confidence == 0.7
        assert all(c.summary == {} for c in s.scalars(select(CycleRow)))
    again = housekeeping()
    assert again["analysis"]["candidates"] == 0 and again["analysis"]["vote_rationales"] == 0
