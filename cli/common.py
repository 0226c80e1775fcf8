"""What the command groups share: consoles, the one-line failure, settings, formatting, the
pre-flight check and the account's "now"."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

PIPED_WIDTH = 180  # lines and rules when the output is not a terminal; tables take the width they need


def _console_args(stderr: bool) -> dict[str, Any]:
    stream = sys.stderr if stderr else sys.stdout
    return {"stderr": stderr, "width": None if stream.isatty() else PIPED_WIDTH, "soft_wrap": stderr}


def console(stderr: bool = False) -> Console:
    """stdout: the terminal's width, or PIPED_WIDTH when piped; stderr: an error is one line, never
    wrapped (soft wrap), whatever its length."""
    return Console(**_console_args(stderr))


out = console()
err = console(stderr=True)


def reopen_consoles() -> None:
    """Set `out` and `err` up again, in place, for the streams the process has now (a command that
    `quorum warm` forked: a terminal gets its width and colours, a pipe the piped width)."""
    for c, stderr in ((out, False), (err, True)):
        c.__init__(**_console_args(stderr))  # type: ignore[misc]

ATOMIC_MAX = 24  # a cell without spaces up to this long (a price, a symbol, a time) is never cut


def _cell_len(cell: str) -> int:
    from rich.errors import MarkupError
    from rich.text import Text

    try:
        return Text.from_markup(cell).cell_len
    except MarkupError:
        return len(cell)


def print_table(t: Table, to: Console | None = None) -> None:
    """Print a table without cutting a value: columns of single words (prices, money, symbols,
    times) never wrap or shrink, text columns wrap (and fold long words) instead; in a terminal
    narrower than the table's minimum the table is printed at that minimum (the terminal wraps the
    line, nothing is lost); piped, it takes its natural width (never wrapped at 80 or 180)."""
    to = to or out
    for col in t.columns:
        cells = [c for c in col.cells if isinstance(c, str)]
        if cells and len(cells) == len(list(col.cells)) and all(len(c) <= ATOMIC_MAX and not any(
                ch.isspace() for ch in c) for c in cells):
            col.no_wrap = True
            col.min_width = max(_cell_len(c) for c in cells)
        else:
            col.overflow = "fold"
    need = to.measure(t, options=to.options.update_width(100_000))
    width = max(to.width, need.maximum if not to.is_terminal else need.minimum)
    saved = to.width
    to.width = width  # Console.print(width=) cannot exceed the console's own width
    try:
        to.print(t, crop=False)
    finally:
        to.width = saved


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


def preflight(as_of: str | None, symbols: list[str] | None, trading: bool = True, broker: bool = True) -> None:
    """Check settings, the broker (live: keys set and accepted by the exchange), the database, --as-of and
    --symbols before Prefect starts (clear errors, nothing written).

    With a running Prefect server (`PREFECT_API_URL`), the checks the flow makes itself first thing,
    before it writes anything, are left to it (the database and its migrations, --as-of against the
    replay data, the account's clock): the run starts at once, and a bad value fails it with the same
    one-line error. Without one, they are made here, so a typo is not reported after the 12-20 s a
    temporary server takes to start."""
    from cli.lifecycle import before_flow

    _check(as_of, symbols, trading, broker)
    before_flow()  # after the checks: a command that fails them does not load the temporary server's code (3 s)


def _check(as_of: str | None, symbols: list[str] | None, trading: bool, broker: bool) -> None:
    from cli.lifecycle import running_server
    from core.errors import DataError, TransientError
    from core.settings import require_live_confirmation
    from exchange.factory import build_source, check_broker
    from pipeline.stages import check_symbols
    from store.db import open_database

    settings = settings_or_fail()
    require_live_confirmation(settings)
    if broker:
        check_broker(settings)
    source = build_source(settings)
    left_to_the_flow = running_server()
    if hasattr(source, "check_as_of") and as_of != "next" and not left_to_the_flow:
        source.check_as_of(as_of)
    known: list[str] | None = None
    if not hasattr(source, "check_as_of"):  # a live exchange: is it reachable at all?
        try:
            known = source.symbols()
        except TransientError as exc:
            raise DataError(f"cannot reach the exchange {settings.exchange!r} ({exc}); check the network, "
                            "or use data_source=replay (the bundled history)") from None
    if symbols:
        check_symbols(symbols, known if known is not None else source.symbols(), "--symbols")
    elif trading and settings.universe == "fixed":
        check_symbols(settings.symbols, known if known is not None else source.symbols(), "QUORUM_SYMBOLS")
    if left_to_the_flow:
        return
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
        # no TLS context to build (40 ms) for a plain-http server on loopback
        httpx.get(url.rstrip("/") + "/health", timeout=5, verify=url.startswith("https")).raise_for_status()
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
