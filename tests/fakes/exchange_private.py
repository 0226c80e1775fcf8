"""A local futures exchange speaking Bybit v5 and Binance USDⓈ-M private REST, for the real ccxt client.

    with FakePrivateExchange("bybit") as fx:            # or "binanceusdm"
        client = ccxt.bybit({"apiKey": fx.api_key, "secret": fx.secret})
        point_api_at(client, fx.url)
        fx.set_price("BTCUSDT", "40000")

One matching engine (`Engine`) behind two wire dialects. Every signed request is verified like the real
exchange does (Bybit: HMAC-SHA256 of timestamp + key + recvWindow + query/body in X-BAPI-SIGN; Binance:
HMAC-SHA256 of the query or form body in `signature`) and refused with the exchange's own error code
when the signature or key is wrong.

Matching model: a market order fills at once at the price set by the test (`set_price`) with the taker
fee; a conditional order (Bybit `triggerPrice`, Binance algo STOP_MARKET / TAKE_PROFIT_MARKET) waits
until `set_price` crosses its trigger, then fills as a market order at that price. Reduce-only orders
never open or flip a position: they are clipped to the position, and a reduce-only order triggered with
no position left is cancelled (Bybit `Deactivated`, Binance `EXPIRED`). Reduce-only orders are NOT
cancelled when their position closes (like Binance, and like what a crash can leave behind): an orphan
stays until somebody cancels it.

Fault injection per path (`fx.fault(path, kind, times=1)`; path may be "METHOD /path"), applied to the next
matching requests in the order they were queued:
- "pass": let one request through untouched;
- "500" / "502" / "503" / "429": answer that status WITHOUT applying the request;
- "500-after": apply the request, then answer 500 (the exchange did it but said it failed);
- "timeout-after": apply the request, then answer only after `late_s` seconds (the client has given up);
- "drop-after": apply the request, then close the connection without an answer.
`fx.engine.visibility_lag = N`: a new order is missing from the next N order queries (an exchange that shows
an accepted order a moment later).
`fx.requests` records (method, path, params) of every request.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

D = Decimal
TAKER = D("0.00055")
ZERO = D(0)


@dataclass
class Order:
    id: str
    client_id: str
    symbol: str
    side: str  # "Buy" | "Sell"
    qty: Decimal
    reduce_only: bool
    trigger: Decimal | None = None  # conditional when set
    direction: int = 0  # 1: triggers when price rises to trigger, 2: when it falls to it
    tp: bool = False  # Binance TAKE_PROFIT_MARKET vs STOP_MARKET
    status: str = "New"  # New, Untriggered, Filled, Cancelled, Deactivated, Rejected
    filled: Decimal = ZERO
    value: Decimal = ZERO
    fee: Decimal = ZERO
    created_ms: int = 0
    updated_ms: int = 0
    hidden: int = 0  # queries that still miss this order (visibility lag)

    @property
    def conditional(self) -> bool:
        return self.trigger is not None

    @property
    def open(self) -> bool:
        return self.status in ("New", "Untriggered", "PartiallyFilled")

    @property
    def avg(self) -> Decimal:
        return (self.value / self.filled) if self.filled else ZERO


@dataclass
class Trade:
    id: str
    order_id: str
    client_id: str
    symbol: str
    side: str
    qty: Decimal
    price: Decimal
    fee: Decimal
    ts: int
    kind: str = "Trade"  # Trade | Funding


@dataclass
class Pos:
    size: Decimal = ZERO  # signed: + long, - short
    entry: Decimal = ZERO
    leverage: int = 10
    realised: Decimal = ZERO


@dataclass
class Market:
    id: str
    base: str
    tick: Decimal
    step: Decimal
    min_qty: Decimal


class Engine:
    """The exchange's state: balance, positions, orders, trades, prices. Thread-safe (one lock)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.markets = {
            "BTCUSDT": Market("BTCUSDT", "BTC", D("0.10"), D("0.001"), D("0.001")),
            "ETHUSDT": Market("ETHUSDT", "ETH", D("0.01"), D("0.01"), D("0.01")),
        }
        self.prices: dict[str, Decimal] = {"BTCUSDT": D("40000"), "ETHUSDT": D("2000")}
        self.wallet = D("10000")
        self.positions: dict[str, Pos] = {m: Pos() for m in self.markets}
        self.orders: dict[str, Order] = {}
        self.trades: list[Trade] = []
        self.hedge_mode = False
        self.isolated = False
        self.now_ms = 1_748_000_000_000
        self.visibility_lag = 0  # > 0: a new order is missing from the next N order queries
        self.hidden_misses = 0
        self._ids = itertools.count(1)

    def tick(self) -> int:
        self.now_ms += 1000
        return self.now_ms

    def next_id(self) -> str:
        return str(1_000_000 + next(self._ids))

    # ------------------------------------------------------------------ orders
    def by_client(self, client_id: str) -> Order | None:
        for o in self.orders.values():
            if o.client_id == client_id:
                return o
        return None

    def place(self, symbol: str, side: str, qty: Decimal, client_id: str, reduce_only: bool = False,
              trigger: Decimal | None = None, direction: int = 0, tp: bool = False) -> Order:
        with self.lock:
            ts = self.tick()
            o = Order(self.next_id(), client_id, symbol, side, qty, reduce_only, trigger, direction, tp,
                      "Untriggered" if trigger is not None else "New", created_ms=ts, updated_ms=ts,
                      hidden=self.visibility_lag)
            self.orders[o.id] = o
            if trigger is None:
                self._fill(o)
            return o

    def _fill(self, o: Order) -> None:
        pos = self.positions[o.symbol]
        sign = 1 if o.side == "Buy" else -1
        qty = o.qty
        if o.reduce_only:
            closable = -pos.size * sign  # > 0 when this order reduces the position
            if closable <= 0:
                o.status = "Deactivated"
                o.updated_ms = self.tick()
                return
            qty = min(qty, closable)
        px = self.prices[o.symbol]
        fee = (qty * px * TAKER).quantize(D("0.00000001"))
        self._apply(pos, sign * qty, px)
        self.wallet -= fee
        o.filled, o.value, o.fee = qty, qty * px, fee
        o.status = "Filled"
        o.updated_ms = self.tick()
        self.trades.append(Trade(self.next_id(), o.id, o.client_id, o.symbol, o.side, qty, px, fee, o.updated_ms))

    def _apply(self, pos: Pos, delta: Decimal, px: Decimal) -> None:
        if pos.size == 0 or (pos.size > 0) == (delta > 0):
            new = pos.size + delta
            pos.entry = (pos.entry * abs(pos.size) + px * abs(delta)) / abs(new)
            pos.size = new
            return
        closed = min(abs(delta), abs(pos.size))
        pnl = (px - pos.entry) * closed * (1 if pos.size > 0 else -1)
        self.wallet += pnl
        pos.realised += pnl
        pos.size += delta
        if pos.size == 0:
            pos.entry = ZERO
        elif (pos.size > 0) == (delta > 0):  # flipped
            pos.entry = px

    def cancel(self, order_id: str | None = None, client_id: str | None = None) -> Order | None:
        with self.lock:
            o = self.orders.get(order_id) if order_id else (self.by_client(client_id) if client_id else None)
            if o is None or not o.open:
                return None
            o.status = "Cancelled"
            o.updated_ms = self.tick()
            return o

    def amend(self, o: Order, qty: Decimal | None, trigger: Decimal | None) -> None:
        with self.lock:
            if qty is not None:
                o.qty = qty
            if trigger is not None:
                o.trigger = trigger
            o.updated_ms = self.tick()

    def set_price(self, symbol: str, price: Any) -> list[Order]:
        """Move the price; conditional orders whose trigger is crossed fill now (oldest first)."""
        with self.lock:
            self.prices[symbol] = D(str(price))
            px = self.prices[symbol]
            fired = []
            for o in sorted(self.orders.values(), key=lambda o: o.created_ms):
                if o.symbol != symbol or o.status != "Untriggered" or o.trigger is None:
                    continue
                if (o.direction == 1 and px >= o.trigger) or (o.direction == 2 and px <= o.trigger):
                    self._fill(o)
                    fired.append(o)
            return fired

    def funding(self, symbol: str, rate: Any) -> Decimal:
        """Settle one funding payment on the open position (positive rate: longs pay)."""
        with self.lock:
            pos = self.positions[symbol]
            if pos.size == 0:
                return ZERO
            amount = (pos.size * self.prices[symbol] * D(str(rate))).quantize(D("0.00000001"))
            self.wallet -= amount
            self.trades.append(Trade(self.next_id(), "", "", symbol, "Buy" if pos.size > 0 else "Sell", abs(pos.size),
                                     self.prices[symbol], amount, self.tick(), kind="Funding"))
            return amount

    # ------------------------------------------------------------------ views
    def visible(self, o: Order) -> bool:
        """Whether an order query sees `o` (each miss of a lagging order counts down)."""
        if o.hidden > 0:
            o.hidden -= 1
            self.hidden_misses += 1
            return False
        return True

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        return [o for o in self.orders.values() if o.open and (symbol is None or o.symbol == symbol)]

    def query(self, orders: list[Order]) -> list[Order]:
        return [o for o in orders if self.visible(o)]

    def unrealised(self) -> Decimal:
        return sum(((self.prices[s] - p.entry) * p.size for s, p in self.positions.items() if p.size), ZERO)

    def margin(self) -> Decimal:
        return sum((abs(p.size) * p.entry / p.leverage for p in self.positions.values() if p.size), ZERO)


class Fault:
    def __init__(self, kind: str, times: int):
        self.kind, self.times = kind, times


@dataclass
class Reply:
    status: int
    body: Any
    after: str | None = None  # None | "timeout" | "drop"
    headers: dict[str, str] = field(default_factory=dict)


class FakePrivateExchange:
    """The HTTP server; `dialect` is "bybit" or "binanceusdm"."""

    def __init__(self, dialect: str = "bybit", *, api_key: str = "test-key", secret: str = "test-secret",
                 late_s: float = 1.5):
        if dialect not in ("bybit", "binanceusdm"):
            raise ValueError(dialect)
        self.dialect = dialect
        self.api_key, self.secret = api_key, secret
        self.late_s = late_s
        self.engine = Engine()
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.rejected_signatures = 0
        self.watch_protection = False  # True: after every request, check every open position has a stop
        self.unprotected: list[tuple[str, str]] = []  # (path, symbol) of requests that left a position bare
        self._faults: dict[str, list[Fault]] = {}
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- control
    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def fault(self, path: str, kind: str, times: int = 1) -> None:
        with self._lock:
            self._faults.setdefault(path, []).append(Fault(kind, times))

    def set_price(self, symbol: str, price: Any) -> list[Order]:
        return self.engine.set_price(symbol, price)

    def calls(self, path: str, method: str | None = None) -> list[dict[str, str]]:
        with self._lock:
            return [q for m, p, q in self.requests if p == path and (method is None or m == method)]

    def orders_of(self, symbol: str | None = None) -> list[Order]:
        """Every order the exchange ever accepted (the count tests assert on)."""
        with self.engine.lock:
            return [o for o in self.engine.orders.values() if symbol is None or o.symbol == symbol]

    def open_protective(self, symbol: str) -> list[Order]:
        with self.engine.lock:
            return [o for o in self.engine.open_orders(symbol) if o.conditional and o.reduce_only]

    def position(self, symbol: str) -> Pos:
        return self.engine.positions[symbol]

    def _check_protection(self, path: str) -> None:
        with self.engine.lock:
            for sym, pos in self.engine.positions.items():
                if pos.size == 0:
                    continue
                exit_side = "Sell" if pos.size > 0 else "Buy"
                stops = [o for o in self.engine.open_orders(sym) if o.conditional and o.reduce_only
                         and o.side == exit_side and not o.tp and o.direction == (2 if pos.size > 0 else 1)]
                if not stops:
                    self.unprotected.append((path, sym))

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            q = self._faults.get(path)
            if not q:
                return None
            f = q[0]
            f.times -= 1
            if f.times <= 0:
                q.pop(0)
            return f

    def __enter__(self) -> FakePrivateExchange:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self, method: str) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw_body = self.rfile.read(length).decode() if length else ""
                reply = fake.handle(method, parts.path, parts.query, raw_body, dict(self.headers.items()))
                if reply.after == "drop":
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    self.close_connection = True
                    return
                if reply.after == "timeout":
                    time.sleep(fake.late_s)
                data = (reply.body if isinstance(reply.body, str) else json.dumps(reply.body)).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (timeout)
                    self.close_connection = True

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_DELETE(self) -> None:
                self._serve("DELETE")

            def do_PUT(self) -> None:
                self._serve("PUT")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    # ---------------------------------------------------------------- dispatch
    def handle(self, method: str, path: str, query: str, body: str, headers: dict[str, str]) -> Reply:
        headers = {k.lower(): v for k, v in headers.items()}
        if self.dialect == "bybit":
            params = dict(parse_qsl(query))
            if body:
                params.update({k: str(v) if not isinstance(v, str) else v for k, v in json.loads(body).items()})
        else:
            params = dict(parse_qsl(query))
            if body:
                params.update(dict(parse_qsl(body)))
        with self._lock:
            self.requests.append((method, path, params))
        fault = self._take_fault(f"{method} {path}") or self._take_fault(path)
        if fault is not None and fault.kind == "pass":  # let this request through untouched
            fault = None
        if fault is not None and not fault.kind.endswith("-after"):
            return Reply(int(fault.kind), {"error": "injected"} if fault.kind != "429" else "Too Many Requests",
                         headers={"Retry-After": "0"} if fault.kind == "429" else {})
        dialect = BybitDialect(self) if self.dialect == "bybit" else BinanceDialect(self)
        reply = dialect.route(method, path, params, query, body, headers)
        if self.watch_protection:
            self._check_protection(path)
        if fault is not None:
            if fault.kind == "500-after":
                return Reply(500, {"error": "injected after apply"})
            reply.after = "timeout" if fault.kind == "timeout-after" else "drop"
        return reply


def _hmac(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def _dec(s: Any) -> Decimal:
    return D(str(s))


def _fmt(x: Decimal | None) -> str:
    if x is None:
        return ""
    s = format(x.normalize(), "f") if x else "0"
    return s


# ====================================================================================== Bybit v5
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
        if p.get("orderType") != "Market":
            return self.err(10001, "this fake exchange takes market and conditional market orders only")
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
        o = self.e.place(sym, p["side"], qty, link, reduce_only, trigger, direction)
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
            "orderId": o.id, "orderLinkId": o.client_id, "blockTradeId": "", "symbol": o.symbol, "price": "0",
            "qty": _fmt(o.qty), "side": o.side, "isLeverage": "", "positionIdx": 0, "orderStatus": o.status,
            "cancelType": "UNKNOWN", "rejectReason": "EC_NoError", "avgPrice": _fmt(o.avg) if o.filled else "",
            "leavesQty": _fmt(o.qty - o.filled) if o.open else "0", "leavesValue": "0",
            "cumExecQty": _fmt(o.filled), "cumExecValue": _fmt(o.value), "cumExecFee": _fmt(o.fee),
            "timeInForce": "IOC" if not o.conditional else "GTC", "orderType": "Market",
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
                         "execTime": str(t.ts), "feeCurrency": "USDT", "isMaker": False, "execFee": _fmt(t.fee),
                         "feeRate": _fmt(TAKER), "execId": t.id, "tradeIv": "", "blockTradeId": "",
                         "markPrice": _fmt(t.price), "execPrice": _fmt(t.price), "markIv": "", "orderQty": _fmt(t.qty),
                         "orderPrice": _fmt(t.price), "execValue": _fmt(t.qty * t.price), "execType": t.kind,
                         "execQty": _fmt(t.qty), "closedSize": "", "seq": 1})
        return self.ok({"list": rows, "nextPageCursor": "", "category": "linear"})


# ============================================================================= Binance USDⓈ-M
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
                "clientOrderId": o.client_id, "price": "0", "avgPrice": _fmt(o.avg) if o.filled else "0.00",
                "origQty": _fmt(o.qty), "executedQty": _fmt(o.filled), "cumQuote": _fmt(o.value),
                "timeInForce": "GTC", "type": "MARKET", "reduceOnly": o.reduce_only, "closePosition": False,
                "side": o.side.upper(), "positionSide": "BOTH", "stopPrice": "0", "workingType": "CONTRACT_PRICE",
                "priceProtect": False, "origType": "MARKET", "priceMatch": "NONE", "selfTradePreventionMode": "NONE",
                "goodTillDate": 0, "time": o.created_ms, "updateTime": o.updated_ms}

    def _qty_ok(self, sym: str, qty: Decimal) -> bool:
        m = self.e.markets[sym]
        return qty >= m.min_qty and (qty / m.step) == (qty / m.step).to_integral_value()

    def create(self, p: dict[str, str]) -> Reply:
        sym = p["symbol"]
        if p.get("type") in ("STOP_MARKET", "TAKE_PROFIT_MARKET", "STOP", "TAKE_PROFIT"):
            return self.err(-4120, "Order type not supported for this endpoint. Please use the Algo Order API "
                                   "endpoints instead.")
        if p.get("type") != "MARKET":
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
        o = self.e.place(sym, "Buy" if p["side"] == "BUY" else "Sell", qty, cid, reduce_only)
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
                         "maker": False, "orderId": int(t.order_id), "price": _fmt(t.price), "qty": _fmt(t.qty),
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


def round_step(x: Decimal, step: Decimal) -> Decimal:
    return (x / step).to_integral_value(ROUND_DOWN) * step
