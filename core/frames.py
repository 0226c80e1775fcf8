"""Candle frame helpers: validation, UTC-aligned resampling, point-in-time slicing."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from core.errors import DataError

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
