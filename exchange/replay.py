"""Replay source over the bundled real history (freqtrade feather layout).

Layout under `data_dir/<exchange>/`:
  futures/{BASE}_{QUOTE}_{SETTLE}-1h-futures.feather       1h OHLCV of the perpetual
  futures/{BASE}_{QUOTE}_{SETTLE}-1h-funding_rate.feather  one row per funding event, rate in `open`
  futures/{BASE}_{QUOTE}_{SETTLE}-1h-mark.feather          mark-price OHLC (optional)
  spot/{BASE}_{QUOTE}-1h.feather                          spot 1h bars (optional warm-up history)

Spot bars are used only BEFORE the first futures bar, as indicator warm-up; the snapshot says so.
Time convention: a decision at `as_of` sees only bars whose close (open + 1h) is <= as_of; fills
happen at the open of the first bar starting at or after `as_of` (the first price after the decision).
Replay has no order book and no open interest: the spread is an estimate (setting) and open
interest is absent, both stated in the snapshot notes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import DataError
from core.frames import TF_DELTA, closed_by, resample, to_utc
from core.types import TIMEFRAMES, MarketSnapshot
from exchange.base import MarketRules, TickerInfo

# Binance USDT-M precision for the bundled pairs (exchangeInfo: stepSize, tickSize, minNotional).
BUNDLED_RULES = {
    "BTC/USDT:USDT": ("0.001", "0.10", "0.001", "100", 125),
    "ETH/USDT:USDT": ("0.001", "0.01", "0.001", "20", 100),
    "SOL/USDT:USDT": ("1", "0.0100", "1", "5", 100),
    "XRP/USDT:USDT": ("0.1", "0.0001", "0.1", "5", 75),
    "DOGE/USDT:USDT": ("1", "0.00001", "1", "5", 75),
    "BNB/USDT:USDT": ("0.01", "0.010", "0.01", "5", 75),
}


def file_stem(symbol: str) -> str:
    """BTC/USDT:USDT -> BTC_USDT_USDT; BTC/USDT -> BTC_USDT."""
    return symbol.replace("/", "_").replace(":", "_")


def _read(path: Path) -> pd.DataFrame:
    df = pd.read_feather(path)
    if "date" not in df.columns:
        raise DataError(f"{path}: no 'date' column")
    df = df.set_index(pd.DatetimeIndex(pd.to_datetime(df.pop("date"), utc=True)).as_unit("ns"))
    df.index.name = "date"
    return df.sort_index()


@dataclass
class SymbolHistory:
    symbol: str
    h1: pd.DataFrame  # futures 1h, preceded by spot warm-up where present
    futures_start: pd.Timestamp
    funding: pd.Series
    spot_warmup: bool

    @cached_property
    def frames(self) -> dict[str, pd.DataFrame]:
        return {tf: resample(self.h1, tf) for tf in TIMEFRAMES}

    @cached_property
    def open_times(self) -> np.ndarray:
        return self.h1.index.as_unit("ns").asi8


class ReplaySource:
    name = "replay"

    def __init__(self, data_dir: Path, exchange: str = "binance", spread_pct: float = 0.02):
        self.root = Path(data_dir) / exchange
        if not (self.root / "futures").is_dir():
            raise DataError(f"no replay data under {self.root}/futures (run `quorum data download` or check QUORUM_DATA_DIR)")
        self.spread_pct = spread_pct
        self._cache: dict[str, SymbolHistory] = {}

    # ---- discovery -------------------------------------------------------------------------
    def symbols(self) -> list[str]:
        out = []
        for p in sorted((self.root / "futures").glob("*-1h-futures.feather")):
            parts = p.name.removesuffix("-1h-futures.feather").split("_")
            if len(parts) == 3:
                out.append(f"{parts[0]}/{parts[1]}:{parts[2]}")
        return out

    def _check_symbol(self, symbol: str) -> None:
        known = self.symbols()
        if symbol not in known:
            raise DataError(f"unknown symbol {symbol!r}; the replay data has: {', '.join(known)}")

    def history(self, symbol: str) -> SymbolHistory:
        if symbol in self._cache:
            return self._cache[symbol]
        self._check_symbol(symbol)
        stem = file_stem(symbol)
        fut = _read(self.root / "futures" / f"{stem}-1h-futures.feather")[["open", "high", "low", "close", "volume"]]
        fut = fut.astype("float64")
        futures_start = fut.index[0]
        base_quote = stem.rsplit("_", 1)[0]
        spot_path = self.root / "spot" / f"{base_quote}-1h.feather"
        spot_warmup = False
        if spot_path.exists():
            spot = _read(spot_path)[["open", "high", "low", "close", "volume"]].astype("float64")
            spot = spot[spot.index < futures_start]
            if len(spot):
                fut = pd.concat([spot, fut])
                spot_warmup = True
        fpath = self.root / "futures" / f"{stem}-1h-funding_rate.feather"
        funding = _read(fpath)["open"].astype("float64") if fpath.exists() else pd.Series(dtype="float64")
        hist = SymbolHistory(symbol, fut, futures_start, funding, spot_warmup)
        self._cache[symbol] = hist
        return hist

    # ---- time range ------------------------------------------------------------------------
    def data_range(self, symbol: str | None = None) -> tuple[pd.Timestamp, pd.Timestamp]:
        """(first decision time with any futures bar closed, last decision time with a fill bar)."""
        syms = [symbol] if symbol else self.symbols()
        starts, ends = [], []
        for s in syms:
            h = self.history(s)
            starts.append(h.futures_start + TF_DELTA["1h"])
            ends.append(h.h1.index[-1])
        return max(starts), min(ends)

    def default_as_of(self) -> pd.Timestamp:
        """The open time of the last bundled bar: decide on the bars before it, fill at its open."""
        return self.data_range()[1]

    def check_as_of(self, as_of: datetime | str | None) -> pd.Timestamp:
        if as_of is None:
            return self.default_as_of()
        t = to_utc(as_of)
        lo, hi = self.data_range()
        last_close = hi + TF_DELTA["1h"]
        if t < lo or t > last_close:
            raise DataError(
                f"--as-of {t.isoformat()} is outside the replay data "
                f"({lo.isoformat()} .. {last_close.isoformat()})"
            )
        return t

    # ---- MarketDataSource ------------------------------------------------------------------
    def market_rules(self, symbol: str) -> MarketRules:
        self._check_symbol(symbol)
        step, tick, min_qty, min_notional, max_lev = BUNDLED_RULES.get(
            symbol, ("0.001", "0.0001", "0.001", "5", 20))
        return MarketRules(symbol, Decimal(step), Decimal(tick), Decimal(min_qty), Decimal(min_notional), max_lev)

    def _h1_at(self, symbol: str, as_of: pd.Timestamp) -> pd.DataFrame:
        return closed_by(self.history(symbol).h1, "1h", as_of)

    def tickers(self, as_of: datetime | None = None) -> dict[str, TickerInfo]:
        t = self.check_as_of(as_of)
        out = {}
        for s in self.symbols():
            h1 = self._h1_at(s, t)
            if len(h1) == 0:
                continue
            last = float(h1["close"].iloc[-1])
            day = h1.loc[t - pd.Timedelta(hours=24):]
            vol_q = float((day["close"] * day["volume"]).sum())
            half = last * self.spread_pct / 200
            out[s] = TickerInfo(s, last, last - half, last + half, vol_q)
        return out

    def snapshot(self, symbol: str, as_of: datetime | None = None) -> MarketSnapshot:
        t = self.check_as_of(as_of)
        hist = self.history(symbol)
        candles = {tf: closed_by(hist.frames[tf], tf, t) for tf in TIMEFRAMES}
        h1 = candles["1h"]
        if len(h1) == 0:
            raise DataError(f"{symbol}: no bar closed by {t.isoformat()}")
        last = float(h1["close"].iloc[-1])
        day = h1.loc[t - pd.Timedelta(hours=24):]
        vol_q = float((day["close"] * day["volume"]).sum())
        half = last * self.spread_pct / 200
        f = hist.funding.loc[:t]
        funding = float(f.iloc[-1]) if len(f) else None
        next_funding = (f.index[-1] + pd.Timedelta(hours=8)).to_pydatetime() if len(f) else None
        notes = ["replay: no open interest in the bundled history (OI component neutral)",
                 f"replay: spread is an estimate ({self.spread_pct:.3f}%), not an order book"]
        if hist.spot_warmup and h1.index[0] < hist.futures_start:
            notes.append(f"bars before {hist.futures_start:%Y-%m-%d} are spot (indicator warm-up)")
        return MarketSnapshot(
            symbol=symbol, as_of=t.to_pydatetime(), candles=candles, last=last, bid=last - half,
            ask=last + half, volume_24h_quote=vol_q, funding_rate=funding, next_funding_time=next_funding,
            open_interest=None, open_interest_history=None, source="replay", notes=tuple(notes),
        )

    def price_after(self, symbol: str, t: datetime) -> tuple[datetime, float] | None:
        hist = self.history(symbol)
        ts = to_utc(t)
        i = int(np.searchsorted(hist.open_times, ts.value, side="left"))
        if i >= len(hist.h1):
            return None
        return hist.h1.index[i].to_pydatetime(), float(hist.h1["open"].iloc[i])

    def bars_between(self, symbol: str, start: datetime, end: datetime) -> pd.DataFrame:
        h1 = self.history(symbol).h1
        s, e = to_utc(start), to_utc(end)
        return h1.loc[s: e - TF_DELTA["1h"]]

    def funding_between(self, symbol: str, start: datetime, end: datetime) -> pd.Series:
        f = self.history(symbol).funding
        s, e = to_utc(start), to_utc(end)
        return f[(f.index > s) & (f.index <= e)]
