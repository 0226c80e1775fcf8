"""Math engine: deterministic, vectorised technical scoring with pandas-ta.

Per timeframe (1h, 4h, 1d), on closed bars only, every indicator is causal (each row uses that bar
and earlier ones), so scoring the full history once and reading row t is identical to scoring the
history cut at t. The live cycle scores a snapshot (last row); the backtest scores whole series.

Components, each in [-1, 1]:
- trend: price vs MA20/50/200 (distance in ATR units, squashed with tanh) and the MA20 slope.
  The trend state is UP when close > MA50 and MA20 > MA50 (and MA50 > MA200 when MA200 exists),
  DOWN for the mirror image, RANGE otherwise.
- momentum: RSI(14) read by regime: in a trend, RSI above 50 is strength ((rsi-50)/25, clipped); in a
  range only beyond 30/70 does it count, as mean reversion ((50-rsi)/20, clipped: ±1 at RSI 30/70 and
  beyond, 0 inside); plus the MACD histogram in ATR units (0.6 RSI part + 0.4 MACD part).
- volume: Chaikin money flow (buy/sell pressure) × 2, clipped, damped when volume is thin.
- open interest (symbol level): price and OI change over 24 h: both up = longs building (+),
  price down + OI up = shorts building (-), OI falling = positions closing (half weight);
  neutral (0) and flagged `oi_missing` when the source has no OI.
- news (symbol level): the news analyst's decayed score, 0 when unavailable.

Weights shift with the trend regime of the 4h timeframe (TREND vs RANGE tables below); the
technical part is blended 1H 30% / 4H 50% / 1D 20% (settings). Daily veto: when the 1D technical
score disagrees in sign with the blend and is at least 0.1 in size, the final score is capped just
inside the signal threshold (it cannot produce a trade) and `daily_veto` is set.
Volatility regime: std of 1h returns over 24 h vs its 30-day level; ratio >= 2.5 PANIC, >= 1.3
DIGESTING (settings); a critical news event raises the regime to at least DIGESTING (PANIC for -2).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.errors import DataError
from core.frames import TF_DELTA
from core.settings import SignalSettings
from core.types import TIMEFRAMES, Action, MarketSnapshot, NewsReport, Score, TimeframeScore, Trend, VolState

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import pandas_ta as ta

WEIGHTS = {
    Trend.UP: {"trend": 0.45, "momentum": 0.20, "volume": 0.05, "open_interest": 0.15, "news": 0.15},
    Trend.DOWN: {"trend": 0.45, "momentum": 0.20, "volume": 0.05, "open_interest": 0.15, "news": 0.15},
    Trend.RANGE: {"trend": 0.35, "momentum": 0.30, "volume": 0.05, "open_interest": 0.15, "news": 0.15},
}
TECH = ("trend", "momentum", "volume")
MIN_BARS = 30
VETO_MIN = 0.1
_TREND_CODE = {1: Trend.UP, -1: Trend.DOWN, 0: Trend.RANGE}


def hourly_atr(h1: pd.DataFrame, length: int = 14) -> np.ndarray:
    """ATR(length) of 1h bars (pandas-ta), one value per bar, known at that bar's close; the
    Chandelier exit of the kelly profile trails from it."""
    a = ta.atr(h1["high"], h1["low"], h1["close"], length=length)
    return np.full(len(h1), np.nan) if a is None else a.to_numpy(dtype=float)


def _rolling_mean(x: np.ndarray, n: int) -> np.ndarray:
    """Trailing mean over n values; NaN until n values exist (like rolling(n, min_periods=n))."""
    out = np.full(x.shape, np.nan)
    if len(x) >= n:
        c = np.cumsum(np.r_[0.0, x])
        out[n - 1:] = (c[n:] - c[:-n]) / n
    return out


def _rolling_sum(x: np.ndarray, n: int) -> np.ndarray:
    return _rolling_mean(x, n) * n


def _ema(x: np.ndarray, span: int) -> np.ndarray:
    return pd.Series(x).ewm(span=span, adjust=False).mean().to_numpy()


def _shift(x: np.ndarray, k: int) -> np.ndarray:
    out = np.full(x.shape, np.nan)
    if len(x) > k:
        out[k:] = x[:-k]
    return out


@dataclass(frozen=True)
class Features:
    """Per-bar component scores of one timeframe, as arrays over the bars (causal)."""

    index: pd.DatetimeIndex  # bar open times
    cols: dict[str, np.ndarray]

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.cols, index=self.index)


def timeframe_features(df: pd.DataFrame, atr_length: int = 14) -> Features:
    """Per-bar component scores for one timeframe (causal; NaN where history is too short).

    RSI and ATR come from pandas-ta; moving averages, MACD and money flow are plain array maths.
    """
    c = df["close"].to_numpy(dtype=float)
    h = df["high"].to_numpy(dtype=float)
    lo = df["low"].to_numpy(dtype=float)
    v = df["volume"].to_numpy(dtype=float)
    atr_s = ta.atr(df["high"], df["low"], df["close"], length=atr_length)
    atr = np.full(len(c), np.nan) if atr_s is None else atr_s.to_numpy(dtype=float)
    atr = np.where(atr > 0, atr, np.nan)
    ma20, ma50, ma200 = _rolling_mean(c, 20), _rolling_mean(c, 50), _rolling_mean(c, 200)
    with np.errstate(invalid="ignore", divide="ignore"):
        parts = np.vstack([np.tanh((c - ma20) / atr), np.tanh((c - ma50) / (2 * atr)),
                           np.tanh((c - ma200) / (3 * atr)), np.tanh((ma20 - _shift(ma20, 5)) / atr)])
        valid = ~np.isnan(parts)
        cnt = valid.sum(axis=0)
        trend = np.where(cnt > 0, np.where(valid, parts, 0).sum(axis=0) / np.maximum(cnt, 1), np.nan)
        trend = np.where(np.isnan(ma50), np.nan, trend)
        no200 = np.isnan(ma200)
        up = (c > ma50) & (ma20 > ma50) & ((ma50 > ma200) | no200)
        down = (c < ma50) & (ma20 < ma50) & ((ma50 < ma200) | no200)
        state = np.where(up, 1, np.where(down, -1, 0))
        rsi_s = ta.rsi(df["close"], length=14)
        rsi = np.full(len(c), np.nan) if rsi_s is None else rsi_s.to_numpy(dtype=float)
        rsi_trend = np.clip((rsi - 50) / 25, -1, 1)
        rsi_range = np.clip((50 - rsi) / 20, -1, 1) * (np.abs(rsi - 50) >= 20)
        macd = _ema(c, 12) - _ema(c, 26)
        hist = macd - _ema(macd, 9)
        momentum = 0.6 * np.where(state != 0, rsi_trend, rsi_range) + 0.4 * np.tanh(hist / atr)
        momentum = np.where(np.isnan(rsi), np.nan, momentum)
        # Chaikin money flow (20): sum(money-flow volume) / sum(volume)
        rng = h - lo
        mfm = np.where(rng > 0, ((c - lo) - (h - c)) / np.where(rng > 0, rng, 1), 0.0)
        cmf = _rolling_sum(mfm * v, 20) / _rolling_sum(v, 20)
        vol_rel = np.clip(v / _rolling_mean(v, 20), 0, 1)
        volume = np.clip(2 * cmf, -1, 1) * vol_rel
    return Features(df.index, {
        "trend": np.clip(trend, -1, 1), "momentum": momentum, "volume": volume, "state": state.astype(float),
        "rsi": rsi, "atr_pct": atr / c * 100,
    })


def tech_score(feat: dict[str, np.ndarray], trend_state: np.ndarray) -> np.ndarray:
    """Technical score of one timeframe given the regime (4h trend state) aligned to it."""
    rng_w, tr_w = WEIGHTS[Trend.RANGE], WEIGHTS[Trend.UP]
    w = {k: np.where(trend_state == 0, rng_w[k], tr_w[k]) for k in TECH}
    total = sum(w.values())
    s = sum(w[k] * np.nan_to_num(feat[k], nan=0.0) for k in TECH) / total
    return np.where(np.isnan(feat["trend"]), np.nan, s)


def align(feat: Features, tf: str, decision_times: pd.DatetimeIndex) -> dict[str, np.ndarray]:
    """Each column's last known value (bar closed by then) at every decision time."""
    close_ns = (feat.index + TF_DELTA[tf]).as_unit("ns").asi8
    pos = np.searchsorted(close_ns, decision_times.as_unit("ns").asi8, side="right") - 1
    ok = pos >= 0
    safe = np.where(ok, pos, 0)
    return {k: np.where(ok, col[safe], np.nan) for k, col in feat.cols.items()}


def vol_ratio_series(h1: pd.DataFrame) -> pd.Series:
    c = h1["close"].to_numpy(dtype=float)
    r = np.r_[np.nan, np.diff(np.log(c))]
    rs = pd.Series(r)
    short = rs.rolling(24, min_periods=24).std().to_numpy()
    normal = rs.rolling(720, min_periods=240).std().to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.Series(short / normal, index=h1.index + TF_DELTA["1h"])


@dataclass(frozen=True)
class SeriesScores:
    """Vectorised scores of one symbol at many decision times (the backtest reads rows of this)."""

    frame: pd.DataFrame  # columns: tech, tech_<tf>, <component>_<tf>, state_4h, vol_ratio, atr_pct, ...


DAILY_ATR_LENGTH = 30


def score_frames(frames: dict[str, pd.DataFrame], decision_times: pd.DatetimeIndex,
                 signal: SignalSettings) -> SeriesScores:
    """Score many decision times at once from full candle frames (only closed bars are used)."""
    if len(frames["1h"]) < MIN_BARS:
        raise DataError(f"need at least {MIN_BARS} closed 1h bars to score")
    aligned: dict[str, dict[str, np.ndarray]] = {}
    for tf in TIMEFRAMES:
        if len(frames[tf]) >= MIN_BARS:
            atr_len = DAILY_ATR_LENGTH if tf == "1d" else 14
            aligned[tf] = align(timeframe_features(frames[tf], atr_len), tf, decision_times)
    n = len(decision_times)
    state4 = np.nan_to_num(aligned.get("4h", aligned["1h"])["state"], nan=0.0)
    out: dict[str, np.ndarray] = {}
    blend = np.zeros(n)
    wsum = 0.0
    for tf in TIMEFRAMES:
        a = aligned.get(tf)
        if a is None:
            out[f"tech_{tf}"] = np.full(n, np.nan)
            for k in (*TECH, "rsi", "atrpct", "state"):
                out[f"{k}_{tf}"] = np.full(n, np.nan)
            continue
        sc = tech_score(a, state4)
        out[f"tech_{tf}"] = sc
        w = signal.tf_weights[tf]
        blend = blend + w * np.nan_to_num(sc, nan=0.0)
        wsum += w
        for k in TECH:
            out[f"{k}_{tf}"] = a[k]
        out[f"rsi_{tf}"] = a["rsi"]
        out[f"atrpct_{tf}"] = a["atr_pct"]
        out[f"state_{tf}"] = a["state"]
    out["tech"] = blend / wsum
    out["tech_weight"] = np.where(state4 == 0, 1 - WEIGHTS[Trend.RANGE]["open_interest"] - WEIGHTS[Trend.RANGE]["news"],
                                  1 - WEIGHTS[Trend.UP]["open_interest"] - WEIGHTS[Trend.UP]["news"])
    out["state_4h"] = state4
    vr = vol_ratio_series(frames["1h"])
    pos = np.searchsorted(vr.index.as_unit("ns").asi8, decision_times.as_unit("ns").asi8, side="right") - 1
    out["vol_ratio"] = np.where(pos >= 0, vr.to_numpy()[np.maximum(pos, 0)], np.nan)
    # stop volatility: daily ATR(30) %, else the 1h ATR% scaled to a day when daily history is short
    daily = out["atrpct_1d"]
    out["atr_pct"] = np.where(np.isnan(daily), out["atrpct_1h"] * np.sqrt(24), daily)
    return SeriesScores(pd.DataFrame(out, index=decision_times))


def finalize(row_tech: float, tech_weight: float, tech_1d: float, oi: float, news: float, state4: int,
             signal: SignalSettings) -> tuple[float, bool]:
    """Final score from the blended technical score and the symbol-level components."""
    w = WEIGHTS[_TREND_CODE[int(state4)]]
    final = _clip(tech_weight * row_tech + w["open_interest"] * oi + w["news"] * news, -1.0, 1.0)
    veto = bool(math.isfinite(tech_1d) and abs(tech_1d) >= VETO_MIN and _sign(tech_1d) == -_sign(final))
    if veto:
        cap_hi, cap_lo = signal.long_threshold - 0.01, signal.short_threshold + 0.01
        final = _clip(final, cap_lo, cap_hi)
    return final, veto


def _clip(x: float, lo: float, hi: float) -> float:
    """np.clip of one float (NaN stays NaN), without numpy's per-call overhead."""
    return float(min(max(x, lo), hi))


def _sign(x: float) -> float:
    """np.sign of one float (0 for 0, NaN for NaN)."""
    return 1.0 if x > 0 else -1.0 if x < 0 else x * 0.0


def finalize_arrays(tech: np.ndarray, tech_weight: np.ndarray, tech_1d: np.ndarray, state4: np.ndarray,
                    signal: SignalSettings) -> tuple[np.ndarray, np.ndarray]:
    """`finalize` (with no OI and no news) and `signal_of` over arrays: the backtest's math pre-screen.
    The same IEEE operations in the same order, so each element equals the scalar function's result
    (tested)."""
    tk = np.where(np.isfinite(tech), tech, 0.0)
    codes = np.asarray(state4, dtype=int)
    w_oi = np.array([WEIGHTS[_TREND_CODE[c]]["open_interest"] for c in (-1, 0, 1)])[codes + 1]
    w_news = np.array([WEIGHTS[_TREND_CODE[c]]["news"] for c in (-1, 0, 1)])[codes + 1]
    raw = tech_weight * tk + w_oi * 0.0 + w_news * 0.0
    final = np.minimum(np.maximum(raw, -1.0), 1.0)
    final = np.where(np.isnan(raw), raw, final)
    with np.errstate(invalid="ignore"):
        veto = np.isfinite(tech_1d) & (np.abs(tech_1d) >= VETO_MIN) & (np.sign(tech_1d) == -np.sign(final))
    cap_hi, cap_lo = signal.long_threshold - 0.01, signal.short_threshold + 0.01
    final = np.where(veto, np.minimum(np.maximum(final, cap_lo), cap_hi), final)
    sig = np.where(final > signal.long_threshold, 1, np.where(final < signal.short_threshold, -1, 0)).astype(np.int8)
    return final, sig


def signal_of(final: float, signal: SignalSettings) -> Action:
    return signal.action_for(final)


def vol_state(ratio: float, signal: SignalSettings, news: NewsReport | None = None) -> VolState:
    state = VolState.NORMAL
    if np.isfinite(ratio):
        if ratio >= signal.panic_vol_ratio:
            state = VolState.PANIC
        elif ratio >= signal.digesting_vol_ratio:
            state = VolState.DIGESTING
    if news is not None and news.critical_negative:
        worst = min((e.impact for e in news.events if e.critical), default=-1)
        bump = VolState.PANIC if worst <= -2 else VolState.DIGESTING
        order = [VolState.NORMAL, VolState.DIGESTING, VolState.PANIC]
        state = max(state, bump, key=order.index)
    return state


def oi_component(snapshot: MarketSnapshot) -> tuple[float, tuple[str, ...]]:
    """Open-interest squeeze reading from the snapshot; neutral and flagged when OI is absent."""
    hist = snapshot.open_interest_history
    if snapshot.open_interest is None or hist is None or len(hist) < 2:
        return 0.0, ("oi_missing",)
    h1 = snapshot.candles["1h"]["close"]
    t0 = snapshot.as_of - pd.Timedelta(hours=24)
    past_oi = hist.loc[:t0]
    past_px = h1.loc[: t0]
    if len(past_oi) == 0 or len(past_px) == 0:
        return 0.0, ("oi_short_history",)
    d_oi = snapshot.open_interest / float(past_oi.iloc[-1]) - 1
    d_px = float(h1.iloc[-1]) / float(past_px.iloc[-1]) - 1
    mag = float(np.tanh(abs(d_oi) / 0.05))
    if d_oi >= 0:
        val = np.sign(d_px) * mag
    else:
        val = np.sign(d_px) * mag * 0.5
    return float(np.clip(val, -1, 1)), ()


def score_snapshot(snapshot: MarketSnapshot, signal: SignalSettings, news: NewsReport | None = None) -> Score:
    """Score one symbol at the snapshot's as_of (the live cycle path)."""
    t = pd.DatetimeIndex([pd.Timestamp(snapshot.as_of)])
    series = score_frames(snapshot.candles, t, signal)
    oi, oi_flags = oi_component(snapshot)
    return score_from_row(snapshot.symbol, series.frame.iloc[-1], oi, oi_flags, news, signal)


def score_from_row(symbol: str, row: pd.Series, oi: float, oi_flags: tuple[str, ...],
                   news: NewsReport | None, signal: SignalSettings) -> Score:
    news_val = news.score if news is not None and news.available else 0.0
    flags = list(oi_flags)
    if news is None or not news.available:
        flags.append("news_unavailable")
    tech = float(row["tech"]) if math.isfinite(row["tech"]) else 0.0
    tech_1d = float(row.get("tech_1d", np.nan))
    if not math.isfinite(tech_1d):
        flags.append("daily_history_short")
    state4 = int(row["state_4h"])
    final, veto = finalize(tech, float(row["tech_weight"]), tech_1d, oi, news_val, state4, signal)
    w = WEIGHTS[_TREND_CODE[state4]]
    comps: dict[str, float] = {}
    for k in TECH:
        vals = [(signal.tf_weights[tf], row.get(f"{k}_{tf}", np.nan)) for tf in TIMEFRAMES]
        num = sum(wt * v for wt, v in vals if math.isfinite(v))
        comps[k] = round(float(num), 4)
    comps["open_interest"] = round(oi, 4)
    comps["news"] = round(float(news_val), 4)
    tfs = {}
    for tf in TIMEFRAMES:
        s = row.get(f"tech_{tf}", np.nan)
        if math.isfinite(s):
            tfs[tf] = TimeframeScore(
                tf, round(float(s), 4), {k: round(float(row[f"{k}_{tf}"]), 4) for k in TECH if math.isfinite(row[f"{k}_{tf}"])},
                _TREND_CODE[int(row[f"state_{tf}"])], round(float(row[f"rsi_{tf}"]), 2), round(float(row[f"atrpct_{tf}"]), 4))
    ratio = float(row["vol_ratio"]) if math.isfinite(row["vol_ratio"]) else float("nan")
    return Score(
        symbol=symbol, as_of=row.name.to_pydatetime(), final=round(final, 4), signal=signal_of(final, signal),
        timeframes=tfs, components=comps, weights=dict(w), trend=_TREND_CODE[state4],
        vol_state=vol_state(ratio, signal, news), vol_ratio=round(ratio, 3) if math.isfinite(ratio) else float("nan"),
        atr_pct=round(float(row["atr_pct"]), 4) if math.isfinite(row["atr_pct"]) else float("nan"),
        daily_veto=veto, flags=tuple(flags),
    )
