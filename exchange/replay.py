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

Every file is checked when first read (core.frames.check_bars): a truncated, empty or garbage file,
a missing column, NaN/zero/negative prices, duplicate bars or a spike is a DataError naming the file
and the row. A symbol whose data is bad is quarantined: its own calls raise that error, while the
time range and tickers are built from the other symbols, which keep working. Gaps (real outages)
are kept as they are and said in the snapshot notes; a decision time whose last bar is more than
`STALE_AFTER` old is a DataError (stale data), never decided on silently.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import DataError
from core.frames import TF_DELTA, check_bars, closed_by, resample, to_utc
from core.types import CANDLE_COLUMNS, TIMEFRAMES, MarketSnapshot
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


log = logging.getLogger(__name__)
STALE_AFTER = pd.Timedelta(hours=24)


def _read(path: Path, *, bars: bool = True) -> tuple[pd.DataFrame, list[tuple[pd.Timestamp, pd.Timestamp]]]:
    """The file as a frame indexed by UTC open time, checked (see the module doc), and its gaps.
    `bars=False` (funding events): only the time column and finite values of `open` are checked."""
    try:
        df = pd.read_feather(path)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except Exception as exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError, ... for a bad file
        detail = " ".join(str(exc).split())[:120]
        raise DataError(f"{path}: cannot read it as a feather file (truncated, empty or not Arrow data: "
                        f"{type(exc).__name__}: {detail})") from None
    if "date" not in df.columns:
        raise DataError(f"{path}: no 'date' column (has: {', '.join(map(str, df.columns))})")
    try:
        when = pd.DatetimeIndex(pd.to_datetime(df.pop("date"), utc=True)).as_unit("ns")
    except (ValueError, TypeError) as exc:
        raise DataError(f"{path}: the 'date' column is not times ({exc})") from None
    df.index = when
    df.index.name = "date"
    gaps: list[tuple[pd.Timestamp, pd.Timestamp]] = []
    if bars:
        gaps = check_bars(df, str(path))
    else:
        if "open" not in df.columns:
            raise DataError(f"{path}: missing column open (the funding rate)")
        if df.index.isna().any():
            raise DataError(f"{path}: row {int(np.argmax(df.index.isna()))}: no time (NaT)")
        rate = pd.to_numeric(df["open"], errors="coerce").to_numpy(dtype="float64")
        bad = ~np.isfinite(rate)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(f"{path}: row {i} ({df.index[i]:%Y-%m-%dT%H:%MZ}): funding rate is {float(rate[i])!r}")
        dup = df.index.duplicated(keep=False)
        if dup.any():
            raise DataError(f"{path}: duplicate funding event at {df.index[dup][0]:%Y-%m-%dT%H:%MZ}")
    return df.sort_index(), gaps


@dataclass
class SymbolHistory:
    symbol: str
    h1: pd.DataFrame  # futures 1h, preceded by spot warm-up where present
    futures_start: pd.Timestamp
    funding: pd.Series
    spot_warmup: bool
    gaps: tuple[tuple[pd.Timestamp, pd.Timestamp, str], ...] = ()  # (last open before, next open, file)

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
        if not any((self.root / "futures").glob("*-1h-futures.feather")):
            raise DataError(f"no *-1h-futures.feather files under {self.root}/futures "
                            "(run `quorum data download` or check QUORUM_DATA_DIR)")
        self.spread_pct = spread_pct
        self._cache: dict[str, SymbolHistory] = {}
        self._bad: dict[str, str] = {}

    def quarantined(self) -> dict[str, str]:
        """Symbols whose data failed its checks, with the reason (they are left out of the range and
        the tickers; their own calls raise it)."""
        return dict(self._bad)

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
        if symbol in self._bad:
            raise DataError(self._bad[symbol])
        self._check_symbol(symbol)
        try:
            hist = self._load(symbol)
        except DataError as exc:
            msg = f"{symbol} quarantined: {exc}"
            self._bad[symbol] = msg
            log.warning("replay: %s", msg)
            raise DataError(msg) from None
        self._cache[symbol] = hist
        return hist

    def _load(self, symbol: str) -> SymbolHistory:
        stem = file_stem(symbol)
        fpath = self.root / "futures" / f"{stem}-1h-futures.feather"
        fut, gaps = _read(fpath)
        fut = fut[list(CANDLE_COLUMNS)].astype("float64")
        all_gaps = [(a, b, fpath.name) for a, b in gaps]
        futures_start = fut.index[0]
        base_quote = stem.rsplit("_", 1)[0]
        spot_path = self.root / "spot" / f"{base_quote}-1h.feather"
        spot_warmup = False
        if spot_path.exists():
            spot, spot_gaps = _read(spot_path)
            spot = spot[list(CANDLE_COLUMNS)].astype("float64")
            spot = spot[spot.index < futures_start]
            if len(spot):
                fut = pd.concat([spot, fut])
                spot_warmup = True
                all_gaps = [(a, b, spot_path.name) for a, b in spot_gaps if b <= futures_start] + all_gaps
        fund_path = self.root / "futures" / f"{stem}-1h-funding_rate.feather"
        funding = (_read(fund_path, bars=False)[0]["open"].astype("float64") if fund_path.exists()
                   else pd.Series(dtype="float64"))
        return SymbolHistory(symbol, fut, futures_start, funding, spot_warmup, tuple(all_gaps))

    def _good(self, symbols: list[str]) -> list[str]:
        """The symbols whose data passes its checks (the others are quarantined, logged once)."""
        out = []
        for s in symbols:
            try:
                self.history(s)
            except DataError:
                continue
            out.append(s)
        return out

    # ---- time range ------------------------------------------------------------------------
    def data_range(self, symbol: str | None = None) -> tuple[pd.Timestamp, pd.Timestamp]:
        """(first decision time with any futures bar closed, last decision time with a fill bar)."""
        syms = [symbol] if symbol else self._good(self.symbols())
        if not syms:
            raise DataError(f"no usable replay data under {self.root}: "
                            + "; ".join(self._bad.values())[:500])
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
        for s in self._good(self.symbols()):
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
        newest_close = h1.index[-1] + TF_DELTA["1h"]
        if t - newest_close > STALE_AFTER:
            raise DataError(f"{symbol}: stale data: the newest bar before {t:%Y-%m-%dT%H:%MZ} closed at "
                            f"{newest_close:%Y-%m-%dT%H:%MZ} (a gap in the history); not deciding on it")
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
        recent = [(a, b, f) for a, b, f in hist.gaps if t - pd.Timedelta(days=30) <= b <= t]
        if recent:
            a, b, f = recent[-1]
            notes.append(f"{len(recent)} gap(s) in the last 30 days of bars, latest {a:%Y-%m-%d %H:%M} -> "
                         f"{b:%Y-%m-%d %H:%M} UTC in {f} (not filled)")
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
