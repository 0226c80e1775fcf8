"""What the command groups share: consoles, the one-line failure, settings, formatting, the
pre-flight check and the account's "now"."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

import typer
from rich.console import Console

out = Console(width=None if sys.stdout.isatty() else 180)
err = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    err.print(f"[red]error:[/red] {message}", highlight=False, markup=True)
    raise typer.Exit(code)


def settings_or_fail():  # type: ignore[no-untyped-def]
    from core.settings import load_settings

    return load_settings()


def fmt(x: Any, digits: int = 6) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def preflight(as_of: str | None, symbols: list[str] | None, trading: bool = True) -> None:
    """Check settings, the database, --as-of and --symbols before Prefect starts (clear errors, nothing written)."""
    from exchange.factory import build_source
    from pipeline.stages import check_symbols
    from store.db import open_database

    settings = settings_or_fail()
    source = build_source(settings)
    if hasattr(source, "check_as_of"):
        source.check_as_of(as_of)
    if symbols:
        check_symbols(symbols, source.symbols(), "--symbols")
    elif trading and settings.universe == "fixed":
        check_symbols(settings.symbols, source.symbols(), "QUORUM_SYMBOLS")
    open_database(settings.database_url)
    if trading and as_of is not None and hasattr(source, "check_as_of"):
        from pipeline.account import check_clock
        from store.db import get_session_factory

        check_clock(get_session_factory(settings), settings.mode, source.check_as_of(as_of).to_pydatetime())


def now_for(source, settings=None) -> datetime:  # type: ignore[no-untyped-def]
    """'Now' for the account commands: the wall clock with live data; in replay, the account's own
    clock (the last decision time it was brought to), else the last bundled bar."""
    if not hasattr(source, "default_as_of"):
        return datetime.now(UTC)
    if settings is not None:
        from store.db import get_session_factory
        from store.models import AccountRow

        with get_session_factory(settings)() as s:
            row = s.get(AccountRow, settings.mode)
            if row is not None and row.clock is not None:
                return row.clock
    return source.default_as_of().to_pydatetime()




def market_precision(settings, symbols) -> dict:  # type: ignore[no-untyped-def]
    """symbol -> (price tick, qty step) for rounding exported prices and quantities. From the replay
    source's market rules; with a live source (which would need the network) nothing: the exports
    then round prices to 8 significant digits."""
    if settings.data_source != "replay":
        return {}
    from exchange.factory import build_source

    try:
        source = build_source(settings)
    except Exception:  # noqa: BLE001 - precision is cosmetic; the export still works without it
        return {}
    out_: dict = {}
    for sym in sorted(set(symbols)):
        try:
            r = source.market_rules(sym)
        except Exception:  # noqa: BLE001 - a symbol the source does not have: no tick known
            continue
        out_[sym] = (r.price_tick, r.qty_step)
    return out_
