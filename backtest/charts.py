"""The report's plotly figures (equity and drawdown, Monte Carlo, buy-and-hold, per symbol) and
their embeddable divs."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

# --------------------------------------------------------------------------------------------------
# figures


def fig_equity(data: dict[str, Any]) -> go.Figure:
    e = data["equity"]
    x = pd.to_datetime(e["time"], utc=True) if e["time"] else []
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        row_heights=[0.7, 0.3],
        vertical_spacing=0.04,
        subplot_titles=("Equity", "Drawdown"),
    )
    fig.add_trace(go.Scatter(x=x, y=e["equity"], mode="lines", name="equity", line={"width": 1.5}), 1, 1)
    dd = [None if v is None else -100.0 * v for v in e["drawdown"]]
    fig.add_trace(
        go.Scatter(x=x, y=dd, mode="lines", name="drawdown %", fill="tozeroy", line={"color": "#b3261e"}),
        2,
        1,
    )
    fig.update_yaxes(title_text="equity", row=1, col=1)
    fig.update_yaxes(title_text="% below peak", row=2, col=1)
    fig.update_layout(template="plotly_white", height=520, showlegend=False, margin={"t": 40, "b": 30})
    return fig


def fig_mc(data: dict[str, Any]) -> go.Figure:
    mc = data["monte_carlo"] or {}
    runs = [100.0 * v for v in (mc.get("max_drawdowns") or []) if v is not None]
    fig = go.Figure(go.Histogram(x=runs, nbinsx=40, marker={"color": "#4063d8"}, name="max drawdown"))
    for key, dash in (("max_dd_p5", "dot"), ("max_dd_p50", "dash"), ("max_dd_p95", "dot")):
        v = mc.get(key)
        if v is not None:
            fig.add_vline(x=100.0 * v, line_dash=dash, annotation_text=key.removeprefix("max_dd_"))
    fig.update_layout(
        template="plotly_white",
        height=360,
        xaxis_title="max drawdown (%)",
        yaxis_title="runs",
        title=f"Monte Carlo ({mc.get('method', '-')}, {mc.get('runs', 0)} runs) - max drawdown",
        margin={"t": 50, "b": 40},
    )
    return fig


def fig_buyhold(data: dict[str, Any]) -> go.Figure:
    names = ["strategy", *data["buy_and_hold"].keys()]
    vals = [data["metrics"].get("total_return"), *data["buy_and_hold"].values()]
    y = [None if v is None else 100.0 * v for v in vals]
    colors = ["#4063d8"] + ["#9aa3b5"] * (len(names) - 1)
    fig = go.Figure(go.Bar(x=names, y=y, marker={"color": colors}))
    fig.update_layout(
        template="plotly_white",
        height=340,
        yaxis_title="return over the window (%)",
        title="Strategy vs buy-and-hold",
        margin={"t": 50, "b": 40},
    )
    return fig


def fig_symbols(data: dict[str, Any]) -> go.Figure:
    ps = data["per_symbol"]
    syms = list(ps)
    pnl = [ps[s].get("net_pnl") for s in syms]
    colors = ["#0a7d32" if (v or 0) >= 0 else "#b3261e" for v in pnl]
    fig = go.Figure(go.Bar(x=syms, y=pnl, marker={"color": colors}))
    fig.update_layout(
        template="plotly_white",
        height=340,
        yaxis_title="net PnL",
        title="Net PnL per symbol",
        margin={"t": 50, "b": 40},
    )
    return fig


def fig_div(fig: go.Figure, div_id: str) -> str:
    return fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        config={"displaylogo": False, "responsive": True},
    )


