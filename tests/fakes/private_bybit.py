"""Bybit v5 private (and the public bits ccxt needs) over the fake engine: HMAC in X-BAPI-SIGN."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any

from tests.fakes.exchange_engine import MAKER, TAKER, ZERO, D, Order, Reply, _dec, _fmt, _hmac

if TYPE_CHECKING:
    from tests.fakes.exchange_private import FakePrivateExchange


class BybitDialect:
    def __init__(self, fake: FakePrivateExchange):
        self.fake, self.e = fake, fake.engine

    def ok(self, result: Any, code: int = 0, msg: str = "OK") -> Reply:
        return Reply(200, {"retCode": code, "retMsg": msg, "result": result, "retExtInfo": {}, "time": self.e.now_ms})

    def err(self, code: int, msg: str) -> Reply:
        return self.ok({}, code, msg)

    def route(self, method: str, path: str, p: dict[str, str], query: str, body: str, h: dict[str, str]) -> Reply:
        public = {"/v5/market/time": self.time, "/v5/market/instruments-info": self.instruments,
                  "/v5/market/tickers": self.tickers}
        if path in public:
            return public[path](p)
        # signature: timestamp + apiKey + recvWindow + (query string for GET | raw body for POST)
        key, ts, rw, sig = (h.get("x-bapi-api-key"), h.get("x-bapi-timestamp"), h.get("x-bapi-recv-window", ""),
                            h.get("x-bapi-sign"))
        if key != self.fake.api_key:
            self.fake.rejected_signatures += 1
            return self.err(10003, "API key is invalid.")
        payload = (ts or "") + key + rw + (body if method == "POST" else query)
        if not sig or not hmac.compare_digest(sig, _hmac(self.fake.secret, payload)):
            self.fake.rejected_signatures += 1
            return self.err(10004, "error sign! origin_string[...]")
        private = {
            "/v5/user/query-api": self.query_api, "/v5/account/info": self.account_info,
            "/v5/account/wallet-balance": self.wallet, "/v5/position/list": self.positions,
            "/v5/position/set-leverage": self.set_leverage, "/v5/account/set-margin-mode": self.set_margin_mode,
            "/v5/position/switch-mode": self.switch_mode, "/v5/order/create": self.create,
            "/v5/order/cancel": self.cancel, "/v5/order/amend": self.amend, "/v5/order/realtime": self.realtime,
            "/v5/order/history": self.history, "/v5/execution/list": self.executions,
            "/v5/asset/coin/query-info": self.coins,
        }
        fn = private.get(path)
        if fn is None:
            return Reply(404, {"retCode": 404, "retMsg": f"unknown path {path}"})
        with self.e.lock:
            return fn(p)

    # ---- public
    def time(self, p: dict[str, str]) -> Reply:
        return self.ok({"timeSecond": str(self.e.now_ms // 1000), "timeNano": str(self.e.now_ms * 1_000_000)})

    def instruments(self, p: dict[str, str]) -> Reply:
        if p.get("category", "linear") != "linear":
            return self.ok({"category": p.get("category"), "list": [], "nextPageCursor": ""})
        rows = []
        for m in self.e.markets.values():
            rows.append({
                "symbol": m.id, "contractType": "LinearPerpetual", "status": "Trading", "baseCoin": m.base,
                "quoteCoin": "USDT", "launchTime": "1585526400000", "deliveryTime": "0", "deliveryFeeRate": "",
                "priceScale": "2", "settleCoin": "USDT", "fundingInterval": "480", "copyTrading": "both",
                "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
                "priceFilter": {"minPrice": _fmt(m.tick), "maxPrice": "1999999.80", "tickSize": _fmt(m.tick)},
                "lotSizeFilter": {"maxOrderQty": "1190", "minOrderQty": _fmt(m.min_qty), "qtyStep": _fmt(m.step),
                                  "postOnlyMaxOrderQty": "1190", "maxMktOrderQty": "119",
                                  "minNotionalValue": "5"},
                "unifiedMarginTrade": True, "upperFundingRate": "0.005", "lowerFundingRate": "-0.005",
            })
        return self.ok({"category": "linear", "list": rows, "nextPageCursor": ""})

    def tickers(self, p: dict[str, str]) -> Reply:
        syms = [p["symbol"]] if "symbol" in p else list(self.e.markets)
        rows = []
        for s in syms:
            px = _fmt(self.e.prices[s])
            rows.append({"symbol": s, "lastPrice": px, "markPrice": px, "indexPrice": px, "bid1Price": px,
                         "ask1Price": px, "bid1Size": "1", "ask1Size": "1", "volume24h": "1000",
                         "turnover24h": "100000000", "fundingRate": "0.0001", "nextFundingTime": "0",
                         "openInterest": "1000", "price24hPcnt": "0", "highPrice24h": px, "lowPrice24h": px,
                         "prevPrice24h": px})
        return self.ok({"category": "linear", "list": rows})

    def coins(self, p: dict[str, str]) -> Reply:
        rows = [{"name": c, "coin": c, "remainAmount": "1000000", "chains": [
            {"chainType": c, "confirmation": "1", "withdrawFee": "0", "depositMin": "0", "withdrawMin": "0",
             "chain": c, "chainDeposit": "1", "chainWithdraw": "1", "minAccuracy": "8",
             "withdrawPercentageFee": "0"}]} for c in ("USDT", "BTC", "ETH")]
        return self.ok({"rows": rows})

    # ---- account
    def query_api(self, p: dict[str, str]) -> Reply:
        return self.ok({"id": "1", "note": "quorum", "apiKey": self.fake.api_key, "readOnly": 0, "secret": "",
                        "permissions": {"ContractTrade": ["Order", "Position"], "Spot": [], "Wallet": [],
                                        "Options": [], "Derivatives": [], "CopyTrading": [], "BlockTrade": [],
                                        "Exchange": [], "NFT": []},
                        "ips": ["*"], "type": 1, "deadlineDay": 80, "expiredAt": "", "createdAt": "",
                        "unified": 0, "uta": 1, "userID": 1, "inviterID": 0, "vipLevel": "No VIP",
                        "mktMakerLevel": "0", "affiliateID": 0})

    def account_info(self, p: dict[str, str]) -> Reply:
        return self.ok({"unifiedMarginStatus": 4, "marginMode": "ISOLATED_MARGIN" if self.e.isolated else
                        "REGULAR_MARGIN", "dcpStatus": "OFF", "timeWindow": 10, "smpGroup": 0,
                        "isMasterTrader": False, "spotHedgingStatus": "OFF", "updatedTime": str(self.e.now_ms)})

    def wallet(self, p: dict[str, str]) -> Reply:
        e = self.e
        unreal, margin = e.unrealised(), e.margin()
        equity = e.wallet + unreal
        coin = {"coin": "USDT", "equity": _fmt(equity), "usdValue": _fmt(equity), "walletBalance": _fmt(e.wallet),
                "free": "", "locked": "0", "spotHedgingQty": "0", "borrowAmount": "0",
                "availableToWithdraw": _fmt(e.wallet - margin), "accruedInterest": "0", "totalOrderIM": "0",
                "totalPositionIM": _fmt(margin), "totalPositionMM": "0", "unrealisedPnl": _fmt(unreal),
                "cumRealisedPnl": "0", "bonus": "0", "marginCollateral": True, "collateralSwitch": True}
        return self.ok({"list": [{"accountType": "UNIFIED", "totalEquity": _fmt(equity),
                                  "totalWalletBalance": _fmt(e.wallet), "totalMarginBalance": _fmt(equity),
                                  "totalAvailableBalance": _fmt(equity - margin), "totalPerpUPL": _fmt(unreal),
                                  "totalInitialMargin": _fmt(margin), "totalMaintenanceMargin": "0",
                                  "accountIMRate": "0", "accountMMRate": "0", "accountLTV": "0", "coin": [coin]}]})

    def positions(self, p: dict[str, str]) -> Reply:
        rows = []
        for sym, pos in self.e.positions.items():
            if "symbol" in p and p["symbol"] != sym:
                continue
            side = "Buy" if pos.size > 0 else "Sell" if pos.size < 0 else ""
            mark = self.e.prices[sym]
            idxs = [1, 2] if self.e.hedge_mode else [0]
            for idx in idxs:
                size = abs(pos.size) if (idx == 0 or (idx == 1) == (pos.size > 0)) else ZERO
                rows.append({
                    "positionIdx": idx, "riskId": 1, "riskLimitValue": "2000000", "symbol": sym,
                    "side": side if size else "", "size": _fmt(size), "avgPrice": _fmt(pos.entry if size else ZERO),
                    "positionValue": _fmt(size * pos.entry), "tradeMode": 1 if self.e.isolated else 0,
                    "autoAddMargin": 0, "positionStatus": "Normal", "leverage": str(pos.leverage),
                    "markPrice": _fmt(mark), "liqPrice": "", "bustPrice": "",
                    "positionIM": _fmt(size * pos.entry / pos.leverage), "positionMM": "0", "positionBalance": "0",
                    "takeProfit": "", "stopLoss": "", "trailingStop": "",
                    "unrealisedPnl": _fmt((mark - pos.entry) * pos.size if size else ZERO),
                    "curRealisedPnl": _fmt(pos.realised), "cumRealisedPnl": _fmt(pos.realised), "adlRankIndicator": 0,
                    "createdTime": "1676538056258", "updatedTime": str(self.e.now_ms), "tpslMode": "Full",
                    "isReduceOnly": False, "seq": 1})
        return self.ok({"list": rows, "nextPageCursor": "", "category": "linear"})

    def set_leverage(self, p: dict[str, str]) -> Reply:
        pos = self.e.positions[p["symbol"]]
        lev = int(D(p["buyLeverage"]))
        if lev == pos.leverage:
            return self.err(110043, "Set leverage not modified")
        pos.leverage = lev
        return self.ok({})

    def set_margin_mode(self, p: dict[str, str]) -> Reply:
        self.e.isolated = p["setMarginMode"] == "ISOLATED_MARGIN"
        return self.ok({"reasons": []})

    def switch_mode(self, p: dict[str, str]) -> Reply:
        self.e.hedge_mode = p.get("mode") == "3"
        return self.ok({})

    # ---- orders
    def create(self, p: dict[str, str]) -> Reply:
        sym = p["symbol"]
        if sym not in self.e.markets:
            return self.err(10001, "params error: symbol invalid")
        link = p.get("orderLinkId", "")
        if not link or len(link) > 36:
            return self.err(10001, "params error: orderLinkId invalid")
        if self.e.by_client(link) is not None:
            return self.err(110072, "OrderLinkedID is duplicate")
        m = self.e.markets[sym]
        qty = _dec(p["qty"])
        if qty < m.min_qty or (qty / m.step) != (qty / m.step).to_integral_value():
            return self.err(10001, f"params error: qty {p['qty']} does not match the step {m.step}")
        limit = None
        if p.get("orderType") == "Limit":
            if not p.get("price"):
                return self.err(10001, "params error: price is required for a limit order")
            limit = _dec(p["price"])
            if (limit / m.tick) != (limit / m.tick).to_integral_value():
                return self.err(10001, f"params error: price {p['price']} not on tick {m.tick}")
            if p.get("triggerPrice"):
                return self.err(10001, "this fake exchange takes no conditional limit orders")
        elif p.get("orderType") != "Market":
            return self.err(10001, "this fake exchange takes market, limit and conditional market orders only")
        reduce_only = str(p.get("reduceOnly", "false")).lower() == "true"
        trigger = _dec(p["triggerPrice"]) if p.get("triggerPrice") else None
        if trigger is not None:
            if (trigger / m.tick) != (trigger / m.tick).to_integral_value():
                return self.err(10001, f"params error: triggerPrice {p['triggerPrice']} not on tick {m.tick}")
            direction = int(p.get("triggerDirection") or 0)
            if direction not in (1, 2):
                return self.err(10001, "params error: triggerDirection required")
            px = self.e.prices[sym]
            if (direction == 1 and px >= trigger) or (direction == 2 and px <= trigger):
                return self.err(110092 if direction == 1 else 110093,
                                "expect Rising, but trigger_price[...] <= current[...]" if direction == 1 else
                                "expect Falling, but trigger_price[...] >= current[...]")
        else:
            direction = 0
        if reduce_only and trigger is None:
            pos = self.e.positions[sym]
            sign = 1 if p["side"] == "Buy" else -1
            if -pos.size * sign <= 0:
                return self.err(110017, "current position is zero, cannot fix reduce-only order qty")
        o = self.e.place(sym, p["side"], qty, link, reduce_only, trigger, direction, limit=limit,
                         post_only=p.get("timeInForce") == "PostOnly")
        return self.ok({"orderId": o.id, "orderLinkId": o.client_id})

    def _find(self, p: dict[str, str]) -> Order | None:
        if p.get("orderId"):
            return self.e.orders.get(p["orderId"])
        if p.get("orderLinkId"):
            return self.e.by_client(p["orderLinkId"])
        return None

    def cancel(self, p: dict[str, str]) -> Reply:
        o = self._find(p)
        if o is None or not o.open:
            return self.err(110001, "order not exists or too late to cancel")
        self.e.cancel(o.id)
        return self.ok({"orderId": o.id, "orderLinkId": o.client_id})

    def amend(self, p: dict[str, str]) -> Reply:
        o = self._find(p)
        if o is None or not o.open:
            return self.err(110001, "order not exists or too late to replace")
        qty = _dec(p["qty"]) if p.get("qty") else None
        trig = _dec(p["triggerPrice"]) if p.get("triggerPrice") else None
        if qty is None and trig is None:
            return self.err(10001, "params error: nothing to amend")
        self.e.amend(o, qty, trig)
        return self.ok({"orderId": o.id, "orderLinkId": o.client_id})

    def order_dict(self, o: Order) -> dict[str, Any]:
        return {
            "orderId": o.id, "orderLinkId": o.client_id, "blockTradeId": "", "symbol": o.symbol,
            "price": _fmt(o.limit) if o.limit is not None else "0",
            "qty": _fmt(o.qty), "side": o.side, "isLeverage": "", "positionIdx": 0, "orderStatus": o.status,
            "cancelType": "UNKNOWN", "rejectReason": "EC_NoError", "avgPrice": _fmt(o.avg) if o.filled else "",
            "leavesQty": _fmt(o.qty - o.filled) if o.open else "0", "leavesValue": "0",
            "cumExecQty": _fmt(o.filled), "cumExecValue": _fmt(o.value), "cumExecFee": _fmt(o.fee),
            "timeInForce": ("PostOnly" if o.post_only else "GTC") if o.limit is not None else
            "IOC" if not o.conditional else "GTC", "orderType": "Limit" if o.limit is not None else "Market",
            "stopOrderType": "Stop" if o.conditional else "", "orderIv": "",
            "triggerPrice": _fmt(o.trigger) if o.trigger is not None else "",
            "takeProfit": "", "stopLoss": "", "tpTriggerBy": "", "slTriggerBy": "",
            "triggerDirection": o.direction, "triggerBy": "LastPrice" if o.conditional else "",
            "lastPriceOnCreated": "", "reduceOnly": o.reduce_only, "closeOnTrigger": False,
            "smpType": "None", "smpGroup": 0, "smpOrderId": "", "tpslMode": "", "tpLimitPrice": "",
            "slLimitPrice": "", "placeType": "", "createdTime": str(o.created_ms), "updatedTime": str(o.updated_ms),
        }

    def _select(self, p: dict[str, str], want_open: bool) -> list[Order]:
        out = []
        for o in sorted(self.e.orders.values(), key=lambda o: o.created_ms, reverse=True):
            if o.open != want_open:
                continue
            if p.get("symbol") and o.symbol != p["symbol"]:
                continue
            if p.get("orderId") and o.id != p["orderId"]:
                continue
            if p.get("orderLinkId") and o.client_id != p["orderLinkId"]:
                continue
            if p.get("orderStatus") and o.status not in p["orderStatus"].split(","):
                continue
            flt = p.get("orderFilter")
            if flt == "StopOrder" and not o.conditional:
                continue
            if flt in (None, "", "Order") and o.conditional and not p.get("orderId") and not p.get("orderLinkId"):
                continue
            out.append(o)
        return self.e.query(out)

    def realtime(self, p: dict[str, str]) -> Reply:
        return self.ok({"list": [self.order_dict(o) for o in self._select(p, True)], "nextPageCursor": "",
                        "category": "linear"})

    def history(self, p: dict[str, str]) -> Reply:
        return self.ok({"list": [self.order_dict(o) for o in self._select(p, False)], "nextPageCursor": "",
                        "category": "linear"})

    def executions(self, p: dict[str, str]) -> Reply:
        rows = []
        want = p.get("execType")
        for t in reversed(self.e.trades):
            if p.get("symbol") and t.symbol != p["symbol"]:
                continue
            if want and t.kind != want:
                continue
            if not want and t.kind != "Trade":
                continue
            if p.get("orderId") and t.order_id != p["orderId"]:
                continue
            if p.get("startTime") and t.ts < int(p["startTime"]):
                continue
            rows.append({"symbol": t.symbol, "orderType": "Market" if t.kind == "Trade" else "UNKNOWN",
                         "underlyingPrice": "", "orderLinkId": t.client_id, "side": t.side, "indexPrice": "",
                         "orderId": t.order_id, "stopOrderType": "UNKNOWN", "leavesQty": "0",
                         "execTime": str(t.ts), "feeCurrency": "USDT", "isMaker": t.maker, "execFee": _fmt(t.fee),
                         "feeRate": _fmt(MAKER if t.maker else TAKER), "execId": t.id, "tradeIv": "", "blockTradeId": "",
                         "markPrice": _fmt(t.price), "execPrice": _fmt(t.price), "markIv": "", "orderQty": _fmt(t.qty),
                         "orderPrice": _fmt(t.price), "execValue": _fmt(t.qty * t.price), "execType": t.kind,
                         "execQty": _fmt(t.qty), "closedSize": "", "seq": 1})
        return self.ok({"list": rows, "nextPageCursor": "", "category": "linear"})
