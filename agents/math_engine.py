"""Math engine: deterministic, vectorised technical scoring with pandas-ta.

Per timeframe (1h, 4h, 1d), on closed bars only, every indicator is causal (each row uses that bar
and earlier ones), so scoring the full history once and reading row t is identical to scoring the
history cut at t. The live cycle scores a snapshot (last row); the backtest scores whole series.

Components, each in [-1, 1]:
- trend: price vs MA20/50/200 (distance in ATR units, squashed with tanh) and the MA20 slope.
  The trend state is UP when close > MA50 and MA20 > MA50 (and MA50 > MA200 when MA200 exists),
  DOWN for the mirror image, RANGE otherwise.
- momentum: RSI(14) read by regime: in a trend, RSI above 50 is strength ((rsi-50)/25); in a range,
  beyond 30/70 it is mean-reverting ((50-rsi)/25 scaled); plus the MACD histogram in ATR units.
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


def timeframe_features(df: pd.DataFrame) -> pd.DataFrame:
    """Per-bar component scores for one timeframe (causal; NaN where history is too short)."""
    c, h, lo, v = df["close"], df["high"], df["low"], df["volume"]
    atr = ta.atr(h, lo, c, length=14)
    atr = atr.where(atr > 0)
    ma20 = c.rolling(20, min_periods=20).mean()
    ma50 = c.rolling(50, min_periods=50).mean()
    ma200 = c.rolling(200, min_periods=200).mean()
    parts = [np.tanh((c - ma20) / atr), np.tanh((c - ma50) / (2 * atr)), np.tanh((c - ma200) / (3 * atr)),
             np.tanh((ma20 - ma20.shift(5)) / atr)]
    trend = pd.concat(parts, axis=1).mean(axis=1, skipna=True).where(ma50.notna())
    up = (c > ma50) & (ma20 > ma50) & ((ma50 > ma200) | ma200.isna())
    down = (c < ma50) & (ma20 < ma50) & ((ma50 < ma200) | ma200.isna())
    state = pd.Series(np.where(up, 1, np.where(down, -1, 0)), index=df.index)
    rsi = ta.rsi(c, length=14)
    trending = state != 0
    rsi_trend = ((rsi - 50) / 25).clip(-1, 1)
    rsi_range = ((50 - rsi) / 20).clip(-1, 1) * ((rsi - 50).abs() >= 20)
    macd_hist = (c.ewm(span=12, adjust=False).mean() - c.ewm(span=26, adjust=False).mean())
    macd_hist = macd_hist - macd_hist.ewm(span=9, adjust=False).mean()
    momentum = (0.6 * np.where(trending, rsi_trend, rsi_range) + 0.4 * np.tanh(macd_hist / atr))
    cmf = ta.cmf(h, lo, c, v, length=20)
    vol_rel = (v / v.rolling(20, min_periods=20).mean()).clip(0, 1)
    volume = (2 * cmf).clip(-1, 1) * vol_rel
    out = pd.DataFrame({
        "trend": trend.clip(-1, 1),
        "momentum": pd.Series(momentum, index=df.index).where(rsi.notna()),
        "volume": volume,
        "state": state,
        "rsi": rsi,
        "atr_pct": atr / c * 100,
    })
    return out


def tech_score(feat: pd.DataFrame, trend_state: pd.Series) -> pd.Series:
    """Technical score of one timeframe given the regime (4h trend state) aligned to it."""
    w = {k: np.where(trend_state == 0, WEIGHTS[Trend.RANGE][k], WEIGHTS[Trend.UP][k]) for k in TECH}
    total = sum(w.values())
    s = sum(w[k] * feat[k].fillna(0.0) for k in TECH) / total
    return s.where(feat["trend"].notna())


def _at_close(feat: pd.DataFrame, tf: str) -> pd.DataFrame:
    """Re-index a timeframe's features by bar close time (when the value becomes known)."""
    return feat.set_axis(feat.index + TF_DELTA[tf])


def align(feat_by_tf: dict[str, pd.DataFrame], decision_times: pd.DatetimeIndex) -> dict[str, pd.DataFrame]:
    """Each timeframe's last known (closed) row at every decision time."""
    return {tf: _at_close(f, tf).reindex(decision_times, method="ffill") for tf, f in feat_by_tf.items()}


def vol_ratio_series(h1: pd.DataFrame) -> pd.Series:
    r = np.log(h1["close"]).diff()
    short = r.rolling(24, min_periods=24).std()
    normal = r.rolling(720, min_periods=240).std()
    return (short / normal).set_axis(h1.index + TF_DELTA["1h"])


def daily_atr_pct(d1: pd.DataFrame) -> pd.Series:
    atr = ta.atr(d1["high"], d1["low"], d1["close"], length=30)
    if atr is None:
        return pd.Series(np.nan, index=d1.index + TF_DELTA["1d"])
    return (atr / d1["close"] * 100).set_axis(d1.index + TF_DELTA["1d"])


@dataclass(frozen=True)
class SeriesScores:
    """Vectorised scores of one symbol at many decision times (the backtest reads rows of this)."""

    frame: pd.DataFrame  # columns: final, tech_<tf>, <component>, state_4h, vol_ratio, atr_pct, daily_veto


def score_frames(frames: dict[str, pd.DataFrame], decision_times: pd.DatetimeIndex,
                 signal: SignalSettings) -> SeriesScores:
    """Score many decision times at once from full candle frames (only closed bars are used)."""
    feats = {tf: timeframe_features(frames[tf]) if len(frames[tf]) >= MIN_BARS else None for tf in TIMEFRAMES}
    present = {tf: f for tf, f in feats.items() if f is not None}
    if "1h" not in present:
        raise DataError(f"need at least {MIN_BARS} closed 1h bars to score")
    aligned = align(present, decision_times)
    state4 = aligned.get("4h", aligned["1h"])["state"].fillna(0)
    out = pd.DataFrame(index=decision_times)
    wsum = 0.0
    blend = pd.Series(0.0, index=decision_times)
    for tf in TIMEFRAMES:
        if tf not in aligned:
            out[f"tech_{tf}"] = np.nan
            continue
        s = tech_score(aligned[tf], state4)
        out[f"tech_{tf}"] = s
        w = signal.tf_weights[tf]
        blend = blend + w * s.fillna(0.0)
        wsum += w * 1.0
        for k in TECH:
            out[f"{k}_{tf}"] = aligned[tf][k]
        out[f"rsi_{tf}"] = aligned[tf]["rsi"]
        out[f"atrpct_{tf}"] = aligned[tf]["atr_pct"]
        out[f"state_{tf}"] = aligned[tf]["state"]
    regime_w = np.where(state4 == 0, 1 - WEIGHTS[Trend.RANGE]["open_interest"] - WEIGHTS[Trend.RANGE]["news"],
                        1 - WEIGHTS[Trend.UP]["open_interest"] - WEIGHTS[Trend.UP]["news"])
    out["tech"] = blend / wsum
    out["tech_weight"] = regime_w
    out["state_4h"] = state4
    out["vol_ratio"] = vol_ratio_series(frames["1h"]).reindex(decision_times, method="ffill")
    if "1d" in present:
        out["atr_pct"] = daily_atr_pct(frames["1d"]).reindex(decision_times, method="ffill")
    else:
        out["atr_pct"] = np.nan
    # fall back to 1h ATR scaled to a day (sqrt(24)) when daily history is short
    out["atr_pct"] = out["atr_pct"].fillna(out.get("atrpct_1h", np.nan) * np.sqrt(24))
    return SeriesScores(out)


def finalize(row_tech: float, tech_weight: float, tech_1d: float, oi: float, news: float, state4: int,
             signal: SignalSettings) -> tuple[float, bool]:
    """Final score from the blended technical score and the symbol-level components."""
    w = WEIGHTS[_TREND_CODE[int(state4)]]
    final = float(np.clip(tech_weight * row_tech + w["open_interest"] * oi + w["news"] * news, -1, 1))
    veto = bool(np.isfinite(tech_1d) and abs(tech_1d) >= VETO_MIN and np.sign(tech_1d) == -np.sign(final))
    if veto:
        cap_hi, cap_lo = signal.long_threshold - 0.01, signal.short_threshold + 0.01
        final = float(np.clip(final, cap_lo, cap_hi))
    return final, veto


def signal_of(final: float, signal: SignalSettings) -> Action:
    if final > signal.long_threshold:
        return Action.LONG
    if final < signal.short_threshold:
        return Action.SHORT
    return Action.WAIT


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
    tech = float(row["tech"]) if np.isfinite(row["tech"]) else 0.0
    tech_1d = float(row.get("tech_1d", np.nan))
    if not np.isfinite(tech_1d):
        flags.append("daily_history_short")
    state4 = int(row["state_4h"])
    final, veto = finalize(tech, float(row["tech_weight"]), tech_1d, oi, news_val, state4, signal)
    w = WEIGHTS[_TREND_CODE[state4]]
    comps: dict[str, float] = {}
    for k in TECH:
        vals = [(signal.tf_weights[tf], row.get(f"{k}_{tf}", np.nan)) for tf in TIMEFRAMES]
        num = sum(wt * v for wt, v in vals if np.isfinite(v))
        comps[k] = round(float(num), 4)
    comps["open_interest"] = round(oi, 4)
    comps["news"] = round(float(news_val), 4)
    tfs = {}
    for tf in TIMEFRAMES:
        s = row.get(f"tech_{tf}", np.nan)
        if np.isfinite(s):
            tfs[tf] = TimeframeScore(
                tf, round(float(s), 4), {k: round(float(row[f"{k}_{tf}"]), 4) for k in TECH if np.isfinite(row[f"{k}_{tf}"])},
                _TREND_CODE[int(row[f"state_{tf}"])], round(float(row[f"rsi_{tf}"]), 2), round(float(row[f"atrpct_{tf}"]), 4))
    ratio = float(row["vol_ratio"]) if np.isfinite(row["vol_ratio"]) else float("nan")
    return Score(
        symbol=symbol, as_of=row.name.to_pydatetime(), final=round(final, 4), signal=signal_of(final, signal),
        timeframes=tfs, components=comps, weights=dict(w), trend=_TREND_CODE[state4],
        vol_state=vol_state(ratio, signal, news), vol_ratio=round(ratio, 3) if np.isfinite(ratio) else float("nan"),
        atr_pct=round(float(row["atr_pct"]), 4) if np.isfinite(row["atr_pct"]) else float("nan"),
        daily_veto=veto, flags=tuple(flags),
    )
