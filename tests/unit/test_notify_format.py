"""Pure formatting of channel posts and the daily stats, checked against figures computed by hand."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.types import Action, Decision, Position, PositionEvent, Side, TradePlan
from notify.daily_stats import DailyStats, compute_daily_stats, daily_stats_post
from notify.format import (
    MarketPulse,
    consensus_line,
    entry_key,
    entry_key_for,
    entry_post,
    event_key,
    event_post,
    market_pulse_post,
    post_kind_for_event,
)
from notify.telegram_html import TELEGRAM_LIMIT, fmt_price, strip_tags, truncate_html, utf16_len
from tests.fakes.telegram_html import check_html

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
DAY = date(2026, 3, 2)


def well_formed(body: str) -> str:
    c = check_html(body)
    # every '&' in the raw text starts an entity written by html.escape
    assert all(body[i:].startswith(("&amp;", "&lt;", "&gt;", "&quot;", "&#x27;"))
               for i, ch in enumerate(body) if ch == "&")
    return c.text


def plan(**kw) -> TradePlan:
    base = dict(symbol="SOL/USDT:USDT", side=Side.SHORT, entry=150.0, stop=153.0, tp1=145.5, tp2=142.5,
                leverage=7, qty=Decimal("5"), notional=750.0, margin=107.14, risk_usd=15.0, risk_pct=1.5,
                liquidation_price=170.0, stop_pct=2.0, reason="Breakdown below MA50 with rising OI\nsecond line")
    base.update(kw)
    return TradePlan(**base)


def decision(**kw) -> Decision:
    base = dict(symbol="SOL/USDT:USDT", as_of=T0, action=Action.SHORT, confidence=0.68, math_score=-0.52,
                combined_score=-0.6, votes_valid=5, votes_total=6, tally={"SHORT": 0.75, "LONG": 0.25},
                dissent=("grok", "qwen-local"), fallback_to_math=False, reason="panel short")
    base.update(kw)
    return Decision(**base)


def pos(pid: str, pnl: float, closed: datetime | None, **kw) -> Position:
    base = dict(id=pid, symbol="BTC/USDT:USDT", side=Side.LONG, entry=100.0, qty_initial=Decimal("10"),
                qty_open=Decimal(0), stop=98.0, initial_stop=98.0, tp1=103.0, tp2=105.0, leverage=5,
                margin=200.0, liquidation_price=80.0, opened_at=T0 - timedelta(hours=5), best_price=101.0,
                realised_pnl=pnl, closed_at=closed, exit_reason="stop" if closed else None, cycle_id="c9")
    base.update(kw)
    return Position(**base)


# ------------------------------------------------------------------------------------------ entry


def test_entry_post_has_every_field():
    body = entry_post(plan(), decision())
    text = well_formed(body)
    assert "🔴 SHORT SOL/USDT" in text
    assert "Confidence: 68%" in text
    assert "Panel: 5/6 valid · SHORT 0.75 / LONG 0.25 · dissent: grok, qwen-local" in text
    assert "Entry: 150.000" in text
    assert "Stop: 153.000 (+2.00%)" in text
    assert "TP1: 145.500 (-3.00%) · close 50%" in text
    assert "TP2: 142.500 (-5.00%) · close the rest" in text
    assert "Leverage: 7× · Risk: 1.50% of equity" in text
    assert "Breakdown below MA50 with rising OI" in text and "second line" not in text
    assert "Not financial advice" in text
    assert len(body) <= TELEGRAM_LIMIT


def test_consensus_line_on_math_fallback_and_no_dissent():
    line = consensus_line(decision(fallback_to_math=True, votes_valid=1, dissent=()))
    assert line == "Panel: no quorum (1/6 valid), math engine decided · dissent: none"


def test_hostile_values_are_escaped_everywhere():
    evil = "<script>x</script>&*_[`"
    body = entry_post(plan(symbol=evil + "/USDT", reason=evil), decision(dissent=(evil,), tally={evil: 1.0}))
    assert "<script>" not in body
    text = well_formed(body)
    assert text.count(evil) == 4  # symbol, reason, dissent, tally key all shown literally


@pytest.mark.parametrize("value,expected", [(97250.5, "97,250.50"), (150.0, "150.000"), (2.5, "2.5000"),
                                            (0.0001234, "0.00012340"), (0.5, "0.50000")])
def test_price_format(value, expected):
    assert fmt_price(value) == expected


# ------------------------------------------------------------------------------------------ events


def event(kind: str, **kw) -> PositionEvent:
    base = dict(position_id="p1", symbol="BTC/USDT:USDT", kind=kind, ts=T0, price=103.0, qty=Decimal("5"),
                pnl=15.0, r_multiple=1.5, reason="")
    base.update(kw)
    return PositionEvent(**base)


@pytest.mark.parametrize(
    "ev,position,kind,expect",
    [
        (event("tp1"), pos("p1", 15.0, None, qty_open=Decimal(5), stop=100.15, phase="breakeven"), "tp1",
         ["TP1 hit", "Closed 50% at 103.000 (+3.00% on entry 100.000)", "Realised: +1.50R · price P&L +$15.00",
          "Stop now 100.150"]),
        (event("stop_moved", old_stop=98.0, new_stop=100.15, pnl=0.0), pos("p1", 0.0, None, phase="breakeven"),
         "breakeven", ["Stop moved to breakeven", "Stop: 98.000 → 100.150 (+0.15% from entry)"]),
        (event("stop_moved", old_stop=100.15, new_stop=102.9), pos("p1", 15.0, None, phase="trailing"),
         "trailing", ["Trailing stop moved", "Stop: 100.150 → 102.900"]),
        (event("tp2", price=105.0, pnl=25.0, r_multiple=2.5), pos("p1", 40.0, T0), "tp2",
         ["TP2 hit", "Realised: +2.50R · price P&L +$25.00", "Trade total: +$40.00 (+2.00R)"]),
        (event("stop", price=98.0, qty=Decimal(10), pnl=-20.0, r_multiple=-1.0), pos("p1", -20.0, T0), "stop",
         ["Stopped out", "Closed 100% at 98.000 (-2.00% on entry", "-1.00R · price P&L −$20.00",
          "Trade total: −$20.00 (-1.00R)"]),
        (event("stop", price=100.15, qty=Decimal(10), pnl=1.5, r_multiple=0.075), pos(
            "p1", 1.5, T0, fees_paid=1.0, funding_paid=0.3, exit_reason="breakeven_stop", phase="breakeven"),
         "stop", ["Trade total: +$0.20 (+0.01R) net of fees $1.00 and funding $0.30"]),
        (event("breakeven_stop", price=100.15, qty=Decimal(10), pnl=1.5, r_multiple=0.075,
               reason="breakeven stop 100.15 hit"),
         pos("p1", 1.5, T0, fees_paid=2.0, funding_paid=-0.5, exit_reason="breakeven_stop"), "breakeven_stop",
         ["Breakeven stop hit, trade closed", "Trade total: $0.00 (+0.00R) net of fees $2.00 and funding received "
          "$0.50"]),
        (event("trailing_stop", price=102.9, qty=Decimal(5), pnl=14.5, r_multiple=1.45),
         pos("p1", 29.5, T0, fees_paid=1.0, exit_reason="trailing_stop"), "trailing_stop",
         ["Trailing stop hit, trade closed", "Trade total: +$28.50 (+1.43R) net of fees $1.00"]),
        (event("stale", price=100.5, qty=Decimal(10), pnl=5.0, r_multiple=0.25, reason="48h with <1% profit"),
         pos("p1", 5.0, T0), "stale", ["Stale exit", "48h with <1% profit"]),
        (event("time", price=100.0, pnl=0.0, r_multiple=0.0), pos("p1", 0.0, T0), "time", ["Time exit"]),
        (event("news", reason="exchange hack & lawsuit"), pos("p1", 15.0, T0), "news",
         ["News exit", "exchange hack & lawsuit"]),
        (event("liquidation", price=80.0, pnl=-200.0, r_multiple=-10.0), pos("p1", -200.0, T0), "exit",
         ["Liquidated"]),
    ],
)
def test_event_posts(ev, position, kind, expect):
    assert post_kind_for_event(ev, position) == kind
    body = event_post(ev, position)
    text = well_formed(body)
    for fragment in expect:
        assert fragment in text, (fragment, text)


def test_opened_and_funding_events_are_not_posted():
    assert post_kind_for_event(event("opened")) is None
    assert post_kind_for_event(event("funding")) is None


def test_keys_are_deterministic():
    assert entry_key("cyc-1", "BTC/USDT:USDT") == "cyc-1:BTC/USDT:USDT:entry"
    assert event_key("pos-1", "tp1") == "pos-1:tp1"
    assert event_key("pos-1", "trailing", T0) == "pos-1:trailing:20260302T000000"
    assert entry_key_for(pos("p", 0.0, None)) == "c9:BTC/USDT:USDT:entry"
    assert entry_key_for(pos("p", 0.0, None, extra={"entry_post_key": "k"})) == "k"
    assert entry_key_for(pos("p", 0.0, None, cycle_id=None)) is None


# ------------------------------------------------------------------------------------------ stats


def closed_positions() -> list[Position]:
    h = timedelta(hours=1)
    return [
        pos("a", 30.0, T0 + 1 * h),
        pos("b", -10.0, T0 + 3 * h),
        pos("c", -15.0, T0 + 5 * h),
        pos("d", 20.0, T0 + 7 * h),
        pos("e", 0.0, T0 + 9 * h),
        pos("x", 500.0, T0 - 2 * h),  # closed the day before: not counted
        pos("y", 0.0, None),  # still open: not counted
    ]


def test_daily_stats_match_hand_computed_figures():
    votes = {"gpt": (3, 4), "grok": (1, 4), "qwen-local": (0, 0), "claude-opus": (3, 4)}
    stats = compute_daily_stats(list(reversed(closed_positions())), DAY, None, votes)
    # by hand: trades +30, -10, -15, +20, 0 in close order
    assert stats.trades == 5 and stats.wins == 2 and stats.losses == 2 and stats.draws == 1  # the flat one
    assert stats.win_rate == pytest.approx(2 / 5)
    assert stats.gross_profit == pytest.approx(50.0) and stats.gross_loss == pytest.approx(25.0)
    assert stats.profit_factor == pytest.approx(2.0)
    assert stats.pnl == pytest.approx(25.0)
    assert stats.best_trade == 30.0 and stats.worst_trade == -15.0
    # running P&L 0 → 30 → 20 → 5 → 25 → 25: peak 30, trough 5
    assert stats.max_drawdown_usd == pytest.approx(25.0) and stats.max_drawdown_pct is None
    assert [(r.member_id, r.hits, r.total) for r in stats.model_hit_rates] == [
        ("claude-opus", 3, 4), ("gpt", 3, 4), ("grok", 1, 4), ("qwen-local", 0, 0)]

    body = daily_stats_post(stats)
    text = well_formed(body)
    assert "Daily stats · 2026-03-02" in text
    assert "Trades: 5 · wins 2 · draws 1 · losses 2 · win rate 40% (50% without scratches)" in text
    assert "P&L: +$25.00 · profit factor 2.00" in text
    assert "Best +$30.00 · worst −$15.00" in text
    assert "Max drawdown: −$25.00" in text
    assert "• gpt: 75% (3/4)" in text and "• grok: 25% (1/4)" in text and "• qwen-local: — (0/0)" in text


def test_daily_drawdown_from_the_equity_curve():
    h = timedelta(hours=1)
    curve = [(T0 - h, 9000.0), (T0, 10000.0), (T0 + 2 * h, 10030.0), (T0 + 4 * h, 10020.0),
             (T0 + 6 * h, 10005.0), (T0 + 8 * h, 10025.0)]
    stats = compute_daily_stats(closed_positions(), DAY, curve, None)
    assert stats.max_drawdown_usd == pytest.approx(25.0)
    assert stats.max_drawdown_pct == pytest.approx(25.0 / 10030.0 * 100)  # 0.2493%
    assert "Max drawdown: −$25.00 (-0.25%)" in strip_tags(daily_stats_post(stats))


def test_daily_stats_edge_cases():
    empty = compute_daily_stats([], DAY)
    assert empty == DailyStats(day=DAY, trades=0, wins=0, losses=0, win_rate=None, profit_factor=None, pnl=0,
                               gross_profit=0, gross_loss=0, best_trade=None, worst_trade=None,
                               max_drawdown_usd=0.0, max_drawdown_pct=None)
    assert "No trades closed today." in strip_tags(daily_stats_post(empty))
    # a breakeven exit a little positive after fees (+0.05R) is a draw, not a win
    scratch = compute_daily_stats([pos("s", 1.0, T0), pos("w", 30.0, T0)], DAY)
    assert (scratch.wins, scratch.draws, scratch.losses) == (1, 1, 0) and scratch.win_rate == pytest.approx(0.5)
    only_wins = compute_daily_stats([pos("a", 5.0, T0)], DAY)
    assert math.isinf(only_wins.profit_factor) and "profit factor ∞" in strip_tags(daily_stats_post(only_wins))


# ------------------------------------------------------------------------------------------ pulse


def test_market_pulse_post():
    pulse = MarketPulse(as_of=T0 + timedelta(hours=8), regime="DIGESTING", btc_trend="TREND_UP",
                        btc_change_24h_pct=2.345, top_movers=(("DOGE/USDT:USDT", 12.5), ("XRP/USDT:USDT", -7.25)),
                        funding_extremes=(("SOL/USDT:USDT", 0.0012), ("<evil>", -0.0008)), note="calm & steady")
    text = well_formed(market_pulse_post(pulse))
    assert "Market pulse · 2026-03-02 08:00 UTC" in text
    assert "Regime: DIGESTING · BTC: TREND_UP (+2.35% 24h)" in text
    assert "• DOGE/USDT +12.50%" in text and "• XRP/USDT -7.25%" in text
    assert "• SOL/USDT +0.120%" in text and "• <evil> -0.080%" in text
    assert "calm & steady" in text


# ------------------------------------------------------------------------------------------ length


def test_long_posts_are_cut_to_the_telegram_limit_without_breaking_markup():
    reason = "x&<y> " * 2000  # 12k raw chars, far more once escaped
    body = entry_post(plan(reason=reason), decision())
    assert utf16_len(body) <= TELEGRAM_LIMIT
    well_formed(body)
    assert body.endswith("…</i>")


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["b", "i", "code", None]),
                          st.text(alphabet=st.characters(codec="utf-8"), max_size=40)), max_size=30),
       st.integers(min_value=20, max_value=300))
def test_truncate_html_property(parts, limit):
    import html

    body = "".join(f"<{t}>{html.escape(s)}</{t}>" if t else html.escape(s) for t, s in parts)
    cut = truncate_html(body, limit)
    assert utf16_len(cut) <= limit
    well_formed(cut)
    if utf16_len(body) <= limit:
        assert cut == body
