from __future__ import annotations

from agents.scanner import fixed_universe, scan_volume
from exchange.base import TickerInfo


def _t(sym: str, vol: float, spread_pct: float = 0.01) -> TickerInfo:
    half = 100 * spread_pct / 200
    return TickerInfo(sym, 100, 100 - half, 100 + half, vol)


def test_volume_scanner_ranks_and_filters() -> None:
    tickers = {t.symbol: t for t in [_t("A/USDT:USDT", 50e6), _t("B/USDT:USDT", 5e6), _t("C/USDT:USDT", 80e6, 0.5),
                                     _t("D/USDT:USDT", 20e6), _t("E/USDT:USDT", 30e6)]}
    cands, dropped = scan_volume(tickers, 2, 10e6, 0.2)
    assert [c.symbol for c in cands] == ["A/USDT:USDT", "E/USDT:USDT"]
    reasons = dict(dropped)
    assert "spread 0.500%" in reasons["C/USDT:USDT"] and "24h volume $5,000,000" in reasons["B/USDT:USDT"]
    assert all(c.source == "volume_scanner" for c in cands)


def test_fixed_universe_keeps_filters_and_reports_unknown() -> None:
    tickers = {"A/USDT:USDT": _t("A/USDT:USDT", 50e6), "B/USDT:USDT": _t("B/USDT:USDT", 1e6)}
    cands, dropped = fixed_universe(["A/USDT:USDT", "B/USDT:USDT", "Z/USDT:USDT"], tickers, 10e6, 0.2)
    assert [c.symbol for c in cands] == ["A/USDT:USDT"]
    assert dict(dropped)["Z/USDT:USDT"] == "not listed by the data source"
