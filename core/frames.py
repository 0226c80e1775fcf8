"""Candle frame helpers: validation, UTC-aligned resampling, point-in-time slicing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from core.errors import DataError
from core.types import CANDLE_COLUMNS

TF_DELTA = {"1h": pd.Timedelta(hours=1), "4h": pd.Timedelta(hours=4), "1d": pd.Timedelta(days=1)}


def to_utc(ts: datetime | str | pd.Timestamp) -> pd.Timestamp:
    """Parse a time; naive values are taken as UTC."""
    try:
        t = pd.Timestamp(ts)
    except (ValueError, TypeError) as exc:
        raise DataError(f"cannot read time {ts!r}: {exc}") from None
    if t is pd.NaT:
        raise DataError(f"cannot read time {ts!r}")
    return t.tz_localize(UTC) if t.tzinfo is None else t.tz_convert(UTC)


SPIKE_RATIO = 4.0  # a bar this many times away from the closes around it is corrupt, not a market move
SPIKE_WINDOW = 5  # bars around each bar for the reference (median of closes, centred, full windows only)


def _at(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%dT%H:%MZ")


def check_bars(df: pd.DataFrame, where: str, *, step: pd.Timedelta | None = TF_DELTA["1h"],
               rows: pd.Index | None = None) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Validate OHLCV bars at the source boundary; DataError naming `where` (a file, an exchange call)
    and the first bad row. Checked: the columns are there, there are rows, no duplicate or missing
    time, every price finite and > 0, volume finite and >= 0, high/low consistent with open/close,
    no bar `SPIKE_RATIO`× away from the closes around it (a 100× print would otherwise fill every
    target). `rows` are the rows' positions in the source (default: their order in `df`).
    Returns the gaps (previous open, next open) longer than `step`: real outages happen, so gaps are
    reported, not filled or rejected."""
    missing = [c for c in CANDLE_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{where}: missing column(s) {', '.join(missing)} (has: {', '.join(map(str, df.columns))})")
    if len(df) == 0:
        raise DataError(f"{where}: no bars (empty)")
    pos = pd.Index(range(len(df))) if rows is None else pd.Index(rows)
    if not isinstance(df.index, pd.DatetimeIndex):
        raise DataError(f"{where}: bars are not indexed by time")
    nat = df.index.isna()
    if nat.any():
        raise DataError(f"{where}: row {pos[int(nat.argmax())]}: no time (NaT)")
    order = np.argsort(df.index.asi8, kind="stable")
    d = df.iloc[order]
    p = pos[order]
    idx = d.index
    dup = idx.duplicated(keep=False)
    if dup.any():
        first = idx[dup][0]
        rows_dup = ", ".join(str(r) for r in p[idx == first][:3])
        raise DataError(f"{where}: duplicate bar at {_at(first)} (rows {rows_dup})")
    vals = d[list(CANDLE_COLUMNS)].to_numpy(dtype="float64", na_value=np.nan)
    o, h, lo, c, v = vals.T

    def fail(mask: np.ndarray, what: Callable[[int], str]) -> None:
        if mask.any():
            i = int(np.argmax(mask))
            raise DataError(f"{where}: row {p[i]} ({_at(idx[i])}): {what(i)}")

    for j, col in enumerate(CANDLE_COLUMNS):
        fail(~np.isfinite(vals[:, j]), lambda i, j=j, col=col: f"{col} is {float(vals[i, j])!r}")
    for j, col in enumerate(CANDLE_COLUMNS[:4]):
        fail(vals[:, j] <= 0, lambda i, j=j, col=col: f"{col} is {vals[i, j]:g} (prices must be > 0)")
    fail(v < 0, lambda i: f"volume is {v[i]:g} (must be >= 0)")
    tol = 1e-9
    fail(h < np.maximum(o, c) * (1 - tol), lambda i: f"high {h[i]:g} is below open {o[i]:g} / close {c[i]:g}")
    fail(lo > np.minimum(o, c) * (1 + tol), lambda i: f"low {lo[i]:g} is above open {o[i]:g} / close {c[i]:g}")
    # a spike: a wick SPIKE_RATIO x beyond the bar's own body, or a close SPIKE_RATIO x away from the
    # closes around it that the market does not stay at (a sustained move shifts the median with it)
    body_hi, body_lo = np.maximum(o, c), np.minimum(o, c)
    wick = np.maximum(h / body_hi, body_lo / lo)
    ref = pd.Series(c).rolling(SPIKE_WINDOW, center=True, min_periods=SPIKE_WINDOW).median().to_numpy()
    with np.errstate(invalid="ignore"):
        away = np.nan_to_num(np.maximum(c / ref, ref / c), nan=1.0)
    ratio = np.maximum(wick, away)
    fail(ratio > SPIKE_RATIO, lambda i: (f"a spike: high {h[i]:g} / low {lo[i]:g} against open {o[i]:g}, close "
                                         f"{c[i]:g} (closes around it ~{ref[i]:g}) is {ratio[i]:.0f}x off; "
                                         "the data is corrupt"))
    if step is None or len(idx) < 2:
        return []
    diffs = np.diff(idx.asi8)
    at = np.flatnonzero(diffs > step.value)
    return [(idx[i], idx[i + 1]) for i in at]


def resample(df_1h: pd.DataFrame, tf: str) -> pd.DataFrame:
    """Resample 1h bars to 4h or 1d, UTC-aligned, keeping only COMPLETE higher bars.

    A higher bar is complete when its last 1h bar is present (the bar that ends at its close).
    Gaps inside a bar (real exchange outages) do not invent data: OHLC is built from what exists.
    """
    if tf == "1h":
        return df_1h
    rule = {"4h": "4h", "1d": "24h"}[tf]
    agg = df_1h.resample(rule, origin="epoch", label="left", closed="left").agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    )
    last_open = df_1h.index.to_series().resample(rule, origin="epoch", label="left", closed="left").max()
    complete = (last_open + pd.Timedelta(hours=1)) == (agg.index + TF_DELTA[tf])
    return agg[complete & agg["close"].notna()]


def closed_by(df: pd.DataFrame, tf: str, as_of: pd.Timestamp) -> pd.DataFrame:
    """Rows whose bar had closed by `as_of` (open + timeframe <= as_of)."""
    cutoff = as_of - TF_DELTA[tf]
    return df.loc[: cutoff] if len(df) else df
