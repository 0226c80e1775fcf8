"""Volume scanner: the offline coin hunter and the fallback of the LLM hunter."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from core.types import Candidate
from exchange.base import TickerInfo


def liquidity_reason(t: TickerInfo, min_volume_usd: float, max_spread_pct: float) -> str | None:
    """Why a ticker fails the liquidity filters, or None when it passes."""
    if t.volume_24h_quote < min_volume_usd:
        return f"24h volume ${t.volume_24h_quote:,.0f} < ${min_volume_usd:,.0f}"
    if t.spread_pct > max_spread_pct:
        return f"spread {t.spread_pct:.3f}% > {max_spread_pct:.3f}%"
    return None


def scan_volume(tickers: Mapping[str, TickerInfo], top_n: int, min_volume_usd: float,
                max_spread_pct: float) -> tuple[list[Candidate], list[tuple[str, str]]]:
    """Top N by 24 h quote volume among the liquid symbols; returns (candidates, dropped)."""
    ranked = sorted(tickers.values(), key=lambda t: (-t.volume_24h_quote, t.symbol))
    out: list[Candidate] = []
    dropped: list[tuple[str, str]] = []
    for t in ranked:
        why = liquidity_reason(t, min_volume_usd, max_spread_pct)
        if why:
            dropped.append((t.symbol, why))
            continue
        if len(out) < top_n:
            out.append(Candidate(t.symbol, f"top {len(out) + 1} by 24h volume (${t.volume_24h_quote / 1e6:,.0f}M)",
                                 "volume_scanner", t.volume_24h_quote, t.spread_pct))
    return out, dropped


def fixed_universe(symbols: Sequence[str], tickers: Mapping[str, TickerInfo], min_volume_usd: float,
                   max_spread_pct: float) -> tuple[list[Candidate], list[tuple[str, str]]]:
    """The configured universe, still subject to the liquidity filters."""
    out, dropped = [], []
    for s in symbols:
        t = tickers.get(s)
        if t is None:
            dropped.append((s, "not listed by the data source"))
            continue
        why = liquidity_reason(t, min_volume_usd, max_spread_pct)
        if why:
            dropped.append((s, why))
        else:
            out.append(Candidate(s, "configured universe", "fixed", t.volume_24h_quote, t.spread_pct))
    return out, dropped
