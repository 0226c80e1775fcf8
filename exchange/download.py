"""Fill the replay store from an exchange: paginated, resumable, atomic, with a progress bar.

Layout (freqtrade feather files; exchange/replay.py reads exactly this):

    {data_dir}/{exchange_id}/futures/{BASE}_{QUOTE}_{SETTLE}-1h-futures.feather       1h OHLCV
    {data_dir}/{exchange_id}/futures/{BASE}_{QUOTE}_{SETTLE}-1h-funding_rate.feather  funding events
    {data_dir}/{exchange_id}/futures/{BASE}_{QUOTE}_{SETTLE}-1h-mark.feather          mark 1h OHLC

Columns: `date` (UTC, tz-aware), open, high, low, close, volume (float64). Funding files hold one
row per funding event with the rate in `open` and 0 elsewhere; mark files have volume NaN.

Resumable: an existing file is read first and only the missing head (before its first row, when
`since` is earlier) and tail (after its last row) are fetched; rows are merged, de-duplicated and
sorted. Files are written to a temporary file in the same folder and renamed over the old one, so
an interrupted download leaves either the old or the new file, never a broken one. Long ranges
are flushed every few pages, so an interruption keeps what was already fetched.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from core.errors import DataError
from core.types import CANDLE_COLUMNS
from exchange.ccxt_source import HOUR_MS, CcxtSource, from_ms, to_ms

KINDS = ("futures", "funding_rate", "mark")
FLUSH_EVERY_PAGES = 10
FEATHER_COLUMNS = ["date", *CANDLE_COLUMNS]


def store_path(data_dir: Path | str, exchange_id: str, symbol: str, kind: str = "futures") -> Path:
    """BTC/USDT:USDT on bybit -> {data_dir}/bybit/futures/BTC_USDT_USDT-1h-futures.feather."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    if "/" not in symbol or ":" not in symbol:
        raise DataError(f"{symbol!r} is not a ccxt futures symbol like BTC/USDT:USDT")
    stem = symbol.replace("/", "_").replace(":", "_")
    return Path(data_dir) / exchange_id / "futures" / f"{stem}-1h-{kind}.feather"


def read_store(path: Path) -> pd.DataFrame:
    """A store file as written here (columns `date` + OHLCV); empty frame when absent."""
    if not path.exists():
        return _empty()
    try:
        df = pd.read_feather(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError, ... for a bad file
        raise DataError(f"{path}: cannot read the stored history (truncated, empty or not a feather file: "
                        f"{type(exc).__name__}); move it away and download again") from None
    if "date" not in df.columns:
        raise DataError(f"{path}: the stored history has no 'date' column; move it away and download again")
    df["date"] = pd.to_datetime(df["date"], utc=True)
    return df


def _empty() -> pd.DataFrame:
    return pd.DataFrame({"date": pd.Series(dtype="datetime64[ms, UTC]"),
                         **{c: pd.Series(dtype="float64") for c in CANDLE_COLUMNS}})


def _rows_frame(rows: list, kind: str) -> pd.DataFrame:
    if not rows:
        return _empty()
    if kind == "funding_rate":
        rows = [r for r in rows if r.get("fundingRate") is not None and r.get("timestamp") is not None]
        ts = [int(r["timestamp"]) for r in rows]
        df = pd.DataFrame({"open": [float(r["fundingRate"]) for r in rows]}, dtype="float64")
        for c in ("high", "low", "close", "volume"):
            df[c] = 0.0
    else:
        ts = [int(r[0]) for r in rows]
        df = pd.DataFrame([[_f(v) for v in r[1:6]] for r in rows], columns=list(CANDLE_COLUMNS))
        if kind == "mark":
            df["volume"] = float("nan")
    df.insert(0, "date", pd.to_datetime(ts, unit="ms", utc=True).astype("datetime64[ms, UTC]"))
    return df


def _f(v: Any) -> float:
    return float("nan") if v is None else float(v)


def merge_frames(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Union of two store frames; on equal `date` the newer row wins; sorted by date."""
    parts = [f for f in (old, new) if len(f)]
    if not parts:
        return _empty()
    df = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].copy()
    df["date"] = pd.to_datetime(df["date"], utc=True).astype("datetime64[ms, UTC]")
    df = df.drop_duplicates("date", keep="last").sort_values("date").reset_index(drop=True)
    return df[FEATHER_COLUMNS].astype({c: "float64" for c in CANDLE_COLUMNS})


def write_atomic(df: pd.DataFrame, path: Path) -> None:
    """Write a feather file via a temporary file in the same folder and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        df.reset_index(drop=True).to_feather(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class DownloadResult:
    symbol: str
    kind: str
    path: Path
    rows_added: int
    rows_total: int
    first: datetime | None
    last: datetime | None
    requests: int


class _Progress:
    """A rich progress bar, or nothing when progress is off."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._p: Any = None

    @contextmanager
    def running(self) -> Iterator[_Progress]:
        if not self.enabled:
            yield self
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("h"), TimeRemainingColumn(), transient=False) as p:
            self._p = p
            yield self
        self._p = None

    def add(self, description: str, total_hours: int) -> Any:
        return None if self._p is None else self._p.add_task(description, total=max(total_hours, 0))

    def advance_to(self, task: Any, done_hours: int) -> None:
        if self._p is not None and task is not None:
            self._p.update(task, completed=done_hours)


def _ranges(existing: pd.DataFrame, start_ms: int, end_ms: int, step_ms: int) -> list[tuple[int, int]]:
    """What is missing: before the first stored row and after the last one, within [start, end]."""
    if not len(existing):
        return [(start_ms, end_ms)] if start_ms <= end_ms else []
    first = to_ms(existing["date"].iloc[0])
    last = to_ms(existing["date"].iloc[-1])
    out = []
    if start_ms < first:
        out.append((start_ms, min(end_ms, first - 1)))
    tail = max(start_ms, last + step_ms)
    if tail <= end_ms:
        out.append((tail, end_ms))
    return [(a, b) for a, b in out if a <= b]


def _download_kind(
    src: CcxtSource, symbol: str, kind: str, start_ms: int, end_ms: int, path: Path, bar: _Progress,
) -> DownloadResult:
    existing = read_store(path)
    n0 = len(existing)
    step = HOUR_MS if kind != "funding_rate" else 1
    ranges = _ranges(existing, start_ms, end_ms, step)
    state = {"df": existing, "pending": [], "pages": 0, "requests": 0, "done": 0}
    total_h = sum((b - a) // HOUR_MS + 1 for a, b in ranges)
    task = bar.add(f"{src.exchange_id} {symbol} {kind}", total_h)

    def flush() -> None:
        if state["pending"]:
            state["df"] = merge_frames(state["df"], _rows_frame(state["pending"], kind))
            state["pending"] = []
            write_atomic(state["df"], path)

    try:
        _fetch_ranges(src, symbol, kind, ranges, state, bar, task, flush)
    finally:  # keep every page fetched so far, even when interrupted
        flush()
    bar.advance_to(task, total_h)
    df = state["df"]
    return DownloadResult(
        symbol=symbol, kind=kind, path=path, rows_added=len(df) - n0, rows_total=len(df),
        first=df["date"].iloc[0].to_pydatetime() if len(df) else None,
        last=df["date"].iloc[-1].to_pydatetime() if len(df) else None,
        requests=state["pages"],
    )


def _fetch_ranges(src: CcxtSource, symbol: str, kind: str, ranges: list[tuple[int, int]], state: dict,
                  bar: _Progress, task: Any, flush: Callable[[], None]) -> None:
    for a, b in ranges:
        done_before = state["done"]

        def on_page(rows: list, covered: int, a: int = a, done_before: int = done_before) -> None:
            state["pending"].extend(rows)
            state["pages"] += 1
            state["done"] = done_before + (covered - a) // HOUR_MS + 1
            bar.advance_to(task, state["done"])
            if state["pages"] % FLUSH_EVERY_PAGES == 0:
                flush()

        if kind == "funding_rate":
            src.fetch_funding_range(symbol, a, b, on_page=on_page)
        else:
            src.fetch_ohlcv_range(symbol, "1h", a, b, price="mark" if kind == "mark" else None, on_page=on_page)
        state["done"] = done_before + (b - a) // HOUR_MS + 1


def download_history(
    source_or_exchange: CcxtSource | str,
    symbols: Iterable[str],
    since: datetime,
    until: datetime | None = None,
    data_dir: Path | str | None = None,
    progress: bool = True,
    *,
    kinds: Iterable[str] = KINDS,
    api_base: str | None = None,
    log: Callable[[str], None] | None = None,
) -> list[DownloadResult]:
    """Download 1h OHLCV, funding events and (where the exchange has them) mark bars into the store.

    `since`/`until` are UTC (naive means UTC); `until` defaults to now. Only closed bars are
    stored. Unknown symbols raise DataError before anything is fetched or written.
    """
    src = source_or_exchange if isinstance(source_or_exchange, CcxtSource) else CcxtSource(
        source_or_exchange, api_base=api_base)
    if data_dir is None:
        from core.settings import PROJECT_ROOT

        data_dir = PROJECT_ROOT / "data"
    now = src._now()
    until = now if until is None else until
    since = since if since.tzinfo else since.replace(tzinfo=UTC)
    until = until if until.tzinfo else until.replace(tzinfo=UTC)
    until = min(until, now)
    if since >= until:
        raise DataError(f"since {since:%Y-%m-%d %H:%M} must be before until {until:%Y-%m-%d %H:%M} UTC")
    syms = [src.market(s)["symbol"] for s in symbols]  # DataError on the first unknown symbol
    for s in syms:
        store_path(data_dir, src.exchange_id, s)  # DataError if not a futures symbol
    start_ms, until_ms = to_ms(since), to_ms(until)
    bar_end = until_ms - HOUR_MS  # last bar open that has closed by `until`
    wanted = [k for k in kinds if k in KINDS]
    if "funding_rate" in wanted and not src.has("fetchFundingRateHistory"):
        wanted.remove("funding_rate")
    if "mark" in wanted and not src.has("fetchMarkOHLCV"):
        wanted.remove("mark")
    results: list[DownloadResult] = []
    bar = _Progress(progress)
    with bar.running():
        for s in syms:
            created = src.market(s).get("created")  # listing time: nothing to fetch before it
            first_ms = max(start_ms, int(created) // HOUR_MS * HOUR_MS) if created else start_ms
            for kind in wanted:
                end = until_ms if kind == "funding_rate" else bar_end
                path = store_path(data_dir, src.exchange_id, s, kind)
                res = _download_kind(src, s, kind, first_ms, end, path, bar)
                results.append(res)
                if log:
                    log(f"{s} {kind}: +{res.rows_added} rows, {res.rows_total} total "
                        f"({_d(res.first)} .. {_d(res.last)}) -> {res.path}")
    return results


def _d(t: datetime | None) -> str:
    return "-" if t is None else t.strftime("%Y-%m-%d %H:%M")


__all__ = ["DownloadResult", "download_history", "from_ms", "merge_frames", "read_store", "store_path",
           "write_atomic"]
