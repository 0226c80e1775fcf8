"""QUORUM_MODE=live through the pipeline's own functions (the cycle's execution step, the monitor, reconcile,
close-all) and the CLI (`quorum enter/exit`, `halt --close-all`, `reconcile`, `live check`), against the local
private exchange (Bybit v5 and Binance USDⓈ-M wire protocols) with the real ccxt client on the code path."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from core.settings import load_settings
from core.types import Action, Decision, RiskVerdict
from exchange.base import MarketRules
from pipeline import record
from pipeline.brokers import broker_for, use_client
from pipeline.execute import execute_and_persist
from pipeline.manual import reconcile
from pipeline.monitor import close_all, sync_positions
from store import repo
from store.db import transaction
from store.models import EquitySnapshotRow, FillRow, OrderRow, PositionEventRow, PositionRow
from store.outbox import OutboxPost
from tests.fakes.exchange_private import FakePrivateExchange
from tests.fakes.live_setup import (
    DECISION,
    EXCHANGES,
    MARKET,
    SETTING_PATHS,
    SYMBOL,
    assert_db_equals_exchange,
    client_for,
    factory_for,
    live_env,
    order_writes,
    plan,
)


class Bars:
    """Market data for the monitor: hourly bars at the prices a test sets (the exchange side is the fake)."""

    name = "test-bars"

    def __init__(self) -> None:
        self.close = 40000.0
        self.high = 40000.0

    def symbols(self) -> list[str]:
        return [SYMBOL]

    def market_rules(self, symbol: str) -> MarketRules:
        return MarketRules(symbol, Decimal("0.001"), Decimal("0.1"), Decimal("0.001"))

    def price_after(self, symbol: str, t: datetime):  # type: ignore[no-untyped-def]
        return None

    def bars_between(self, symbol: str, start: datetime, end: datetime) -> pd.DataFrame:
        idx = pd.date_range(pd.Timestamp(start).floor("h"), pd.Timestamp(end) - pd.Timedelta(hours=1), freq="h")
        return pd.DataFrame({"open": 40000.0, "high": self.high, "low": 39950.0, "close": self.close,
                             "volume": 1.0}, index=idx)

    def funding_between(self, symbol: str, start: datetime, end: datetime) -> pd.Series:
        return pd.Series(dtype=float)


@pytest.fixture(params=EXCHANGES)
def live(request, tmp_path: Path, monkeypatch):  # type: ignore[no-untyped-def]
    with FakePrivateExchange(request.param) as fx:
        db = tmp_path / "live.db"
        factory = factory_for(db)
        for k, v in live_env(fx, db).items():
            monkeypatch.setenv(k, v)
        settings = load_settings()
        use_client(factory, settings, client_for(fx))
        yield fx, factory, settings


def _execute(factory, settings, source, cycle_id: str):  # type: ignore[no-untyped-def]
    record.start_cycle(factory, cycle_id, DECISION, "live", "test", None)
    p = plan()
    d = Decision(SYMBOL, DECISION, Action.LONG, 0.8, 0.5, 0.5, 3, 3, {}, (), False, "test")
    return execute_and_persist(factory, source, settings, cycle_id, DECISION, [], {}, {}, [], {SYMBOL: d},
                               {SYMBOL: RiskVerdict(SYMBOL, True, (), p)}, {SYMBOL: 40000.0})


def _creates(fx: FakePrivateExchange) -> int:
    return order_writes(fx).count("create")


def test_live_cycle_opens_with_protective_orders_once(live) -> None:
    fx, factory, settings = live
    source = Bars()
    acct, out = _execute(factory, settings, source, "live-c1")
    assert out[SYMBOL]["status"] == "filled", out
    book = {o.client_id: o for o in fx.orders_of()}
    kinds = sorted((o.status, o.reduce_only, o.trigger) for o in book.values())
    assert len(book) == 4  # the entry, then stop, TP1 and TP2 resting reduce-only on the exchange
    assert sum(1 for s, ro, t in kinds if s == "Untriggered" and ro) == 3, kinds
    assert fx.position(MARKET).size == Decimal("0.012")  # the plan's 0.0123 to the market's step
    broker = broker_for(factory, source, settings, DECISION, None)
    assert_db_equals_exchange(fx, broker)
    with transaction(factory) as s:
        [row] = s.scalars(select(PositionRow).where(PositionRow.mode == "live")).all()
        assert row.closed_at is None and row.stop == 39000.0
        assert s.scalars(select(EquitySnapshotRow).where(EquitySnapshotRow.mode == "live")).all()
        assert s.scalars(select(OutboxPost).where(OutboxPost.kind == "entry")).all()
    assert float(acct.equity({})) == pytest.approx(10000, abs=5)  # the exchange's wallet less fees
    # the same decision again: nothing sent
    n = _creates(fx)
    _, again = _execute(factory, settings, source, "live-c2")
    assert again[SYMBOL]["status"] == "skipped"
    assert _creates(fx) == n and len(fx.orders_of()) == 4


def test_live_monitor_moves_stop_to_breakeven_never_unprotected(live) -> None:
    fx, factory, settings = live
    source = Bars()
    _execute(factory, settings, source, "live-c1")
    broker = broker_for(factory, source, settings, DECISION, None)
    [pos] = broker.positions()
    fx.set_price(MARKET, "41100")  # +2.75 %: breakeven, below TP1
    source.close, source.high = 41100.0, 41200.0
    acct, summary = sync_positions(factory, source, settings, pos.opened_at + timedelta(hours=2))
    assert summary["checked"] == 1, summary
    stops = [o for o in fx.orders_of() if o.reduce_only and o.trigger is not None and o.trigger < Decimal("41000")]
    resting = [o for o in stops if o.status == "Untriggered"]
    assert len(resting) == 1 and resting[0].trigger == Decimal("40060.0"), [(o.trigger, o.status) for o in stops]
    # place-new-then-cancel-old: the new stop was created before the old one was cancelled
    writes = order_writes(fx)
    last_create = max(i for i, w in enumerate(writes) if w == "create")
    first_cancel = min(i for i, w in enumerate(writes) if w == "cancel")
    assert last_create < first_cancel
    assert acct.get(pos.id).stop == pytest.approx(40060.0) and acct.get(pos.id).phase == "breakeven"
    assert_db_equals_exchange(fx, broker)
    with transaction(factory) as s:
        assert s.scalars(select(PositionEventRow).where(PositionEventRow.kind == "stop_moved")).all()
        assert s.scalars(select(OutboxPost).where(OutboxPost.kind == "breakeven")).all()


def test_stop_filled_while_down_closes_at_the_exchange_price(live) -> None:
    fx, factory, settings = live
    source = Bars()
    _execute(factory, settings, source, "live-c1")
    fx.set_price(MARKET, "38900")  # through the stop at 39000 while Quorum is not running
    [stop] = [o for o in fx.orders_of() if o.status == "Filled" and o.trigger is not None]
    lines = reconcile(factory, source, settings, DECISION)
    assert any("filled on the exchange" in x for x in lines), lines
    with transaction(factory) as s:
        [row] = s.scalars(select(PositionRow).where(PositionRow.mode == "live")).all()
        assert row.closed_at is not None and row.exit_reason == "stop"
        assert row.realised_pnl == pytest.approx((38900 - 40000) * 0.012)
        assert row.extra["entry_post_key"] == "live-c1:BTC/USDT:USDT:entry"  # the link survives the rebuild
        assert s.scalars(select(PositionEventRow).where(PositionEventRow.kind == "reconcile")).all()
        # the same exit handling as a paper stop-out: the stop event, the trade's fill at the exchange's price
        # and fee, and the stop post as a reply to the entry post (not a second, reconcile post about it)
        [ev] = s.scalars(select(PositionEventRow).where(PositionEventRow.kind == "stop")).all()
        assert ev.price == pytest.approx(38900) and ev.r_multiple == pytest.approx(-1.1)
        [fill] = s.scalars(select(FillRow).join(OrderRow, FillRow.order_id == OrderRow.id)
                           .where(OrderRow.reason == "stop")).all()
        assert (Decimal(str(fill.price)), Decimal(str(fill.fee))) == (Decimal("38900"), stop.fee)
        [post] = s.scalars(select(OutboxPost).where(OutboxPost.kind == "stop")).all()
        assert post.parent_key == "live-c1:BTC/USDT:USDT:entry" and post.position_id == row.id
        assert s.scalar(select(OutboxPost).where(OutboxPost.key == post.parent_key)) is not None
        recon = [p.text for p in s.scalars(select(OutboxPost).where(OutboxPost.kind == "reconcile"))]
        assert recon and not [x for x in recon if "filled on the exchange" in x], recon
    broker = broker_for(factory, source, settings, DECISION, None)
    assert broker.positions() == [] and fx.position(MARKET).size == 0
    assert reconcile(factory, source, settings, DECISION) == []  # nothing left to do: the orphans are cancelled
    assert not [o for o in fx.orders_of() if o.status == "Untriggered"], "orphan protective orders left"
    assert_db_equals_exchange(fx, broker)


def test_close_all_live_is_reduce_only_and_cancels_protection(live) -> None:
    fx, factory, settings = live
    source = Bars()
    _execute(factory, settings, source, "live-c1")
    closed = close_all(factory, source, settings, DECISION, "test")
    assert len(closed) == 1 and closed[0].startswith(SYMBOL)
    assert fx.position(MARKET).size == 0
    assert not [o for o in fx.orders_of() if o.status == "Untriggered"]
    closes = [o for o in fx.orders_of() if o.trigger is None and o.reduce_only]
    assert len(closes) == 1 and closes[0].status == "Filled"
    assert_db_equals_exchange(fx, broker_for(factory, source, settings, DECISION, None))


@pytest.mark.slow
def test_cli_live_enter_exit_check_halt(live) -> None:
    from cli.app import app

    fx, factory, settings = live
    runner = CliRunner()
    r = runner.invoke(app, ["live", "check", "--symbols", SYMBOL])
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert report["balance"]["equity"].startswith("10000") and report["position_mode"] == "one-way"
    assert not order_writes(fx) and not [p for _, p, _ in fx.requests if p in SETTING_PATHS[fx.dialect]], \
        "live check changed something"
    # enter: scored and sized by the risk manager on the bundled history; the order goes to the exchange,
    # whose clock is the history's last bar (so the monitor has no bars to walk before the fill)
    from cli.common import now_for
    from exchange.factory import build_source

    fx.engine.now_ms = int(now_for(build_source(settings), settings).timestamp() * 1000)
    fx.set_price(MARKET, "104500")
    r = runner.invoke(app, ["enter", SYMBOL, "long"])
    assert r.exit_code == 0, r.output
    assert "filled" in r.output
    assert fx.position(MARKET).size > 0
    assert len([o for o in fx.orders_of() if o.status == "Untriggered"]) == 3
    r = runner.invoke(app, ["enter", SYMBOL, "long"])  # a position is open: the risk manager refuses
    assert r.exit_code == 1 and "refused" in r.output, r.output
    # a second position (ETH at the history's last close), then `exit` BTC and `halt --close-all` the rest
    from pipeline.positions import marks

    src = build_source(settings)
    eth = "ETH/USDT:USDT"
    fx.set_price("ETHUSDT", str(round(marks(src, [eth], now_for(src, settings))[eth], 2)))
    r = runner.invoke(app, ["enter", eth, "long"])
    assert r.exit_code == 0 and "filled" in r.output, r.output
    assert fx.position("ETHUSDT").size > 0
    r = runner.invoke(app, ["exit", SYMBOL])
    assert r.exit_code == 0 and "closed 1 position" in r.output, r.output
    assert fx.position(MARKET).size == 0 and not [o for o in fx.orders_of(MARKET) if o.status == "Untriggered"]
    assert len([o for o in fx.orders_of("ETHUSDT") if o.status == "Untriggered"]) == 3  # ETH untouched
    r = runner.invoke(app, ["halt", "--close-all", "--reason", "test"])
    assert r.exit_code == 0 and "closed 1 position" in r.output, r.output
    assert fx.position("ETHUSDT").size == 0 and not [o for o in fx.orders_of() if o.status == "Untriggered"]
    r = runner.invoke(app, ["reconcile", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["findings"] == []
    with transaction(factory) as s:
        assert repo.open_positions(s, "live") == []


@pytest.mark.parametrize("env,needs", [
    ({"QUORUM_MODE": "live"}, "QUORUM_LIVE_TRADING_CONFIRMED=true"),
    ({"QUORUM_MODE": "live", "QUORUM_LIVE_TRADING_CONFIRMED": "true"}, "QUORUM_EXCHANGE_API_KEY"),
])
def test_live_commands_refuse_without_confirmation_and_keys(env, needs, tmp_path: Path, monkeypatch,
                                                            capsys) -> None:
    from cli.app import main

    monkeypatch.setenv("QUORUM_DATABASE_URL", f"sqlite:///{tmp_path / 'q.db'}")
    for k in ("QUORUM_EXCHANGE_API_KEY", "QUORUM_EXCHANGE_SECRET", "QUORUM_EXCHANGE_SECRET_BLOCK"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for argv in (["reconcile"], ["exit", SYMBOL], ["live", "check"]):
        monkeypatch.setattr("sys.argv", ["quorum", *argv])
        with pytest.raises(SystemExit) as exc:
            main()
        assert exc.value.code == 2, argv
        err = capsys.readouterr().err
        assert needs in err and "Traceback" not in err, (argv, err)
