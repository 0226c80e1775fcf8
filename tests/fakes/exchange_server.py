"""A local HTTP exchange speaking enough Bybit v5 public REST for ccxt's bybit class.

    with FakeBybit(now_ms=...) as fx:
        src = CcxtSource("bybit", api_base=fx.url, now=fx.now)

Endpoints: /v5/market/time, /v5/market/instruments-info, /v5/market/kline (and mark-price-kline),
/v5/market/tickers, /v5/market/funding/history, /v5/market/open-interest. Like Bybit, time series
are answered newest first: the newest `limit` rows inside [start, end]. Bars go up to the one
containing `now` (still forming). Data is a deterministic function of time. Every request is
recorded (`fx.requests`: list of (path, query dict)); `fx.fail(path, status, times)` makes the
next `times` calls to a path answer with an HTTP error.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

HOUR = 3_600_000
INTERVALS = {"1": 60_000, "5": 300_000, "15": 900_000, "60": HOUR, "240": 4 * HOUR, "D": 24 * HOUR}
OI_INTERVALS = {"5min": 300_000, "15min": 900_000, "30min": 1_800_000, "1h": HOUR, "4h": 4 * HOUR, "1d": 24 * HOUR}


def _instrument(symbol: str, base: str, launch_ms: int, tick: str, step: str) -> dict[str, Any]:
    return {
        "symbol": symbol, "contractType": "LinearPerpetual", "status": "Trading", "baseCoin": base,
        "quoteCoin": "USDT", "launchTime": str(launch_ms), "deliveryTime": "0", "deliveryFeeRate": "",
        "priceScale": "2",
        "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
        "priceFilter": {"minPrice": tick, "maxPrice": "1999999.80", "tickSize": tick},
        "lotSizeFilter": {"maxOrderQty": "1190.000", "minOrderQty": step, "qtyStep": step,
                          "postOnlyMaxOrderQty": "1190.000", "maxMktOrderQty": "119.000", "minNotionalValue": "5"},
        "unifiedMarginTrade": True, "fundingInterval": "480", "settleCoin": "USDT", "copyTrading": "both",
        "upperFundingRate": "0.005", "lowerFundingRate": "-0.005", "isPreListing": False, "preListingInfo": None,
        "riskParameters": {"priceLimitRatioX": "0.01", "priceLimitRatioY": "0.02"}, "displayName": "",
    }


class FakeBybit:
    def __init__(self, now_ms: int, launch_ms: int | None = None, *, with_open_interest: bool = True):
        self.now_ms = now_ms
        self.launch_ms = launch_ms if launch_ms is not None else now_ms - 2000 * HOUR
        self.with_open_interest = with_open_interest
        self.send_forming = False  # True: every kline answer also carries the bar still forming at `now`
        self.symbols = {
            "BTCUSDT": (_instrument("BTCUSDT", "BTC", self.launch_ms, "0.10", "0.001"), 40_000.0),
            "ETHUSDT": (_instrument("ETHUSDT", "ETH", self.launch_ms, "0.01", "0.01"), 2_000.0),
        }
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._failures: dict[str, list[tuple[int, str, dict[str, str]]]] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ control
    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def now(self):  # for CcxtSource(now=...)
        from datetime import UTC, datetime

        return datetime.fromtimestamp(self.now_ms / 1000, tz=UTC)

    def fail(self, path: str, status: int, times: int = 1, body: str = "error",
             headers: dict[str, str] | None = None) -> None:
        with self._lock:
            self._failures.setdefault(path, []).extend([(status, body, headers or {})] * times)

    def calls(self, path: str) -> list[dict[str, str]]:
        with self._lock:
            return [q for p, q in self.requests if p == path]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def __enter__(self) -> FakeBybit:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = dict(parse_qsl(parts.query))
                status, body, headers = fake.handle(parts.path, query)
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if status == 200 else "text/plain")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------ data
    def price(self, symbol: str, ts: int) -> float:
        base = self.symbols[symbol][1]
        return round(base * (1 + 0.01 * ((ts // HOUR) % 24) / 24), 1)

    def bar(self, symbol: str, ts: int, step: int, mark: bool = False) -> list[str]:
        o = self.price(symbol, ts)
        c = self.price(symbol, ts + step)
        row = [str(ts), str(o), str(max(o, c) + 5), str(min(o, c) - 5), str(c)]
        if not mark:
            row += ["10.5", str(round(10.5 * c, 4))]
        return row

    def funding_rate(self, ts: int) -> float:
        return 0.0001 * (1 + (ts // (8 * HOUR)) % 3)

    # ------------------------------------------------------------ protocol
    def handle(self, path: str, q: dict[str, str]) -> tuple[int, str, dict[str, str]]:
        with self._lock:
            self.requests.append((path, q))
            queue = self._failures.get(path)
            if queue:
                status, body, headers = queue.pop(0)
                return status, body, headers
        routes = {
            "/v5/market/time": self._time,
            "/v5/market/instruments-info": self._instruments,
            "/v5/market/kline": self._kline,
            "/v5/market/mark-price-kline": lambda q: self._kline(q, mark=True),
            "/v5/market/tickers": self._tickers,
            "/v5/market/funding/history": self._funding,
            "/v5/market/open-interest": self._open_interest,
        }
        fn = routes.get(path)
        if fn is None:
            return 404, "not found", {}
        if "symbol" in q and q["symbol"] not in self.symbols:
            return self._ok_raw(10001, "params error: symbol invalid", {})
        return fn(q)

    def _ok_raw(self, code: int, msg: str, result: Any) -> tuple[int, str, dict[str, str]]:
        body = {"retCode": code, "retMsg": msg, "result": result, "retExtInfo": {}, "time": self.now_ms}
        return 200, json.dumps(body), {}

    def _ok(self, result: Any) -> tuple[int, str, dict[str, str]]:
        return self._ok_raw(0, "OK", result)

    def _time(self, q: dict[str, str]):
        return self._ok({"timeSecond": str(self.now_ms // 1000), "timeNano": str(self.now_ms * 1_000_000)})

    def _instruments(self, q: dict[str, str]):
        if q.get("category", "linear") != "linear":
            return self._ok({"category": q.get("category"), "list": [], "nextPageCursor": ""})
        return self._ok({"category": "linear", "list": [v[0] for v in self.symbols.values()], "nextPageCursor": ""})

    def _window(self, q: dict[str, str], start_key: str, end_key: str, step: int, default_limit: int, max_limit: int):
        limit = min(int(q.get("limit", default_limit)), max_limit)
        start = int(q.get(start_key, 0))
        end = int(q.get(end_key, self.now_ms))
        first = -(-max(self.launch_ms, start) // step) * step
        last = min(end, self.now_ms) // step * step
        stamps = list(range(first, last + 1, step)) if last >= first else []
        return stamps[-limit:][::-1]  # newest first, the newest `limit` in the window

    def _kline(self, q: dict[str, str], mark: bool = False):
        step = INTERVALS[q["interval"]]
        stamps = self._window(q, "start", "end", step, 200, 1000)
        forming = self.now_ms // step * step
        if self.send_forming and forming not in stamps:
            stamps = [forming, *stamps]
        rows = [self.bar(q["symbol"], ts, step, mark) for ts in stamps]
        return self._ok({"symbol": q["symbol"], "category": "linear", "list": rows})

    def _ticker(self, symbol: str) -> dict[str, str]:
        last = self.price(symbol, self.now_ms)
        nxt = (self.now_ms // (8 * HOUR) + 1) * 8 * HOUR
        return {
            "symbol": symbol, "lastPrice": str(last), "indexPrice": str(last), "markPrice": str(last),
            "prevPrice24h": str(last), "price24hPcnt": "0.01", "highPrice24h": str(last + 10),
            "lowPrice24h": str(last - 10), "prevPrice1h": str(last), "openInterest": "50000",
            "openInterestValue": str(50000 * last), "turnover24h": "123456789.5", "volume24h": "3000",
            "fundingRate": str(self.funding_rate(self.now_ms)), "nextFundingTime": str(nxt),
            "predictedDeliveryPrice": "", "basisRate": "", "deliveryFeeRate": "", "deliveryTime": "0",
            "ask1Size": "1", "bid1Price": str(round(last - 0.1, 1)), "ask1Price": str(round(last + 0.1, 1)),
            "bid1Size": "1", "basis": "",
        }

    def _tickers(self, q: dict[str, str]):
        syms = [q["symbol"]] if "symbol" in q else list(self.symbols)
        return self._ok({"category": "linear", "list": [self._ticker(s) for s in syms]})

    def _funding(self, q: dict[str, str]):
        stamps = self._window(q, "startTime", "endTime", 8 * HOUR, 200, 200)
        rows = [{"symbol": q["symbol"], "fundingRate": str(self.funding_rate(ts)), "fundingRateTimestamp": str(ts)}
                for ts in stamps]
        return self._ok({"category": "linear", "list": rows})

    def _open_interest(self, q: dict[str, str]):
        if not self.with_open_interest:
            return self._ok({"symbol": q["symbol"], "category": "linear", "list": [], "nextPageCursor": ""})
        step = OI_INTERVALS[q.get("intervalTime", "1h")]
        stamps = self._window(q, "startTime", "endTime", step, 50, 200)
        rows = [{"openInterest": f"{50000 + (ts // HOUR) % 100:.3f}", "timestamp": str(ts)} for ts in stamps]
        return self._ok({"symbol": q["symbol"], "category": "linear", "list": rows, "nextPageCursor": ""})
