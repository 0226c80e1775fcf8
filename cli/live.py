"""`quorum reconcile`, `quorum enter SYMBOL long|short`, `quorum exit SYMBOL` and `quorum live check`: manual
control through the broker port, the same path as the cycle (paper or live: nothing here knows which)."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from typing import Annotated

import typer

from cli.common import fail, out
from cli.common import now_for as _now_for
from cli.common import settings_or_fail as _settings


class Symbol(str):
    """A market symbol argument (shown as <symbol> in the help)."""


class EntrySide(StrEnum):
    long = "long"
    short = "short"


app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False)
live_app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                       help="Live trading: check the exchange account before going live.")


def _context():  # type: ignore[no-untyped-def]
    from exchange.factory import build_source, check_broker
    from store.db import get_session_factory

    settings = _settings()
    check_broker(settings)  # live: keys set and accepted by the exchange, before anything is read or written
    source = build_source(settings)
    return settings, source, get_session_factory(settings), _now_for(source, settings)


def _symbol(symbol: str, source) -> str:  # type: ignore[no-untyped-def]
    from pipeline.stages import check_symbols

    sym = symbol.strip().upper()
    check_symbols([sym], source.symbols(), "SYMBOL")
    return sym


@app.command()
def reconcile(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """Compare the exchange's positions, open orders and fills with the database and act on the differences
    (fills recorded, missing stops restored, orphan orders cancelled; unknown positions reported)."""
    from pipeline.manual import reconcile as run

    settings, source, factory, now = _context()
    lines = run(factory, source, settings, now)
    if as_json:
        sys.stdout.write(json.dumps({"mode": settings.mode, "findings": lines}, indent=2) + "\n")
        return
    out.print(f"reconciled ({settings.mode}): {len(lines)} finding(s)")
    for line in lines:
        out.print(f"  {line}", highlight=False, markup=False)


@app.command()
def enter(symbol: Annotated[Symbol, typer.Argument(parser=Symbol, metavar="SYMBOL", help="e.g. BTC/USDT:USDT")],
          side: Annotated[EntrySide, typer.Argument(metavar="SIDE", case_sensitive=False, help="long | short")],
          as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """Enter a position now, sized and checked by the risk manager like any decision (refused with its reasons)."""
    from pipeline.manual import manual_entry

    side = EntrySide(side).value
    settings, source, factory, now = _context()
    res = manual_entry(factory, source, settings, _symbol(symbol, source), side, now)
    if as_json:
        sys.stdout.write(json.dumps(res, indent=2, default=str) + "\n")
        if res["status"] == "denied":
            raise typer.Exit(1)
        return
    if res["status"] == "denied":
        fail("risk manager refused the entry: " + "; ".join(res["reasons"]), code=1)
    ex = res["execution"] or {}
    plan = res["risk"]["plan"] or {}
    out.print(f"{side.upper()} {symbol.upper()}: {ex.get('status')} {ex.get('note', '')}".rstrip())
    if ex.get("status") == "filled":
        out.print(f"  position {ex['position_id']}: {ex['qty']} @ {ex['fill_price']:.6g}  stop {plan.get('stop')}  "
                  f"TP1 {plan.get('tp1')}  TP2 {plan.get('tp2')}  {plan.get('leverage')}x")


@app.command("exit")
def exit_cmd(symbol: Annotated[Symbol, typer.Argument(parser=Symbol, metavar="SYMBOL", help="e.g. BTC/USDT:USDT")]) -> None:
    """Close the position in SYMBOL at market (reduce-only) and cancel its protective orders."""
    from pipeline.manual import manual_exit

    settings, source, factory, now = _context()
    closed = manual_exit(factory, source, settings, _symbol(symbol, source), now)
    out.print(f"closed {len(closed)} position(s) at market: {', '.join(closed) or 'none'}")


@live_app.command("check")
def live_check_cmd(symbols: Annotated[str | None, typer.Option("--symbols", metavar="SYMBOLS", help="comma-separated; default: "
                                                                                   "QUORUM_SYMBOLS")] = None,
                   as_of: Annotated[str | None, typer.Option("--as-of", metavar="TIME", help="replay data: the decision time "
                                                            "to preview (default: the next cycle's, as `quorum cycle`)")] = None) -> None:
    """Connect, show the account, each market's rules, the leverage and margin mode that would be set and the
    orders the next cycle would place (its decision stages run, nothing is executed). Places nothing, changes
    no setting."""
    from exchange.factory import build_source
    from exchange.live_check import live_check
    from exchange.live_client import check_credentials
    from pipeline.account import decision_time
    from pipeline.brokers import broker_for
    from pipeline.preview import next_cycle
    from store.db import get_session_factory

    settings = _settings()
    check_credentials(settings)  # a live command: live mode, its confirmation and keys the exchange accepts
    source = build_source(settings)
    factory = get_session_factory(settings)
    syms = [s.strip().upper() for s in symbols.split(",") if s.strip()] if symbols else None
    when = decision_time(factory, source, settings.mode, as_of)
    broker = broker_for(factory, source, settings, when, None)
    preview = next_cycle(factory, source, settings, when, broker.account_snapshot(), syms, _panel(settings))
    report = live_check(settings, factory, preview.plans, syms or list(settings.symbols), broker=broker, now=when)
    report["next_cycle"] = _preview_dict(preview)
    report["orders_to_place"] = sum(len(p["orders"]) for p in report["plans"])
    sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")


def _panel(settings):  # type: ignore[no-untyped-def]
    """The configured panel's votes (each available member asked once, in parallel, like a cycle), or None
    when no member is available: the math score decides alone."""
    from agents.llm.registry import member_status

    members = [m for m in settings.panel if member_status(m).available]
    if not members:
        return None

    def votes(snapshots, scores, positions, now):  # type: ignore[no-untyped-def]
        from agents.panel import run_panel
        from agents.prompt import build_payload
        from tasks.panel import provider_for, runtime

        rt = runtime(settings)  # the cycle's response cache and token budget
        payload = build_payload(snapshots, scores, {}, positions, settings, as_of=now)
        out = run_panel(members, {m.id: provider_for(m) for m in members}, list(snapshots), payload,
                        cache=rt.cache, budget=rt.budget, now=now)
        return [v for vs in out.values() for v in vs]

    return votes


def _preview_dict(p) -> dict:  # type: ignore[no-untyped-def]
    from pipeline import record

    return {"decision_time": p.decision_time.isoformat(), "universe": p.universe,
            "panel": f"{len({v.member_id for v in p.votes})} member(s) voted" if p.votes else
            "no panel member available: the math score decides alone",
            "dropped": [{"symbol": s, "reason": r} for s, r in p.dropped],
            "decisions": [{"symbol": s, "action": d.action.value, "confidence": round(d.confidence, 3),
                           "combined_score": round(d.combined_score, 4), "reason": d.reason,
                           "risk": record.verdict_dict(p.verdicts[s])} for s, d in p.decisions.items()]}
