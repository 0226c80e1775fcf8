"""Emergency controls, positions/trades views, the monitor and daily-report flows, through the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from cli.app import app

pytestmark = [pytest.mark.prefect]
FIRST = "2025-05-23T04:00:00Z"


def run(*args: str):  # type: ignore[no-untyped-def]
    r = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.output


def test_halt_positions_close_all_resume_trades(prefect_harness) -> None:  # noqa: ARG001
    out = run("cycle", "--as-of", FIRST, "--json")
    rep = json.loads(out[out.index("{"):])
    opened = [p["symbol"] for p in rep["account"]["open_positions"]]
    assert opened

    text = run("positions")
    for sym in opened:
        assert sym in text
    assert "initial" in text and "entries: allowed" in text

    text = run("halt", "--reason", "exchange incident")
    assert "halted" in text
    assert "HALTED (manual): exchange incident" in run("positions")
    doc = CliRunner().invoke(app, ["doctor"])
    assert "HALTED (manual)" in doc.output

    # a halted cycle approves nothing, and says why
    rep2 = json.loads((o := run("cycle", "--as-of", "2025-05-23T05:00:00Z", "--json"))[o.index("{"):])
    assert all(not c["risk"]["approved"] for c in rep2["candidates"])
    assert any("manual halt: exchange incident" in r for c in rep2["candidates"] for r in c["risk"]["reasons"])

    text = run("halt", "--close-all")
    assert f"closed {len(opened)} position(s)" in text
    pos = json.loads((o := run("positions", "--json"))[o.index("{"):])
    assert pos["open_positions"] == []
    trades = json.loads((o := run("trades", "--json"))[o.index("["):])
    assert {t["symbol"] for t in trades} == set(opened)
    assert all(t["reason"] == "manual" and t["fees"] > 0 for t in trades)
    # exit price, quantity and R are there, rounded; the rows are the export's rows (same field names)
    assert all(t["exit"] > 0 and t["qty"] > 0 and t["r_multiple"] is not None and t["outcome"] in
               ("win", "draw", "loss") for t in trades)
    assert all(t["pnl"] == round(t["pnl"], 2) and t["r_multiple"] == round(t["r_multiple"], 4) for t in trades)
    exported = json.loads(run("export", "--format", "json"))["trades"]
    assert sorted(exported, key=lambda r: r["position_id"]) == sorted(trades, key=lambda r: r["position_id"])
    text = run("trades")
    assert "exit kind" in text and "wins" in text and "draws" in text
    assert "resumed" in run("resume")
    assert "entries: allowed" in run("positions")


def test_monitor_flow_and_daily_report(prefect_harness) -> None:  # noqa: ARG001
    run("cycle", "--as-of", FIRST)
    res = json.loads((o := run("monitor", "--as-of", "2025-05-31T23:00:00Z", "--json"))[o.index("{"):])
    assert res["checked"] >= 1 and res["events"]
    text = run("daily-report", "--as-of", "2025-05-26T01:00:00Z")
    assert "daily report for 2025-05-25" in text
    from core.settings import load_settings
    from store import outbox
    from store.db import get_session_factory, transaction

    with transaction(get_session_factory(load_settings())) as s:
        kinds = {p.kind for p in outbox.list_posts(s)}
    assert {"entry", "daily_stats", "market_pulse"} <= kinds


def test_daily_report_without_as_of_reports_on_the_account_clock(prefect_harness) -> None:  # noqa: ARG001
    run("cycle", "--as-of", FIRST)  # the account's clock: 2025-05-23 04:00 (the bundled data ends 05-31)
    text = run("daily-report")
    assert "daily report for 2025-05-22" in text and "the account clock" in text


def test_intraday_path_agrees_with_the_snapshots_and_feeds_the_daily_drawdown(prefect_harness) -> None:  # noqa: ARG001
    from core.settings import load_settings
    from exchange.factory import build_source
    from pipeline.daily import day_equity_path
    from store import repo
    from store.db import get_session_factory, transaction

    run("cycle", "--as-of", FIRST)
    run("monitor", "--as-of", "2025-05-24T12:00:00Z", "--json")
    run("monitor", "--as-of", "2025-05-25T01:00:00Z", "--json")
    settings = load_settings()
    day = datetime(2025, 5, 24, tzinfo=UTC)
    with transaction(get_session_factory(settings)) as s:
        path = dict(day_equity_path(s, build_source(settings), settings.mode, day,
                                    datetime(2025, 5, 25, 1, tzinfo=UTC)))
        snaps = dict(repo.equity_history(s, settings.mode))
        t_end = datetime(2025, 5, 25, 1, tzinfo=UTC)
        last = dict(day_equity_path(s, build_source(settings), settings.mode, datetime(2025, 5, 25, tzinfo=UTC),
                                    t_end))
    assert len([t for t in path if t.date() == day.date()]) == 24, sorted(path)  # 00:00 .. 23:00, hourly
    # at the end of the walk the path says what the account says (balance + margin + marks)
    pos = json.loads((o := run("positions", "--json"))[o.index("{"):])
    assert abs(last[t_end] - pos["equity"]) < 0.05, (last[t_end], pos["equity"], sorted(snaps))
    assert min(path.values()) <= min(snaps.values()) + 0.05
    text = run("daily-report", "--as-of", "2025-05-25T01:00:00Z")
    assert "daily report for 2025-05-24" in text and "intraday path" in text


def test_breaker_halt_is_visible(prefect_harness) -> None:  # noqa: ARG001
    from core.settings import load_settings
    from store import repo
    from store.db import get_session_factory, transaction

    f = get_session_factory(load_settings())
    with transaction(f) as s:  # equity fell 6% today: the daily -5% breaker holds until midnight UTC
        repo.add_equity_snapshot(s, "paper", datetime(2025, 5, 31, 0, 0, tzinfo=UTC), 10_000, 10_000, 0, 0)
        repo.add_equity_snapshot(s, "paper", datetime(2025, 5, 31, 12, 0, tzinfo=UTC), 9_400, 9_400, 0, 0)
    text = run("positions")
    assert "HALTED (breaker)" in text and "daily loss" in text


def test_the_account_cannot_go_back_in_time_and_history_is_not_rewritten(prefect_harness) -> None:  # noqa: ARG001
    from core.settings import load_settings
    from store import repo
    from store.db import get_session_factory, transaction

    run("cycle", "--as-of", FIRST)
    with transaction(get_session_factory(load_settings())) as s:
        before = repo.equity_history(s)
    run("monitor", "--as-of", "2025-05-31T23:00:00Z", "--json")
    r = CliRunner().invoke(app, ["cycle", "--as-of", "2025-05-10T00:00:00Z"])
    assert r.exit_code != 0 and "before the paper account's clock" in str(r.exception or r.output)
    rerun = json.loads((o := run("cycle", "--as-of", "2025-05-31T23:00:00Z", "--json"))[o.index("{"):])
    assert rerun["cycle_id"]
    with transaction(get_session_factory(load_settings())) as s:
        after = dict(repo.equity_history(s))
    for t, e in before:  # the snapshot at the first decision time still says what it said then
        assert after[t] == e


def test_monitor_json_is_pure_json(prefect_harness) -> None:  # noqa: ARG001
    run("cycle", "--as-of", FIRST)
    out = run("monitor", "--as-of", "2025-05-31T23:00:00Z", "--json")
    json.loads(out)  # nothing printed around it (posts stay in the outbox)
