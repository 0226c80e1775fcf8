"""Backtest sweeps: every combination of risk profiles × symbol sets × walk-forward test windows, each
variant one plain backtest (run_backtest over its window with a fresh account), then ONE comparison
report of all variants (a table and their equity curves). The fan-out over a Dask cluster is the
`backtest-sweep` flow's (flows/sweep.py); everything here is plain Python and picklable."""

from __future__ import annotations

import html
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from backtest.charts import fig_div
from backtest.report import _CSS, _table
from core.errors import ConfigError
from core.metrics import json_safe
from core.settings import RISK_PROFILES


@dataclass(frozen=True)
class Variant:
    name: str
    risk_profile: str
    symbols: tuple[str, ...]
    start: str  # first decision time of the test window (UTC ISO)
    end: str  # last decision time of the test window


def sweep_windows(start: str, end: str, train_days: int, test_days: int,
                 interval_minutes: int = 60) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Walk-forward test windows [train | test] rolling by test_days (as backtest/walkforward.py):
    the train days are indicator warm-up only (nothing is fitted)."""
    from backtest.run import parse_range

    if train_days < 0 or test_days <= 0:
        raise ConfigError("a sweep needs --test-days > 0 (and --train-days >= 0)")
    s, e = parse_range(start, end)
    out = []
    cur = s + pd.Timedelta(days=train_days)
    while cur < e:
        out.append((cur, min(cur + pd.Timedelta(days=test_days) - pd.Timedelta(minutes=interval_minutes), e)))
        cur = cur + pd.Timedelta(days=test_days)
    if not out:
        raise ConfigError(f"no test window: --from {start} + {train_days} train days is past --to {end}")
    return out


def variants(profiles: Sequence[str], symbol_sets: Sequence[Sequence[str]],
             windows: Sequence[tuple[pd.Timestamp, pd.Timestamp]]) -> list[Variant]:
    bad = [p for p in profiles if p not in RISK_PROFILES]
    if bad:
        raise ConfigError(f"unknown risk profile(s) {', '.join(bad)}; allowed: {', '.join(RISK_PROFILES)}")
    if not profiles or not symbol_sets or not windows:
        raise ConfigError("a sweep needs at least one risk profile, one symbol set and one window")
    out = []
    for prof, syms, (ws, we) in itertools.product(profiles, symbol_sets, windows):
        label = "+".join(s.split("/")[0] for s in syms)
        out.append(Variant(f"{prof}·{label}·{ws:%Y%m%d}", prof, tuple(syms), ws.isoformat(), we.isoformat()))
    return out


def parse_symbol_sets(value: str) -> list[list[str]]:
    """"BTC/USDT:USDT,ETH/USDT:USDT;SOL/USDT:USDT" -> [[BTC, ETH], [SOL]]."""
    sets = [[s.strip().upper() for s in part.split(",") if s.strip()] for part in value.split(";")]
    sets = [s for s in sets if s]
    if not sets:
        raise ConfigError(f"--symbol-sets {value!r}: expected sets separated by ';', symbols by ','")
    return sets


def run_variant(v: Variant, panel: str = "math", mc_runs: int = 200) -> dict[str, Any]:
    """One variant's backtest: its metrics and equity curve (JSON-safe), and where it ran."""
    from backtest.engine import run_backtest
    from backtest.run import replay_source
    from core.settings import load_settings

    settings = load_settings(risk_profile=v.risk_profile)
    res = run_backtest(settings, replay_source(settings), v.start, v.end, panel_mode=panel, symbols=list(v.symbols),
                       progress=False, mc_runs=mc_runs, leaderboard_runs=200)
    try:
        from distributed import get_worker

        where = get_worker().address
    except (ImportError, ValueError):
        where = "local"
    eq = res.equity
    return json_safe({"variant": asdict(v), "metrics": res.metrics.to_dict(), "worker": where,
                      "equity": {"time": [t.isoformat() for t in eq.index], "equity": [float(x) for x in eq.values]},
                      "open_at_end": len(res.open_at_end)})


COLUMNS = (("total_return", "return", "+pct"), ("sharpe", "Sharpe", "num"), ("max_drawdown", "max DD", "pct"),
           ("n_trades", "trades", "int"), ("win_rate", "win rate", "pct"), ("profit_factor", "PF", "num"))


def comparison_rows(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per variant, best total return first."""
    rows = []
    for r in results:
        v, m = r["variant"], r["metrics"]
        rows.append({"variant": v["name"], "profile": v["risk_profile"], "symbols": ", ".join(v["symbols"]),
                     "window": f"{v['start'][:10]} .. {v['end'][:10]}",
                     **{k: m.get(k) for k, _, _ in COLUMNS}, "worker": r.get("worker")})
    return sorted(rows, key=lambda x: -(x["total_return"] if x["total_return"] is not None else -1e9))


def fig_curves(results: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Every variant's equity as % of its starting balance (windows differ: one scale)."""
    fig = go.Figure()
    for r in results:
        e = r["equity"]
        if not e["equity"]:
            continue
        base = e["equity"][0] or 1.0
        fig.add_trace(go.Scatter(x=pd.to_datetime(e["time"], utc=True), y=[100.0 * (x / base - 1) for x in e["equity"]],
                                 mode="lines", name=r["variant"]["name"], line={"width": 1.3}))
    fig.update_yaxes(title_text="% since the window's start")
    fig.update_layout(template="plotly_white", height=560, margin={"t": 40, "b": 30}, legend={"font": {"size": 11}})
    return fig


def write_sweep_report(results: Sequence[Mapping[str, Any]], out_dir: str | Path, params: Mapping[str, Any],
                       basename: str = "sweep") -> tuple[Path, Path]:
    """`<out_dir>/<basename>.html` (table + equity curves of all variants) and `.json`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = comparison_rows(results)
    data = json_safe({"params": dict(params), "rows": rows, "results": list(results)})
    js = out / f"{basename}.json"
    js.write_text(json.dumps(data, sort_keys=True, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    title = f"Quorum backtest sweep: {len(rows)} variants"
    table = _table(["variant", "profile", "symbols", "window"] + [label for _, label, _ in COLUMNS],
                   [[(r["variant"], "text"), (r["profile"], "text"), (r["symbols"], "text"), (r["window"], "text")]
                    + [(r[k], kind) for k, _, kind in COLUMNS] for r in rows], left=4)
    page = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{html.escape(title)}</title>",
            f"<style>{_CSS}</style>", f'<script type="text/javascript">{get_plotlyjs()}</script>', "</head><body>",
            f"<h1>{html.escape(title)}</h1>",
            f'<p class="muted">{html.escape(json.dumps(json_safe(dict(params)), sort_keys=True))}</p>',
            "<h2>Variants</h2>", table, "<h2>Equity curves</h2>", fig_div(fig_curves(results), "sweep-equity"),
            "</body></html>"]
    path = out / f"{basename}.html"
    path.write_text("\n".join(page), encoding="utf-8")
    return path, js
