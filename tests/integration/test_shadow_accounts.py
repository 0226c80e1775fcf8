"""Per-model shadow paper accounts in the live loop: real cycles with the six-model panel on local
wire-protocol servers (real SDKs), then the live leaderboard from the stored record."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from tests.fakes.llm_servers import LocalPanel
from tests.fakes.panel_answers import decision_input, panel_responder, verdict_for

pytestmark = [pytest.mark.prefect]
SYMS = ["SOL/USDT:USDT", "XRP/USDT:USDT"]
MEMBERS = {"gpt", "grok", "deepseek", "claude-sonnet", "claude-opus", "qwen-local"}


def picky(body: dict) -> str:
    """qwen-local passes on SOL and goes long XRP only (its shadow trades differently from the crowd)."""
    payload = decision_input(body)
    if payload is None:
        return panel_responder(body)
    out = []
    for c in payload.get("candidates", []):
        v = verdict_for(c)
        v["action"] = "LONG" if c["symbol"].startswith("XRP") else "WAIT"
        v["rationale"] = f"picky view on {c['symbol']}: only XRP has a clean breakout"
        out.append(v)
    return json.dumps({"verdicts": out})


@pytest.fixture
def panel(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    with LocalPanel(responder=panel_responder) as p:
        p.servers["ollama"].responder = picky
        for k, v in p.env.items():
            monkeypatch.setenv(k, v)
        yield p


def test_each_member_trades_its_own_shadow_account_and_the_leaderboard_ranks_them(panel, prefect_harness) -> None:  # noqa: ARG001
    from core.settings import load_settings
    from flows.position_monitor import position_monitor
    from flows.trading_cycle import trading_cycle
    from pipeline.shadow import live_leaderboard, shadow_key
    from store import outbox, repo
    from store.db import get_session_factory, transaction
    from store.models import AccountRow, EquitySnapshotRow, OrderRow, PositionRow

    r1 = trading_cycle(as_of="2025-05-23T04:00:00Z", symbols=SYMS, broadcast=False)
    sol = next(c for c in r1["candidates"] if c["symbol"] == "SOL/USDT:USDT")
    assert sol["decision"]["action"] == "LONG" and sol["execution"]["status"] == "filled"
    assert set(r1["shadows"]) == MEMBERS
    assert "filled LONG" in r1["shadows"]["gpt"]["orders"]["SOL/USDT:USDT"]
    assert "filled LONG" in r1["shadows"]["qwen-local"]["orders"]["XRP/USDT:USDT"]  # its own call
    assert "SOL/USDT:USDT" not in r1["shadows"]["qwen-local"]["orders"]

    settings = load_settings()
    factory = get_session_factory(settings)
    with transaction(factory) as s:
        keys = set(s.scalars(select(AccountRow.mode)))
        assert keys == {"paper"} | {shadow_key("paper", m) for m in MEMBERS}
        real = repo.open_positions(s, "paper")
        qwen = repo.open_positions(s, "paper:shadow:qwen-local")
        gpt = repo.open_positions(s, "paper:shadow:gpt")
        assert [(p.symbol, p.side.value) for p in qwen] == [("XRP/USDT:USDT", "LONG")]
        # gpt voted with the consensus: same risk manager, same fills, its own position ids
        assert [p.symbol for p in gpt] == [p.symbol for p in real]
        for rp, gp in zip(real, gpt, strict=True):
            assert (gp.entry, gp.stop, gp.qty_initial, gp.leverage) == (rp.entry, rp.stop, rp.qty_initial,
                                                                       rp.leverage)
            assert gp.id != rp.id and gp.extra["shadow_of"] == "gpt"
        # one equity snapshot per account per cycle
        assert s.scalar(select(func.count()).select_from(EquitySnapshotRow)) == 7
        assert s.scalar(select(func.count()).select_from(OrderRow).where(OrderRow.mode == "paper")) == len(real)
        # nothing about a shadow account goes to the Telegram outbox
        assert all((p.position_id or "") in {r.id for r in real} for p in outbox.pending(s) if p.position_id)

    # the monitor walks the shadow positions with the real account's exit rules
    mon = position_monitor(as_of="2025-05-27T00:00:00Z", broadcast=False)
    assert set(mon["shadows"]) == MEMBERS
    assert mon["shadows"]["qwen-local"]["checked"] >= 1
    with transaction(factory) as s:
        closed = s.scalars(select(PositionRow).where(PositionRow.mode == "paper:shadow:qwen-local",
                                                     PositionRow.closed_at.is_not(None)))
        assert all(p.exit_reason for p in closed)
        real_closed = repo.closed_positions(s, "paper")
        gpt_closed = repo.closed_positions(s, "paper:shadow:gpt")
        # gpt voted as the consensus did: its shadow's trades exit exactly as the real ones
        def key(ps):  # type: ignore[no-untyped-def]
            return sorted((p.symbol, p.exit_reason, p.closed_at, round(p.realised_pnl, 6)) for p in ps)

        assert key(gpt_closed) == key(real_closed)

    trading_cycle(as_of="2025-05-31T23:00:00Z", symbols=SYMS, broadcast=False)
    rows = live_leaderboard(factory, _source(settings), settings, runs=200)
    by = {r["member_id"]: r for r in rows}
    assert set(by) == MEMBERS | {"consensus"}
    assert sorted(r["rank"] for r in rows) == list(range(1, 8))
    with transaction(factory) as s:
        for mid, r in by.items():
            acct_key = "paper" if mid == "consensus" else shadow_key("paper", mid)
            hist = repo.equity_history(s, acct_key)
            assert r["account_value"] == pytest.approx(hist[-1][1])
            assert r["total_return"] == pytest.approx(hist[-1][1] / hist[0][1] - 1, rel=1e-9, abs=1e-12) or \
                len(hist) < 2
    assert by["qwen-local"]["diff_vs_consensus_low"] is not None
    assert by["gpt"]["n_votes"] == 4 and by["gpt"]["abstention_rate"] == 0


def _source(settings):  # type: ignore[no-untyped-def]
    from exchange.factory import build_source

    return build_source(settings)


def test_a_halt_stops_the_real_account_not_the_shadows(panel, prefect_harness) -> None:  # noqa: ARG001
    from datetime import UTC, datetime

    from core.settings import load_settings
    from flows.trading_cycle import trading_cycle
    from store import repo
    from store.db import get_session_factory, transaction

    factory = get_session_factory(load_settings())
    with transaction(factory) as s:
        repo.set_halt(s, "paper", "operator", "manual", datetime(2025, 1, 1, tzinfo=UTC))
    r = trading_cycle(as_of="2025-05-23T04:00:00Z", symbols=SYMS, broadcast=False)
    assert all(not c["risk"]["approved"] for c in r["candidates"])
    assert "filled" in r["shadows"]["gpt"]["orders"]["SOL/USDT:USDT"]
    with transaction(factory) as s:
        assert repo.open_positions(s, "paper") == []
        assert "SOL/USDT:USDT" in {p.symbol for p in repo.open_positions(s, "paper:shadow:gpt")}


def test_the_monitor_closes_shadow_longs_on_critical_negative_news(panel, prefect_harness) -> None:  # noqa: ARG001
    """Same exit rules as the real account: the monitor asks the news analyst about the shadow
    accounts' symbols too, and a critical negative event closes their longs."""
    from core.settings import load_settings
    from flows.position_monitor import position_monitor
    from flows.trading_cycle import trading_cycle
    from store import repo
    from store.db import get_session_factory, transaction

    r1 = trading_cycle(as_of="2025-05-23T04:00:00Z", symbols=["SOL/USDT:USDT"], broadcast=False)
    assert "filled LONG" in r1["shadows"]["gpt"]["orders"]["SOL/USDT:USDT"]

    def news(body: dict) -> str:
        text = json.dumps(body)
        events = [{"date": "2025-05-23T05:30:00Z", "headline": "Exchange hack drains SOL bridge", "impact": -2,
                   "reason": "hack", "critical": True, "source": "example"}] if "SOL" in text else []
        return json.dumps({"events": events, "tickers": []})

    panel.servers["openrouter"].responder = news
    mon = position_monitor(as_of="2025-05-23T06:00:00Z", broadcast=False)
    assert any("critical negative news" in e for e in mon["shadows"]["gpt"]["events"]), mon["shadows"]["gpt"]
    with transaction(get_session_factory(load_settings())) as s:
        assert repo.open_positions(s, "paper:shadow:gpt") == []
        closed = repo.closed_positions(s, "paper:shadow:gpt")
        assert [(p.symbol, p.exit_reason) for p in closed] == [("SOL/USDT:USDT", "news")]
