"""backtest.report (self-contained HTML + deterministic JSON) and backtest.export (json/csv/tax/audit)."""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from plotly.offline import get_plotlyjs

from backtest.export import (
    AUDIT_COLUMNS,
    TAX_COLUMNS,
    TRADE_COLUMNS,
    AuditFill,
    AuditOrder,
    AuditRow,
    AuditVote,
    export_to_string,
    export_trades,
    tax_rows,
)
from backtest.report import FIGURE_IDS, write_report
from core.baselines import monte_carlo
from core.leaderboard import MemberResult, leaderboard
from core.metrics import TradeRecord, compute_metrics
from core.types import Side

D0 = datetime(2025, 1, 1, tzinfo=UTC)
H = timedelta(hours=1)

# long BTC: 2 @ 100 -> 110, fees 1, funding 0.5: net = 20 - 1 - 0.5 = 18.5
# short ETH: 1 @ 100 -> 92, fees 0.4: net = 8 - 0.4 = 7.6
LONG = TradeRecord(
    "BTC/USDT:USDT", Side.LONG, D0, D0 + 30 * H, 100.0, 110.0, 2.0, 18.5, 1.0, 0.5, 1.85, "tp2"
)
SHORT = TradeRecord(
    "ETH/USDT:USDT", Side.SHORT, D0 + 2 * H, D0 + 5 * H, 100.0, 92.0, 1.0, 7.6, 0.4, 0.0, 1.9, "tp1"
)
LOSS = TradeRecord(
    "SOL/USDT:USDT", Side.LONG, D0 + 40 * H, D0 + 41 * H, 50.0, 48.0, 3.0, -6.3, 0.3, 0.0, -1.05, "stop"
)
TRADES = [LONG, SHORT, LOSS]


@pytest.fixture(scope="module")
def report_inputs():
    idx = pd.date_range(D0, periods=72, freq="1h")
    eq = pd.Series(1000.0 * np.cumprod(1 + np.random.default_rng(0).normal(0, 0.002, 72)), index=idx)
    end = idx[-1].to_pydatetime()
    metrics = compute_metrics(eq, TRADES, D0, end)
    mc = monte_carlo([t.pnl for t in TRADES], 1000.0, runs=200, seed=1)
    cons = MemberResult("consensus", eq, TRADES)
    gpt = MemberResult("gpt", eq * 1.01, TRADES[:1])
    rows = [r.to_dict() for r in leaderboard([gpt, cons], D0, end, runs=100, seed=0)]
    return {
        "title": "Backtest 2025-01-01..2025-01-03 (math)",
        "metrics": metrics,
        "monte_carlo": mc,
        "equity": eq,
        "trades": TRADES,
        "per_symbol": None,
        "buy_and_hold": {"ETH/USDT:USDT": -0.02, "BTC/USDT:USDT": 0.05, "SOL/USDT:USDT": float("nan")},
        "leaderboard_rows": rows,
        "params": {"panel": "math", "from": D0, "symbols": ["BTC/USDT:USDT", "ETH/USDT:USDT"]},
    }


def test_report_files_and_single_plotly_bundle(tmp_path, report_inputs):
    html_path, json_path = write_report(tmp_path / "out", **report_inputs)
    assert html_path.exists() and json_path.exists()
    page = html_path.read_text(encoding="utf-8")
    bundle = get_plotlyjs()
    # exactly one inline copy of plotly.js, no CDN reference
    assert page.count(bundle[:400]) == 1
    assert page.count("plotly.js v") == bundle.count("plotly.js v")
    assert "cdn.plot.ly" not in page.replace(bundle, "")
    # every figure is present, each drawn once
    for fid in FIGURE_IDS:
        assert f'id="{fid}"' in page
    assert page.replace(bundle, "").count("Plotly.newPlot(") == len(FIGURE_IDS)
    for heading in (
        "Metrics",
        "Equity and drawdown",
        "Per-symbol results",
        "Trades",
        "Monte Carlo",
        "Model leaderboard",
    ):
        assert f"<h2>{heading}</h2>" in page
    assert "SOL/USDT:USDT" in page and "tp2" in page


def test_report_json_content_and_determinism(tmp_path, report_inputs):
    _, j1 = write_report(tmp_path / "a", **report_inputs)
    h2, j2 = write_report(tmp_path / "b", **report_inputs)
    assert j1.read_bytes() == j2.read_bytes()
    assert (tmp_path / "a" / "report.html").read_bytes() == h2.read_bytes()
    doc = json.loads(j1.read_text())
    assert set(doc) >= {
        "metrics",
        "monte_carlo",
        "equity",
        "trades",
        "per_symbol",
        "buy_and_hold",
        "leaderboard",
    }
    assert doc["buy_and_hold"]["SOL/USDT:USDT"] is None  # nan -> null
    assert list(doc["buy_and_hold"]) == sorted(doc["buy_and_hold"])
    assert doc["params"]["from"] == "2025-01-01T00:00:00+00:00"
    assert len(doc["equity"]["time"]) == 72 == len(doc["equity"]["drawdown"])
    assert len(doc["monte_carlo"]["max_drawdowns"]) == 200
    assert [t["symbol"] for t in doc["trades"]] == ["ETH/USDT:USDT", "BTC/USDT:USDT", "SOL/USDT:USDT"]
    # per-symbol computed from trades: BTC 1 trade, net 18.5, buy-and-hold merged in
    assert doc["per_symbol"]["BTC/USDT:USDT"]["net_pnl"] == 18.5
    assert doc["per_symbol"]["BTC/USDT:USDT"]["buy_and_hold"] == 0.05
    assert doc["metrics"]["n_trades"] == 3
    # eq * 1.01 has the same total return as eq: a tie, broken by member id
    assert [r["member_id"] for r in doc["leaderboard"]] == ["consensus", "gpt"]
    json.dumps(doc, allow_nan=False)
    assert "NaN" not in j1.read_text() and "Infinity" not in j1.read_text()


def test_report_without_optional_parts(tmp_path):
    eq = pd.Series([100.0, 100.0], index=pd.DatetimeIndex([D0, D0 + H]))
    m = compute_metrics(eq, [], D0, D0 + H)
    h, j = write_report(
        tmp_path,
        title="empty",
        metrics=m,
        monte_carlo=None,
        equity=eq,
        trades=[],
        per_symbol=None,
        buy_and_hold={},
        leaderboard_rows=None,
        params={},
    )
    assert "Model leaderboard" not in h.read_text()
    assert json.loads(j.read_text())["monte_carlo"] is None


# ------------------------------------------------------------------------------------------ export


def _read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_export_json(tmp_path):
    out = tmp_path / "trades.json"
    export_trades(TRADES, "json", out)
    doc = json.loads(out.read_text())
    assert doc["count"] == 3
    assert doc["trades"][0]["symbol"] == "ETH/USDT:USDT"  # sorted by close time
    assert doc["trades"][0]["side"] == "SHORT"
    assert doc["trades"][0]["closed_at"] == "2025-01-01T05:00:00+00:00"


def test_export_csv_columns(tmp_path):
    out = tmp_path / "trades.csv"
    export_trades(TRADES, "csv", out)
    text = out.read_text()
    assert text.splitlines()[0] == ",".join(TRADE_COLUMNS)
    rows = _read_csv(text)
    assert len(rows) == 3 and float(rows[1]["pnl"]) == 18.5 and rows[1]["reason"] == "tp2"


def test_export_tax_hand_example():
    text = export_to_string(TRADES, "tax")
    assert text.splitlines()[0] == ",".join(TAX_COLUMNS)
    eth, btc, sol = _read_csv(text)
    # long: proceeds = 110 x 2 = 220, cost basis = 100 x 2 = 200, gain = 220 - 200 - 1 - 0.5 = 18.5
    assert (btc["date_acquired"], btc["date_sold"], btc["asset"]) == ("2025-01-01", "2025-01-02", "BTC")
    assert float(btc["proceeds"]) == 220.0 and float(btc["cost_basis"]) == 200.0
    assert float(btc["gain"]) == pytest.approx(18.5) and float(btc["holding_days"]) == pytest.approx(1.25)
    # short: proceeds = sale at entry 100 x 1, cost basis = buy-back at exit 92 x 1, gain = 8 - 0.4 = 7.6
    assert float(eth["proceeds"]) == 100.0 and float(eth["cost_basis"]) == 92.0
    assert float(eth["gain"]) == pytest.approx(7.6) and eth["side"] == "SHORT"
    # loss: 48 x 3 - 50 x 3 - 0.3 = -6.3
    assert float(sol["gain"]) == pytest.approx(-6.3)
    # the gain always equals the trade's net pnl
    for r, t in zip(tax_rows(TRADES), [SHORT, LONG, LOSS], strict=True):
        assert r["gain"] == pytest.approx(t.pnl)


AUDIT = [
    AuditRow(
        cycle_id="c2",
        time=D0 + 4 * H,
        symbol="ETH/USDT:USDT",
        math_score=-0.1,
        math_components={"trend": -0.2, "momentum": 0.1},
        votes=(AuditVote("gpt", "WAIT", 0.5, "chop"),),
        consensus_action="WAIT",
        consensus_confidence=0.5,
    ),
    AuditRow(
        cycle_id="c1",
        time=D0,
        symbol="BTC/USDT:USDT",
        math_score=0.62,
        math_components={"trend": 0.8, "momentum": 0.4},
        votes=(
            AuditVote("grok", None, 0.0, "", abstain_reason="timeout", latency_s=30.0),
            AuditVote(
                "gpt", "LONG", 0.72, 'breakout, "strong" volume', model="gpt-5", latency_s=2.1, cost_usd=0.01
            ),
            AuditVote("deepseek", "SHORT", 0.55, "overbought"),
        ),
        consensus_action="LONG",
        consensus_confidence=0.68,
        dissent=("deepseek",),
        risk_approved=True,
        risk_reasons=("ok", "leverage 5x"),
        orders=(AuditOrder("o1", "buy", "market", 2.0, None, "filled"),),
        fills=(AuditFill(D0 + H, "LONG", "open", 2.0, 100.0, 0.1, "entry"),),
    ),
]


def test_export_audit_columns_and_content(tmp_path):
    out = tmp_path / "audit.csv"
    export_trades([], "audit", out, audit_rows=AUDIT)
    text = out.read_text()
    assert text.splitlines()[0] == ",".join(AUDIT_COLUMNS)
    first, second = _read_csv(text)
    assert first["cycle_id"] == "c1" and second["cycle_id"] == "c2"  # sorted by time
    votes = json.loads(first["votes"])
    assert [v["member"] for v in votes] == ["deepseek", "gpt", "grok"]
    assert votes[1] == {
        "member": "gpt",
        "action": "LONG",
        "confidence": 0.72,
        "rationale": 'breakout, "strong" volume',
        "model": "gpt-5",
        "latency_s": 2.1,
        "cost_usd": 0.01,
    }
    assert votes[2]["action"] is None and votes[2]["abstain_reason"] == "timeout"
    assert (first["votes_valid"], first["votes_total"]) == ("2", "3")
    assert first["consensus_action"] == "LONG" and first["dissent"] == "deepseek"
    assert first["risk_approved"] == "true" and first["risk_reasons"] == "ok;leverage 5x"
    assert json.loads(first["orders"])[0]["id"] == "o1"
    assert json.loads(first["fills"])[0]["price"] == 100.0 and first["traded"] == "true"
    assert json.loads(first["math_components"]) == {"momentum": 0.4, "trend": 0.8}
    assert second["risk_approved"] == "" and second["traded"] == "false"
    assert float(first["math_score"]) == 0.62


def test_export_errors_and_stream():
    with pytest.raises(ValueError):
        export_trades(TRADES, "audit", io.StringIO())
    with pytest.raises(ValueError):
        export_trades(TRADES, "xml", io.StringIO())  # type: ignore[arg-type]
    assert export_to_string(TRADES, "csv") == export_to_string(list(reversed(TRADES)), "csv")
    nan_r = TradeRecord("X/USDT", Side.LONG, D0, D0 + H, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, math.nan)
    assert _read_csv(export_to_string([nan_r], "csv"))[0]["r_multiple"] == ""


def test_publish_report_artifacts_calls_prefect(tmp_path, monkeypatch, report_inputs):
    import sys
    import types

    from backtest.report import metrics_table_rows, publish_report_artifacts

    calls: list[tuple[str, object, dict]] = []
    fake = types.ModuleType("prefect.artifacts")
    fake.create_table_artifact = lambda table, **kw: calls.append(("table", table, kw))  # type: ignore[attr-defined]
    fake.create_link_artifact = lambda link, **kw: calls.append(("link", link, kw))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "prefect.artifacts", fake)
    if "prefect" not in sys.modules:
        monkeypatch.setitem(sys.modules, "prefect", types.ModuleType("prefect"))
    html_path = tmp_path / "report.html"
    html_path.write_text("x")
    publish_report_artifacts(
        html_path, report_inputs["metrics"], key_prefix="Backtest 2025", leaderboard_rows=[{"a": 1}]
    )
    assert [c[0] for c in calls] == ["table", "link", "table"]
    assert calls[0][2]["key"] == "backtest-2025-metrics"
    assert calls[1][1].startswith("file://") and calls[1][2]["key"] == "backtest-2025-report"
    rows = metrics_table_rows(report_inputs["metrics"])
    assert calls[0][1] == rows and rows[0]["metric"] == "Start"
    assert any(r["metric"] == "Total return" and r["value"].endswith("%") for r in rows)


# ------------------------------------------------------------------------------------------------
# issue 13 item 13: outcomes, one row shape, rounding by kind


def test_wins_draws_losses_and_the_win_rate_without_scratches():
    from core.trades import SCRATCH_R, trade_outcome

    scratch = TradeRecord("XRP/USDT:USDT", Side.LONG, D0 + 50 * H, D0 + 52 * H, 2.0, 2.003, 100.0, 0.1, 0.2, 0.0,
                          0.02, "breakeven_stop")
    trades = [*TRADES, scratch]
    assert [t.outcome for t in trades] == ["win", "win", "loss", "draw"]
    assert trade_outcome(0.5, SCRATCH_R - 1e-9) == "draw" and trade_outcome(0.5, SCRATCH_R) == "win"
    assert trade_outcome(0.0) == "draw" and trade_outcome(-1.0) == "loss"
    idx = pd.date_range(D0, periods=72, freq="1h")
    m = compute_metrics(pd.Series(1000.0, index=idx), trades, D0, idx[-1].to_pydatetime())
    assert (m.wins, m.draws, m.losses, m.n_trades) == (2, 1, 1, 4)
    assert m.win_rate == pytest.approx(0.5)  # a scratch is not a win
    assert m.win_rate_ex_draws == pytest.approx(2 / 3)
    assert m.gross_profit == pytest.approx(18.5 + 7.6 + 0.1)  # the money still counts
    d = m.to_dict()
    assert d["draws"] == 1 and d["win_rate_ex_draws"] == pytest.approx(2 / 3)


def test_export_rows_are_rounded_by_kind_and_share_the_trade_record_fields():
    from decimal import Decimal

    from backtest.export import trade_row

    t = TradeRecord("BTC/USDT:USDT", Side.LONG, D0, D0 + 7 * H, 97_123.456789, 98_001.23456, 0.0123000000001,
                    10.123456789, 0.987654321, -0.0123456789, 1.234567891, "trailing_stop", "BTC-1")
    row = trade_row(t, {"BTC/USDT:USDT": (Decimal("0.1"), Decimal("0.001"))})
    assert set(row) == set(t.to_dict()) == set(TRADE_COLUMNS)
    assert (row["entry"], row["exit"], row["qty"]) == (97_123.5, 98_001.2, 0.012)
    assert (row["pnl"], row["fees"], row["funding"], row["r_multiple"]) == (10.12, 0.987654, -0.012346, 1.2346)
    assert row["position_id"] == "BTC-1" and row["outcome"] == "win" and row["reason"] == "trailing_stop"
    plain = trade_row(t)  # no market rules known: 8 significant digits
    assert (plain["entry"], plain["exit"]) == (97_123.457, 98_001.235)
    csv_text = export_to_string([t], "csv", precision={"BTC/USDT:USDT": (Decimal("0.1"), Decimal("0.001"))})
    assert csv_text.splitlines()[1].split(",")[5:12] == ["97123.5", "98001.2", "0.012", "10.12", "0.987654",
                                                        "-0.012346", "1.2346"]
    tax = _read_csv(export_to_string([t], "tax"))[0]
    gain = (98_001.23456 - 97_123.456789) * 0.0123000000001 - 0.987654321 + 0.0123456789
    assert tax["gain"] == repr(round(gain, 2)) and tax["holding_days"] == "0.2917" and tax["fees"] == "0.987654"
    assert tax["proceeds"] == repr(round(98_001.23456 * 0.0123000000001, 2))
    js = json.loads(export_to_string([t], "json"))["trades"][0]
    assert js["pnl"] == 10.12 and js["position_id"] == "BTC-1"
