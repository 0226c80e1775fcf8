"""Binance USDⓈ-M private REST (plain and algo orders) over the fake engine: HMAC `signature`."""

from __future__ import annotations

import hmac
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tests.fakes.exchange_engine import Order, Reply, _dec, _fmt, _hmac

if TYPE_CHECKING:
    from tests.fakes.exchange_private import FakePrivateExchange

BINANCE_STATUS = {"New": "NEW", "Untriggered": "NEW", "Filled": "FILLED", "Cancelled": "CANCELED",
                  "Deactivated": "EXPIRED", "Rejected": "REJECTED", "PartiallyFilled": "PARTIALLY_FILLED"}
BINANCE_ALGO_STATUS = {"Untriggered": "NEW", "Filled": "FINISHED", "Cancelled": "CANCELED",
                       "Deactivated": "EXPIRED", "Rejected": "REJECTED"}


class BinanceDialect:
    def __init__(self, fake: FakePrivateExchange):
        self.fake, self.e = fake, fake.engine

    def err(self, code: int, msg: str, status: int = 400) -> Reply:
        return Reply(status, {"code": code, "msg": msg})

    def route(self, method: str, path: str, p: dict[str, str], query: str, body: str, h: dict[str, str]) -> Reply:
        public = {"/fapi/v1/time": self.time, "/fapi/v1/exchangeInfo": self.exchange_info,
                  "/fapi/v1/ticker/price": self.ticker_price}
        if path in public:
            return public[path](p)
        if h.get("x-mbx-apikey") != self.fake.api_key:
            self.fake.rejected_signatures += 1
            return self.err(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        signed = body if method in ("POST", "PUT") and body else query
        payload, _, sig = signed.rpartition("&signature=")
        if not sig or not hmac.compare_digest(sig, _hmac(self.fake.secret, payload)):
            self.fake.rejected_signatures += 1
            return self.err(-1022, "Signature for this request is not valid.")
        routes = {
            ("GET", "/fapi/v2/balance"): self.balance, ("GET", "/fapi/v3/balance"): self.balance,
            ("GET", "/fapi/v2/account"): self.account, ("GET", "/fapi/v3/account"): self.account,
            ("GET", "/fapi/v2/positionRisk"): self.position_risk, ("GET", "/fapi/v3/positionRisk"): self.position_risk,
            ("POST", "/fapi/v1/leverage"): self.leverage, ("POST", "/fapi/v1/marginType"): self.margin_type,
            ("GET", "/fapi/v1/positionSide/dual"): self.get_dual, ("POST", "/fapi/v1/positionSide/dual"): self.set_dual,
            ("POST", "/fapi/v1/order"): self.create, ("GET", "/fapi/v1/order"): self.get_order,
            ("DELETE", "/fapi/v1/order"): self.cancel, ("GET", "/fapi/v1/openOrders"): self.open_orders,
            ("GET", "/fapi/v1/allOrders"): self.all_orders, ("GET", "/fapi/v1/userTrades"): self.user_trades,
            ("POST", "/fapi/v1/algoOrder"): self.create_algo, ("GET", "/fapi/v1/algoOrder"): self.get_algo,
            ("DELETE", "/fapi/v1/algoOrder"): self.cancel_algo, ("GET", "/fapi/v1/openAlgoOrders"): self.open_algo,
            ("GET", "/fapi/v1/allAlgoOrders"): self.all_algo, ("GET", "/fapi/v1/income"): self.income,
            ("GET", "/fapi/v1/leverageBracket"): self.brackets,
        }
        fn = routes.get((method, path))
        if fn is None:
            return self.err(-1000, f"unknown endpoint {method} {path}", 404)
        with self.e.lock:
            return fn(p)

    # ---- public
    def time(self, p: dict[str, str]) -> Reply:
        return Reply(200, {"serverTime": self.e.now_ms})

    def exchange_info(self, p: dict[str, str]) -> Reply:
        syms = []
        for m in self.e.markets.values():
            syms.append({
                "symbol": m.id, "pair": m.id, "contractType": "PERPETUAL", "deliveryDate": 4133404800000,
                "onboardDate": 1569398400000, "status": "TRADING", "maintMarginPercent": "2.5000",
                "requiredMarginPercent": "5.0000", "baseAsset": m.base, "quoteAsset": "USDT", "marginAsset": "USDT",
                "pricePrecision": 2, "quantityPrecision": 3, "baseAssetPrecision": 8, "quotePrecision": 8,
                "underlyingType": "COIN", "underlyingSubType": [], "settlePlan": 0, "triggerProtect": "0.0500",
                "liquidationFee": "0.012500", "marketTakeBound": "0.05", "maxMoveOrderLimit": 10000,
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": "0.10", "maxPrice": "4529764", "tickSize": _fmt(m.tick)},
                    {"filterType": "LOT_SIZE", "minQty": _fmt(m.min_qty), "maxQty": "1000", "stepSize": _fmt(m.step)},
                    {"filterType": "MARKET_LOT_SIZE", "minQty": _fmt(m.min_qty), "maxQty": "120",
                     "stepSize": _fmt(m.step)},
                    {"filterType": "MAX_NUM_ORDERS", "limit": 200}, {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                    {"filterType": "MIN_NOTIONAL", "notional": "5"},
                    {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
                     "multiplierDecimal": "4"}],
                "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                               "TRAILING_STOP_MARKET"],
                "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
            })
        return Reply(200, {"timezone": "UTC", "serverTime": self.e.now_ms, "futuresType": "U_MARGINED",
                           "rateLimits": [], "exchangeFilters": [], "assets": [], "symbols": syms})

    def ticker_price(self, p: dict[str, str]) -> Reply:
        return Reply(200, {"symbol": p["symbol"], "price": _fmt(self.e.prices[p["symbol"]]), "time": self.e.now_ms})

    # ---- account
    def _asset(self) -> dict[str, Any]:
        e = self.e
        unreal, margin = e.unrealised(), e.margin()
        return {"accountAlias": "SgsR", "asset": "USDT", "balance": _fmt(e.wallet), "walletBalance": _fmt(e.wallet),
                "crossWalletBalance": _fmt(e.wallet), "crossUnPnl": _fmt(unreal), "unrealizedProfit": _fmt(unreal),
                "marginBalance": _fmt(e.wallet + unreal), "availableBalance": _fmt(e.wallet + unreal - margin),
                "maxWithdrawAmount": _fmt(e.wallet - margin), "initialMargin": _fmt(margin),
                "positionInitialMargin": _fmt(margin), "openOrderInitialMargin": "0", "maintMargin": "0",
                "marginAvailable": True, "updateTime": e.now_ms}

    def balance(self, p: dict[str, str]) -> Reply:
        return Reply(200, [self._asset()])

    def account(self, p: dict[str, str]) -> Reply:
        e = self.e
        a = self._asset()
        return Reply(200, {"totalInitialMargin": a["initialMargin"], "totalMaintMargin": "0",
                           "totalWalletBalance": a["walletBalance"], "totalUnrealizedProfit": a["unrealizedProfit"],
                           "totalMarginBalance": a["marginBalance"], "totalPositionInitialMargin": a["initialMargin"],
                           "totalOpenOrderInitialMargin": "0", "totalCrossWalletBalance": a["walletBalance"],
                           "totalCrossUnPnl": a["unrealizedProfit"], "availableBalance": a["availableBalance"],
                           "maxWithdrawAmount": a["maxWithdrawAmount"], "assets": [a],
                           "positions": [self._pos(s) for s in e.positions if e.positions[s].size]})

    def _pos(self, sym: str) -> dict[str, Any]:
        pos, mark = self.e.positions[sym], self.e.prices[sym]
        return {"symbol": sym, "positionSide": "BOTH", "positionAmt": _fmt(pos.size), "entryPrice": _fmt(pos.entry),
                "breakEvenPrice": _fmt(pos.entry), "markPrice": _fmt(mark),
                "unRealizedProfit": _fmt((mark - pos.entry) * pos.size), "liquidationPrice": "0",
                "isolatedMargin": _fmt(abs(pos.size) * pos.entry / pos.leverage) if self.e.isolated else "0",
                "notional": _fmt(pos.size * mark), "marginAsset": "USDT", "isolatedWallet": "0",
                "initialMargin": _fmt(abs(pos.size) * pos.entry / pos.leverage), "maintMargin": "0",
                "positionInitialMargin": _fmt(abs(pos.size) * pos.entry / pos.leverage), "openOrderInitialMargin": "0",
                "adl": 0, "bidNotional": "0", "askNotional": "0", "updateTime": self.e.now_ms,
                "leverage": str(pos.leverage), "marginType": "isolated" if self.e.isolated else "cross",
                "isAutoAddMargin": "false", "maxNotionalValue": "1000000"}

    def position_risk(self, p: dict[str, str]) -> Reply:
        return Reply(200, [self._pos(s) for s in self.e.positions if not p.get("symbol") or p["symbol"] == s])

    def brackets(self, p: dict[str, str]) -> Reply:
        return Reply(200, [{"symbol": s, "brackets": [{"bracket": 1, "initialLeverage": 125, "notionalCap": 1000000,
                                                       "notionalFloor": 0, "maintMarginRatio": 0.004, "cum": 0}]}
                           for s in self.e.markets])

    def leverage(self, p: dict[str, str]) -> Reply:
        pos = self.e.positions[p["symbol"]]
        pos.leverage = int(p["leverage"])
        return Reply(200, {"leverage": pos.leverage, "maxNotionalValue": "1000000", "symbol": p["symbol"]})

    def margin_type(self, p: dict[str, str]) -> Reply:
        want = p["marginType"].upper() == "ISOLATED"
        if want == self.e.isolated:
            return self.err(-4046, "No need to change margin type.")
        self.e.isolated = want
        return Reply(200, {"code": 200, "msg": "success"})

    def get_dual(self, p: dict[str, str]) -> Reply:
        return Reply(200, {"dualSidePosition": self.e.hedge_mode})

    def set_dual(self, p: dict[str, str]) -> Reply:
        want = p["dualSidePosition"].lower() == "true"
        if want == self.e.hedge_mode:
            return self.err(-4059, "No need to change position side.")
        self.e.hedge_mode = want
        return Reply(200, {"code": 200, "msg": "success"})

    # ---- plain orders
    def order_dict(self, o: Order) -> dict[str, Any]:
        return {"orderId": int(o.id), "symbol": o.symbol, "status": BINANCE_STATUS[o.status],
                "clientOrderId": o.client_id, "price": _fmt(o.limit) if o.limit is not None else "0",
                "avgPrice": _fmt(o.avg) if o.filled else "0.00",
                "origQty": _fmt(o.qty), "executedQty": _fmt(o.filled), "cumQuote": _fmt(o.value),
                "timeInForce": "GTX" if o.post_only else "GTC", "type": "LIMIT" if o.limit is not None else "MARKET",
                "reduceOnly": o.reduce_only, "closePosition": False,
                "side": o.side.upper(), "positionSide": "BOTH", "stopPrice": "0", "workingType": "CONTRACT_PRICE",
                "priceProtect": False, "origType": "LIMIT" if o.limit is not None else "MARKET", "priceMatch": "NONE", "selfTradePreventionMode": "NONE",
                "goodTillDate": 0, "time": o.created_ms, "updateTime": o.updated_ms}

    def _qty_ok(self, sym: str, qty: Decimal) -> bool:
        m = self.e.markets[sym]
        return qty >= m.min_qty and (qty / m.step) == (qty / m.step).to_integral_value()

    def create(self, p: dict[str, str]) -> Reply:
        sym = p["symbol"]
        if p.get("type") in ("STOP_MARKET", "TAKE_PROFIT_MARKET", "STOP", "TAKE_PROFIT"):
            return self.err(-4120, "Order type not supported for this endpoint. Please use the Algo Order API "
                                   "endpoints instead.")
        limit = None
        if p.get("type") == "LIMIT":
            if not p.get("price") or p.get("timeInForce") not in ("GTC", "GTX", "IOC", "FOK"):
                return self.err(-1102, "Mandatory parameter 'price' or 'timeInForce' was not sent, was empty/null, "
                                       "or malformed.")
            limit = _dec(p["price"])
            tick = self.e.markets[sym].tick
            if (limit / tick) != (limit / tick).to_integral_value():
                return self.err(-4014, "Price not increased by tick size.")
        elif p.get("type") != "MARKET":
            return self.err(-1116, "Invalid orderType.")
        cid = p.get("newClientOrderId", "")
        if len(cid) > 36:
            return self.err(-4015, "Client order id is not valid.")
        prior = self.e.by_client(cid)
        if prior is not None and prior.open:  # Binance refuses a repeated id only while the first is open
            return self.err(-4116, "ClientOrderId is duplicated.")
        qty = _dec(p["quantity"])
        if not self._qty_ok(sym, qty):
            return self.err(-1111, "Precision is over the maximum defined for this asset.")
        reduce_only = p.get("reduceOnly", "false").lower() == "true"
        pos = self.e.positions[sym]
        sign = 1 if p["side"] == "BUY" else -1
        if reduce_only and -pos.size * sign <= 0:
            return self.err(-2022, "ReduceOnly Order is rejected.")
        o = self.e.place(sym, "Buy" if p["side"] == "BUY" else "Sell", qty, cid, reduce_only, limit=limit,
                         post_only=p.get("timeInForce") == "GTX")
        return Reply(200, self.order_dict(o))

    def _plain(self, p: dict[str, str]) -> Order | None:
        o = None
        if p.get("orderId"):
            o = self.e.orders.get(p["orderId"])
        elif p.get("origClientOrderId"):
            o = self.e.by_client(p["origClientOrderId"])
        return None if o is None or o.conditional or not self.e.visible(o) else o

    def get_order(self, p: dict[str, str]) -> Reply:
        o = self._plain(p)
        if o is None:
            return self.err(-2013, "Order does not exist.")
        return Reply(200, self.order_dict(o))

    def cancel(self, p: dict[str, str]) -> Reply:
        o = self._plain(p)
        if o is None or not o.open:
            return self.err(-2011, "Unknown order sent.")
        self.e.cancel(o.id)
        return Reply(200, self.order_dict(o))

    def open_orders(self, p: dict[str, str]) -> Reply:
        return Reply(200, [self.order_dict(o) for o in self.e.query(self.e.open_orders(p.get("symbol")))
                           if not o.conditional])

    def all_orders(self, p: dict[str, str]) -> Reply:
        return Reply(200, [self.order_dict(o) for o in self.e.orders.values()
                           if not o.conditional and (not p.get("symbol") or o.symbol == p["symbol"])])

    def user_trades(self, p: dict[str, str]) -> Reply:
        rows = []
        for t in self.e.trades:
            if t.kind != "Trade" or (p.get("symbol") and t.symbol != p["symbol"]):
                continue
            if p.get("orderId") and t.order_id != p["orderId"]:
                continue
            if p.get("startTime") and t.ts < int(p["startTime"]):
                continue
            buyer = t.side == "Buy"
            rows.append({"buyer": buyer, "commission": _fmt(t.fee), "commissionAsset": "USDT", "id": int(t.id),
                         "maker": t.maker, "orderId": int(t.order_id), "price": _fmt(t.price), "qty": _fmt(t.qty),
                         "quoteQty": _fmt(t.qty * t.price), "realizedPnl": "0", "side": t.side.upper(),
                         "positionSide": "BOTH", "symbol": t.symbol, "time": t.ts})
        return Reply(200, rows)

    def income(self, p: dict[str, str]) -> Reply:
        rows = []
        for t in self.e.trades:
            if t.kind != "Funding" or (p.get("symbol") and t.symbol != p["symbol"]):
                continue
            rows.append({"symbol": t.symbol, "incomeType": "FUNDING_FEE", "income": _fmt(-t.fee), "asset": "USDT",
                         "info": "FUNDING_FEE", "time": t.ts, "tranId": int(t.id), "tradeId": ""})
        return Reply(200, rows)

    # ---- algo (conditional) orders
    def algo_dict(self, o: Order) -> dict[str, Any]:
        return {"algoId": int(o.id), "clientAlgoId": o.client_id, "algoType": "CONDITIONAL",
                "orderType": "TAKE_PROFIT_MARKET" if o.tp else "STOP_MARKET", "symbol": o.symbol,
                "side": o.side.upper(), "positionSide": "BOTH", "timeInForce": "GTC", "quantity": _fmt(o.qty),
                "algoStatus": BINANCE_ALGO_STATUS.get(o.status, "NEW"), "triggerPrice": _fmt(o.trigger), "price": "0",
                "icebergQuantity": None, "selfTradePreventionMode": "NONE", "workingType": "CONTRACT_PRICE",
                "priceMatch": "NONE", "closePosition": False, "priceProtect": False, "reduceOnly": o.reduce_only,
                "activatePrice": "", "callbackRate": "", "createTime": o.created_ms, "updateTime": o.updated_ms,
                "triggerTime": o.updated_ms if o.status == "Filled" else 0, "goodTillDate": 0,
                "actualOrderId": "", "actualPrice": _fmt(o.avg) if o.filled else "", "actualQty": _fmt(o.filled)}

    def create_algo(self, p: dict[str, str]) -> Reply:
        sym = p["symbol"]
        typ = p.get("type") or p.get("orderType")
        if p.get("algoType") != "CONDITIONAL" or typ not in ("STOP_MARKET", "TAKE_PROFIT_MARKET"):
            return self.err(-1116, f"Invalid orderType {typ}.")
        cid = p.get("clientAlgoId", "")
        if not cid or len(cid) > 36:
            return self.err(-4015, "Client order id is not valid.")
        prior = self.e.by_client(cid)
        if prior is not None and prior.open:
            return self.err(-4116, "ClientOrderId is duplicated.")
        qty = _dec(p["quantity"])
        if not self._qty_ok(sym, qty):
            return self.err(-1111, "Precision is over the maximum defined for this asset.")
        trig = _dec(p["triggerPrice"])
        m = self.e.markets[sym]
        if (trig / m.tick) != (trig / m.tick).to_integral_value():
            return self.err(-1111, "Precision is over the maximum defined for this asset.")
        side = "Buy" if p["side"] == "BUY" else "Sell"
        tp = typ == "TAKE_PROFIT_MARKET"
        # a sell stop falls to its trigger, a sell take-profit rises to it (and the reverse for buys)
        direction = (2 if not tp else 1) if side == "Sell" else (1 if not tp else 2)
        px = self.e.prices[sym]
        if (direction == 1 and px >= trig) or (direction == 2 and px <= trig):
            return self.err(-2021, "Order would immediately trigger.")
        o = self.e.place(sym, side, qty, cid, p.get("reduceOnly", "false").lower() == "true", trig, direction, tp)
        return Reply(200, self.algo_dict(o))

    def _algo(self, p: dict[str, str]) -> Order | None:
        o = None
        if p.get("algoId"):
            o = self.e.orders.get(p["algoId"])
        elif p.get("clientAlgoId"):
            o = self.e.by_client(p["clientAlgoId"])
        return o if o is not None and o.conditional and self.e.visible(o) else None

    def get_algo(self, p: dict[str, str]) -> Reply:
        o = self._algo(p)
        if o is None:
            return self.err(-2013, "Order does not exist.")
        return Reply(200, self.algo_dict(o))

    def cancel_algo(self, p: dict[str, str]) -> Reply:
        o = self._algo(p)
        if o is None or not o.open:
            return self.err(-2011, "Unknown order sent.")
        self.e.cancel(o.id)
        return Reply(200, {"algoId": int(o.id), "clientAlgoId": o.client_id, "code": "200", "msg": "success"})

    def open_algo(self, p: dict[str, str]) -> Reply:
        return Reply(200, [self.algo_dict(o) for o in self.e.query(self.e.open_orders(p.get("symbol")))
                           if o.conditional])

    def all_algo(self, p: dict[str, str]) -> Reply:
        return Reply(200, [self.algo_dict(o) for o in self.e.orders.values()
                           if o.conditional and (not p.get("symbol") or o.symbol == p["symbol"])])
