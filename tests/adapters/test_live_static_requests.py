"""The live broker's order calls through ccxt's recorded requests (offline): ccxt 4.5.90 must still build each
recorded request of the calls the broker makes (same path, query and body), and the orders the broker
itself builds (entry, stop, take-profit, close) produce the request shape the exchange documents."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import ccxt
import pytest

from core.types import Side
from exchange.broker import OrderView
from exchange.capabilities import capabilities_for, protective_params

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "ccxt" / "orders"


class Captured(Exception):
    pass


def load(exchange_id: str) -> dict:
    return json.loads((FIX / f"{exchange_id}.json").read_text())


def offline(exchange_id: str) -> tuple[Any, list[tuple[str, str, Any]]]:
    data = load(exchange_id)
    cfg: dict[str, Any] = {"markets": json.loads((FIX / f"{exchange_id}-markets.json").read_text()),
                           "enableRateLimit": False, "apiKey": "key", "secret": "secretsecret",
                           "walletAddress": "wallet",
                           "privateKey": data.get("privateKey",
                                                  "0xff3bdd43534543d421f05aec535965b5050ad6ac15345435345435453495e771"),
                           "options": {"enableUnifiedAccount": True, "enableUnifiedMargin": False,
                                       "leverageBrackets": {}, **(data.get("options") or {})}}
    for k, v in data.items():  # ccxt's fixture may carry credentials such as "<addr>Address"
        if k.endswith("Address"):
            cfg["walletAddress"] = v
    ex = getattr(ccxt, exchange_id)(cfg)
    seen: list[tuple[str, str, Any]] = []

    def fetch(url, method="GET", headers=None, body=None):
        seen.append((url, method, body))
        raise Captured(url)

    ex.fetch = fetch
    return ex, seen


def parts(url: str, body: Any, output_type: str | None, skip: set[str]) -> tuple[str, dict, Any]:
    u = urlsplit(url)
    query = {k: v for k, v in parse_qsl(u.query) if k not in skip}
    if body in (None, ""):
        parsed: Any = None
    elif output_type == "urlencoded" or (isinstance(body, str) and not body.lstrip().startswith(("{", "["))):
        parsed = {k: v for k, v in parse_qsl(body) if k not in skip}
    else:
        parsed = json.loads(body) if isinstance(body, str) else body
        if isinstance(parsed, dict):
            parsed = {k: str(v) for k, v in parsed.items() if k not in skip}
    return u.path, query, parsed


# known drift between the recorded fixture and ccxt 4.5.90 (see ../shared/data/ccxt-static/README.md)
DRIFT = {("bybit", "fetchPositions"): {"limit"}}
CASES = [(ex, m, i) for ex in ("bybit", "aster") for m, cases in load(ex)["methods"].items()
         for i in range(len(cases))]


@pytest.mark.parametrize(("exchange_id", "method", "index"), CASES, ids=[f"{e}-{m}-{i}" for e, m, i in CASES])
def test_recorded_order_call_requests(exchange_id: str, method: str, index: int) -> None:
    data = load(exchange_id)
    case = data["methods"][method][index]
    ex, seen = offline(exchange_id)
    with pytest.raises(Captured):
        getattr(ex, method)(*case["input"])
    skip = set(data.get("skipKeys") or []) | set(case.get("skipKeys") or []) | {"recvWindow"} | \
        DRIFT.get((exchange_id, method), set())
    url, _, body = seen[-1]
    got = parts(url, body, data.get("outputType"), skip)
    want = parts(case["url"], case.get("output"), data.get("outputType"), skip)
    assert got[0] == want[0]  # path
    assert got[1] == want[1]  # query
    assert got[2] == want[2], case.get("description")


def broker_request(exchange_id: str, view: OrderView) -> dict:
    """The body ccxt sends for the order the live broker builds from `view` (as LiveBroker._send does)."""
    from exchange.live_broker import LiveBroker

    ex, seen = offline(exchange_id)
    broker = LiveBroker.__new__(LiveBroker)
    broker.caps = capabilities_for(exchange_id)
    typ, params = broker._order_params(view)
    with pytest.raises(Captured):
        ex.create_order(view.symbol, typ, view.side, float(view.qty), None, params)
    url, _, body = seen[-1]
    return parts(url, body, load(exchange_id).get("outputType"), {"nonce", "signature", "timestamp", "user",
                                                                  "signer", "recvWindow"})[2]


def view(intent: str, side: str, trigger: str | None, reduce_only: bool) -> OrderView:
    return OrderView("q2505230400BTCS0-2c9b3a26", "BTC-202505230400", "BTC/USDT:USDT", intent, side, Decimal("0.012"),
                     "intent", None if trigger is None else Decimal(trigger), reduce_only)


def test_bybit_broker_orders_match_the_documented_shapes() -> None:
    entry = broker_request("bybit", view("entry", "buy", None, False))
    assert entry == {"symbol": "BTCUSDT", "side": "Buy", "orderType": "Market", "category": "linear", "qty": "0.012",
                     "orderLinkId": "q2505230400BTCS0-2c9b3a26"}
    stop = broker_request("bybit", view("stop", "sell", "39000", True))
    # like the recorded "Swap limit sell with stopLossPrice(Type2)": a conditional reduce-only order, falling
    assert {k: stop[k] for k in ("side", "orderType", "triggerPrice", "triggerDirection", "reduceOnly")} == \
        {"side": "Sell", "orderType": "Market", "triggerPrice": "39000", "triggerDirection": "2", "reduceOnly": "True"}
    tp = broker_request("bybit", view("tp1", "sell", "41500", True))
    assert (tp["triggerDirection"], tp["triggerPrice"], tp["reduceOnly"]) == ("1", "41500", "True")
    short_stop = broker_request("bybit", view("stop", "buy", "41000", True))
    assert short_stop["triggerDirection"] == "1" and short_stop["side"] == "Buy"


def test_aster_broker_orders_match_the_documented_shapes() -> None:
    entry = broker_request("aster", view("entry", "buy", None, False))
    assert (entry["symbol"], entry["side"], entry["type"], entry["quantity"], entry["newClientOrderId"]) == \
        ("BTCUSDT", "BUY", "MARKET", "0.012", "q2505230400BTCS0-2c9b3a26")
    stop = broker_request("aster", view("stop", "sell", "39000", True))
    assert (stop["type"], stop["stopPrice"], stop["reduceOnly"], stop["side"]) == ("STOP_MARKET", "39000", "true",
                                                                                   "SELL")
    tp = broker_request("aster", view("tp2", "sell", "42500", True))
    assert (tp["type"], tp["stopPrice"]) == ("TAKE_PROFIT_MARKET", "42500")


def test_binance_protective_orders_go_to_the_algo_endpoint() -> None:
    """ccxt 4.5.90 sends STOP_MARKET / TAKE_PROFIT_MARKET of USDⓈ-M to /fapi/v1/algoOrder with clientAlgoId."""
    ex = ccxt.binanceusdm({"apiKey": "key", "secret": "secretsecret", "enableRateLimit": False,
                           "options": {"fetchCurrencies": False}})
    market = {"id": "BTCUSDT", "symbol": "BTC/USDT:USDT", "base": "BTC", "quote": "USDT", "settle": "USDT",
              "baseId": "BTC", "quoteId": "USDT", "settleId": "USDT", "type": "swap", "spot": False, "margin": False,
              "swap": True, "future": False, "option": False, "contract": True, "linear": True, "inverse": False,
              "active": True, "contractSize": 1, "precision": {"amount": 0.001, "price": 0.1},
              "limits": {"amount": {"min": 0.001}}, "info": {"orderTypes": ["MARKET", "STOP_MARKET",
                                                                            "TAKE_PROFIT_MARKET"]}}
    ex.set_markets([market])
    seen: list[tuple[str, str, Any]] = []

    def fetch(url, method="GET", headers=None, body=None):
        seen.append((url, method, body))
        raise Captured(url)

    ex.fetch = fetch
    params = {"clientOrderId": "q2505230400BTCS0-2c9b3a26",
              **protective_params(capabilities_for("binanceusdm"), Side.LONG, "stop", "39000")}
    with pytest.raises(Captured):
        ex.create_order("BTC/USDT:USDT", "market", "sell", 0.012, None, params)
    url, method, body = seen[-1]
    form = dict(parse_qsl(body))
    assert urlsplit(url).path == "/fapi/v1/algoOrder" and method == "POST"
    assert (form["type"], form["algoType"], form["triggerPrice"], form["reduceOnly"], form["clientAlgoId"]) == \
        ("STOP_MARKET", "CONDITIONAL", "39000", "true", "q2505230400BTCS0-2c9b3a26")
