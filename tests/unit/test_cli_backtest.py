"""`quorum backtest / leaderboard / export` through the typer app (SQLite file DB, no Prefect)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from core.types import Action, Side, Vote
from tests.unit.risk_builders import trade_plan

runner = CliRunner()
T = datetime(2025, 3, 10, 12, tzinfo=UTC)


@pytest.fixture()
def db_env(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'q.db'}"
    monkeypatch.setenv("QUORUM_DATABASE_URL", url)
    monkeypatch.chdir(tmp_path)
    from core.settings import load_settings
    from store.db import get_session_factory

    return get_session_factory(load_settings())


def _seed(factory) -> None:
    from agents.math_engine import score_snapshot
    from core.settings import load_settings
    from core.types import RiskVerdict
    from exchange.paper import PaperAccount
    from exchange.replay import ReplaySource
    from pipeline.stages import decide
    from store import repo
    from store.db import transaction

    settings = load_settings()
    src = ReplaySource(settings.data_dir)
    sym = "ETH/USDT:USDT"
    snap = src.snapshot(sym, T)
    score = score_snapshot(snap, settings.signal)
    votes = [Vote("gpt", sym, Action.LONG, 0.8, "trend up", provider="openai", model="m1", latency_s=1.5,
                  cost_usd=0.01),
             Vote("grok", sym, None, abstain_reason="timeout", rationale="timeout: 60s", provider="xai", model="m2"),
             Vote("claude", sym, Action.SHORT, 0.6, "overbought", provider="anthropic", model="m3", latency_s=2.0)]
    d = decide(sym, T, votes, score, settings)
    plan = trade_plan(symbol=sym, side=Side.LONG, entry=snap.last, qty="0.5")
    verdict = RiskVerdict(sym, True, ("sized by test",), plan=plan)
    acct = PaperAccount.from_settings(settings.paper)
    ts, px = src.price_after(sym, T)
    pos, fill = acct.open(plan, px, ts, position_id="ETH-test", cycle_id="c1")
    acct.close("ETH-test", pos.qty_open, px * 1.02, ts + timedelta(hours=5), reason="tp", kind="tp2")
    with transaction(factory) as s:
        repo.start_cycle(s, "c1", T, "paper", "replay", T)
        repo.record_analysis(s, "c1", T, [], {sym: score}, {}, votes, {sym: d}, {sym: verdict}, {sym: snap.last})
        for i, f in enumerate(acct.fills):
            repo.add_order_fill(s, f"paper:ETH-test:{f.kind}:{i}", "c1", "ETH-test", f)
        for p in acct.positions.values():
            repo.upsert_position(s, p, "paper")


def test_export_formats_from_the_database(db_env, tmp_path):
    from cli.backtest import app

    _seed(db_env)
    r = runner.invoke(app, ["export", "--format", "json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    trades = doc["trades"]
    assert doc["count"] == 1 and len(trades) == 1 and trades[0]["symbol"] == "ETH/USDT:USDT" and trades[0]["side"] == "LONG"
    r = runner.invoke(app, ["export", "--format", "tax", "--out", str(tmp_path / "tax.csv")])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO((tmp_path / "tax.csv").read_text())))
    assert rows[0]["asset"] == "ETH" and float(rows[0]["gain"]) == pytest.approx(trades[0]["pnl"])
    r = runner.invoke(app, ["export", "--format", "audit"])
    assert r.exit_code == 0, r.output
    audit = list(csv.DictReader(io.StringIO(r.stdout)))
    assert len(audit) == 1
    row = audit[0]
    assert row["cycle_id"] == "c1" and row["symbol"] == "ETH/USDT:USDT"
    assert "gpt" in row["votes"] and "trend up" in row["votes"] and "timeout" in row["votes"]
    assert "sized by test" in row["risk_reasons"]
    assert "open" in row["fills"] and "close" in row["fills"]
    r = runner.invoke(app, ["export", "--format", "xml"])
    assert r.exit_code == 2


def test_leaderboard_from_stored_votes(db_env):
    from cli.backtest import app

    _seed(db_env)
    r = runner.invoke(app, ["leaderboard", "--db", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    ids = {x["member_id"] for x in rows}
    assert ids == {"consensus", "gpt", "grok", "claude"}
    grok = next(x for x in rows if x["member_id"] == "grok")
    assert grok["abstention_rate"] == 1.0
    gpt = next(x for x in rows if x["member_id"] == "gpt")
    assert gpt["n_votes"] == 1 and gpt["hit_rate_24h"] in (0.0, 1.0)


def test_backtest_command_writes_the_report_and_the_leaderboard_reads_it(tmp_path, monkeypatch):
    from cli.backtest import app

    monkeypatch.chdir(tmp_path)
    args = ["backtest", "--from", "2025-03-01", "--to", "2025-03-07", "--panel", "math",
            "--symbols", "BTC/USDT:USDT,ETH/USDT:USDT", "--out", str(tmp_path / "rep"), "--no-prefect"]
    r = runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["counters"]["decision_times"] == 7 * 24
    assert (tmp_path / "rep").joinpath(s["report_json"].split("/")[-1]).exists()
    first = (tmp_path / "rep" / s["report_json"].split("/")[-1]).read_bytes()
    r2 = runner.invoke(app, args)
    assert r2.exit_code == 0, r2.output
    assert "Total return" in r2.stdout and "report:" in r2.stdout
    assert (tmp_path / "rep" / s["report_json"].split("/")[-1]).read_bytes() == first  # identical rerun
    r3 = runner.invoke(app, ["leaderboard", "--dir", str(tmp_path / "rep"), "--json"])
    assert r3.exit_code == 0, r3.output
    assert [x["member_id"] for x in json.loads(r3.stdout)] == ["consensus"]
    r4 = runner.invoke(app, ["backtest", "--from", "2025-03-01", "--to", "2025-03-07", "--panel", "nope",
                             "--no-prefect"])
    assert r4.exit_code == 2 and "panel" in r4.output
