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

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.fakes.exchange_engine import TAKER, ZERO, Engine, Fault, Order, Pos, Reply, round_step
from tests.fakes.private_binance import BinanceDialect
from tests.fakes.private_bybit import BybitDialect

__all__ = ["TAKER", "ZERO", "Engine", "FakePrivateExchange", "Order", "Pos", "round_step"]


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
