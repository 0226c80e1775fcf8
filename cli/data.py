"""`quorum data ...`: fill the replay store from an exchange.

    quorum data download --exchange bybit --symbols BTC/USDT:USDT,ETH/USDT:USDT --since 2024-01-01

Bad input (unknown exchange, bad date, bad symbol) is one line on stderr and exit code 2; an
exchange that cannot be reached is one line and exit code 1. No tracebacks.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer

from core.errors import ConfigError, DataError, QuorumError
from core.settings import SUPPORTED_EXCHANGES

app = typer.Typer(rich_markup_mode=None, help="Market-history store: download exchange data for replay and backtests.",
                  no_args_is_help=True, add_completion=False)


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=code)


def parse_when(value: str, option: str) -> datetime:
    """YYYY-MM-DD or an ISO datetime; naive means UTC."""
    text = value.strip()
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _fail(f"{option} {value!r} is not a date (use YYYY-MM-DD or YYYY-MM-DDTHH:MM)", 2) from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def parse_symbols(value: str) -> list[str]:
    syms = [s.strip().upper() for s in value.split(",") if s.strip()]
    if not syms:
        raise _fail("--symbols is empty (e.g. BTC/USDT:USDT,ETH/USDT:USDT)", 2)
    for s in syms:
        if "/" not in s or ":" not in s:
            raise _fail(f"symbol {s!r} is not a ccxt perpetual symbol like BTC/USDT:USDT", 2)
    return syms


@app.command("download")
def download(
    exchange: str = typer.Option("bybit", "--exchange", "-e", metavar="EXCHANGE",
                                 help=f"ccxt exchange id ({', '.join(SUPPORTED_EXCHANGES)})"),
    symbols: str = typer.Option(..., "--symbols", "-s", metavar="SYMBOLS", help="comma-separated, e.g. BTC/USDT:USDT,ETH/USDT:USDT"),
    since: str = typer.Option(..., "--since", metavar="DATE", help="first bar, UTC (YYYY-MM-DD or ISO datetime)"),
    until: str | None = typer.Option(None, "--until", metavar="DATE", help="end, UTC (default: now)"),
    data_dir: Path | None = typer.Option(None, "--data-dir", metavar="DIR", help="store root (default: the data_dir setting)"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show a progress bar"),
    api_base: str | None = typer.Option(None, "--api-base", metavar="URL", hidden=True, help="point every endpoint here (tests)"),
) -> None:
    """Download 1h OHLCV, funding events and mark bars; resumes after what the store already has."""
    import ccxt

    from exchange.ccxt_source import CcxtSource
    from exchange.download import download_history

    ex = exchange.strip().lower()
    if ex not in ccxt.exchanges:
        raise _fail(f"unknown exchange {exchange!r}; supported: {', '.join(SUPPORTED_EXCHANGES)}", 2)
    syms = parse_symbols(symbols)
    t0 = parse_when(since, "--since")
    t1 = parse_when(until, "--until") if until else None
    if t1 is not None and t1 <= t0:
        raise _fail(f"--until {until} must be after --since {since}", 2)
    if t0 > datetime.now(UTC):
        raise _fail(f"--since {since} is in the future", 2)
    if data_dir is None:
        from core.settings import load_settings

        try:
            data_dir = load_settings().data_dir
        except ConfigError as exc:
            raise _fail(str(exc), 2) from None
    try:
        src = CcxtSource(ex, api_base=api_base)
        results = download_history(src, syms, t0, t1, data_dir, progress=progress)
    except (DataError, ConfigError) as exc:
        raise _fail(str(exc), 2) from None
    except QuorumError as exc:
        raise _fail(str(exc), 1) from None
    except KeyboardInterrupt:
        raise _fail("interrupted; files written so far are complete, run again to resume", 130) from None
    for r in results:
        span = "-" if r.first is None else f"{r.first:%Y-%m-%d %H:%M} .. {r.last:%Y-%m-%d %H:%M}"
        typer.echo(f"{r.symbol:<16} {r.kind:<12} +{r.rows_added:<6} {r.rows_total:>7} rows  {span}  {r.path}")


@app.callback()
def _group() -> None:
    """Market-history store commands."""
