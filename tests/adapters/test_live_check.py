"""`quorum live check` (exchange.live_check) and the account read from the exchange, against the local
Bybit v5 / Binance USDⓈ-M server through the real ccxt."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.settings import load_settings
from exchange.broker import OpenRequest
from exchange.live_check import live_check
from tests.fakes.exchange_private import FakePrivateExchange
from tests.fakes.live_setup import DECISION, EXCHANGES, MARKET, broker_for, factory_for, plan

pytestmark = pytest.mark.parametrize("ex", EXCHANGES)


def test_live_check_shows_everything_and_places_nothing(ex: str, tmp_path) -> None:
    with FakePrivateExchange(ex) as fx:
        settings = load_settings(mode="live", live_trading_confirmed=True, exchange=ex, exchange_api_key=fx.api_key,
                                 exchange_secret=fx.secret, exchange_api_base=fx.url)
        out = live_check(settings, factory_for(tmp_path / "j.db"), [plan()], ["ETH/USDT:USDT", "DOGE/USDT:USDT"],
                         now=DECISION)
        assert [m for m, _, _ in fx.requests if m != "GET"] == []  # no order, no leverage, no margin change
        assert out["exchange"] == ex and out["position_mode"] == "one-way" and out["margin_mode_to_set"] == "isolated"
        assert Decimal(out["balance"]["equity"]) == Decimal("10000")
        assert out["markets"]["BTC/USDT:USDT"]["min_qty"] == "0.001"
        assert out["markets"]["DOGE/USDT:USDT"] == {"error": "not listed on this exchange"}
        [p] = out["plans"]
        assert p["leverage_to_set"] == 5
        assert [(o["intent"], o["side"], o["qty"], o["trigger"]) for o in p["orders"]] == [
            ("entry", "buy", "0.012", ""), ("stop", "sell", "0.012", "39000"), ("tp1", "sell", "0.006", "41500"),
            ("tp2", "sell", "0.006", "42500")]
        assert fx.api_key not in str(out) and fx.secret not in str(out)


def test_balance_equity_margin_fees_and_funding_from_the_exchange(ex: str, tmp_path) -> None:
    with FakePrivateExchange(ex) as fx:
        b = broker_for(fx, tmp_path)
        b.open_position(OpenRequest(plan(), DECISION))
        fx.set_price(MARKET, "40500")
        paid = fx.engine.funding(MARKET, "0.0001")  # long pays 0.012 × 40500 × 0.0001
        bal = b.balance()
        fee = Decimal("0.012") * 40000 * Decimal("0.00055")
        assert bal.fees_paid == fee
        assert bal.unrealised == Decimal("6")  # (40500 − 40000) × 0.012
        assert bal.equity == Decimal("10000") - fee - paid + Decimal("6")
        assert bal.margin == Decimal("96")  # 0.012 × 40000 / 5
        assert bal.funding_paid == paid
