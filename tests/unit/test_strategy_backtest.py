"""Every strategy through `quorum backtest --strategy NAME` on the bundled history: same metrics,
report and leaderboard; deterministic; the paper account's money identity holds; `trend` is the
engine's own backtest, unchanged."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from backtest.engine import run_backtest
from backtest.run import parse_range
from backtest.strategies import run_strategy_backtest
from core.errors import ConfigError
from core.settings import load_settings

SYMS = ["BTC/USDT:USDT", "ETH/USDT:USDT", "XRP/USDT:USDT"]
WINDOW = parse_range("2025-03-01", "2025-03-10")


@pytest.fixture(scope="module")
def grid_run(settings, source):
    return run_strategy_backtest(settings, source, *WINDOW, strategy="grid", symbols=SYMS, mc_runs=50,
                                 leaderboard_runs=50)


def _identity(res, settings) -> None:
    """Final equity - starting == net P&L of the closed trades + (realised - fees - funding +
    unrealised at the last mark) of the positions still open: nothing created or lost."""
    closed = sum(t.pnl for t in res.trades)
    marks = {o["position_id"]: o["unrealised"] for o in res.open_at_end}
    still = sum(p.realised_pnl - p.fees_paid - p.funding_paid + marks[p.id] for p in res.positions if p.is_open)
    assert res.equity.iloc[-1] - settings.paper.starting_balance == pytest.approx(closed + still, abs=1e-4)


def test_trend_is_the_engines_backtest_unchanged(settings, source):
    a = run_backtest(settings, source, *WINDOW, symbols=SYMS, progress=False, mc_runs=50, leaderboard_runs=50)
    b = run_strategy_backtest(settings, source, *WINDOW, strategy="trend", symbols=SYMS, mc_runs=50,
                              leaderboard_runs=50)
    assert a.fingerprint() == b.fingerprint()
    assert "strategy" not in a.settings_summary  # the trend report is byte-for-byte what it was


def test_grid_trades_resting_orders_deterministically(settings, source, grid_run):
    r = grid_run
    c = r.counters
    assert c["resting_fills"] > 50 and c["intents"]["place_placed"] > 0
    assert c["orders"]["filled"] == c["resting_fills"]
    assert r.trades and all(t.closed_at >= t.opened_at for t in r.trades)
    reasons = {t.reason for t in r.trades}
    assert "tp" in reasons  # take-profits at the next level
    tp = [t for t in r.trades if t.reason == "tp"]
    assert sum(t.pnl > 0 for t in tp) / len(tp) > 0.95  # a take-profit is a spacing minus fees
    assert r.leaderboard and r.leaderboard[0].member_id == "consensus"
    assert r.settings_summary["strategy"] == "grid"
    again = run_strategy_backtest(settings, source, *WINDOW, strategy="grid", symbols=SYMS, mc_runs=50,
                                  leaderboard_runs=50)
    assert again.fingerprint() == r.fingerprint()
    _identity(r, settings)
    # no fill before its order could have existed: every fill is at or after the first decision
    assert min(f["time"] for f in r.fills) > r.start


@pytest.mark.parametrize("name", ["volatility", "hybrid"])
def test_volatility_and_hybrid_run_through_the_risk_manager(settings, source, name):
    r = run_strategy_backtest(settings, source, *WINDOW, strategy=name, symbols=SYMS, mc_runs=50,
                              leaderboard_runs=50)
    assert len(r.equity) == 10 * 24 + 1 and r.equity.notna().all()
    assert r.counters["decision_times"] == 240
    assert sum(r.counters["intents"].values()) > 0, r.counters
    if name == "volatility":
        assert r.counters["intents"].get("open_filled", 0) > 0
        held = [t for t in r.trades if t.reason == "time"]
        hold = settings.strategies.volatility.hold_hours
        assert all(t.duration.total_seconds() / 3600 <= hold + 1 for t in held)
    _identity(r, settings)


def test_rebalance_reports_tracking_error_against_target_and_buy_and_hold(settings, source):
    r = run_strategy_backtest(settings, source, *parse_range("2024-06-01", "2024-12-31"), strategy="rebalance",
                              mc_runs=20, leaderboard_runs=20)
    c = r.counters
    assert c["rebalances"] >= 2 and c["trades"] >= 3 and c["fees"] > 0
    te = c["tracking_error_vs_target"]
    band = settings.strategies.rebalance.drift_band_pct / 100
    assert 0 < te["rms"] < band and te["max_drift"] < band + 0.05  # the band held (one hour of drift at most)
    assert c["tracking_error_vs_buy_and_hold"] > 0
    assert "start allocation (held)" in r.buy_and_hold
    assert r.symbols == ["BTC/USDT:USDT", "XRP/USDT:USDT"]
    assert any("tracking error vs target" in n for n in r.notes)


def test_cli_strategy_option_and_errors(tmp_path, monkeypatch):
    from cli.backtest import app

    runner = CliRunner()
    monkeypatch.chdir(tmp_path)
    args = ["backtest", "--from", "2025-03-01", "--to", "2025-03-04", "--symbols", "BTC/USDT:USDT,XRP/USDT:USDT",
            "--out", str(tmp_path / "rep"), "--no-prefect", "--strategy", "grid"]
    r = runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["settings"]["strategy"] == "grid" and s["report_html"].endswith("-grid.html")
    r2 = runner.invoke(app, args)
    assert r2.exit_code == 0 and "strategy grid" in r2.stdout and "resting-order fills" in r2.stdout
    bad = runner.invoke(app, [*args[:-1], "nope"])
    assert bad.exit_code == 2 and "--strategy 'nope'" in bad.output
    # walk-forward windows of the strategy (backtest/walkforward.py), a report per window
    wf = runner.invoke(app, [*args, "--train-days", "1", "--test-days", "2", "--json"])
    assert wf.exit_code == 0, wf.output
    w = json.loads(wf.stdout)
    assert [x["test_start"][:10] for x in w["walk_forward"]["windows"]] == ["2025-03-02", "2025-03-04"]
    assert [r["html"].rsplit("-", 2)[-2:] for r in w["reports"]] == [["grid", "wf1.html"], ["grid", "wf2.html"]]
    assert all(r["settings"]["strategy"] == "grid" for r in w["results"])
    wf2 = runner.invoke(app, [*args, "--train-days", "1", "--test-days", "2"])
    assert wf2.exit_code == 0, wf2.output
    # the panel: grid reads none, and the error says why
    cache = runner.invoke(app, [*args, "--panel", "cache"])
    assert cache.exit_code == 2 and "only hybrid's trend half reads the panel" in cache.output


def test_strategy_settings_validate(monkeypatch):
    with pytest.raises(ConfigError, match="strategy"):
        load_settings(strategy="martingale")
    with pytest.raises(ConfigError, match="per symbol"):
        load_settings(strategy_symbols={"BTC/USDT:USDT": "rebalance"})
    with pytest.raises(ConfigError, match="sum to 1"):
        load_settings(strategies={"rebalance": {"targets": {"BTC": 0.5, "USDT": 0.6}}})
    monkeypatch.setenv("QUORUM_STRATEGY", "hybrid")
    monkeypatch.setenv("QUORUM_STRATEGIES__GRID__LEVELS", "8")
    s = load_settings(strategy_symbols={"btc/usdt:usdt": "grid"})
    assert s.strategy == "hybrid" and s.strategies.grid.levels == 8
    assert s.strategy_for("BTC/USDT:USDT") == "grid" and s.strategy_for("ETH/USDT:USDT") == "hybrid"


def test_rebalance_panel_tilt_in_the_backtest(settings, source):
    tilted = settings.model_copy(update={"strategies": settings.strategies.model_copy(update={
        "rebalance": settings.strategies.rebalance.model_copy(update={"panel_tilt_pct": 10.0})})})
    r = run_strategy_backtest(tilted, source, *parse_range("2025-01-01", "2025-02-28"), strategy="rebalance",
                              mc_runs=10, leaderboard_runs=10)
    base = run_strategy_backtest(settings, source, *parse_range("2025-01-01", "2025-02-28"), strategy="rebalance",
                                 mc_runs=10, leaderboard_runs=10)
    assert any("panel tilt up to 10 points" in n for n in r.notes)
    assert r.counters["rebalances"] > base.counters["rebalances"]  # the tilt moves the targets
    # a tilt never pushes a weight past target + tilt + band
    assert r.counters["tracking_error_vs_target"]["max_drift"] <= 0.10 + 0.05 + 0.02


def test_rebalance_in_the_cycle_needs_paper_mode():
    from pipeline.strategy_cycle import check_cycle_strategy

    with pytest.raises(ConfigError, match="paper spot account only"):
        check_cycle_strategy(load_settings(strategy="rebalance", mode="live"))
    check_cycle_strategy(load_settings(strategy="rebalance"))
    check_cycle_strategy(load_settings(strategy="grid"))
    with pytest.raises(ConfigError, match="grid in live mode"):  # live runs trend only (no simulated orders)
        check_cycle_strategy(load_settings(strategy="grid", mode="live"))
    with pytest.raises(ConfigError, match="hybrid in live mode"):
        check_cycle_strategy(load_settings(mode="live", strategy_symbols={"BTC/USDT:USDT": "hybrid"}))
    check_cycle_strategy(load_settings(mode="live"))
