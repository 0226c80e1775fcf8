"""What differs per exchange for the live broker, in one small table, plus the error classification.

Everything else in exchange/live_broker.py is the same ccxt code for every exchange.

| exchange | protective orders placed as | listed with | order found by client id | client id |
|---|---|---|---|---|
| bybit | conditional market orders: `triggerPrice` + `triggerDirection`, reduce-only | `{'trigger': True}` (orderFilter=StopOrder) | open + closed/cancelled orders filtered by `orderLinkId` | ≤ 36 |
| binanceusdm | STOP_MARKET / TAKE_PROFIT_MARKET via `stopLossPrice` / `takeProfitPrice` (ccxt 4.5.90 sends them to `/fapi/v1/algoOrder`) | `{'trigger': True}` (`/fapi/v1/openAlgoOrders`) | `fetch_order(None, s, {'clientOrderId': id})`, `trigger: True` for algo orders | ≤ 36 |
| aster | STOP_MARKET / TAKE_PROFIT_MARKET on the regular order endpoint (Binance-compatible v1/v3) | plain open orders | `fetch_order` by `clientOrderId` | ≤ 36 |
| okx | algo (conditional) orders via `stopLossPrice` / `takeProfitPrice`; every order and leverage call carries the margin mode (tdMode) | `{'trigger': True}` | `fetch_order` by `clientOrderId` | alphanumeric ≤ 32 |
| hyperliquid | trigger orders via `stopLossPrice` / `takeProfitPrice` | plain open orders | `fetch_order` by `clientOrderId` | `0x` + 32 hex (cloid) |
| krakenfutures | stop / take-profit orders via `stopLossPrice` / `takeProfitPrice` | plain open orders | scan of open + closed orders | ≤ 100 |

Facts behind the codes: Bybit refuses a repeated orderLinkId (110072, ccxt InvalidOrder); Binance USDⓈ-M
refuses a repeated newClientOrderId only while the first order is open (-4116), so a blind retry of a filled
market order doubles the position; ccxt chooses Binance's futures error table by the production URL, so a
custom API base may change the exception class: the broker decides by exchange code first.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import ccxt

from core.types import Side

Protective = Literal["trigger_direction", "sl_tp_price"]
Lookup = Literal["bybit_link_id", "fetch_order", "scan"]


@dataclass(frozen=True)
class Capabilities:
    exchange: str
    protective: Protective
    list_protective: dict[str, Any]  # params of fetch_open_orders that list resting protective orders
    lookup: Lookup
    client_id_max: int = 36
    client_id_style: Literal["text", "alnum", "hex128"] = "text"
    duplicate_codes: frozenset[str] = frozenset()
    not_modified_codes: frozenset[str] = frozenset()
    not_found_codes: frozenset[str] = frozenset()
    rejected_codes: frozenset[str] = frozenset()  # refused for good (never retried), whatever ccxt's class
    options: dict[str, Any] = field(default_factory=dict)  # ccxt constructor options
    needs_password: bool = False
    market_order_needs_price: bool = False
    position_mode: Literal["fetch_position_mode", "positions_idx", "none"] = "none"
    total_includes_unrealised: bool = False  # ccxt's balance `total`: wallet (Bybit) or margin balance (Binance)
    funding_amount_is_paid: bool = False  # ccxt funding history `amount`: + received (Binance), + paid (Bybit)
    margin_mode_per_order: bool = False  # OKX: every order carries its margin mode (tdMode), so do leverage calls
    reduce_only_value: Any = True  # what ccxt must get for reduceOnly (Aster's urlencoded API wants "true")

    @property
    def conditional_params(self) -> dict[str, Any]:
        """Extra params that make fetch/cancel address the protective-order book."""
        return dict(self.list_protective)


CAPABILITIES: dict[str, Capabilities] = {
    "bybit": Capabilities(
        "bybit", "trigger_direction", {"trigger": True}, "bybit_link_id",
        duplicate_codes=frozenset({"110072"}),
        not_modified_codes=frozenset({"110043", "110026", "110025", "34036"}),
        not_found_codes=frozenset({"110001", "110008", "110010"}),
        rejected_codes=frozenset({"10001", "110007", "110017", "110092", "110093", "110094", "110012"}),
        options={"defaultType": "swap", "fetchMarkets": {"types": ["linear"]}},
        position_mode="positions_idx", funding_amount_is_paid=True),
    "binanceusdm": Capabilities(
        "binanceusdm", "sl_tp_price", {"trigger": True}, "fetch_order",
        duplicate_codes=frozenset({"-4116"}),
        not_modified_codes=frozenset({"-4046", "-4059"}),
        not_found_codes=frozenset({"-2013", "-2011"}),
        rejected_codes=frozenset({"-2021", "-2022", "-2019", "-1111", "-1116", "-4015", "-4003", "-4164", "-4120",
                                  "-4028"}),
        options={"defaultType": "swap", "fetchCurrencies": False},
        position_mode="fetch_position_mode", total_includes_unrealised=True),
    "aster": Capabilities(
        "aster", "sl_tp_price", {}, "fetch_order",
        duplicate_codes=frozenset({"-4116"}),
        not_modified_codes=frozenset({"-4046", "-4059"}),
        not_found_codes=frozenset({"-2013", "-2011"}),
        rejected_codes=frozenset({"-2021", "-2022", "-2019", "-1111", "-1116", "-4015"}),
        options={"defaultType": "swap"}, position_mode="fetch_position_mode", reduce_only_value="true",
        total_includes_unrealised=True),
    "okx": Capabilities(
        "okx", "sl_tp_price", {"trigger": True}, "fetch_order", client_id_max=32, client_id_style="alnum",
        duplicate_codes=frozenset({"51016"}), not_modified_codes=frozenset({"59000"}),
        not_found_codes=frozenset({"51603"}),
        options={"defaultType": "swap", "fetchMarkets": {"types": ["swap"]}}, needs_password=True,
        margin_mode_per_order=True),
    "hyperliquid": Capabilities(
        "hyperliquid", "sl_tp_price", {}, "fetch_order", client_id_max=34, client_id_style="hex128",
        options={"defaultType": "swap", "fetchMarkets": {"types": ["swap"]}}, market_order_needs_price=True),
    "krakenfutures": Capabilities(
        "krakenfutures", "sl_tp_price", {}, "scan", client_id_max=100),
}


def capabilities_for(exchange_id: str) -> Capabilities:
    try:
        return CAPABILITIES[exchange_id]
    except KeyError:
        raise KeyError(f"no live capability entry for exchange {exchange_id!r}; known: "
                       f"{', '.join(CAPABILITIES)}") from None


def protective_params(caps: Capabilities, position_side: Side, kind: Literal["stop", "tp"], trigger: str) -> dict:
    """ccxt params of a reduce-only protective order for a position on `position_side`."""
    if caps.protective == "trigger_direction":
        # a long's stop triggers when the price falls to it, its take-profit when it rises to it
        falls = (kind == "stop") == (position_side is Side.LONG)
        return {"triggerPrice": trigger, "triggerDirection": "below" if falls else "above",
                "reduceOnly": caps.reduce_only_value}
    key = "stopLossPrice" if kind == "stop" else "takeProfitPrice"
    return {key: trigger, "reduceOnly": caps.reduce_only_value}


# ------------------------------------------------------------------------------------- errors
_CODE = re.compile(r'"(?:retCode|code|sCode|ret_code)"\s*:\s*"?(-?\d+)')


def exchange_code(exc: BaseException) -> str | None:
    """The exchange's own error code inside a ccxt error message (`bybit {"retCode":110072,...}`)."""
    text = str(exc)
    m = _CODE.search(text)
    if m:
        return m.group(1)
    start = text.find("{")
    if start >= 0:
        try:
            body = json.loads(text[start:])
        except ValueError:
            return None
        for key in ("retCode", "code", "sCode"):
            if isinstance(body, dict) and key in body:
                return str(body[key])
    return None


Outcome = Literal["duplicate", "not_modified", "not_found", "unknown", "rejected", "auth"]


def classify(exc: BaseException, caps: Capabilities) -> Outcome:
    """How a write reacts to a ccxt error: by exchange code first, then by ccxt class.

    unknown = the request may or may not have been applied (timeout, 5xx, dropped connection, 429,
    anything unclassified): the order is looked up by client id before anything is resent."""
    code = exchange_code(exc)
    if code is not None:
        if code in caps.duplicate_codes:
            return "duplicate"
        if code in caps.not_modified_codes:
            return "not_modified"
        if code in caps.not_found_codes:
            return "not_found"
        if code in caps.rejected_codes:
            return "rejected"
    if isinstance(exc, ccxt.OrderNotFound):
        return "not_found"
    if isinstance(exc, ccxt.NetworkError):  # RequestTimeout, ExchangeNotAvailable, DDoSProtection, RateLimit
        return "unknown"
    if isinstance(exc, ccxt.AuthenticationError):
        return "auth"
    if isinstance(exc, ccxt.InvalidOrder | ccxt.InsufficientFunds | ccxt.BadRequest | ccxt.BadSymbol |
                   ccxt.ArgumentsRequired | ccxt.NotSupported):
        return "rejected"
    return "unknown"
