"""`quorum live check` lists the orders the next cycle would place (its decision stages run: data, math
scores, consensus, the risk manager; nothing executed), against the local Bybit v5 and Binance USDⓈ-M
private servers with the real ccxt client on the path: the list is exactly what the broker then places, and
the check itself sends the exchange no order-writing request."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.settings import load_settings
from exchange.broker import OpenRequest
from exchange.factory import build_source
from pipeline.account import decision_time
from pipeline.brokers import broker_for, use_client
from pipeline.preview import next_cycle
from tests.fakes.exchange_private import FakePrivateExchange
from tests.fakes.live_setup import EXCHANGES, client_for, factory_for, live_env

AS_OF = "2025-05-22T04:00Z"  # on the bundled history: BTC LONG (math score +0.51), ETH WAIT
MARKETS = {"BTC/USDT:USDT": "BTCUSDT", "ETH/USDT:USDT": "ETHUSDT"}  # what the fakes list


@pytest.fixture(params=EXCHANGES)
def live(request, tmp_path: Path, monkeypatch):  # type: ignore[no-untyped-def]
    with FakePrivateExchange(request.param) as fx:
        db = tmp_path / "live.db"
        factory = factory_for(db)
        for k, v in live_env(fx, db, QUORUM_SYMBOLS=",".join(MARKETS)).items():
            monkeypatch.setenv(k, v)
        settings = load_settings()
        use_client(factory, settings, client_for(fx))
        source = build_source(settings)
        when = decision_time(factory, source, settings.mode, AS_OF)
        for sym, market in MARKETS.items():  # the exchange trades where the bundled history was at the decision
            fx.set_price(market, str(round(Decimal(str(source.snapshot(sym, when).last)), 2)))
        yield fx, factory, settings, source, when


def _writes(fx: FakePrivateExchange) -> list[tuple[str, str]]:
    return [(m, p) for m, p, _ in fx.requests if m != "GET"]


def test_live_check_lists_the_next_cycles_orders_and_places_nothing(live) -> None:  # type: ignore[no-untyped-def]
    from cli.app import app

    fx, factory, settings, source, when = live
    r = CliRunner().invoke(app, ["live", "check", "--as-of", AS_OF])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert _writes(fx) == [], "live check sent the exchange a write"
    assert fx.orders_of() == []
    assert fx.api_key not in r.output and fx.secret not in r.output
    nxt = report["next_cycle"]
    assert nxt["decision_time"].startswith("2025-05-22T04:00")
    assert "math score decides alone" in nxt["panel"]
    assert {d["symbol"] for d in nxt["decisions"]} == set(MARKETS)
    approved = [d["symbol"] for d in nxt["decisions"] if d["risk"]["approved"]]
    assert approved and [p["symbol"] for p in report["plans"]] == approved, nxt["decisions"]
    listed = [o for p in report["plans"] for o in p["orders"]]
    assert report["orders_to_place"] == len(listed) == sum(p["orders_needed"] for p in report["plans"])
    for p in report["plans"]:
        [entry, stop, *targets] = p["orders"]
        assert (entry["intent"], entry["type"], entry["reduce_only"], entry["trigger"]) == ("entry", "market", False, "")
        assert (stop["intent"], stop["type"], stop["reduce_only"]) == ("stop", "stop_market", True)
        assert [t["type"] for t in targets] == ["take_profit_market"] * len(targets) and targets
        assert all(o["side"] == ("sell" if p["side"] == "LONG" else "buy") for o in [stop, *targets])
        assert stop["qty"] == entry["qty"] and sum(Decimal(t["qty"]) for t in targets) == Decimal(entry["qty"])
        for o in p["orders"]:
            price = Decimal(o["trigger"]) if o["trigger"] else None
            if price is not None:
                assert Decimal(o["notional"]) == (Decimal(o["qty"]) * price).quantize(Decimal("0.01"))
            params = o["create_order"]["params"]
            assert params["clientOrderId"] == o["client_id"] and o["create_order"]["type"] == "market"
            if o["intent"] == "entry":
                continue
            if fx.dialect == "bybit":  # conditional market orders with a trigger direction
                falls = (o["intent"] == "stop") == (p["side"] == "LONG")
                assert params["triggerPrice"] == o["trigger"] and params["triggerDirection"] == (
                    "below" if falls else "above")
            else:  # Binance USDⓈ-M: STOP_MARKET / TAKE_PROFIT_MARKET (ccxt sends them to the algo endpoint)
                key = "stopLossPrice" if o["intent"] == "stop" else "takeProfitPrice"
                assert params[key] == o["trigger"]

    # the same decision stages, then the broker really places the plans: the exchange gets exactly the list
    broker = broker_for(factory, source, settings, when, None)
    preview = next_cycle(factory, source, settings, when, broker.account_snapshot())
    assert [p.symbol for p in preview.plans] == approved
    for plan in preview.plans:
        assert broker.open_position(OpenRequest(plan, when)).status == "filled"
    placed = {o.client_id: (o.side.lower(), o.qty, o.trigger, o.reduce_only) for o in fx.orders_of()}
    assert placed == {o["client_id"]: (o["side"], Decimal(o["qty"]), Decimal(o["trigger"]) if o["trigger"] else None,
                                       o["reduce_only"]) for o in listed}


def test_live_check_asks_the_configured_panel_and_still_places_nothing(live, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """With the six model servers configured, the preview's decisions are the panel's (each member asked
    once, through the real SDKs) and the exchange still gets no write."""
    from cli.app import app
    from tasks import panel as panel_tasks
    from tests.fakes.llm_servers import LocalPanel
    from tests.fakes.panel_answers import panel_responder

    fx, *_ = live
    panel_tasks.set_runtime(None)  # providers are kept per process: these servers are new
    try:
        with LocalPanel(responder=panel_responder) as panel:
            for k, v in panel.env.items():
                monkeypatch.setenv(k, v)
            r = CliRunner().invoke(app, ["live", "check", "--as-of", AS_OF])
            calls = sum(panel.calls.values())
    finally:
        panel_tasks.set_runtime(None)
    assert r.exit_code == 0, r.output
    assert _writes(fx) == [] and fx.orders_of() == []
    nxt = json.loads(r.stdout)["next_cycle"]
    assert nxt["panel"] == "6 member(s) voted", nxt["panel"]
    assert calls >= 5  # five servers (both Claude members share one)
    assert {d["symbol"] for d in nxt["decisions"]} == set(MARKETS)
    assert all("6/6 valid" in d["reason"] or "quorum" in d["reason"] for d in nxt["decisions"]), nxt["decisions"]
