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
    if hasattr(source, "check_as_of") and as_of != "next":
        source.check_as_of(as_of)
    if symbols:
        check_symbols(symbols, source.symbols(), "--symbols")
    elif trading and settings.universe == "fixed":
        check_symbols(settings.symbols, source.symbols(), "QUORUM_SYMBOLS")
    open_database(settings.database_url)
    if as_of == "next":
        return  # resolved by the flow under the account's lock (pipeline.account.decision_time)
    if trading and as_of is not None and hasattr(source, "check_as_of"):
        from pipeline.account import check_clock
        from store.db import get_session_factory

        check_clock(get_session_factory(settings), settings.mode, source.check_as_of(as_of).to_pydatetime())


TEMP_SERVER_NOTE = ("starting a temporary Prefect server (12–20 s); set PREFECT_API_URL to use a running one "
                    "(`prefect server start`, then `export PREFECT_API_URL=http://127.0.0.1:4200/api`)")


def prefect_server() -> str | None:
    """Before a flow runs from the CLI: the configured Prefect API (checked: a clear error when it does
    not answer), or None after saying on stderr that a temporary server is starting."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        err.print(TEMP_SERVER_NOTE, highlight=False, markup=False)
        return None
    import httpx

    from core.errors import ConfigError

    try:
        httpx.get(url.rstrip("/") + "/health", timeout=5).raise_for_status()
    except httpx.HTTPError as exc:
        raise ConfigError(f"PREFECT_API_URL={url} does not answer ({type(exc).__name__}): start it with "
                          "`prefect server start`, or unset PREFECT_API_URL to use a temporary server") from None
    return url


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


