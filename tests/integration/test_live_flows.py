"""QUORUM_MODE=live through the real Prefect flows (flows/trading_cycle.py, flows/position_monitor.py under the
Prefect test harness) against the local private exchange, Bybit v5 and Binance USDⓈ-M, with the real ccxt client
on the path.

The decisions come from the bundled Binance history (BTC LONG approved at 2025-05-08 12:00 on the math score);
the exchange follows the same market: the test sets its price (and clock) to the history's prices between runs,
so the exchange fills the resting stop and targets itself and each run's reconciliation finds them. One trade,
step by step: the cycle opens it with its stop, TP1 and TP2 on the exchange; a monitor run moves the stop to
breakeven; the exchange fills TP1, the next monitor run records the exit (trade rows at the exchange's price and
fee, the TP1 post replying to the entry post), shrinks the stop to what is left and trails it; the exchange fills
the trailing stop and the next cycle's reconciliation closes the position. After each step the database equals
the exchange (orders, positions)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from core.settings import load_settings
from pipeline.brokers import broker_for, use_client
from store.db import get_session_factory, transaction
from store.models import FillRow, OrderRow, PositionEventRow, PositionRow
from store.outbox import OutboxPost
from tests.fakes.exchange_private import FakePrivateExchange
from tests.fakes.live_setup import (
    EXCHANGES,
    MARKET,
    SYMBOL,
    assert_db_equals_exchange,
    client_for,
    factory_for,
    live_env,
    order_writes,
)
from tests.fakes.prefect_runs import read_run

pytestmark = [pytest.mark.prefect]
OPEN_AT = datetime(2025, 5, 8, 12, tzinfo=UTC)  # the history's BTC 1h open then: 99369.9


def _ms(t: str) -> int:
    return int(datetime.fromisoformat(t).replace(tzinfo=UTC).timestamp() * 1000)


@pytest.fixture(params=EXCHANGES)
def live(request, tmp_path: Path, monkeypatch):  # type: ignore[no-untyped-def]
    with FakePrivateExchange(request.param) as fx:
        db = tmp_path / "live.db"
        factory_for(db)  # a migrated copy of the template
        for k, v in live_env(fx, db).items():
            monkeypatch.setenv(k, v)
        settings = load_settings()
        factory = get_session_factory(settings)
        use_client(factory, settings, client_for(fx))  # the flows' broker: the session's ccxt client for this fake
        yield fx, factory, settings


def _at(fx: FakePrivateExchange, t: str, *prices: str) -> None:
    """The exchange's clock at `t`, then its price through `prices` (resting orders they cross fill)."""
    fx.engine.now_ms = _ms(t)
    for p in prices:
        fx.set_price(MARKET, p)


def _check(fx, factory, settings) -> None:  # type: ignore[no-untyped-def]
    """Reconcile (quorum reconcile's path): nothing left to fix, and the database equals the exchange: the order
    journal (every order's state, quantity, trigger and fill), the positions and the positions table."""
    from pipeline.manual import reconcile

    source = _source(settings)
    assert reconcile(factory, source, settings, OPEN_AT) == []
    assert_db_equals_exchange(fx, broker_for(factory, source, settings, OPEN_AT, None))  # journal, positions
    with transaction(factory) as s:  # and the positions table the risk manager, CLI and dashboard read
        rows = s.scalars(select(PositionRow).where(PositionRow.mode == "live", PositionRow.closed_at.is_(None)))
        assert sum((Decimal(str(r.qty_open)) * (1 if r.side == "LONG" else -1) for r in rows), Decimal(0)) == \
            fx.position(MARKET).size


def _source(settings):  # type: ignore[no-untyped-def]
    from exchange.factory import build_source

    return build_source(settings)


def _counts(fx: FakePrivateExchange) -> tuple[int, int]:
    """(order creates, cancels) the exchange received."""
    writes = order_writes(fx)
    return writes.count("create"), writes.count("cancel")


def _resting(fx: FakePrivateExchange) -> list[tuple[str, Decimal, Decimal | None]]:
    return sorted((o.side, o.qty, o.trigger) for o in fx.orders_of() if o.open)


def _artifact_of(flow_run_id, key: str):  # type: ignore[no-untyped-def]
    return [a for a in read_run(flow_run_id).artifacts if a.key == key]


def test_live_cycle_and_monitor_flows_open_protect_trail_take_tp1_and_close(live, prefect_harness) -> None:  # noqa: ARG001
    from flows.position_monitor import position_monitor
    from flows.trading_cycle import trading_cycle

    fx, factory, settings = live
    steps: list[tuple[str, tuple[int, int], tuple[int, int]]] = []  # (step, expected, placed) creates/cancels

    # 1. the cycle: BTC LONG approved; the entry fills on the exchange, then stop, TP1 and TP2 rest there
    _at(fx, "2025-05-08T12:00:00", "99369.9")
    r1 = trading_cycle(as_of="2025-05-08T12:00:00Z", symbols=[SYMBOL], broadcast=False)
    [c] = r1["candidates"]
    assert c["decision"]["action"] == "LONG" and c["risk"]["approved"], c["risk"]
    assert c["execution"]["status"] == "filled", c["execution"]
    plan = c["risk"]["plan"]
    qty = Decimal(plan["qty"])
    assert fx.position(MARKET).size == qty
    tp1_qty = Decimal("0.023")  # half of 0.047 to the market's step
    assert _resting(fx) == sorted([("Sell", qty, Decimal(str(plan["stop"]))), ("Sell", tp1_qty, Decimal("104151.6")),
                                   ("Sell", qty - tp1_qty, Decimal("107332.9"))])
    steps.append(("cycle: entry + stop, TP1, TP2", (4, 0), _counts(fx)))
    _check(fx, factory, settings)
    entry_key = f"{r1['cycle_id']}:{SYMBOL}:entry"
    with transaction(factory) as s:
        [row] = s.scalars(select(PositionRow).where(PositionRow.mode == "live")).all()
        assert row.closed_at is None and row.extra.get("entry_post_key") == entry_key  # kept through the mirror
        assert s.scalar(select(OutboxPost).where(OutboxPost.key == entry_key)) is not None
    pid = row.id

    # 2. monitor: the bars up to 21:00 reach +2.5 % (20:00 high 102845.5): the stop moves to breakeven
    _at(fx, "2025-05-08T21:00:00", "102576.9")
    m1 = position_monitor(as_of="2025-05-08T21:00:00Z", broadcast=False)
    assert m1["checked"] == 1 and not m1["findings"], m1
    stop = [o for o in fx.orders_of() if o.open and o.trigger is not None and o.trigger < Decimal("104000")]
    entry_px = fx.orders_of()[0].avg
    assert len(stop) == 1 and stop[0].qty == qty and stop[0].trigger > entry_px, [(o.trigger, o.qty) for o in stop]
    steps.append(("monitor: breakeven (new stop, then old cancelled)", (5, 1), _counts(fx)))
    _check(fx, factory, settings)

    # 3. the 21:00 bar trades through TP1 (high 104305.3): the exchange fills it; the next monitor run records the
    #    exit, shrinks the stop to what is left, and the exit rules trail it 2 % behind the best price
    _at(fx, "2025-05-08T21:30:00", "104305.3", "102799.9")
    assert fx.position(MARKET).size == qty - tp1_qty
    fee_tp1 = next(o.fee for o in fx.orders_of() if o.qty == tp1_qty and o.status == "Filled")
    state = position_monitor(as_of="2025-05-08T22:00:00Z", broadcast=False, return_state=True)
    m2 = state.result()
    kinds = sorted(x.split(" · ")[2].split(":")[0] for x in m2["findings"])
    assert kinds == ["filled on the exchange", "stop resized"], m2["findings"]
    assert any(e.startswith(f"{SYMBOL} tp1 @ 104305") for e in m2["events"]), m2["events"]
    stops = [o for o in fx.orders_of() if o.open and o.trigger is not None and o.trigger < Decimal("104000")]
    assert len(stops) == 1 and stops[0].qty == qty - tp1_qty, [(o.trigger, o.qty) for o in stops]
    assert stops[0].trigger == Decimal("102219.2")  # 2 % behind 104305.3, at the tick
    steps.append(("monitor: TP1 filled -> stop resized, then trailed", (7, 3), _counts(fx)))
    _check(fx, factory, settings)
    with transaction(factory) as s:
        [ev] = s.scalars(select(PositionEventRow).where(PositionEventRow.kind == "tp1")).all()
        assert ev.price == pytest.approx(104305.3) and Decimal(str(ev.qty)) == tp1_qty
        order, fill = s.execute(select(OrderRow, FillRow).join(FillRow, FillRow.order_id == OrderRow.id)
                                .where(OrderRow.position_id == pid, OrderRow.reason == "tp1")).one()
        assert Decimal(str(fill.price)) == Decimal("104305.3") and Decimal(str(fill.fee)) == fee_tp1
        [post] = s.scalars(select(OutboxPost).where(OutboxPost.kind == "tp1")).all()
        assert post.parent_key == entry_key and post.position_id == pid  # a reply to the entry post
        assert "104" in post.text
        row = s.get(PositionRow, pid)
        assert row.tp1_done and row.closed_at is None and Decimal(str(row.qty_open)) == qty - tp1_qty
    # the reconciliation findings are the monitor run's Prefect artifact
    [art] = _artifact_of(state.state_details.flow_run_id, "reconcile-findings")
    assert "tp1 of " + pid in art.data and "stop resized" in art.data, art.data
    assert art.description == "2 finding(s)"

    # 4. the price falls through the trailing stop while Quorum is down: the exchange fills it; the next
    #    cycle's reconciliation closes the position at the exchange's price and cancels the orphan TP2
    _at(fx, "2025-05-08T23:30:00", "102100")
    assert fx.position(MARKET).size == 0
    fee_stop = next(o.fee for o in fx.orders_of() if o.trigger == Decimal("102219.2"))
    state = trading_cycle(as_of="2025-05-09T00:00:00Z", symbols=[SYMBOL], broadcast=False, return_state=True)
    r2 = state.result()
    [art] = _artifact_of(state.state_details.flow_run_id, "reconcile-findings")  # the cycle's findings artifact
    assert f"trailing_stop of {pid} filled on the exchange" in art.data and "orphan order cancelled" in art.data
    assert any(f"{SYMBOL} trailing_stop @ 102100" in e for e in r2["monitor"]["events"]), r2["monitor"]
    with transaction(factory) as s:
        row = s.get(PositionRow, pid)
        assert row.closed_at is not None and row.exit_reason == "trailing_stop"
        assert row.realised_pnl == pytest.approx(float((Decimal("104305.3") - entry_px) * tp1_qty
                                                       + (Decimal("102100") - entry_px) * (qty - tp1_qty)))
        [post] = s.scalars(select(OutboxPost).where(OutboxPost.kind == "trailing_stop")).all()
        assert post.parent_key == entry_key
        fills = s.scalars(select(FillRow).join(OrderRow, FillRow.order_id == OrderRow.id)
                          .where(OrderRow.position_id == pid, OrderRow.reason == "trailing_stop")).all()
        assert [(Decimal(str(f.price)), Decimal(str(f.fee))) for f in fills] == [(Decimal("102100"), fee_stop)]
        assert row.extra.get("entry_post_key") == entry_key  # still linked after the reconciliation closed it
        [be] = s.scalars(select(OutboxPost).where(OutboxPost.kind == "breakeven")).all()
        assert be.parent_key == entry_key
    # the history decides BTC LONG again at 00:00: a new position, with its own three orders
    assert r2["candidates"][0]["execution"]["status"] == "filled", r2["candidates"][0]
    assert fx.position(MARKET).size > 0 and len(_resting(fx)) == 3
    steps.append(("cycle: trailing stop filled -> orphan TP2 cancelled; new entry + 3", (11, 4), _counts(fx)))
    _check(fx, factory, settings)

    for name, expected, placed in steps:
        print(f"{fx.dialect:12s} {name:60s} expected creates/cancels {expected}  placed {placed}")
    assert [e for _, e, _ in steps] == [p for _, _, p in steps], steps
