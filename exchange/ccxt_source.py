"""Market data from any ccxt exchange (sync client), behind exchange.base.MarketDataSource.

    src = CcxtSource("bybit")                                  # public data, no keys needed
    src = CcxtSource("bybit", api_base="http://127.0.0.1:8080")  # every endpoint on a local server
    snap = src.snapshot("BTC/USDT:USDT")

Every ccxt call goes through `_read`: ccxt errors become Quorum errors (exchange/ccxt_errors.py)
and transient ones are retried with backoff. Candles hold only bars closed by `as_of`; the bar
still forming is dropped. Open interest is filled where the exchange has it; otherwise it is None
and `notes` says so.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import ccxt
import pandas as pd

from core.errors import ConfigError, DataError, ExchangeError, QuorumError
from core.frames import check_bars
from core.types import CANDLE_COLUMNS, TIMEFRAMES, MarketSnapshot
from exchange.base import MarketRules, TickerInfo
from exchange.ccxt_errors import retry_reads, translate_ccxt

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000
TF_MS: dict[str, int] = {"1h": HOUR_MS, "4h": 4 * HOUR_MS, "1d": 24 * HOUR_MS}

# Options that keep market loading small and make swaps the default market type.
DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    "bybit": {"defaultType": "swap", "fetchMarkets": {"types": ["linear"]}},
    "binanceusdm": {"defaultType": "swap"},
    "okx": {"defaultType": "swap", "fetchMarkets": {"types": ["swap"]}},
    "hyperliquid": {"defaultType": "swap", "fetchMarkets": {"types": ["swap"]}},
    "aster": {"defaultType": "swap"},
    "krakenfutures": {},
}
# Page size of funding-rate history per exchange (ccxt's `features` does not state it).
FUNDING_PAGE_LIMIT: dict[str, int] = {
    "bybit": 200, "binanceusdm": 1000, "aster": 1000, "okx": 100, "hyperliquid": 500, "krakenfutures": 100,
}
# How many closed bars a snapshot carries per timeframe (MA200, 30 days of 1h ATR, ...).
DEFAULT_BARS: dict[str, int] = {"1h": 1000, "4h": 500, "1d": 300}
# A snapshot whose as_of is older than this cannot use the live ticker/funding/OI.
LIVE_TOLERANCE = timedelta(hours=2)

PageFetch = Callable[[int, int, int], list]  # (since_ms, limit, until_ms) -> rows


def to_ms(t: datetime | pd.Timestamp) -> int:
    ts = pd.Timestamp(t)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value // 1_000_000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def ohlcv_frame(rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """ccxt OHLCV rows -> DataFrame indexed by UTC open time ('date'), float columns, sorted, unique."""
    if not rows:
        idx = pd.DatetimeIndex([], tz="UTC", name="date")
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in CANDLE_COLUMNS}, index=idx)
    df = pd.DataFrame([list(r[:6]) for r in rows], columns=["ts", *CANDLE_COLUMNS])
    df.index = pd.DatetimeIndex(pd.to_datetime(df.pop("ts").astype("int64"), unit="ms", utc=True), name="date")
    df = df.astype("float64")
    return df[~df.index.duplicated(keep="last")].sort_index()


def paginate(
    fetch: PageFetch,
    start_ms: int,
    end_ms: int,
    *,
    step_ms: int,
    limit: int,
    ts: Callable[[Any], int] = lambda r: int(r[0]),
    max_window_ms: int | None = None,
    on_page: Callable[[list, int], None] | None = None,
) -> list:
    """Every row with start_ms <= ts <= end_ms, oldest first, fetched forward in windows.

    Each request asks for `[cursor, cursor + window)` with `limit`; a window of `limit * step_ms`
    can never hold more than `limit` rows when rows are at least `step_ms` apart. A full page whose
    oldest row is not at the window start means the exchange answered with the newest part of the
    window: the window is halved and asked again. A full page that starts at the window start is
    taken as is and the next request continues after its last row. Sparse pages (funding events)
    grow the window up to `max_window_ms`. `on_page(rows, covered_up_to_ms)` sees each page.
    """
    out: dict[int, Any] = {}
    window = max(step_ms, limit * step_ms)
    max_window = max(window, max_window_ms or window)
    cursor = start_ms
    while cursor <= end_ms:
        hi = min(end_ms, cursor + window - 1)
        page = fetch(cursor, limit, hi) or []
        rows = [r for r in page if cursor <= ts(r) <= hi]
        full = len(page) >= limit
        if full and rows and min(ts(r) for r in rows) >= cursor + step_ms and window > step_ms:
            window = max(step_ms, window // 2)
            continue
        for r in rows:
            out[ts(r)] = r
        if full and rows and max(ts(r) for r in rows) < hi:
            covered = min(hi, max(ts(r) for r in rows) + step_ms - 1)
        else:
            covered = hi
            if len(rows) < max(1, limit // 4):
                window = min(max_window, window * 2)
        if on_page is not None:
            on_page(sorted(rows, key=ts), covered)
        cursor = covered + 1
    return [out[k] for k in sorted(out)]


class CcxtSource:
    """exchange.base.MarketDataSource over a ccxt exchange's public market data."""

    def __init__(
        self,
        exchange_id: str = "bybit",
        *,
        api_base: str | None = None,
        options: dict[str, Any] | None = None,
        client: Any = None,
        timeout_ms: int = 15_000,
        attempts: int = 3,
        base_delay: float = 0.5,
        bars: dict[str, int] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] | None = None,
    ):
        if client is None:
            exchange_id = exchange_id.strip().lower()
            if exchange_id not in ccxt.exchanges:
                raise ConfigError(
                    f"unknown exchange {exchange_id!r}; use a ccxt exchange id such as "
                    "bybit, aster, binanceusdm, okx, krakenfutures, hyperliquid"
                )
            merged = {**DEFAULT_OPTIONS.get(exchange_id, {}), **(options or {})}
            client = getattr(ccxt, exchange_id)({"enableRateLimit": True, "timeout": timeout_ms, "options": merged})
        else:
            exchange_id = client.id
            if options:
                client.options.update(options)
        if api_base:  # keeps each endpoint's path (Binance's /fapi/v1 lives in the URL, Bybit's in the request)
            from exchange.live_client import point_api_at

            point_api_at(client, api_base)
        self.client = client
        self.exchange_id: str = exchange_id
        self.name: str = f"ccxt:{exchange_id}"
        self.attempts = attempts
        self.base_delay = base_delay
        self.bars = {**DEFAULT_BARS, **(bars or {})}
        self._sleep = sleep
        self._now = now or (lambda: datetime.now(UTC))
        self._markets_loaded = False
        self._markets_lock = threading.Lock()  # one load when tasks share the source across threads

    # ---------------------------------------------------------------- plumbing
    def _read(self, what: str, fn: Callable[[], Any], symbol: str | None = None) -> Any:
        def once() -> Any:
            with translate_ccxt(self.exchange_id, symbol=symbol, client=self.client):
                return fn()

        return retry_reads(once, self.attempts, self.base_delay, sleep=self._sleep,
                           what=f"{self.exchange_id} {what}")

    def has(self, feature: str) -> bool:
        return bool(self.client.has.get(feature))

    def load_markets(self) -> dict[str, dict]:
        if not self._markets_loaded:
            with self._markets_lock:
                if not self._markets_loaded:
                    if not self.client.markets:
                        self._read("load_markets", self.client.load_markets)
                    self._markets_loaded = True
        return self.client.markets

    def market(self, symbol: str) -> dict:
        """The ccxt market of `symbol`; DataError naming it when the exchange does not list it."""
        markets = self.load_markets()
        sym = symbol.strip()
        m = markets.get(sym) or markets.get(sym.upper())
        if m is None:
            examples = ", ".join(self.symbols()[:3])
            raise DataError(f"{self.exchange_id}: unknown symbol {symbol!r} (examples: {examples})")
        return m

    def _ohlcv_limit(self, price: str | None = None) -> int:
        try:
            feat = self.client.features["swap"]["linear"]["fetchOHLCV"]
            return int(feat.get(price) or feat["limit"]) if price else int(feat["limit"])
        except (KeyError, TypeError, ValueError):
            return 200

    # ---------------------------------------------------------------- protocol
    def symbols(self) -> list[str]:
        """Active perpetual swaps (every active market when the exchange lists no swaps)."""
        markets = self.load_markets()
        swaps = [s for s, m in markets.items() if m.get("swap") and m.get("active") is not False]
        return sorted(swaps or [s for s, m in markets.items() if m.get("active") is not False])

    def market_rules(self, symbol: str) -> MarketRules:
        m = self.market(symbol)
        mode = self.client.precisionMode
        prec = m.get("precision") or {}
        limits = m.get("limits") or {}

        def step(v: Any) -> Decimal | None:
            if v is None:
                return None
            if mode == ccxt.DECIMAL_PLACES:
                return Decimal(1).scaleb(-int(v))
            if mode == ccxt.SIGNIFICANT_DIGITS:
                return None  # a step that depends on the price: not expressible as one number
            return Decimal(str(v))  # TICK_SIZE (every exchange Quorum names)

        def dec(v: Any) -> Decimal | None:
            return None if v in (None, "") else Decimal(str(v))

        defaults = MarketRules(symbol=m["symbol"])
        qty_step = step(prec.get("amount")) or defaults.qty_step
        info = m.get("info") or {}
        lot = info.get("lotSizeFilter") if isinstance(info, dict) else None
        min_notional = dec((limits.get("cost") or {}).get("min"))
        if min_notional is None and isinstance(lot, dict):
            min_notional = dec(lot.get("minNotionalValue"))  # bybit states it only in the raw market
        max_lev = (limits.get("leverage") or {}).get("max")
        return MarketRules(
            symbol=m["symbol"],
            qty_step=qty_step,
            price_tick=step(prec.get("price")) or defaults.price_tick,
            min_qty=dec((limits.get("amount") or {}).get("min")) or qty_step,
            min_notional=min_notional if min_notional is not None else Decimal(0),
            max_leverage=int(float(max_lev)) if max_lev else defaults.max_leverage,
            contract_size=dec(m.get("contractSize")) or Decimal(1),
        )

    def _ticker_info(self, symbol: str, t: dict) -> TickerInfo:
        last = t.get("last") or t.get("close") or 0.0
        bid = t.get("bid") or last
        ask = t.get("ask") or last
        qv = t.get("quoteVolume")
        if qv is None and t.get("baseVolume") is not None:
            qv = float(t["baseVolume"]) * float(t.get("vwap") or last)
        return TickerInfo(symbol=symbol, last=float(last), bid=float(bid), ask=float(ask),
                          volume_24h_quote=float(qv or 0.0))

    def _check_live(self, as_of: datetime | None, what: str) -> None:
        if as_of is not None and to_ms(as_of) < to_ms(self._now() - LIVE_TOLERANCE):
            raise DataError(f"{self.name}: {what} is live data; it cannot be known at {as_of:%Y-%m-%d %H:%M} UTC")

    def tickers(self, as_of: datetime | None = None) -> dict[str, TickerInfo]:
        self._check_live(as_of, "tickers")
        wanted = set(self.symbols())
        raw = self._read("fetch_tickers", self.client.fetch_tickers)
        return {s: self._ticker_info(s, t) for s, t in raw.items() if s in wanted and t}

    def ticker(self, symbol: str, notes: list[str] | None = None) -> TickerInfo:
        """Live ticker; bid/ask from the top of the order book when the ticker has none (aster)."""
        sym = self.market(symbol)["symbol"]
        raw = self._read("fetch_ticker", lambda: self.client.fetch_ticker(sym), sym)
        if (raw.get("bid") is None or raw.get("ask") is None) and self.has("fetchOrderBook"):
            try:
                book = self._read("fetch_order_book", lambda: self.client.fetch_order_book(sym, 5), sym)
                if book.get("bids") and book.get("asks"):
                    raw = {**raw, "bid": book["bids"][0][0], "ask": book["asks"][0][0]}
            except (ExchangeError, DataError) as exc:
                if notes is not None:
                    notes.append(f"no bid/ask (order book unavailable: {exc}); spread taken as 0")
        return self._ticker_info(sym, raw)

    def snapshot(self, symbol: str, as_of: datetime | None = None) -> MarketSnapshot:
        sym = self.market(symbol)["symbol"]
        now = self._now()
        t = now if as_of is None else as_of
        if t.tzinfo is None:
            t = t.replace(tzinfo=UTC)
        t_ms = to_ms(t)
        if t_ms > to_ms(now) + 60_000:
            raise DataError(f"{self.name}: as_of {t:%Y-%m-%d %H:%M} UTC is in the future")
        live = t_ms >= to_ms(now - LIVE_TOLERANCE)
        notes: list[str] = []

        candles = {tf: self.candles(sym, tf, t, self.bars[tf]) for tf in TIMEFRAMES}
        if candles["1h"].empty:
            raise DataError(f"{self.name}: no closed 1h bars for {sym} before {t:%Y-%m-%d %H:%M} UTC")
        last_close = float(candles["1h"]["close"].iloc[-1])
        steps = candles["1h"].index.to_series().diff().dropna()
        gaps = steps[steps > pd.Timedelta(hours=1)]
        if len(gaps):
            notes.append(f"{len(gaps)} gap(s) in the exchange's 1h bars, latest before "
                         f"{gaps.index[-1]:%Y-%m-%d %H:%M} UTC ({gaps.iloc[-1] / pd.Timedelta(hours=1):.0f} h; not filled)")

        if live:
            tk = self.ticker(sym, notes)
            last, bid, ask, vol_q = tk.last, tk.bid, tk.ask, tk.volume_24h_quote
        else:
            day = candles["1h"].iloc[-24:]
            last = bid = ask = last_close
            vol_q = float((day["close"] * day["volume"]).sum())
            notes.append("as_of is in the past: price from the last closed bar, no live book (spread 0), "
                         "24 h volume from bars")

        funding_rate, next_funding = self._funding_at(sym, t, live, notes)
        oi, oi_hist = self._open_interest(sym, t, live, notes)
        return MarketSnapshot(
            symbol=sym, as_of=t, candles=candles, last=last, bid=bid, ask=ask, volume_24h_quote=vol_q,
            funding_rate=funding_rate, next_funding_time=next_funding, open_interest=oi,
            open_interest_history=oi_hist, source=self.name, notes=tuple(notes),
        )

    def _funding_at(self, sym: str, t: datetime, live: bool, notes: list[str]) -> tuple[float | None, datetime | None]:
        try:
            if live and self.has("fetchFundingRate"):
                fr = self._read("fetch_funding_rate", lambda: self.client.fetch_funding_rate(sym), sym)
                nxt = fr.get("nextFundingTimestamp") or fr.get("fundingTimestamp")
                nxt_dt = from_ms(int(nxt)) if nxt and int(nxt) > to_ms(t) else None
                rate = fr.get("fundingRate")
                return (None if rate is None else float(rate)), nxt_dt
            if self.has("fetchFundingRateHistory"):
                hist = self.funding_between(sym, t - timedelta(days=3), t)
                if len(hist):
                    notes.append("funding rate: the last settled rate at as_of (no forecast)")
                    return float(hist.iloc[-1]), None
        except QuorumError as exc:  # optional data: only bad configuration stops the snapshot
            if isinstance(exc, ConfigError):
                raise
            notes.append(f"funding rate unavailable: {exc}")
            return None, None
        notes.append(f"{self.exchange_id} provides no funding rate for {sym}")
        return None, None

    def _open_interest(self, sym: str, t: datetime, live: bool, notes: list[str]) -> tuple[float | None, pd.Series | None]:
        oi: float | None = None
        hist: pd.Series | None = None
        try:
            if self.has("fetchOpenInterestHistory"):
                since = to_ms(t) - 200 * HOUR_MS
                rows = self._read(
                    "fetch_open_interest_history",
                    lambda: self.client.fetch_open_interest_history(sym, "1h", since, 200, {"until": to_ms(t)}),
                    sym,
                )
                hist = _oi_series(rows, to_ms(t))
                if hist is not None and hist.empty:
                    hist = None
            if live and self.has("fetchOpenInterest"):
                row = self._read("fetch_open_interest", lambda: self.client.fetch_open_interest(sym), sym)
                oi = _oi_value(row)
            elif hist is not None:
                oi = float(hist.iloc[-1])
        except QuorumError as exc:  # optional data: only bad configuration stops the snapshot
            if isinstance(exc, ConfigError):
                raise
            notes.append(f"open interest unavailable: {exc}")
            return None, None
        except (IndexError, KeyError, TypeError, ValueError) as exc:  # ccxt choking on an empty answer
            log.warning("%s open interest for %s: unparseable answer (%r)", self.exchange_id, sym, exc)
            notes.append(f"{self.exchange_id} returned no usable open interest for {sym}: open_interest is None")
            return None, None
        if oi is None and hist is None:
            notes.append(f"{self.exchange_id} provides no open interest for {sym}: open_interest is None")
        elif hist is None:
            notes.append(f"no open-interest history for {sym} up to as_of from {self.exchange_id}")
        return oi, hist

    def price_after(self, symbol: str, t: datetime) -> tuple[datetime, float] | None:
        """Live: the current mid (or last) when `t` is not in the future; None otherwise."""
        now = self._now()
        if to_ms(t) > to_ms(now):
            return None
        tk = self.ticker(symbol)
        price = (tk.bid + tk.ask) / 2 if tk.bid > 0 and tk.ask > 0 else tk.last
        return now, float(price)

    # ---------------------------------------------------------------- history
    def fetch_ohlcv_range(
        self, symbol: str, timeframe: str, start_ms: int, end_ms: int, *, price: str | None = None,
        on_page: Callable[[list, int], None] | None = None,
    ) -> list[list]:
        """Raw ccxt OHLCV rows whose open time is in [start_ms, end_ms], paginated forward.

        `price="mark"` asks for mark-price bars (where `has['fetchMarkOHLCV']`).
        """
        sym = self.market(symbol)["symbol"]
        step = self.client.parse_timeframe(timeframe) * 1000
        start_ms = -(-start_ms // step) * step  # first bar open at or after start
        end_ms = end_ms // step * step  # last bar open at or before end
        limit = self._ohlcv_limit(price)

        def fetch(since: int, lim: int, until: int) -> list:
            params: dict[str, Any] = {"until": until}
            if price:
                params["price"] = price
            return self._read("fetch_ohlcv", lambda: self.client.fetch_ohlcv(sym, timeframe, since, lim, params), sym)

        return paginate(fetch, start_ms, end_ms, step_ms=step, limit=limit, on_page=on_page)

    def fetch_funding_range(
        self, symbol: str, start_ms: int, end_ms: int, *, on_page: Callable[[list, int], None] | None = None,
    ) -> list[dict]:
        """ccxt funding-rate-history entries with start_ms <= timestamp <= end_ms, oldest first."""
        sym = self.market(symbol)["symbol"]
        if not self.has("fetchFundingRateHistory"):
            raise ExchangeError(f"{self.exchange_id}: no funding-rate history")
        limit = FUNDING_PAGE_LIMIT.get(self.exchange_id, 100)

        def fetch(since: int, lim: int, until: int) -> list:
            return self._read(
                "fetch_funding_rate_history",
                lambda: self.client.fetch_funding_rate_history(sym, since, lim, {"until": until}), sym,
            )

        return paginate(fetch, start_ms, end_ms, step_ms=HOUR_MS, limit=limit, ts=lambda r: int(r["timestamp"]),
                        max_window_ms=limit * 8 * HOUR_MS, on_page=on_page)

    def candles(self, symbol: str, timeframe: str, as_of: datetime, count: int) -> pd.DataFrame:
        """The last `count` bars of `timeframe` that had closed by `as_of` (forming bar dropped)."""
        step = TF_MS[timeframe]
        t_ms = to_ms(as_of)
        last_open = t_ms - step  # a bar closes at open + step
        start = (last_open // step - count + 1) * step
        rows = self.fetch_ohlcv_range(symbol, timeframe, start, last_open)
        df = self._checked(ohlcv_frame(rows), symbol, timeframe)
        closed = df.index + pd.Timedelta(milliseconds=step) <= pd.Timestamp(t_ms, unit="ms", tz="UTC")
        return df[closed].iloc[-count:]

    def _checked(self, df: pd.DataFrame, symbol: str, timeframe: str) -> pd.DataFrame:
        """The exchange's bars checked at the boundary (core.frames.check_bars): NaN, zero or negative
        prices, inconsistent high/low or a spike are a DataError naming the call and the bar."""
        if len(df):
            check_bars(df, f"{self.name}: fetch_ohlcv {symbol} {timeframe}", step=None)
        return df

    def bars_between(self, symbol: str, start: datetime, end: datetime) -> pd.DataFrame:
        df = self._checked(ohlcv_frame(self.fetch_ohlcv_range(symbol, "1h", to_ms(start), to_ms(end) - HOUR_MS)),
                           symbol, "1h")
        end_ts = pd.Timestamp(to_ms(end), unit="ms", tz="UTC")
        return df[df.index + pd.Timedelta(hours=1) <= end_ts]

    def funding_between(self, symbol: str, start: datetime, end: datetime) -> pd.Series:
        rows = self.fetch_funding_range(symbol, to_ms(start) + 1, to_ms(end))
        return funding_series(rows)


def funding_series(rows: Sequence[dict]) -> pd.Series:
    if not rows:
        return pd.Series(dtype="float64", index=pd.DatetimeIndex([], tz="UTC", name="date"), name="funding_rate")
    idx = pd.DatetimeIndex(pd.to_datetime([int(r["timestamp"]) for r in rows], unit="ms", utc=True), name="date")
    s = pd.Series([float(r["fundingRate"]) for r in rows], index=idx, name="funding_rate", dtype="float64")
    return s[~s.index.duplicated(keep="last")].sort_index()


def _oi_value(row: dict | None) -> float | None:
    if not row:
        return None
    v = row.get("openInterestAmount")
    if v is None:
        v = row.get("openInterestValue")
    return None if v is None else float(v)


def _oi_series(rows: Sequence[dict], until_ms: int) -> pd.Series | None:
    pts = [(int(r["timestamp"]), _oi_value(r)) for r in rows or [] if r.get("timestamp") is not None]
    pts = [(ts, v) for ts, v in pts if v is not None and ts <= until_ms]
    if not pts:
        return None
    idx = pd.DatetimeIndex(pd.to_datetime([p[0] for p in pts], unit="ms", utc=True), name="date")
    s = pd.Series([p[1] for p in pts], index=idx, name="open_interest", dtype="float64")
    return s[~s.index.duplicated(keep="last")].sort_index()
