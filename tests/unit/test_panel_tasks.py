"""tasks/panel.py: the thin tasks call the plain functions with the process runtime (engine skipped)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agents.budget import TokenBudget
from core.settings import PanelMember, Settings
from store.llm_cache import InMemoryResponseCache
from tasks import panel as tp

NOW = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)


def test_decision_task_without_provider_abstains(monkeypatch):
    tp.set_runtime(tp.PanelRuntime(cache=InMemoryResponseCache(), budget=TokenBudget(1000, 10_000)))
    try:
        monkeypatch.setattr(tp, "provider_for", lambda member: None)
        m = PanelMember(id="gpt", provider="openai", model="x", timeout_s=5)
        payload = {"as_of": NOW.isoformat(), "candidates": [{"symbol": "BTC/USDT:USDT"}]}
        votes = tp.decision_task.fn(m, ["BTC/USDT:USDT"], payload, NOW, True)
        assert [(v.member_id, v.abstain_reason) for v in votes] == [("gpt", "unavailable")]
        # the member's time limit lives inside decide(); no Prefect timeout (it cannot interrupt a thread)
        assert tp.decision_task_for(m).timeout_seconds is None
    finally:
        tp.set_runtime(None)


def test_cache_keys_bucket_time():
    s = Settings()
    k = tp._hunter_key(None, {"settings": s, "now": NOW})
    assert k == tp._hunter_key(None, {"settings": s, "now": NOW + timedelta(hours=3, minutes=29)})
    assert k != tp._hunter_key(None, {"settings": s, "now": NOW + timedelta(hours=4)})
    m = tp.news_member(s)
    n = tp._news_key(None, {"member": m, "symbol": "BTC/USDT:USDT", "now": NOW})
    assert n == tp._news_key(None, {"member": m, "symbol": "BTC/USDT:USDT", "now": NOW + timedelta(minutes=29)})
    assert n != tp._news_key(None, {"member": m, "symbol": "ETH/USDT:USDT", "now": NOW})
    assert n != tp._news_key(None, {"member": m, "symbol": "BTC/USDT:USDT", "now": NOW + timedelta(minutes=30)})


def test_hunter_and_news_tasks_without_key(monkeypatch):
    monkeypatch.setattr(tp, "provider_for", lambda member: None)
    s = Settings()
    assert tp.hunter_task.fn(s, NOW) is None
    assert tp.hunted_candidates(None, [], {}, s) is None
    report = tp.news_task.fn(tp.news_member(s), "BTC/USDT:USDT", NOW)
    assert not report.available


def test_failures_raise_so_prefect_never_caches_them(monkeypatch):
    import pytest

    from core.errors import TransientError

    class Down:
        provider, model = "openrouter", "perplexity/sonar"

        def ask(self, messages, schema, *, timeout_s):
            raise TransientError("HTTP 503")

    monkeypatch.setattr(tp, "provider_for", lambda member: Down())
    s = Settings()
    with pytest.raises(TransientError):
        tp.hunter_task.fn(s, NOW)
    with pytest.raises(TransientError):
        tp.news_task.fn(tp.news_member(s), "BTC/USDT:USDT", NOW)


def test_runtime_per_database(tmp_path, monkeypatch):
    from store.llm_cache import SqlResponseCache

    monkeypatch.delenv("QUORUM_REDIS_URL", raising=False)
    tp.set_runtime(None)
    try:
        a = Settings(database_url=f"sqlite:///{tmp_path / 'a.db'}")
        b = Settings(database_url=f"sqlite:///{tmp_path / 'b.db'}")
        ra, rb = tp.runtime(a), tp.runtime(b)
        assert ra is tp.runtime(a) and ra is not rb
        assert isinstance(ra.cache, SqlResponseCache)
        assert ra.budget.per_cycle == a.token_budget_cycle
    finally:
        tp.set_runtime(None)
