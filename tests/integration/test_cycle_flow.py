"""The trading cycle as a real Prefect flow run (one session harness), on the bundled history."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from store.db import get_session_factory, transaction
from store.models import CycleRow, DecisionRow, FillRow, OrderRow, PositionEventRow, PositionRow, ScoreRow

pytestmark = [pytest.mark.prefect]
FIRST = "2025-05-23T04:00:00Z"


def _count(s, model) -> int:  # type: ignore[no-untyped-def]
    return s.scalar(select(func.count()).select_from(model))


def test_cycle_opens_paper_positions_then_later_cycle_manages_them(prefect_harness) -> None:  # noqa: ARG001
    from core.settings import load_settings
    from flows.trading_cycle import trading_cycle

    r1 = trading_cycle(as_of=FIRST, broadcast=False)
    by_sym = {c["symbol"]: c for c in r1["candidates"]}
    assert len(by_sym) == 6
    assert r1["panel"]["status"].startswith("panel: 0/6 models configured")
    sol = by_sym["SOL/USDT:USDT"]
    assert sol["decision"]["action"] == "LONG" and sol["decision"]["fallback_to_math"]
    assert sol["risk"]["approved"]
    plan = sol["risk"]["plan"]
    assert plan["stop"] < plan["entry"] < plan["tp1"] < plan["tp2"]
    assert plan["risk_usd"] <= 10_000 * 0.015 + 1e-6
    # the fill is the open of the bar starting at the decision time (+ slippage), not the decision bar's close
    assert sol["execution"]["status"] == "filled"
    assert sol["execution"]["fill_time"].startswith("2025-05-23T04:00")
    assert sol["execution"]["fill_price"] != sol["price"]
    bnb = by_sym["BNB/USDT:USDT"]  # same correlation group as SOL: denied with its reason
    assert not bnb["risk"]["approved"] and any("correlation group" in x for x in bnb["risk"]["reasons"])
    opened = {p["symbol"] for p in r1["account"]["open_positions"]}
    assert "SOL/USDT:USDT" in opened

    # a second cycle at a later as-of sees the first run's positions and walks them bar by bar
    r2 = trading_cycle(as_of="2025-05-31T23:00:00Z", broadcast=False)
    assert r2["monitor"]["checked"] == len(opened)
    assert r2["monitor"]["events"], "positions opened on 05-23 must have exited or moved by 05-31"
    factory = get_session_factory(load_settings())
    with transaction(factory) as s:
        assert _count(s, CycleRow) == 2
        assert s.scalar(select(func.count()).select_from(CycleRow).where(CycleRow.status == "completed")) == 2
        assert _count(s, ScoreRow) == 12 and _count(s, DecisionRow) == 12
        rows = list(s.scalars(select(PositionRow)))
        assert {r.symbol for r in rows} == opened
        closed = [r for r in rows if r.closed_at is not None]
        assert closed and all(r.exit_reason for r in closed)
        assert _count(s, PositionEventRow) >= len(closed)
        assert _count(s, FillRow) == _count(s, OrderRow) >= len(opened) + len(closed)


def test_rerunning_the_same_decision_time_never_doubles_an_order(prefect_harness) -> None:  # noqa: ARG001
    from core.settings import load_settings
    from flows.trading_cycle import trading_cycle

    r1 = trading_cycle(as_of=FIRST, symbols=["SOL/USDT:USDT"], broadcast=False)
    r2 = trading_cycle(as_of=FIRST, symbols=["SOL/USDT:USDT"], broadcast=False)
    assert r1["candidates"][0]["execution"]["status"] == "filled"
    c2 = r2["candidates"][0]
    # the open position makes risk deny a second entry; were it approved, the order id would dedupe it
    assert (not c2["risk"]["approved"] and any("already" in x for x in c2["risk"]["reasons"])) or \
        c2["execution"]["status"] == "skipped"
    with transaction(get_session_factory(load_settings())) as s:
        assert s.scalar(select(func.count()).select_from(OrderRow)) == 1
        assert s.scalar(select(func.count()).select_from(PositionRow)) == 1


def test_flow_run_is_recorded_in_prefect_with_artifacts(prefect_harness) -> None:  # noqa: ARG001
    import asyncio

    from prefect.client.orchestration import get_client

    from flows.trading_cycle import trading_cycle

    report = trading_cycle(as_of="2025-03-03T12:00:00Z", broadcast=False)

    async def check() -> tuple[list, list]:
        async with get_client() as client:
            runs = await client.read_flow_runs()
            arts = await client.read_artifacts()
            return runs, arts

    runs, arts = asyncio.run(check())
    ids = {str(r.id) for r in runs}
    from store.db import get_session_factory as gsf

    with transaction(gsf()) as s:
        row = s.get(CycleRow, report["cycle_id"])
    assert row.flow_run_id in ids
    keys = {a.key for a in arts}
    assert {"cycle-candidates", "cycle-summary"} <= keys
