"""OKX, Kraken Futures and Hyperliquid through the same live-broker code (offline, the real ccxt request
building): the protective orders the broker builds become each exchange's conditional reduce-only order
with Quorum's client id. (No recorded traffic or local server for these three yet: this checks the
requests, not the exchange's answers.)"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import ccxt
import pytest

from exchange.broker import OrderView, client_order_id
from exchange.capabilities import capabilities_for
from exchange.live_orders import OrderDesk

BASE = {"base": "BTC", "baseId": "BTC", "type": "swap", "spot": False, "margin": False, "swap": True, "future": False,
        "option": False, "contract": True, "linear": True, "inverse": False, "active": True,
        "limits": {"amount": {"min": 0.00001}}}
MARKETS = {
    "okx": ({**BASE, "id": "BTC-USDT-SWAP", "symbol": "BTC/USDT:USDT", "quote": "USDT", "settle": "USDT",
             "quoteId": "USDT", "settleId": "USDT", "contractSize": 0.01, "precision": {"amount": 1, "price": 0.1},
             "info": {"instType": "SWAP", "ctVal": "0.01"}}, {"apiKey": "k", "secret": "s", "password": "p"}),
    "krakenfutures": ({**BASE, "id": "PF_XBTUSD", "symbol": "BTC/USD:USD", "quote": "USD", "settle": "USD",
                       "quoteId": "USD", "settleId": "USD", "contractSize": 1,
                       "precision": {"amount": 0.0001, "price": 0.5}, "info": {}},
                      {"apiKey": "k", "secret": "c2VjcmV0"}),
    "hyperliquid": ({**BASE, "id": "0", "symbol": "BTC/USDC:USDC", "baseId": "0", "quote": "USDC", "settle": "USDC",
                     "quoteId": "USDC", "settleId": "USDC", "contractSize": 1, "baseName": "BTC",
                     "precision": {"amount": 0.00001, "price": 0.1}, "info": {"szDecimals": "5"}},
                    {"walletAddress": "0x0000000000000000000000000000000000000001",
                     "privateKey": "0xff3bdd43534543d421f05aec535965b5050ad6ac15345435345435453495e771"}),
}


class Captured(Exception):
    pass


def request_for(exchange_id: str, intent: str, trigger: str | None, qty: str = "1") -> tuple[str, Any]:
    market, creds = MARKETS[exchange_id]
    ex = getattr(ccxt, exchange_id)({**creds, "enableRateLimit": False})
    ex.set_markets([market])
    seen: list[tuple[str, Any]] = []

    def fetch(url, method="GET", headers=None, body=None):
        seen.append((url, body))
        raise Captured(url)

    ex.fetch = fetch
    caps = capabilities_for(exchange_id)
    desk = OrderDesk.__new__(OrderDesk)
    desk.caps, desk.margin_mode = caps, "isolated"
    from datetime import UTC, datetime

    cid = client_order_id("live", datetime(2025, 5, 23, 4, tzinfo=UTC), market["symbol"], intent, 0,
                          max_len=caps.client_id_max, style=caps.client_id_style)
    view = OrderView(cid, "BTC-202505230400", market["symbol"], intent, "sell" if intent != "entry" else "buy",
                     Decimal(qty), "intent", None if trigger is None else Decimal(trigger), intent != "entry")
    typ, params = desk._order_params(view)
    price = 40000 if caps.market_order_needs_price else None
    with pytest.raises(Captured):
        ex.create_order(view.symbol, typ, view.side, float(view.qty), price, params)
    url, body = seen[-1]
    if isinstance(body, str) and body.startswith(("{", "[")):
        return urlsplit(url).path, (cid, json.loads(body))
    return urlsplit(url).path, (cid, dict(parse_qsl(body or urlsplit(url).query)))


def test_okx_conditional_algo_orders_isolated_with_clordid() -> None:
    path, (cid, body) = request_for("okx", "stop", "39000")
    assert path == "/api/v5/trade/order-algo" and cid.isalnum() and len(cid) <= 32
    assert (body["ordType"], body["slTriggerPx"], body["slOrdPx"], body["reduceOnly"], body["tdMode"],
            body["clOrdId"]) == ("conditional", "39000", "-1", True, "isolated", cid)
    path, (_, body) = request_for("okx", "tp1", "41500")
    assert (body["tpTriggerPx"], body["tdMode"]) == ("41500", "isolated")
    path, (cid, body) = request_for("okx", "entry", None)
    # ccxt 4.5.90 sends a plain OKX order through the batch endpoint (a list of one)
    assert path == "/api/v5/trade/batch-orders"
    assert (body[0]["ordType"], body[0]["tdMode"], body[0]["clOrdId"]) == ("market", "isolated", cid)


def test_krakenfutures_stop_and_take_profit_orders() -> None:
    path, (cid, body) = request_for("krakenfutures", "stop", "39000", "0.012")
    assert path == "/derivatives/api/v3/sendorder"
    assert (body["orderType"], body["stopPrice"], body["reduceOnly"], body["cliOrdId"]) == ("stp", "39000", "true",
                                                                                           cid)
    _, (_, body) = request_for("krakenfutures", "tp2", "42500", "0.012")
    assert body["orderType"] == "take_profit"


def test_hyperliquid_trigger_orders_with_a_128_bit_cloid() -> None:
    path, (cid, body) = request_for("hyperliquid", "stop", "39000", "0.012")
    [order] = body["action"]["orders"]
    assert cid.startswith("0x") and len(cid) == 34 and order["c"] == cid
    assert order["r"] is True and order["t"]["trigger"] == {"isMarket": True, "triggerPx": "39000", "tpsl": "sl"}
    _, (_, body) = request_for("hyperliquid", "tp1", "41500", "0.012")
    assert body["action"]["orders"][0]["t"]["trigger"]["tpsl"] == "tp"
