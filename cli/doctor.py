"""`quorum doctor`: what works, what is missing, and how to fix it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from cli.common import print_table


def _check(rows: list[tuple[str, str, str]], name: str, fn: Callable[[], str]) -> bool:
    try:
        rows.append((name, "ok", fn()))
        return True
    except Exception as exc:  # noqa: BLE001 - every check reports instead of crashing
        rows.append((name, "FAIL", f"{exc}"))
        return False


def run_doctor(out: Console, probe: bool = False) -> bool:
    rows: list[tuple[str, str, str]] = []
    from core.settings import load_settings

    settings = None

    def _settings() -> str:
        nonlocal settings
        from core.settings import require_live_confirmation

        loaded = load_settings()
        summary = (f"mode {loaded.mode}, source {loaded.data_source}, exchange {loaded.exchange}, "
                   f"profile {loaded.risk_profile}")
        require_live_confirmation(loaded)  # an unconfirmed live setting is not "ok": nothing would run
        settings = loaded
        return summary

    if not _check(rows, "settings", _settings):
        _print(out, rows)
        return False
    assert settings is not None
    ok = True

    def _db() -> str:
        from store.db import open_database, safe_url

        open_database(settings.database_url)
        return f"{safe_url(settings.database_url)} (migrations applied)"

    ok &= _check(rows, "database", _db)

    def _cache() -> str:
        if not settings.redis_url:
            return "in-process cache (set QUORUM_REDIS_URL to share it across processes)"
        import redis

        redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2).ping()
        return f"redis at {settings.redis_url.split('@')[-1]}"

    ok &= _check(rows, "cache", _cache)

    def _market() -> str:
        from exchange.factory import build_source

        src = build_source(settings)
        syms = src.symbols()
        if settings.data_source == "replay":
            lo, hi = src.data_range()  # type: ignore[attr-defined]
            return f"replay: {len(syms)} symbols, decisions {lo:%Y-%m-%d %H:%M} .. {hi:%Y-%m-%d %H:%M} UTC"
        return f"{settings.exchange}: reachable, {len(syms)} markets"

    ok &= _check(rows, "market data", _market)

    from agents.llm.registry import member_status
    from agents.llm.registry import probe as probe_member

    for m in settings.panel:
        st = probe_member(m) if probe else member_status(m)
        rows.append((f"panel: {m.id}", "ok" if st.available else "off", f"{m.provider}/{m.model}: {st.reason}"))

    def _tg() -> str:
        from notify.telegram import TelegramSink

        sink = TelegramSink(settings.telegram_token, settings.telegram_channel, settings.telegram_base_url)
        check = getattr(sink, "check", None)
        return check() if check else "token set"

    if not settings.telegram_token or not settings.telegram_channel:  # optional: not a failure
        rows.append(("telegram", "off", "no token/channel: posts go to the console and stay in the outbox "
                                        "(set QUORUM_TELEGRAM_TOKEN and QUORUM_TELEGRAM_CHANNEL)"))
    else:
        ok &= _check(rows, "telegram", _tg)

    def _cycles() -> tuple[str, str]:
        from pipeline.record import stale_cycles
        from store.db import get_session_factory, transaction
        from store.models import CycleRow

        factory = get_session_factory(settings)
        stale = stale_cycles(factory, settings.mode)
        if stale:
            ids = ", ".join(r.id for r in stale[:5]) + (" ..." if len(stale) > 5 else "")
            return "warn", (f"{len(stale)} cycle(s) left running by a process that is gone (killed?): {ids}; "
                            "the next cycle marks them failed")
        with transaction(factory) as s:
            last = s.scalars(select(CycleRow).where(CycleRow.mode == settings.mode)
                             .order_by(CycleRow.started_at.desc()).limit(1)).first()
            if last is None:
                return "ok", "no cycle run yet"
            why = (last.summary or {}).get("error") if last.status == "failed" else None
            return "ok", f"last cycle {last.id} {last.status}" + (f": {why}" if why else "")

    try:
        rows.append(("cycles", *_cycles()))
    except Exception as exc:  # noqa: BLE001 - reported, like every check
        rows.append(("cycles", "FAIL", f"{exc}"))
        ok = False

    def _halt() -> str:
        from exchange.factory import build_source
        from pipeline.account import account_summary
        from store.db import get_session_factory
        from store.models import AccountRow

        src = build_source(settings)
        factory = get_session_factory(settings)
        with factory() as s:  # as of the account's own clock (doctor only reads)
            row = s.get(AccountRow, settings.mode)
            clock = row.clock if row is not None else None
        now = clock or (src.default_as_of().to_pydatetime() if hasattr(src, "default_as_of") else datetime.now(UTC))
        h = account_summary(factory, src, settings, now)["halt"]
        if h is not None:
            until = f" until {h['until']}" if h["until"] else " until `quorum resume`"
            raise RuntimeError(f"HALTED ({h['set_by']}){until}: {h['reason']}")
        return "entries allowed"

    ok &= _check(rows, "halt", _halt)
    _print(out, rows)
    return bool(ok)


def _print(out: Console, rows: list[tuple[str, str, str]]) -> None:
    t = Table(title="quorum doctor")
    t.add_column("check")
    t.add_column("status")
    t.add_column("details / how to fix")
    for name, status, detail in rows:
        color = {"ok": "green", "FAIL": "red", "off": "yellow", "warn": "yellow"}[status]
        t.add_row(name, f"[{color}]{status}[/{color}]", detail)
    print_table(t, out)


app = typer.Typer(add_completion=False, rich_markup_mode=None, no_args_is_help=True, pretty_exceptions_enable=False)


# ---- the command -----------------------------------------------------------------------------------
@app.command()
def doctor(probe: Annotated[bool, typer.Option("--probe", help="also call each LLM endpoint")] = False) -> None:
    """Check settings, database, cache, exchange, LLM providers and Telegram; say how to fix what is missing."""
    from cli.common import out

    ok = run_doctor(out, probe=probe)
    raise typer.Exit(0 if ok else 1)


