"""The paper cycle with another strategy than trend (a real Prefect flow run on the bundled history):
resting grid orders are stored with the account, walked bar by bar by the next cycle's monitor
(fills stored as orders + fills, events queued), and the strategy's state survives between cycles;
per-symbol strategies leave trend symbols on the trend path."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, select

from store.db import get_session_factory, transaction
from store.models import FillRow, OrderRow, PositionRow

pytestmark = [pytest.mark.prefect]
SYMS = ["BTC/USDT:USDT", "XRP/USDT:USDT"]


def test_grid_in_the_paper_cycle_rests_fills_and_repositions(prefect_harness, monkeypatch) -> None:  # noqa: ARG001
    from core.settings import load_settings
    from exchange.paper import PaperAccount
    from flows.trading_cycle import trading_cycle
    from pipeline.account import load

    monkeypatch.setenv("QUORUM_STRATEGY", "grid")
    r1 = trading_cycle(as_of="2025-03-03T00:00:00Z", symbols=SYMS, broadcast=False)
    for c in r1["candidates"]:
        assert c["strategy"]["strategy"] == "grid" and "grid built" in c["strategy"]["note"]
        placed = [i for i in c["strategy"]["intents"] if i["status"] == "placed"]
        assert len(placed) == 10  # 5 levels per side
        assert not c["risk"]["approved"] and "strategy step" in c["risk"]["reasons"][0]
    settings = load_settings()
    factory = get_session_factory(settings)
    acct = load(factory, settings)
    assert len(acct.open_orders()) == 20 and not acct.open_positions()
    assert set(acct.strategy_state) == set(SYMS)
    # BTC fell ~7 % by 03-05: buys fill, some take profit, the rest stop out below the range
    r2 = trading_cycle(as_of="2025-03-05T00:00:00Z", symbols=SYMS, broadcast=False)
    assert r2["monitor"]["orders"]["fills"] > 10
    assert any(" tp @ " in e for e in r2["monitor"]["events"]) and any(" stop @ " in e for e in r2["monitor"]["events"])
    with transaction(factory) as s:
        n_fills = s.scalar(select(func.count()).select_from(FillRow))
        assert n_fills == s.scalar(select(func.count()).select_from(OrderRow)) == r2["monitor"]["orders"]["fills"]
        rows = list(s.scalars(select(PositionRow)))
        assert rows and all(r.closed_at is None or r.exit_reason in ("tp", "stop") for r in rows)
    acct2 = load(factory, settings)
    assert acct2.orders_checked["BTC/USDT:USDT"].isoformat().startswith("2025-03-05T00:00")
    # the stored account round-trips exactly (resting orders, walk marks, strategy state included)
    assert PaperAccount.from_dict(acct2.compact_dict()).compact_dict() == acct2.compact_dict()
    # rerunning the same decision time places nothing twice
    n_orders = len(acct2.open_orders())
    trading_cycle(as_of="2025-03-05T00:00:00Z", symbols=SYMS, broadcast=False)
    assert len(load(factory, settings).open_orders()) == n_orders


def test_per_symbol_strategy_leaves_trend_symbols_on_the_trend_path(prefect_harness, monkeypatch) -> None:  # noqa: ARG001
    from flows.trading_cycle import trading_cycle

    monkeypatch.setenv("QUORUM_STRATEGY_SYMBOLS", '{"XRP/USDT:USDT": "grid"}')
    r = trading_cycle(as_of="2025-03-03T00:00:00Z", symbols=SYMS, broadcast=False)
    by = {c["symbol"]: c for c in r["candidates"]}
    assert "strategy" not in by["BTC/USDT:USDT"]  # trend: the report is what it always was
    assert by["XRP/USDT:USDT"]["strategy"]["strategy"] == "grid"


def test_volatility_in_the_paper_cycle_opens_what_the_backtest_opens(prefect_harness, monkeypatch) -> None:  # noqa: ARG001
    """Same facts, same functions: the paper cycle at a decision time opens the position the backtest
    opened at that time (same fill, same size), and queues its entry post."""
    from backtest.run import parse_range, replay_source
    from backtest.strategies import run_strategy_backtest
    from core.settings import load_settings
    from flows.trading_cycle import trading_cycle
    from store.outbox import OutboxPost

    monkeypatch.setenv("QUORUM_STRATEGY", "volatility")
    settings = load_settings()
    bt = run_strategy_backtest(settings, replay_source(settings), *parse_range("2025-03-02T16:00", "2025-03-02T16:00"),
                               strategy="volatility", symbols=SYMS, mc_runs=10, leaderboard_runs=10)
    opened = [f for f in bt.fills if f["kind"] == "open"]
    assert opened, "the bundled history has a volatility entry at this time"
    r = trading_cycle(as_of="2025-03-02T16:00:00Z", symbols=SYMS, broadcast=False)
    by = {c["symbol"]: c for c in r["candidates"]}
    for f in opened:
        res = [i for i in by[f["symbol"]]["strategy"]["intents"] if i["intent"] == "Open"]
        assert res and res[0]["status"] == "filled", by[f["symbol"]]["strategy"]
    live = {p["symbol"]: p for p in r["account"]["open_positions"]}
    for f in opened:
        p = live[f["symbol"]]
        assert abs(p["entry"] - f["fill_price"]) < 1e-9 and p["qty"] == f["qty"], (p, f)
    factory = get_session_factory(settings)
    with transaction(factory) as s:
        kinds = [row.kind for row in s.scalars(select(OutboxPost))]
    assert kinds.count("entry") == len(opened)


def test_rebalance_in_the_paper_cycle_trades_the_spot_account_once_per_decision_time(prefect_harness,  # noqa: ARG001
                                                                                     monkeypatch) -> None:
    from core.settings import load_settings
    from flows.trading_cycle import trading_cycle
    from store.models import AccountRow, EquitySnapshotRow

    monkeypatch.setenv("QUORUM_STRATEGY", "rebalance")
    r1 = trading_cycle(as_of="2025-01-02T00:00:00Z", symbols=SYMS, broadcast=False)
    rb = r1["rebalance"]
    assert rb["status"] == "rebalanced" and {t["asset"] for t in rb["trades"]} == {"BTC", "XRP"}
    assert all(t["side"] == "buy" for t in rb["trades"])  # from all cash to the targets
    assert all(abs(w - 1 / 3) < 0.01 for w in rb["weights"].values())
    assert not r1["account"]["open_positions"]  # nothing on the futures account
    factory = get_session_factory(load_settings())
    from backtest.records import load_export_data

    _, audit = load_export_data(factory, "paper", audit=True)  # the audit trail has the cycle's trades
    ords = [o for r in audit or [] if r.cycle_id == r1["cycle_id"] for o in r.orders]
    assert sorted(o.side for o in ords) == ["buy", "buy"]
    r2 = trading_cycle(as_of="2025-01-02T00:00:00Z", symbols=SYMS, broadcast=False)
    assert r2["rebalance"]["status"] == "skipped"
    with transaction(factory) as s:
        row = s.get(AccountRow, "spot")
        assert row is not None and set(row.state["spot"]["holdings"]) == {"BTC", "XRP", "USDT"}
        assert len(row.state["spot"]["trades"]) == 2
        snaps = list(s.scalars(select(EquitySnapshotRow).where(EquitySnapshotRow.mode == "spot")))
        assert len(snaps) == 1 and snaps[0].equity < 10_000  # fees and slippage paid
        # each trade is an order + fill row like any other trade: the cycle's id, mode spot, once
        orders = list(s.scalars(select(OrderRow).where(OrderRow.mode == "spot").order_by(OrderRow.id)))
        assert [(o.cycle_id, o.position_id, o.kind, o.status) for o in orders] == [
            (r1["cycle_id"], f"spot-{t['asset']}", "open", "filled") for t in rb["trades"]]
        fills = {f.order_id: f for f in s.scalars(select(FillRow))}
        for o, t in zip(orders, rb["trades"], strict=True):
            f = fills[o.id]
            assert (o.symbol, o.qty, f.price, f.fee) == (f"{t['asset']}/USDT:USDT", Decimal(t["qty"]),
                                                         Decimal(t["price"]), Decimal(t["fee"]))
