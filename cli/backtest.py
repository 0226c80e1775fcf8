"""`quorum backtest`, `quorum leaderboard`, `quorum export`.

Register on the main app with:  app.registered_commands += cli_backtest.app.registered_commands
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.common import err, out, print_table
from core.errors import ConfigError, QuorumError

app = typer.Typer(add_completion=False, rich_markup_mode=None, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Backtests, the model leaderboard and exports.")


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


def _symbols(value: str | None) -> list[str] | None:
    return [s.strip().upper() for s in value.split(",") if s.strip()] if value else None


def _pct(x: Any) -> str:
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:+.2%}"


def _num(x: Any, fmt: str = ".3f") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return format(x, fmt) if isinstance(x, int | float) else str(x)


# ---- backtest ---------------------------------------------------------------------------------
@app.command("backtest")
def backtest_cmd(
    start: Annotated[str, typer.Option("--from", metavar="DATE", help="first decision day/time (UTC)")] = "2025-01-01",
    end: Annotated[str, typer.Option("--to", metavar="DATE", help="last decision day (a date means through 23:00 UTC)")] = "2025-05-31",
    panel: Annotated[str, typer.Option("--panel", metavar="math|cache|live", help="who decides: the math score alone, the cached panel answers, or live model calls")] = "math",
    symbols: Annotated[str | None, typer.Option("--symbols", metavar="SYMBOLS", help="comma-separated, e.g. BTC/USDT:USDT,ETH/USDT:USDT")] = None,
    out_dir: Annotated[str, typer.Option("--out", metavar="DIR", help="report directory")] = "reports",
    train_days: Annotated[int | None, typer.Option("--train-days", "--train", metavar="DAYS", help="walk-forward: warm-up days per window")] = None,
    test_days: Annotated[int | None, typer.Option("--test-days", "--test", metavar="DAYS", help="walk-forward: test days per window")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    prefect: Annotated[bool, typer.Option("--prefect/--no-prefect",
                                          help="run as one Prefect flow run with artifacts (default) or plain")] = True,
    strategy: Annotated[str | None, typer.Option(
        "--strategy", metavar="NAME",
        help="trend | grid | volatility | hybrid | rebalance (default: the strategy setting)")] = None,
    sweep: Annotated[bool, typer.Option("--sweep", help="every risk profile x symbol set x walk-forward window, "
                                        "fanned out on a Dask cluster (QUORUM_DASK_ADDRESS, else a local one)")] = False,
    profiles: Annotated[str, typer.Option("--profiles", metavar="NAMES", help="sweep: comma-separated risk profiles")] =
        "default,conservative,kelly",
    symbol_sets: Annotated[str | None, typer.Option("--symbol-sets", metavar="SETS", help="sweep: sets separated by "
                                                    "';', e.g. 'BTC/USDT:USDT,ETH/USDT:USDT;SOL/USDT:USDT'")] = None,
) -> None:
    """Replay a date range through the live cycle's functions; print the metrics and the report path."""
    t0 = time.perf_counter()
    try:
        from core.settings import load_settings

        load_settings()  # fail fast on bad settings, --panel and the range (before Prefect starts)
        from backtest.run import PANEL_MODES, parse_range

        if panel not in PANEL_MODES:
            raise ConfigError(f"--panel {panel!r}: expected one of {', '.join(PANEL_MODES)}")
        parse_range(start, end)
        if sweep:
            _sweep(start, end, panel, profiles, symbol_sets or symbols, out_dir, train_days, test_days, as_json, t0)
            return
        kw = dict(start=start, end=end, panel=panel, symbols=_symbols(symbols), out_dir=out_dir,
                  train_days=train_days, test_days=test_days, progress=not as_json, strategy=strategy)
        if prefect:
            from cli.lifecycle import before_flow
            from flows.backtest import backtest

            before_flow()

            summary = backtest(**kw)
        else:
            from backtest.run import execute

            summary = execute(**kw)
    except QuorumError as exc:
        _fail(str(exc))
        return
    summary["runtime_s"] = round(time.perf_counter() - t0, 2)
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
        return
    if "walk_forward" in summary:
        _render_walk_forward(summary)
    else:
        _render_backtest(summary)
    out.print(f"runtime {summary['runtime_s']:.1f} s")


def _sweep(start: str, end: str, panel: str, profiles: str, symbol_sets: str | None, out_dir: str,
           train_days: int | None, test_days: int | None, as_json: bool, t0: float) -> None:
    from backtest.sweep import comparison_rows
    from cli.common import prefect_server
    from flows.sweep import DEFAULT_SYMBOL_SETS
    from flows.sweep import sweep as sweep_flow

    prefect_server()
    res = sweep_flow(start=start, end=end, profiles=profiles, symbol_sets=symbol_sets or DEFAULT_SYMBOL_SETS,
                     train_days=train_days or 0, test_days=test_days or 30, panel=panel, out_dir=out_dir)
    res["runtime_s"] = round(time.perf_counter() - t0, 2)
    if as_json:
        sys.stdout.write(json.dumps({k: v for k, v in res.items() if k != "results"}
                                    | {"rows": comparison_rows(res["results"])}, indent=2, default=str) + "\n")
        return
    t = Table(title=f"Sweep {start} .. {end}: {res['variants']} variants")
    for col in ("variant", "profile", "symbols", "window", "return", "Sharpe", "max DD", "trades", "win rate", "PF"):
        t.add_column(col, justify="left" if col in ("variant", "profile", "symbols", "window") else "right")
    for r in comparison_rows(res["results"]):
        t.add_row(r["variant"], r["profile"], r["symbols"], r["window"], _pct(r["total_return"]), _num(r["sharpe"]),
                  _pct(r["max_drawdown"]), str(r["n_trades"]), _pct(r["win_rate"]), _num(r["profit_factor"]))
    out.print(t)
    out.print(f"report: {res['report_html']}  (workers: {', '.join(res['workers'])})")
    out.print(f"runtime {res['runtime_s']:.1f} s")


def _render_backtest(s: dict[str, Any]) -> None:
    from backtest.report import metrics_table_rows

    strat = (s.get("settings") or {}).get("strategy", "trend")
    t = Table(title=f"Backtest {s['start']} .. {s['end']} · strategy {strat} · panel {s['panel']} · "
                    f"{', '.join(s['symbols'])}")
    t.add_column("metric")
    t.add_column("value", justify="right")
    for row in metrics_table_rows(s["metrics"]):
        t.add_row(row["metric"], row["value"])
    mc = s.get("monte_carlo") or {}
    if mc:
        t.add_row(f"Monte Carlo max DD p50 / p95 ({mc.get('runs')} runs)",
                  f"{_num(mc.get('max_dd_p50'), '.2%')} / {_num(mc.get('max_dd_p95'), '.2%')}")
        t.add_row("Risk of ruin (equity < 50%)", _num(mc.get("risk_of_ruin"), ".2%"))
    print_table(t, out)
    bh = Table(title="Buy and hold over the same window")
    bh.add_column("symbol")
    bh.add_column("return", justify="right")
    for sym, r in s.get("buy_and_hold", {}).items():
        bh.add_row(sym, _pct(r))
    print_table(bh, out)
    c = s["counters"]
    out.print(f"decisions: {c['decision_times']} times, {c['non_wait_decisions']} non-WAIT, {c['approved']} approved, "
              f"{c['filled']} filled; votes {c['votes']} ({c['valid_votes']} valid, {c['cache_miss']} cache misses)")
    if c.get("intents"):
        out.print("intents: " + ", ".join(f"{k} {v}" for k, v in sorted(c["intents"].items()))
                  + (f"; resting-order fills {c.get('resting_fills', 0)}, grid repositions {c.get('repositions', 0)}, "
                     f"handovers {c.get('handovers', 0)}"))
    if "rebalances" in c:
        out.print(f"rebalances {c['rebalances']}, trades {c['trades']}, fees {c['fees']:.2f}, "
                  f"turnover {c['turnover']:,.0f}, return vs buy-and-hold of the start allocation "
                  f"{_pct(c.get('return_vs_buy_and_hold'))}")
    if s.get("leaderboard") and len(s["leaderboard"]) > 1:
        _render_board(s["leaderboard"], "Model leaderboard (shadow accounts)")
    for n in s.get("notes", []):
        out.print(f"[dim]note: {n}[/dim]")
    out.print(f"report: {s['report_html']}")
    out.print(f"json:   {s['report_json']}")


def _render_walk_forward(s: dict[str, Any]) -> None:
    wf = s["walk_forward"]
    t = Table(title="Walk-forward: test windows only")
    for col in ("test window", "return", "Sharpe", "max DD", "trades", "open at end", "win rate", "report"):
        t.add_column(col)
    for w, rep in zip(wf["windows"], s["reports"], strict=True):
        t.add_row(f"{w['test_start'][:16]} .. {w['test_end'][:16]}", _pct(w["total_return"]), _num(w["sharpe"], ".2f"),
                  _num(w["max_drawdown"], ".2%"), str(w["n_trades"]), str(w.get("open_at_end", 0)),
                  _num(w["win_rate"], ".1%"), rep["html"])
    print_table(t, out)
    for sk in wf.get("skipped") or []:
        out.print(f"[yellow]skipped window[/yellow] {sk['test_start'][:16]} .. {sk['test_end'][:16]}: {sk['reason']}",
                  highlight=False)
    out.print(f"[dim]{wf['note']}[/dim]")


def _render_board(rows: list[dict[str, Any]], title: str) -> None:
    t = Table(title=title)
    cols = [("rank", "rank", "d"), ("member", "member_id", ""), ("value $", "account_value", ",.2f"),
            ("return", "total_return", "+.2%"),
            ("Sharpe", "sharpe", ".2f"), ("max DD", "max_drawdown", ".2%"), ("win", "win_rate", ".1%"),
            ("trades", "n_trades", "d"), ("hit 4h", "hit_rate_4h", ".1%"), ("hit 24h", "hit_rate_24h", ".1%"),
            ("Brier", "brier_24h", ".3f"), ("abstain", "abstention_rate", ".1%"),
            ("latency", "median_latency_s", ".2f"), ("$/decision", "cost_per_decision", ".4f"),
            ("Δ vs consensus [95% CI]", "", "")]
    for name, _, _ in cols:
        t.add_column(name)
    for r in rows:
        cells = [_num(r.get(k), f) if k else "" for _, k, f in cols[:-1]]
        lo, hi = r.get("diff_vs_consensus_low"), r.get("diff_vs_consensus_high")
        cells.append("—" if lo is None else f"{_num(r.get('diff_vs_consensus_mean'), '+.2e')} [{lo:+.1e}, {hi:+.1e}]"
                     + (" *" if r.get("diff_vs_consensus_significant") else ""))
        t.add_row(*cells)
    print_table(t, out)


# ---- leaderboard ------------------------------------------------------------------------------
def _latest_report(directory: Path) -> Path | None:
    files = sorted(directory.glob("backtest-*.json"), key=lambda p: (p.stat().st_mtime, p.name))
    return files[-1] if files else None


@app.command("leaderboard")
def leaderboard_cmd(
    report: Annotated[str | None, typer.Option("--report", metavar="FILE", help="a backtest JSON report (default: the newest)")] = None,
    reports_dir: Annotated[str, typer.Option("--dir", metavar="DIR", help="where to look for the newest report")] = "reports",
    from_db: Annotated[bool, typer.Option("--db", help="rank from the live record (shadow accounts and stored votes) instead")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Rank panel members and the consensus (return, Sharpe, drawdown, hit rate, Brier, abstention,
    latency, cost, bootstrap CI vs the consensus)."""
    try:
        if from_db:
            rows, title = leaderboard_from_db(), "Model leaderboard (live record: real account + shadow accounts)"
        else:
            path = Path(report) if report else _latest_report(Path(reports_dir))
            if path is None or not path.exists():
                _fail(f"no backtest report found (looked for {reports_dir}/backtest-*.json); run `quorum backtest` "
                      "first, or use --db")
                return
            data = json.loads(path.read_text())
            rows, title = data.get("leaderboard") or [], f"Model leaderboard ({path.name})"
    except QuorumError as exc:
        _fail(str(exc))
        return
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2, sort_keys=True, default=str) + "\n")
        return
    if not rows:
        out.print("no leaderboard rows (a math-mode backtest has no panel members)")
        return
    _render_board(rows, title)
    if len(rows) == 1:
        out.print("[dim]only the consensus: run a backtest with --panel cache or --panel live to rank models[/dim]")


def leaderboard_from_db() -> list[dict[str, Any]]:
    """Leaderboard rows from the live record (pipeline.shadow.live_leaderboard): the real account as
    the consensus and every member's shadow paper account (account value, return, Sharpe, drawdown),
    hit rates of the stored votes at 4 h / 24 h, Brier, abstention, latency, cost and the bootstrap
    interval against the consensus."""
    from core.settings import load_settings
    from exchange.factory import build_source
    from pipeline.shadow import live_leaderboard
    from store.db import get_session_factory

    settings = load_settings()
    return live_leaderboard(get_session_factory(settings), build_source(settings), settings)


# ---- export -----------------------------------------------------------------------------------
@app.command("export")
def export_cmd(
    fmt: Annotated[str, typer.Option("--format", metavar="json|csv|tax|audit", help="closed trades as json or csv, a tax CSV, or the decision audit trail (audit CSV)")] = "json",
    out_file: Annotated[str | None, typer.Option("--out", metavar="FILE", help="file to write (default: stdout)")] = None,
) -> None:
    """Closed trades (json, csv, tax CSV) or the decision audit trail (audit CSV) from the database."""
    if fmt not in ("json", "csv", "tax", "audit"):
        _fail(f"--format {fmt!r}: expected json, csv, tax or audit")
    try:
        from backtest.export import export_trades
        from cli.common import market_precision
        from core.settings import load_settings

        trades, rows = load_export_data(audit=fmt == "audit")
        precision = market_precision(load_settings(), [t.symbol for t in trades])
        target: Any = out_file if out_file else sys.stdout
        export_trades(trades, fmt, target, audit_rows=rows, precision=precision)  # type: ignore[arg-type]
    except QuorumError as exc:
        _fail(str(exc))
        return
    if out_file:
        n = len(rows) if fmt == "audit" and rows is not None else len(trades)
        err.print(f"wrote {n} {'audit rows' if fmt == 'audit' else 'trades'} to {out_file}")


def load_export_data(audit: bool = False) -> tuple[list[Any], list[Any] | None]:
    """Closed trades (and with audit=True the decision audit rows) of the configured account."""
    from backtest.records import load_export_data as load
    from core.settings import load_settings
    from store.db import get_session_factory

    settings = load_settings()
    return load(get_session_factory(settings), settings.mode, audit=audit)


def main() -> None:  # pragma: no cover - for `python -m cli.backtest`
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
