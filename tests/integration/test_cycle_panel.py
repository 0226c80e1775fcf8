"""The cycle with the six-model panel on local wire-protocol servers (real SDKs on the code path)."""

from __future__ import annotations

import json

import pytest

from tests.fakes.llm_servers import LocalPanel
from tests.fakes.panel_answers import decision_input, panel_responder, verdict_for

pytestmark = [pytest.mark.prefect]
AS_OF = "2025-05-23T04:00:00Z"
SYMS = ["SOL/USDT:USDT", "XRP/USDT:USDT"]


def contrarian(body: dict) -> str:
    """Votes against the math score (one dissenting member)."""
    payload = decision_input(body)
    if payload is None:
        return panel_responder(body)
    out = []
    for c in payload.get("candidates", []):
        v = verdict_for(c)
        v["action"] = {"LONG": "SHORT", "SHORT": "LONG", "WAIT": "WAIT"}[v["action"]]
        out.append(v)
    return json.dumps({"verdicts": out})


@pytest.fixture
def panel(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    with LocalPanel(responder=panel_responder) as p:
        p.servers["ollama"].responder = contrarian
        for k, v in p.env.items():
            monkeypatch.setenv(k, v)
        yield p


def _halt_entries() -> None:
    """A manual halt keeps the account unchanged between the two runs, so the snapshot (and the
    prompt, which includes open positions) is identical and the rerun must come from the cache."""
    from datetime import UTC, datetime

    from core.settings import load_settings
    from store import repo
    from store.db import get_session_factory, transaction

    with transaction(get_session_factory(load_settings())) as s:
        repo.set_halt(s, "paper", "test: keep the account flat", "manual", datetime(2025, 1, 1, tzinfo=UTC))


def test_six_votes_consensus_dissent_cost_and_cache_replay(panel, prefect_harness) -> None:  # noqa: ARG001
    from flows.trading_cycle import trading_cycle

    _halt_entries()

    r1 = trading_cycle(as_of=AS_OF, symbols=SYMS, broadcast=False)
    assert r1["panel"]["status"].startswith("panel: 6/6 models available")
    for c in r1["candidates"]:
        members = sorted(v["member"] for v in c["votes"])
        assert members == sorted(["gpt", "grok", "deepseek", "claude-sonnet", "claude-opus", "qwen-local"])
        assert all(v["action"] for v in c["votes"]), c["votes"]
    sol = next(c for c in r1["candidates"] if c["symbol"] == "SOL/USDT:USDT")
    # five members follow SOL's +0.49 math score (LONG), qwen-local dissents with SHORT
    assert sol["decision"]["action"] == "LONG" and not sol["decision"]["fallback_to_math"]
    assert sol["decision"]["votes_valid"] == 6
    assert any("qwen-local" in d for d in sol["decision"]["dissent"])
    assert r1["llm_cost"]["tokens"] > 0 and r1["llm_cost"]["cost_usd"] > 0
    assert not sol["risk"]["approved"] and any("manual halt" in x for x in sol["risk"]["reasons"])
    calls = dict(panel.calls)
    assert sum(calls.values()) >= 5  # five servers (both Claude members share one), news may be cached

    r2 = trading_cycle(as_of=AS_OF, symbols=SYMS, broadcast=False)
    assert panel.calls == calls, "the rerun must be served from the response cache"
    for a, b in zip(r1["candidates"], r2["candidates"], strict=True):
        assert a["decision"] == b["decision"]
        assert all(v["cached"] for v in b["votes"])
    assert r2["llm_cost"]["cost_usd"] == 0


@pytest.mark.slow
def test_six_slow_models_run_concurrently(monkeypatch: pytest.MonkeyPatch, prefect_harness) -> None:  # noqa: ARG001
    from flows.trading_cycle import trading_cycle

    trading_cycle(as_of=AS_OF, symbols=SYMS, broadcast=False)
    with LocalPanel(responder=panel_responder, delay_s=1.0) as p:
        for k, v in p.env.items():
            monkeypatch.setenv(k, v)
        monkeypatch.setenv("QUORUM_LLM_CACHE", "false")
        r = trading_cycle(as_of="2025-05-24T04:00:00Z", symbols=SYMS, broadcast=False, use_llm_cache=False)
        in_flight = p.max_in_flight
    assert all(len(c["votes"]) == 6 and all(v["action"] for v in c["votes"]) for c in r["candidates"])
    # six members' calls, each held 1 s by its server, were all in flight at the same moment: the
    # panel fans out inside the flow (measured on the servers, not by a wall clock; bench/panel.py times it)
    assert in_flight >= 6, in_flight


def test_bad_answers_end_as_stored_abstentions_and_the_cycle_completes(panel, prefect_harness) -> None:  # noqa: ARG001
    from sqlalchemy import select

    from core.settings import load_settings
    from flows.trading_cycle import trading_cycle
    from store.db import get_session_factory, transaction
    from store.models import VoteRow
    from tests.fakes.llm_servers import malformed, schema_violation, server_error

    panel.servers["xai"].enqueue(malformed(), malformed())  # bad JSON, and again after the repair
    panel.servers["deepseek"].enqueue(server_error(), server_error(), server_error())  # 500 x3
    panel.servers["ollama"].enqueue(
        schema_violation({"verdicts": [{"symbol": "SOL/USDT:USDT", "action": "BUY!!", "confidence": 1.7,
                                        "rationale": "x", "key_factors": []}]}),
        schema_violation({"verdicts": [{"symbol": "SOL/USDT:USDT", "action": "BUY!!", "confidence": 1.7,
                                        "rationale": "x", "key_factors": []}]}))
    rep = trading_cycle(as_of="2025-05-20T10:00:00Z", symbols=SYMS, broadcast=False)
    assert all(c["decision"]["votes_total"] == 6 for c in rep["candidates"])
    with transaction(get_session_factory(load_settings())) as s:
        rows = list(s.scalars(select(VoteRow).where(VoteRow.cycle_id == rep["cycle_id"])))
    by = {(r.member_id, r.symbol): r for r in rows}
    assert len(rows) == 12
    assert by[("grok", "SOL/USDT:USDT")].abstain_reason == "invalid_output"
    assert by[("deepseek", "SOL/USDT:USDT")].abstain_reason == "transient"
    assert by[("qwen-local", "SOL/USDT:USDT")].abstain_reason == "invalid_output"
    assert by[("gpt", "SOL/USDT:USDT")].abstain_reason is None and by[("gpt", "SOL/USDT:USDT")].action
    assert all(r.prompt_version.startswith("decision_v1@") for r in rows)


def test_critical_negative_news_closes_longs(monkeypatch: pytest.MonkeyPatch, prefect_harness) -> None:  # noqa: ARG001
    """A long opened without news is closed by the next cycle when the news analyst reports a
    critical negative event for its coin (web text is data: the deterministic rule acts on it)."""
    from flows.trading_cycle import trading_cycle
    from tests.fakes.llm_servers import OpenAIServer

    r1 = trading_cycle(as_of=AS_OF, symbols=["SOL/USDT:USDT"], broadcast=False)
    assert r1["candidates"][0]["execution"]["status"] == "filled"

    def news(body: dict) -> str:
        text = json.dumps(body)
        events = [{"date": "2025-05-23T04:30:00Z", "headline": "Exchange hack drains SOL bridge",
                   "impact": -2, "reason": "hack", "critical": True, "source": "example"}] if "SOL" in text else []
        return json.dumps({"events": events, "tickers": []})

    with OpenAIServer(responder=news) as srv:
        monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-test")
        monkeypatch.setenv("OPENROUTER_BASE_URL", srv.base_url)
        r2 = trading_cycle(as_of="2025-05-23T05:00:00Z", symbols=["SOL/USDT:USDT"], broadcast=False)
    c = r2["candidates"][0]
    assert c["news"]["available"] and c["news"]["events"] == 1
    assert any("critical negative news" in e for e in r2["monitor"]["events"])
    assert r2["account"]["open_positions"] == []
    assert not c["risk"]["approved"]  # and no new long on it


def _decision_inputs(server) -> list[dict]:  # type: ignore[no-untyped-def]
    return [p for p in (decision_input(r.body) for r in server.requests) if p is not None]


def test_a_rerun_after_opening_a_position_sees_the_same_facts(panel, prefect_harness) -> None:  # noqa: ARG001
    """Item 3: rerunning a decision time that opened a position gives the same votes, decisions and
    verdicts, without calling the models again, and stores one set of analysis rows; with the
    response cache bypassed the models are asked again with the same facts (not the new position)."""
    from sqlalchemy import func, select

    from core.settings import load_settings
    from flows.trading_cycle import trading_cycle
    from store.db import get_session_factory, transaction
    from store.models import CycleRow, DecisionRow, RiskVerdictRow, VoteRow

    sol = ["SOL/USDT:USDT"]
    r1 = trading_cycle(as_of=AS_OF, symbols=sol, broadcast=False)
    c1 = r1["candidates"][0]
    assert c1["execution"]["status"] == "filled" and r1["account"]["open_positions"]
    first = _decision_inputs(panel.servers["openai"])
    assert first and first[-1]["open_positions"] == []
    calls = dict(panel.calls)

    r2 = trading_cycle(as_of=AS_OF, symbols=sol, broadcast=False)
    c2 = r2["candidates"][0]
    assert panel.calls == calls, "a rerun of the same decision calls no model"
    assert c2["decision"] == c1["decision"] and c2["risk"] == c1["risk"]
    strip = [{k: v for k, v in x.items() if k != "cached"} for x in c1["votes"]]
    assert [{k: v for k, v in x.items() if k != "cached"} for x in c2["votes"]] == strip
    assert c2["execution"]["status"] == "skipped" and r2["llm_cost"]["cost_usd"] == 0
    assert r2["reused"] == [r1["cycle_id"]]

    r3 = trading_cycle(as_of=AS_OF, symbols=sol, broadcast=False, use_llm_cache=False)
    again = _decision_inputs(panel.servers["openai"])[len(first):]
    assert again, "--no-llm-cache asks the models again"
    assert again[-1]["open_positions"] == [] and again[-1]["candidates"] == first[-1]["candidates"]
    c3 = r3["candidates"][0]
    assert c3["decision"]["action"] == c1["decision"]["action"]
    assert c3["risk"] == c1["risk"], "risk sees the account as it was before the decision, too"
    assert c3["execution"]["status"] == "skipped" and len(r3["account"]["open_positions"]) == 1

    with transaction(get_session_factory(load_settings())) as s:
        def n(model) -> int:  # type: ignore[no-untyped-def]
            return s.scalar(select(func.count()).select_from(model))
        assert n(DecisionRow) == 1 and n(RiskVerdictRow) == 1 and n(VoteRow) == 6  # one set, not three
        statuses = sorted(s.scalars(select(CycleRow.status)))
    assert statuses == ["completed", "superseded", "superseded"]
