"""Plotly figures of the dashboard, as JSON for `Plotly.newPlot` (plotly.js is served locally)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

CONSENSUS_COLOR = "#111827"
PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"]
LAYOUT: dict[str, Any] = {"margin": {"l": 50, "r": 20, "t": 30, "b": 40}, "height": 320,
                          "legend": {"orientation": "h", "y": -0.2}, "hovermode": "x unified",
                          "plot_bgcolor": "#ffffff", "paper_bgcolor": "#ffffff",
                          "xaxis": {"gridcolor": "#eef0f3"}}


def _color(i: int, name: str) -> str:
    return CONSENSUS_COLOR if name == "consensus" else PALETTE[i % len(PALETTE)]


def equity(curves: Mapping[str, Mapping[str, Sequence[Any]]], title: str = "") -> str:
    """The real account (consensus, thick) and each member's shadow account. Built as plain plotly
    JSON (no graph-object validation: it is the overview's hot path, thousands of points per line)."""
    data = []
    for i, (name, c) in enumerate(sorted(curves.items(), key=lambda kv: (kv[0] != "consensus", kv[0]))):
        data.append({"type": "scatter", "mode": "lines", "x": list(c["time"]), "y": list(c["equity"]),
                     "name": "account (consensus)" if name == "consensus" else f"{name} (shadow)",
                     "line": {"width": 3 if name == "consensus" else 1.5, "color": _color(i, name)}})
    layout = {**LAYOUT, "yaxis": {"title": {"text": "equity (USDT)"}}}
    if title:
        layout["title"] = {"text": title}
    return json.dumps({"data": data, "layout": layout}, allow_nan=False)


def account_bars(rows: Sequence[Mapping[str, Any]], start: float) -> str:
    """Account value per model, as bars (arena style), with the starting balance as a line."""
    names = [r["member_id"] for r in rows]
    values = [r.get("account_value") or 0.0 for r in rows]
    fig = go.Figure(go.Bar(x=names, y=values, text=[f"${v:,.2f}" for v in values], textposition="outside",
                           marker_color=[_color(i, n) for i, n in enumerate(names)]))
    fig.add_hline(y=start, line_dash="dot", annotation_text=f"start ${start:,.0f}")
    lo = min([*values, start]) * 0.995
    hi = max([*values, start]) * 1.005
    fig.update_layout(**{**LAYOUT, "hovermode": "closest"}, template="plotly_white",
                      yaxis=dict(range=[lo, hi], title="account value (USDT)"))
    return fig.to_json()


def trade_chart(bars: Mapping[str, Sequence[Any]], fills: Sequence[Mapping[str, Any]],
                position: Mapping[str, Any]) -> str:
    """1h candles with entry (triangles) and exit markers, stop and targets as lines."""
    fig = go.Figure(go.Candlestick(x=list(bars["time"]), open=list(bars["open"]), high=list(bars["high"]),
                                   low=list(bars["low"]), close=list(bars["close"]), name=position["symbol"]))
    entries = [f for f in fills if f["kind"] == "open"]
    exits = [f for f in fills if f["kind"] != "open"]
    up = position["side"] == "LONG"
    fig.add_trace(go.Scatter(x=[f["ts"] for f in entries], y=[f["price"] for f in entries], mode="markers",
                             name="entry", marker=dict(symbol="triangle-up" if up else "triangle-down", size=14,
                                                       color="#2563eb", line=dict(width=1, color="#111"))))
    if exits:
        fig.add_trace(go.Scatter(x=[f["ts"] for f in exits], y=[f["price"] for f in exits], mode="markers",
                                 name="exit", text=[f["reason"] for f in exits],
                                 marker=dict(symbol="x", size=13, color="#dc2626", line=dict(width=1, color="#111"))))
    for name, y, color in (("initial stop", position.get("initial_stop"), "#dc2626"), ("TP1", position.get("tp1"), "#16a34a"),
                           ("TP2", position.get("tp2"), "#15803d")):
        if y:
            fig.add_hline(y=y, line_dash="dash", line_color=color, annotation_text=name, opacity=0.6)
    fig.update_layout(**{**LAYOUT, "height": 420, "hovermode": "closest"}, template="plotly_white",
                      xaxis_rangeslider_visible=False)
    return fig.to_json()
