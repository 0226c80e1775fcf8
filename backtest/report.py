"""Backtest report: one self-contained HTML file (plotly, inline, works offline) plus a JSON twin.

The HTML embeds ONE copy of plotly.js in ``<head>``; every figure is a ``<div>`` with a fixed id and a
``Plotly.newPlot`` call (no CDN, no server). The JSON holds the same numbers (metrics, Monte Carlo with
every run's drawdown, equity and drawdown series, trades, per-symbol results, buy-and-hold,
leaderboard, params); it is JSON-safe (nan/inf -> null, datetimes ISO 8601) and written with sorted
keys, so two identical backtests produce byte-identical files. Nothing here reads the clock: put a
"generated_at" in ``params`` if you want one.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from plotly.offline import get_plotlyjs

from backtest.charts import fig_buyhold, fig_div, fig_equity, fig_mc, fig_symbols
from core.baselines import MonteCarloResult
from core.equity_stats import drawdown_series
from core.metrics import Metrics, TradeRecord, json_safe

__all__ = [
    "FIGURE_IDS",
    "build_report_data",
    "metrics_table_rows",
    "per_symbol_stats",
    "publish_report_artifacts",
    "render_html",
    "write_report",
]

REPORT_SCHEMA_VERSION = 1
FIGURE_IDS = ("fig-equity", "fig-montecarlo", "fig-buyhold", "fig-symbols")

# metric key -> (label, format)  format: "pct" | "num" | "int" | "money" | "days" | "text"
_METRIC_LABELS: dict[str, tuple[str, str]] = {
    "start": ("Start", "text"),
    "end": ("End", "text"),
    "days": ("Days", "num"),
    "start_equity": ("Start equity", "money"),
    "end_equity": ("End equity", "money"),
    "total_return": ("Total return", "+pct"),
    "annualised_return": ("Annualised return (CAGR, 365 d)", "+pct"),
    "volatility": ("Volatility (annualised)", "pct"),
    "sharpe": ("Sharpe (rf 0)", "num"),
    "sortino": ("Sortino (target 0)", "num"),
    "max_drawdown": ("Max drawdown", "pct"),
    "max_drawdown_duration_days": ("Max drawdown duration (days)", "num"),
    "max_drawdown_peak_at": ("Max drawdown peak", "text"),
    "max_drawdown_trough_at": ("Max drawdown trough", "text"),
    "max_drawdown_end_at": ("Max drawdown recovery / end", "text"),
    "max_drawdown_recovered": ("Recovered", "text"),
    "n_trades": ("Trades", "int"),
    "wins": ("Wins", "int"),
    "draws": ("Draws (scratches, |R| < 0.1)", "int"),
    "losses": ("Losses", "int"),
    "win_rate": ("Win rate (draws are not wins)", "pct"),
    "win_rate_ex_draws": ("Win rate without scratches", "pct"),
    "profit_factor": ("Profit factor", "num"),
    "expectancy": ("Expectancy per trade", "+money"),
    "expectancy_r": ("Expectancy (R)", "num"),
    "avg_r": ("Average R", "num"),
    "avg_win": ("Average win", "money"),
    "avg_loss": ("Average loss", "money"),
    "best_trade": ("Best trade", "money"),
    "worst_trade": ("Worst trade", "money"),
    "exposure": ("Exposure", "pct"),
    "trades_per_day": ("Trades per day", "num"),
    "fees_paid": ("Fees paid", "money"),
    "funding_paid": ("Funding paid", "money"),
    "net_pnl": ("Net PnL", "+money"),
}

_SYMBOL_COLS = ("n_trades", "wins", "draws", "losses", "win_rate", "net_pnl", "avg_r", "fees", "funding", "buy_and_hold")

_MC_LABELS: dict[str, tuple[str, str]] = {
    "method": ("Method", "text"),
    "runs": ("Runs", "int"),
    "seed": ("Seed", "text"),
    "n_trades": ("Trades per run", "int"),
    "starting_equity": ("Starting equity", "money"),
    "ruin_threshold": ("Ruin threshold (share of start)", "pct"),
    "max_dd_p5": ("Max drawdown p5", "pct"),
    "max_dd_p50": ("Max drawdown p50", "pct"),
    "max_dd_p95": ("Max drawdown p95", "pct"),
    "max_dd_mean": ("Max drawdown mean", "pct"),
    "risk_of_ruin": ("Risk of ruin", "pct"),
    "final_equity_p5": ("Final equity p5", "money"),
    "final_equity_p50": ("Final equity p50", "money"),
    "final_equity_p95": ("Final equity p95", "money"),
    "final_equity_mean": ("Final equity mean", "money"),
}

_CSS = """
body{font-family:-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;margin:24px;color:#1d2330}
h1{font-size:1.6em;margin-bottom:4px}h2{font-size:1.2em;margin-top:32px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #e2e2e2;padding:3px 8px;text-align:right}
th{background:#f5f6f8}td.l,th.l{text-align:left}
.pos{color:#0a7d32}.neg{color:#b3261e}.muted{color:#777;font-size:12px}
.grid{display:flex;flex-wrap:wrap;gap:24px}.fig{width:100%;min-height:420px}
"""


# --------------------------------------------------------------------------------------------------
# data


def _metrics_dict(metrics: Metrics | Mapping[str, Any]) -> dict[str, Any]:
    return metrics.to_dict() if isinstance(metrics, Metrics) else json_safe(dict(metrics))


def _mc_dict(mc: MonteCarloResult | Mapping[str, Any] | None) -> dict[str, Any] | None:
    if mc is None:
        return None
    if isinstance(mc, MonteCarloResult):
        return mc.to_dict(include_runs=True)
    return json_safe(dict(mc))


def _trade_sort_key(t: TradeRecord) -> tuple[Any, ...]:
    return (pd.Timestamp(t.closed_at), pd.Timestamp(t.opened_at), t.symbol, str(t.side))


def per_symbol_stats(
    trades: Sequence[TradeRecord], buy_and_hold: Mapping[str, float] | None = None
) -> dict[str, dict[str, Any]]:
    """Per-symbol results from the trades (sorted by symbol): trades, wins, win rate, net pnl, fees,
    funding, average R, and the symbol's buy-and-hold return over the window when given."""
    bh = dict(buy_and_hold or {})
    out: dict[str, dict[str, Any]] = {}
    for sym in sorted({t.symbol for t in trades} | set(bh)):
        ts = [t for t in trades if t.symbol == sym]
        pnls = np.array([t.pnl for t in ts], dtype=float)
        rs = np.array([t.r_multiple for t in ts], dtype=float)
        rs = rs[np.isfinite(rs)]
        n = len(ts)
        outcomes = [t.outcome for t in ts]
        wins = outcomes.count("win")
        out[sym] = {
            "n_trades": n,
            "wins": wins,
            "draws": outcomes.count("draw"),
            "losses": outcomes.count("loss"),
            "win_rate": wins / n if n else math.nan,
            "net_pnl": float(pnls.sum()),
            "fees": float(sum(t.fees for t in ts)),
            "funding": float(sum(t.funding for t in ts)),
            "avg_r": float(rs.mean()) if rs.size else math.nan,
            "buy_and_hold": bh.get(sym, math.nan),
        }
    return out


def metrics_table_rows(metrics: Metrics | Mapping[str, Any]) -> list[dict[str, str]]:
    """``[{"metric": label, "value": formatted}]`` in a fixed order, e.g. for a Prefect table artifact."""
    d = _metrics_dict(metrics)
    rows = []
    for key, (label, kind) in _METRIC_LABELS.items():
        if key in d:
            rows.append({"metric": label, "value": _fmt(d[key], kind)})
    return rows


def build_report_data(
    *,
    title: str,
    metrics: Metrics | Mapping[str, Any],
    monte_carlo: MonteCarloResult | Mapping[str, Any] | None,
    equity: pd.Series,
    trades: Sequence[TradeRecord],
    per_symbol: Mapping[str, Any] | None = None,
    buy_and_hold: Mapping[str, float] | None = None,
    leaderboard_rows: Sequence[Mapping[str, Any]] | None = None,
    params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON document of the report (JSON-safe, deterministic for identical inputs)."""
    eq = pd.Series(equity, dtype=float).dropna().sort_index()
    dd = drawdown_series(eq) if len(eq) else eq
    trades_sorted = sorted(trades, key=_trade_sort_key)
    bh = {k: buy_and_hold[k] for k in sorted(buy_and_hold or {})}
    ps = per_symbol if per_symbol is not None else per_symbol_stats(trades_sorted, bh)
    return json_safe(
        {
            "schema_version": REPORT_SCHEMA_VERSION,
            "title": title,
            "params": dict(params or {}),
            "metrics": _metrics_dict(metrics),
            "monte_carlo": _mc_dict(monte_carlo),
            "equity": {
                "time": [pd.Timestamp(t).isoformat() for t in eq.index],
                "equity": eq.to_list(),
                "drawdown": dd.to_list(),
            },
            "trades": [t.to_dict() for t in trades_sorted],
            "per_symbol": {k: ps[k] for k in sorted(ps)},
            "buy_and_hold": bh,
            "leaderboard": [dict(r) for r in leaderboard_rows] if leaderboard_rows is not None else None,
        }
    )


# --------------------------------------------------------------------------------------------------
# HTML


def _fmt(v: Any, kind: str = "num") -> str:
    kind = kind.removeprefix("+")  # "+pct" / "+money": same format, coloured by sign in tables
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        f = float(v)
        if not math.isfinite(f):
            return "inf" if f > 0 else ("-inf" if f < 0 else "-")
        if kind == "pct":
            return f"{100.0 * f:,.2f} %"
        if kind == "int":
            return f"{int(f):,d}"
        if kind == "money":
            return f"{f:,.2f}"
        if kind == "price":  # prices and quantities: keep precision for sub-cent coins
            return f"{f:,.8g}"
        if kind == "num":
            return f"{f:,.4g}" if abs(f) >= 1e5 or (f != 0 and abs(f) < 1e-3) else f"{f:,.3f}"
    return str(v)


def _cls(v: Any) -> str:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v != 0:
        return "pos" if v > 0 else "neg"
    return ""


def _table(headers: Sequence[str], rows: Sequence[Sequence[tuple[Any, str]]], left: int = 1) -> str:
    """rows of (value, kind) cells; the first ``left`` columns are left-aligned text."""
    out = ["<table><thead><tr>"]
    out += [f'<th class="{"l" if i < left else ""}">{html.escape(h)}</th>' for i, h in enumerate(headers)]
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>")
        for i, (v, kind) in enumerate(row):
            c = ["l"] if i < left else []
            if kind.startswith("+") and _cls(v):
                c.append(_cls(v))
            out.append(f'<td class="{" ".join(c)}">{html.escape(_fmt(v, kind))}</td>')
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _kv_table(d: Mapping[str, Any]) -> str:
    return _table(["key", "value"], [[(k, "text"), (_jsonish(d[k]), "text")] for k in sorted(d)])


def _jsonish(v: Any) -> str:
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True, allow_nan=False)
    return _fmt(v)


def render_html(data: dict[str, Any]) -> str:
    """Render the report HTML from :func:`build_report_data` output (deterministic)."""
    title = html.escape(str(data["title"]))
    m = data["metrics"]
    parts: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{title}</title>",
        f"<style>{_CSS}</style>",
        f'<script type="text/javascript">{get_plotlyjs()}</script>',
        "</head><body>",
        f"<h1>{title}</h1>",
        f'<p class="muted">{html.escape(str(m.get("start", "")))} &rarr; {html.escape(str(m.get("end", "")))}'
        f" &middot; {len(data['trades'])} trades</p>",
        "<h2>Metrics</h2>",
        _table(
            ["metric", "value"],
            [[(label, "text"), (m.get(k), kind)] for k, (label, kind) in _METRIC_LABELS.items() if k in m],
        ),
        "<h2>Equity and drawdown</h2>",
        fig_div(fig_equity(data), FIGURE_IDS[0]),
    ]

    parts.append("<h2>Strategy vs buy-and-hold</h2>")
    bh_rows = [[("strategy", "text"), (m.get("total_return"), "+pct")]]
    bh_rows += [[(s, "text"), (v, "+pct")] for s, v in data["buy_and_hold"].items()]
    parts.append(_table(["", "return over the window"], bh_rows))
    parts.append(fig_div(fig_buyhold(data), FIGURE_IDS[2]))

    parts.append("<h2>Per-symbol results</h2>")
    ps = data["per_symbol"]
    present = {k for v in ps.values() for k in v}
    cols: list[str] = [c for c in _SYMBOL_COLS if c in present] + sorted(present - set(_SYMBOL_COLS))
    pct_cols = {"win_rate", "buy_and_hold"}
    money_cols = {"fees", "funding"}
    int_cols = {"n_trades", "wins", "draws", "losses"}

    def kind(c: str) -> str:
        if c == "net_pnl":
            return "+money"
        return "pct" if c in pct_cols else "money" if c in money_cols else "int" if c in int_cols else "num"

    parts.append(
        _table(["symbol", *cols], [[(s, "text"), *[(ps[s].get(c), kind(c)) for c in cols]] for s in ps])
    )
    parts.append(fig_div(fig_symbols(data), FIGURE_IDS[3]))

    parts.append("<h2>Monte Carlo</h2>")
    mc = data["monte_carlo"]
    if mc:
        known = [k for k in _MC_LABELS if k in mc]
        rest = sorted(k for k in mc if k not in _MC_LABELS and k != "max_drawdowns")
        mc_rows = [[(_MC_LABELS[k][0], "text"), (mc[k], _MC_LABELS[k][1])] for k in known]
        mc_rows += [[(k, "text"), (mc[k], "num")] for k in rest]
        parts.append(_table(["statistic", "value"], mc_rows))
    else:
        parts.append('<p class="muted">no Monte Carlo run</p>')
    parts.append(fig_div(fig_mc(data), FIGURE_IDS[1]))

    if data.get("leaderboard"):
        parts.append("<h2>Model leaderboard</h2>")
        lb = data["leaderboard"]
        lcols: list[str] = []
        for r in lb:
            lcols += [k for k in r if k not in lcols]
        lkind = {
            "total_return": "+pct",
            "max_drawdown": "pct",
            "win_rate": "pct",
            "hit_rate_4h": "pct",
            "hit_rate_24h": "pct",
            "abstention_rate": "pct",
            "wait_rate": "pct",
            "rank": "int",
            "n_trades": "int",
            "n_votes": "int",
            "member_id": "text",
        }
        parts.append(_table(lcols, [[(r.get(c), lkind.get(c, "num")) for c in lcols] for r in lb], left=0))

    parts.append("<h2>Trades</h2>")
    tcols = [
        ("opened_at", "text"),
        ("closed_at", "text"),
        ("symbol", "text"),
        ("side", "text"),
        ("entry", "price"),
        ("exit", "price"),
        ("qty", "price"),
        ("pnl", "+money"),
        ("fees", "money"),
        ("funding", "money"),
        ("r_multiple", "num"),
        ("outcome", "text"),
        ("reason", "text"),
    ]
    parts.append(
        _table([c for c, _ in tcols], [[(t.get(c), k) for c, k in tcols] for t in data["trades"]], left=4)
    )

    if data.get("params"):
        parts.append("<h2>Parameters</h2>")
        parts.append(_kv_table(data["params"]))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_report(
    out_dir: str | Path,
    *,
    title: str,
    metrics: Metrics | Mapping[str, Any],
    monte_carlo: MonteCarloResult | Mapping[str, Any] | None,
    equity: pd.Series,
    trades: Sequence[TradeRecord],
    per_symbol: Mapping[str, Any] | None = None,
    buy_and_hold: Mapping[str, float] | None = None,
    leaderboard_rows: Sequence[Mapping[str, Any]] | None = None,
    params: Mapping[str, Any] | None = None,
    basename: str = "report",
) -> tuple[Path, Path]:
    """Write ``<out_dir>/<basename>.html`` and ``<out_dir>/<basename>.json``; return their paths.

    ``per_symbol`` defaults to :func:`per_symbol_stats` of the trades (with buy-and-hold merged in);
    ``leaderboard_rows`` are plain dicts, e.g. ``[row.to_dict() for row in core.leaderboard.leaderboard(...)]``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = build_report_data(
        title=title,
        metrics=metrics,
        monte_carlo=monte_carlo,
        equity=equity,
        trades=trades,
        per_symbol=per_symbol,
        buy_and_hold=buy_and_hold,
        leaderboard_rows=leaderboard_rows,
        params=params,
    )
    json_path = out / f"{basename}.json"
    html_path = out / f"{basename}.html"
    json_path.write_text(json.dumps(data, sort_keys=True, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    html_path.write_text(render_html(data), encoding="utf-8")
    return html_path, json_path


def publish_report_artifacts(
    html_path: str | Path,
    metrics: Metrics | Mapping[str, Any],
    *,
    key_prefix: str = "backtest",
    leaderboard_rows: Sequence[Mapping[str, Any]] | None = None,
) -> None:
    """Attach the metrics table, a link to the HTML report and (if given) the leaderboard table to the
    current Prefect flow run as artifacts. Call it from inside a flow or task; Prefect is imported
    lazily so the rest of this module stays importable without it. Keys: ``<prefix>-metrics``,
    ``<prefix>-report``, ``<prefix>-leaderboard`` (lowercase, dashes, as Prefect requires)."""
    from prefect.artifacts import create_link_artifact, create_table_artifact

    key = "".join(c if c.isalnum() else "-" for c in key_prefix.lower()).strip("-") or "backtest"
    create_table_artifact(metrics_table_rows(metrics), key=f"{key}-metrics", description="Backtest metrics")
    create_link_artifact(
        Path(html_path).resolve().as_uri(),
        link_text="HTML report",
        key=f"{key}-report",
        description="Self-contained HTML report (opens offline)",
    )
    if leaderboard_rows:
        create_table_artifact(
            [dict(r) for r in leaderboard_rows], key=f"{key}-leaderboard", description="Model leaderboard"
        )
