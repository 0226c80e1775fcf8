"""`quorum cycle`, `demo`, `monitor`, `daily-report`, `positions`, `trades`, `halt`, `resume`: the
trading cycle, the account and its positions."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.common import fmt as _fmt
from cli.common import now_for as _now_for
from cli.common import out, prefect_server, preflight, print_table
from cli.common import settings_or_fail as _settings

app = typer.Typer(add_completion=False, rich_markup_mode=None, no_args_is_help=True, pretty_exceptions_enable=False)


# ---- cycle ------------------------------------------------------------------------------------
@app.command()
def cycle(
    as_of: Annotated[str | None, typer.Option("--as-of", metavar="TIME", help="decision time (UTC), default: the last "
                                                  "bundled bar (replay) or now (live data); 'next': the first bar "
                                                  "after the account's clock (replay walks one bar per run)")] = None,
    symbols: Annotated[str | None, typer.Option("--symbols", metavar="SYMBOLS", help="comma-separated, e.g. BTC/USDT:USDT,ETH/USDT:USDT")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    no_llm_cache: Annotated[bool, typer.Option("--no-llm-cache", help="bypass the model response cache")] = False,
) -> None:
    """Run one trading cycle now."""
    sym_list = [s.strip().upper() for s in symbols.split(",") if s.strip()] if symbols else None
    preflight(as_of, sym_list)
    prefect_server()
    from flows.trading_cycle import trading_cycle

    report = trading_cycle(as_of=as_of, symbols=sym_list, use_llm_cache=not no_llm_cache, broadcast=not as_json)
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")
        return
    render_cycle(report)


def render_cycle(r: dict[str, Any]) -> None:
    out.print(f"[bold]Cycle {r['cycle_id']}[/bold]  as of {r['as_of']}  mode {r['mode']}  source {r['source']}  "
              f"profile {r['risk_profile']}  universe: {r['universe']}")
    for note in r.get("reconciled", []):
        out.print(f"  [yellow]{note}[/yellow]")
    for d in r["dropped"]:
        out.print(f"  dropped {d['symbol']}: {d['reason']}")
    mon = r.get("monitor") or {}
    for e in mon.get("events", []):
        out.print(f"  position update: {e}")
    t = Table(title="Candidates", show_lines=False)
    for col in ("symbol", "price", "score", "1h/4h/1d", "trend", "mom", "vol", "OI", "news", "regime", "flags"):
        t.add_column(col, justify="right" if col not in ("symbol", "regime", "flags") else "left")
    for c in r["candidates"]:
        s = c["score"]
        tfs = "/".join(f"{s['timeframes'].get(k, float('nan')):+.2f}" for k in ("1h", "4h", "1d"))
        comp = s["components"]
        t.add_row(c["symbol"], _fmt(c["price"]), f"{s['final']:+.3f}", tfs, f"{comp['trend']:+.2f}",
                  f"{comp['momentum']:+.2f}", f"{comp['volume']:+.2f}", f"{comp['open_interest']:+.2f}",
                  f"{comp['news']:+.2f}", f"{s['trend']}/{s['vol_state']}" + (" veto1D" if s["daily_veto"] else ""),
                  ",".join(s["flags"]))
    print_table(t, out)
    out.print(r["panel"]["status"])
    if r.get("reused"):
        out.print(f"rerun of {r['as_of']}: the stored decision of cycle {', '.join(r['reused'])} is reused "
                  "(same facts, same result; no model called again)")
    for c in r["candidates"]:
        for v in c["votes"]:
            what = f"{v['action']} {v['confidence']:.2f}" if v["action"] else f"abstain ({v['abstain']})"
            out.print(f"  {c['symbol']:<16} {v['member']:<14} {what:<22} {v['latency_s']:>6.2f}s "
                      f"{v['tokens']:>6} tok ${v['cost_usd']:.4f}{' cached' if v['cached'] else ''}  {v['rationale'][:60]}")
    d = Table(title="Decisions and risk")
    for col in ("symbol", "decision", "conf", "math", "combined", "votes", "dissent", "risk", "why"):
        d.add_column(col)
    for c in r["candidates"]:
        dec, risk = c["decision"], c["risk"]
        d.add_row(c["symbol"], dec["action"], f"{dec['confidence']:.2f}", f"{dec['math_score']:+.3f}",
                  f"{dec['combined_score']:+.3f}", f"{dec['votes_valid']}/{dec['votes_total']}",
                  ", ".join(dec["dissent"]) or "—", *risk_cells(dec, risk))
    print_table(d, out)
    plans = [(c, c["risk"]["plan"]) for c in r["candidates"] if c["risk"]["approved"] and c["risk"]["plan"]]
    for c, p in plans:
        ex = c.get("execution") or {}
        out.print(f"[bold green]TRADE PLAN {p['side']} {c['symbol']}[/bold green]: entry {_fmt(p['entry'])}  stop "
                  f"{_fmt(p['stop'])} ({p['stop_pct']:.2f}%)  TP1 {_fmt(p['tp1'])} (50%)  TP2 {_fmt(p['tp2'])}  "
                  f"{p['leverage']}x  size {p['qty']} (${p['notional']:,.0f}, margin ${p['margin']:,.0f})  "
                  f"risk ${p['risk_usd']:,.2f} ({p['risk_pct']:.2f}%)  liq {_fmt(p['liquidation_price'])}")
        if ex:
            out.print(f"  execution: {ex.get('status')} {ex.get('fill_price', '')} {ex.get('note', '')}")
    if not plans:
        out.print("No trade plan this cycle.")
    a = r["account"]
    out.print(f"Account: equity ${a['equity']:,.2f}  balance ${a['balance']:,.2f}  open positions "
              f"{len(a['open_positions'])}" + (f"  [red]HALTED: {a['halt']['reason']}[/red]" if a.get("halt") else ""))
    shadows = {m: x for m, x in (r.get("shadows") or {}).items() if "equity" in x}
    if shadows:  # each member's own paper account (pipeline/shadow.py)
        out.print("Shadow accounts: " + "; ".join(_shadow_line(m, x) for m, x in sorted(shadows.items())),
                  highlight=False)
    cost = r["llm_cost"]
    out.print(f"LLM cost: {cost['tokens']} tokens, ${cost['cost_usd']:.4f}")
    tm = r["timings_s"]
    out.print("Timings: " + ", ".join(f"{k} {v:.2f}s" for k, v in tm.items()))


def _shadow_line(member: str, x: dict[str, Any]) -> str:
    orders = ", ".join(f"{sym.split('/')[0]} {o}" for sym, o in x.get("orders", {}).items())
    return f"{member} ${x['equity']:,.2f}" + (f" ({orders})" if orders else "")


def risk_cells(dec: dict[str, Any], risk: dict[str, Any]) -> tuple[str, str]:
    """The risk column and its reason. A WAIT is no trade, not a risk denial: nothing was sent to
    the risk manager's checks."""
    if risk["approved"]:
        return "APPROVED", dec["reason"][:160]
    if dec["action"] == "WAIT":
        return "no trade", "no trade: decision is WAIT"
    return "denied", "; ".join(risk["reasons"])[:160]


DEMO_FIRST_AS_OF = "2025-05-23T04:00:00Z"


@app.command()
def demo(first_as_of: Annotated[str, typer.Option("--first-as-of", metavar="TIME", help="decision time of the first cycle (UTC)")] = DEMO_FIRST_AS_OF) -> None:
    """Two paper cycles on the bundled history: one at --first-as-of, then one at the last bar
    (which first walks the positions opened by the first through every bar in between)."""
    preflight(first_as_of, None)
    prefect_server()
    from flows.trading_cycle import trading_cycle

    out.rule(f"cycle 1: as of {first_as_of}")
    render_cycle(trading_cycle(as_of=first_as_of))
    out.rule("cycle 2: as of the last bundled bar")
    render_cycle(trading_cycle())


@app.command()
def monitor(as_of: Annotated[str | None, typer.Option("--as-of", metavar="TIME", help="walk positions up to this time (UTC), default: the account's clock or the last bundled bar")] = None,
            as_json: Annotated[bool, typer.Option("--json", help="machine-readable output (nothing is broadcast)")] = False) -> None:
    """Run the position monitor once (stops, targets, trailing, exits, funding)."""
    preflight(as_of, None, trading=False)
    prefect_server()
    from flows.position_monitor import position_monitor

    res = position_monitor(as_of=as_of, broadcast=not as_json)
    if as_json:
        sys.stdout.write(json.dumps(res, indent=2, default=str) + "\n")
        return
    out.print(f"checked {res['checked']} position(s) up to {res['as_of']}")
    for e in res["events"]:
        out.print(f"  {e}")


@app.command("daily-report")
def daily_report_cmd(as_of: Annotated[str | None, typer.Option("--as-of", metavar="TIME", help="report on the UTC day that contains this time")] = None) -> None:
    """Post the daily stats and the market pulse (console/outbox without a Telegram token)."""
    preflight(as_of, None, trading=False, broker=False)
    prefect_server()
    from flows.daily_report import daily_report

    res = daily_report(as_of=as_of)
    dd = res.get("max_drawdown_pct")
    out.print(f"daily report for {res['day']} (as of {res['as_of'][:16]}"
              f"{'' if as_of else ', the account clock'}): {res['trades']} trades, P&L {res['pnl']:+,.2f}"
              + (f", max drawdown {dd:.2f}% (intraday path)" if dd is not None else ""))


# ---- positions --------------------------------------------------------------------------------
@app.command()
def positions(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """Open positions with mark, unrealised P&L, stop, targets, trailing phase and age."""
    from exchange.factory import build_source
    from pipeline.account import account_summary
    from pipeline.monitor import sync_positions
    from store.db import get_session_factory

    settings = _settings()
    source = build_source(settings)
    factory = get_session_factory(settings)
    from store.lock import account_lock

    with account_lock(settings, "quorum positions"):  # it walks the positions: one run at a time
        now = _now_for(source, settings)
        acct, _ = sync_positions(factory, source, settings, now)  # walk the positions up to now first
        summary = account_summary(factory, source, settings, now, acct)
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
        return
    t = Table(title=f"Open positions ({settings.mode}) at {now:%Y-%m-%d %H:%M} UTC")
    for col in ("id", "symbol", "side", "entry", "mark", "unrealised", "stop", "TP1", "TP2", "phase", "age"):
        t.add_column(col)
    for p in summary["open_positions"]:
        mark = p["mark"]
        side = 1 if p["side"] == "LONG" else -1
        unreal = None if mark is None else (mark - p["entry"]) * float(p["qty"]) * side
        age = now - datetime.fromisoformat(p["opened_at"])
        t.add_row(p["id"], p["symbol"], p["side"], _fmt(p["entry"]), _fmt(mark),
                  "—" if unreal is None else f"{unreal:+,.2f}", _fmt(p["stop"]), _fmt(p["tp1"]), _fmt(p["tp2"]),
                  p["phase"], f"{age.total_seconds() / 3600:.0f}h")
    print_table(t, out)
    out.print(f"equity ${summary['equity']:,.2f}  balance ${summary['balance']:,.2f}  realised "
              f"${summary['realised_pnl']:,.2f}  fees ${summary['fees_paid']:,.2f}  funding ${summary['funding_paid']:,.2f}")
    halt = summary.get("halt")
    out.print(f"[red]HALTED ({halt['set_by']}): {halt['reason']}[/red]" if halt else "entries: allowed (no halt)")


@app.command()
def trades(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """Closed trades: entry and exit price, quantity, net P&L (after fees and funding), R, outcome.
    `--json` rows have the same fields as `quorum export --format json`."""
    from backtest.export import trade_row
    from cli.common import market_precision
    from core.metrics import trade_records_from_positions
    from store import repo
    from store.db import get_session_factory, transaction

    settings = _settings()
    with transaction(get_session_factory(settings)) as s:
        closed = repo.closed_positions(s, settings.mode)
    records = trade_records_from_positions(closed)
    precision = market_precision(settings, [t.symbol for t in records])
    rows = [trade_row(t, precision) for t in records]
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    t = Table(title=f"Closed trades ({settings.mode})")
    for col in ("id", "symbol", "side", "opened", "closed", "entry", "exit", "qty", "exit kind", "fees", "funding",
                "net P&L", "R", "outcome"):
        t.add_column(col, justify="left" if col in ("id", "symbol", "side", "exit kind", "outcome") else "right")
    for r in rows:
        t.add_row(r["position_id"], r["symbol"], r["side"], r["opened_at"][:16], (r["closed_at"] or "")[:16],
                  _fmt(r["entry"], 10), _fmt(r["exit"], 10), _fmt(r["qty"], 12), r["reason"] or "",
                  f"{r['fees']:,.2f}", f"{r['funding']:+,.2f}", f"{r['pnl']:+,.2f}",
                  "—" if r["r_multiple"] is None else f"{r['r_multiple']:+.2f}R", r["outcome"])
    print_table(t, out)
    n = {k: sum(1 for r in rows if r["outcome"] == k) for k in ("win", "draw", "loss")}
    decisive = n["win"] + n["loss"]
    wr = f", win rate {n['win'] / len(rows):.0%}" if rows else ""
    wr += f" ({n['win'] / decisive:.0%} without scratches)" if decisive else ""
    out.print(f"{len(rows)} trades: {n['win']} wins, {n['draw']} draws, {n['loss']} losses{wr}; "
              f"net ${sum(r['pnl'] for r in rows):+,.2f}")


# ---- halt / resume ----------------------------------------------------------------------------
@app.command()
def halt(reason: Annotated[str, typer.Option("--reason", metavar="TEXT", help="why (stored with the halt and shown by doctor and positions)")] = "operator halt",
         close_all: Annotated[bool, typer.Option("--close-all", help="close every position at market")] = False) -> None:
    """Stop new entries until `quorum resume`."""
    from exchange.factory import build_source
    from pipeline.monitor import close_all as close_all_positions
    from store import repo
    from store.db import get_session_factory, transaction

    settings = _settings()
    source = build_source(settings)
    factory = get_session_factory(settings)
    from store.lock import account_lock

    with transaction(factory) as s:  # the halt never waits: a running cycle reads it at its risk stage
        repo.set_halt(s, settings.mode, reason, "manual", _now_for(source, settings))
    out.print(f"halted: no new entries until `quorum resume` ({reason})")
    if close_all:
        with account_lock(settings, "quorum halt --close-all"):
            now = _now_for(source, settings)
            closed = close_all_positions(factory, source, settings, now, reason)
        out.print(f"closed {len(closed)} position(s) at market: {', '.join(closed) or 'none open'}")


@app.command()
def resume() -> None:
    """Allow new entries again: releases manual halts and re-arms the drawdown breaker from now (daily/weekly breakers still run out at their UTC boundary)."""
    from exchange.factory import build_source
    from store import repo
    from store.db import get_session_factory, transaction

    settings = _settings()
    now = _now_for(build_source(settings), settings)
    with transaction(get_session_factory(settings)) as s:
        n = repo.release_halts(s, settings.mode, now)
    out.print(f"resumed: {n} halt(s) released; breakers re-arm from now")


