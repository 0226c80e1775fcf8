"""QUORUM_MAX_ORDERS_PER_CYCLE through the cycle's own execution step, against the local Bybit v5 server with the
real ccxt client: the cap counts every order the run writes, an entry that would not fit with its protective
orders is refused before anything is sent (the cycle says why), and the entries it lets through are fully
protected; the next run (a monitor run or cycle, which begins with reconciliation) counts again."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from core.settings import load_settings
from core.types import Action, Decision, RiskVerdict, Side, TradePlan
from pipeline import record
from pipeline.brokers import broker_for, use_client
from pipeline.execute import execute_and_persist
from pipeline.manual import reconcile
from tests.fakes.exchange_private import FakePrivateExchange
from tests.fakes.live_setup import DECISION, SYMBOL, assert_db_equals_exchange, client_for, factory_for, plan
from tests.integration.test_live_wiring import Bars

ETH = "ETH/USDT:USDT"


def _eth() -> TradePlan:
    return TradePlan(ETH, Side.LONG, 2000.0, 1950.0, 2075.0, 2125.0, 5, Decimal("0.5"), 1000.0, 200.0, 25.0, 0.25,
                     1610.0, 2.5, reason="test eth long")


@pytest.fixture
def live(tmp_path: Path, monkeypatch):  # type: ignore[no-untyped-def]
    with FakePrivateExchange("bybit") as fx:
        db = tmp_path / "live.db"
        factory = factory_for(db)
        for k, v in {"QUORUM_MODE": "live", "QUORUM_LIVE_TRADING_CONFIRMED": "true", "QUORUM_EXCHANGE": "bybit",
                     "QUORUM_EXCHANGE_API_KEY": fx.api_key, "QUORUM_EXCHANGE_SECRET": fx.secret,
                     "QUORUM_EXCHANGE_API_BASE": fx.url, "QUORUM_DATABASE_URL": f"sqlite:///{db}",
                     "QUORUM_MAX_ORDERS_PER_CYCLE": "6"}.items():
            monkeypatch.setenv(k, v)
        settings = load_settings()
        use_client(factory, settings, client_for(fx))
        yield fx, factory, settings


def test_cycle_cap_refuses_the_entry_that_does_not_fit_and_protects_the_rest(live) -> None:  # type: ignore[no-untyped-def]
    fx, factory, settings = live
    assert settings.max_orders_per_cycle == 6
    source = Bars()
    reconcile(factory, source, settings, DECISION)  # a run begins (the cycle's monitor stage reconciles first)
    record.start_cycle(factory, "live-cap", DECISION, "live", "test", None)
    plans = {SYMBOL: plan(), ETH: _eth()}
    decisions = {s: Decision(s, DECISION, Action.LONG, 0.8, 0.5, 0.5, 3, 3, {}, (), False, "test") for s in plans}
    _, out = execute_and_persist(factory, source, settings, "live-cap", DECISION, [], {}, {}, [], decisions,
                                 {s: RiskVerdict(s, True, (), p) for s, p in plans.items()},
                                 {SYMBOL: 40000.0, ETH: 2000.0})
    assert out[SYMBOL]["status"] == "filled", out
    assert out[ETH]["status"] == "rejected" and "needs 4 orders" in out[ETH]["note"], out
    assert "this run has written 4" in out[ETH]["note"] and "QUORUM_MAX_ORDERS_PER_CYCLE=6" in out[ETH]["note"]
    assert fx.orders_of("ETHUSDT") == []
    btc = fx.orders_of("BTCUSDT")
    assert len(btc) == 4 and sum(1 for o in btc if o.reduce_only and o.status == "Untriggered") == 3
    broker = broker_for(factory, source, settings, DECISION, None)
    assert_db_equals_exchange(fx, broker)
    # the next run counts from zero: its reconciliation finds nothing to fix, and an entry fits again
    assert reconcile(factory, source, settings, DECISION) == []
    assert broker.orders_written == 0
