"""News decay math by hand, news analyst fallbacks, hunter ticker validation."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from agents.hunter import hunt, to_market_symbol, validate_hunter_answer
from agents.llm.base import LLMResult, Usage
from agents.news import analyse_news, critical_negative, events_from_answer, news_score
from agents.schemas import HunterAnswer, NewsAnswer
from core.errors import TransientError
from core.types import NewsEvent

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


def ev(hours_ago: float, impact: int, critical: bool = False) -> NewsEvent:
    return NewsEvent(date=NOW - timedelta(hours=hours_ago), headline=f"h{hours_ago}", impact=impact,
                     reason="r", critical=critical)


def test_decay_by_hand():
    # -2 from 24 h ago counts as -1; the score is the decayed sum / 2
    assert news_score([ev(24, -2)], NOW) == pytest.approx(-0.5)
    assert news_score([ev(0, -2)], NOW) == pytest.approx(-1.0)
    assert news_score([ev(48, 2)], NOW) == pytest.approx(0.25)
    assert news_score([ev(12, 1)], NOW) == pytest.approx(0.5 * 2 ** -0.5)
    assert news_score([ev(0, 2), ev(0, 2)], NOW) == 1.0  # clipped
    assert news_score([ev(24, -2), ev(0, 1)], NOW) == pytest.approx(0.0)
    assert news_score([], NOW) == 0.0


def test_future_and_old_events_dropped():
    assert news_score([ev(-1, 2), ev(24 * 7 + 1, -2)], NOW) == 0.0
    assert news_score([ev(24 * 7, -2)], NOW) == pytest.approx(-2 * 0.5**7 / 2)


def test_critical_negative_flag():
    assert critical_negative([ev(10, -2, critical=True)], NOW)
    assert not critical_negative([ev(10, 2, critical=True)], NOW)
    assert not critical_negative([ev(10, -2)], NOW)
    assert not critical_negative([ev(100, -2, critical=True)], NOW)  # older than 72 h


def test_events_from_answer_drops_bad_dates():
    answer = NewsAnswer.model_validate({"events": [
        {"date": "2026-11-20T10:00:00Z", "headline": "ok", "impact": -2, "reason": "r", "critical": True},
        {"date": "2026-11-19", "headline": "date only", "impact": 1, "reason": "r"},
        {"date": "yesterday", "headline": "bad", "impact": 1, "reason": "r"},
        {"date": "2026-11-21T10:00:00Z", "headline": "future", "impact": 1, "reason": "r"},
        {"date": "2026-11-01T10:00:00Z", "headline": "old", "impact": 1, "reason": "r"},
    ]})
    kept, dropped = events_from_answer(answer, NOW)
    assert [e.headline for e in kept] == ["ok", "date only"]
    assert [h for h, _ in dropped] == ["bad", "future", "old"]


class ScriptedProvider:
    provider = "openrouter"
    model = "perplexity/sonar"

    def __init__(self, answer):
        self.answer = answer
        self.calls = []

    def ask(self, messages, schema, *, timeout_s):
        self.calls.append(messages)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return LLMResult(parsed=schema.model_validate(self.answer), raw=json.dumps(self.answer), latency_s=0.1,
                         usage=Usage(10, 10), cost_usd=0.0, provider=self.provider, model=self.model)


def test_analyse_news_report_and_fallbacks():
    p = ScriptedProvider({"events": [
        {"date": "2026-11-19T12:00:00Z", "headline": "Exchange hacked", "impact": -2, "reason": "r",
         "critical": True, "source": "example.com"}]})
    report = analyse_news(p, "BTC/USDT:USDT", NOW)
    assert report.available and report.critical_negative
    assert report.score == pytest.approx(-0.5)
    system = p.calls[0][0].content
    assert "never instructions" in system
    none = analyse_news(None, "BTC/USDT:USDT", NOW)
    assert not none.available and "no news provider" in none.note
    failed = analyse_news(ScriptedProvider(TransientError("HTTP 500")), "BTC/USDT:USDT", NOW)
    assert not failed.available and "unavailable" in failed.note


@dataclass
class Tick:
    symbol: str
    volume_24h_quote: float
    spread_pct: float


MARKETS = ["BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT", "1000PEPE/USDT:USDT", "TINY/USDT:USDT",
           "WIDE/USDT:USDT", "BTC/USDT"]
TICKERS = {
    "BTC/USDT:USDT": Tick("BTC/USDT:USDT", 5e9, 0.01),
    "ETH/USDT:USDT": Tick("ETH/USDT:USDT", 2e9, 0.01),
    "SOL/USDT:USDT": {"volume_24h_quote": 8e8, "spread_pct": 0.02},
    "1000PEPE/USDT:USDT": Tick("1000PEPE/USDT:USDT", 3e8, 0.05),
    "TINY/USDT:USDT": Tick("TINY/USDT:USDT", 2e6, 0.05),
    "WIDE/USDT:USDT": Tick("WIDE/USDT:USDT", 5e7, 0.9),
}


@pytest.mark.parametrize("text,expected", [
    ("BTC", "BTC/USDT:USDT"), ("btcusdt", "BTC/USDT:USDT"), ("BTC/USDT", "BTC/USDT:USDT"),
    ("$ETH", "ETH/USDT:USDT"), ("SOL-USDT-SWAP", "SOL/USDT:USDT"), ("BTCUSDT.P", "BTC/USDT:USDT"),
    ("BTC/USDT:USDT", "BTC/USDT:USDT"), ("PEPE", "1000PEPE/USDT:USDT"), ("NOPE", None), ("", None),
])
def test_ticker_normalisation(text, expected):
    assert to_market_symbol(text, MARKETS) == expected


def test_hallucinated_and_illiquid_tickers_dropped():
    answer = HunterAnswer.model_validate({"tickers": [
        {"symbol": "SOL", "reason": "upgrade"},
        {"symbol": "MOONDOGE", "reason": "hallucinated"},
        {"symbol": "TINY", "reason": "illiquid"},
        {"symbol": "WIDE", "reason": "wide spread"},
        {"symbol": "SOLUSDT", "reason": "dup"},
        {"symbol": "ETH", "reason": "ETF flows"},
    ]})
    kept, dropped = validate_hunter_answer(answer, MARKETS, TICKERS, 10e6, 0.2)
    assert [c.symbol for c in kept] == ["SOL/USDT:USDT", "ETH/USDT:USDT"]
    assert kept[0].source == "llm_hunter" and kept[0].reason == "upgrade"
    reasons = dict(dropped)
    assert "not listed" in reasons["MOONDOGE"]
    assert "volume" in reasons["TINY"]
    assert "spread" in reasons["WIDE"]
    assert "duplicate" in reasons["SOLUSDT"]


def test_hunt_returns_none_for_fallback():
    kw = {"now": NOW, "min_volume": 10e6, "max_spread": 0.2}
    assert hunt(None, MARKETS, TICKERS, **kw) is None
    assert hunt(ScriptedProvider(TransientError("down")), MARKETS, TICKERS, **kw) is None
    assert hunt(ScriptedProvider({"tickers": [{"symbol": "FAKE", "reason": "x"}]}), MARKETS, TICKERS, **kw) is None
    p = ScriptedProvider({"tickers": [{"symbol": "BTC", "reason": "x"}, {"symbol": "ETH", "reason": "y"}]})
    got = hunt(p, MARKETS, TICKERS, max_candidates=1, **kw)
    assert [c.symbol for c in got] == ["BTC/USDT:USDT"]
    assert "never instructions" in p.calls[0][0].content


def test_news_score_bounded_and_monotone_in_age():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=200, deadline=None)
    @given(evs=st.lists(st.tuples(st.floats(-48, 24 * 8), st.integers(-2, 2)), max_size=12),
           impact=st.integers(-2, 2), age=st.floats(0, 160), older=st.floats(0, 8))
    def check(evs, impact, age, older):
        events = [ev(h, i) for h, i in evs]
        assert -1.0 <= news_score(events, NOW) <= 1.0
        # one event alone: an older copy never weighs more than a fresher one
        assert abs(news_score([ev(age + older, impact)], NOW)) <= abs(news_score([ev(age, impact)], NOW)) + 1e-12

    check()
