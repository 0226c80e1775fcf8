"""Circuit breakers computed from stored equity snapshots (so they hold across restarts)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from risk import account_state_from_history, breaker_state, evaluate, get_profile
from tests.unit.risk_builders import examples, risk_input

D0 = datetime(2025, 3, 5, tzinfo=UTC)  # Wednesday 00:00 UTC


def test_daily_halt_holds_until_next_midnight_even_after_recovery():
    hist = [(D0 - timedelta(hours=1), 10_000.0), (D0 + timedelta(hours=3), 9_480.0),
            (D0 + timedelta(hours=9), 10_100.0)]
    halted, reason, until = breaker_state(hist, D0 + timedelta(hours=10), "default")
    assert halted and until == D0 + timedelta(days=1)
    assert "daily loss -5.20% reached the -5% limit" in reason
    # later snapshots are ignored: at 02:00 nothing had happened yet
    assert breaker_state(hist, D0 + timedelta(hours=2), "default") == (False, None, None)
    # the next day the reference is the last snapshot before midnight
    assert breaker_state(hist, D0 + timedelta(days=1, hours=1), "default") == (False, None, None)
    # arena tolerates -5.2%
    assert breaker_state(hist, D0 + timedelta(hours=10), "arena")[0] is False


def test_weekly_and_drawdown_breakers_for_conservative():
    mon = D0 - timedelta(days=2)
    hist = [(mon - timedelta(hours=1), 10_000.0), (mon + timedelta(days=1), 9_600.0),
            (D0 + timedelta(hours=1), 9_300.0), (D0 + timedelta(hours=5), 8_950.0)]
    now = D0 + timedelta(hours=6)
    halted, reason, until = breaker_state(hist, now, "conservative")
    assert halted and "weekly loss -10.50%" in reason and until == mon + timedelta(days=7)
    halted, reason, until = breaker_state(hist, now, "kelly")  # kelly: daily only (-6.77% today)
    assert halted and "weekly" not in reason and "daily loss -6.77%" in reason and until == D0 + timedelta(days=1)
    # drawdown -20% from the running peak: until a manual resume
    hist2 = [(D0 - timedelta(days=30), 10_000.0), (D0 - timedelta(days=20), 12_000.0),
             (D0 - timedelta(days=10), 9_500.0), (D0 - timedelta(days=1), 9_600.0)]
    halted, reason, until = breaker_state(hist2, D0 + timedelta(hours=1), "conservative")
    assert halted and until is None and "drawdown -20.83%" in reason
    # an operator's resume ignores the older history
    assert breaker_state(hist2, D0 + timedelta(hours=1), "conservative",
                         reset_at=D0 - timedelta(days=5))[0] is False


def test_default_profile_has_the_weekly_and_drawdown_breakers_of_the_six_model_spec():
    prof = get_profile("default")
    assert (prof.daily_loss_pct, prof.weekly_loss_pct, prof.max_drawdown_pct) == (5.0, 10.0, 20.0)
    mon = D0 - timedelta(days=2)
    # a week of daily losses, none reaching -5%, that adds up to -10.5%: the weekly breaker halts
    hist = [(mon - timedelta(hours=1), 10_000.0), (mon + timedelta(days=1), 9_600.0),
            (D0 + timedelta(hours=1), 9_300.0), (D0 + timedelta(hours=5), 8_950.0)]
    halted, reason, until = breaker_state(hist, D0 + timedelta(hours=6), "default")
    assert halted and "weekly loss -10.50% reached the -10% limit" in reason and until == mon + timedelta(days=7)
    # a slow bleed over months (no day below -5%, no week below -10%) that reaches -20% from the peak
    t = D0 - timedelta(days=120)
    pts, e = [(t, 10_000.0), (t + timedelta(days=1), 12_500.0)], 12_500.0
    for i in range(2, 100):
        e *= 0.997 if i % 7 else 1.001
        pts.append((t + timedelta(days=i), e))
    assert min(b / a for (_, a), (_, b) in zip(pts[1:], pts[2:], strict=False)) > 0.95
    dd = pts[-1][1] / 12_500.0 - 1
    assert dd < -0.20
    now = pts[-1][0] + timedelta(hours=1)
    halted, reason, until = breaker_state(pts, now, "default")
    assert halted and until is None and "from peak reached the -20% breaker" in reason
    acct = account_state_from_history(pts, equity=pts[-1][1], balance=pts[-1][1], positions=(), now=now,
                                      profile="default")
    v = evaluate(risk_input(acct=acct))
    assert not v.approved and any("drawdown" in r for r in v.reasons)
    # it holds until an operator's resume
    assert breaker_state(pts, now, "default", reset_at=now - timedelta(hours=1))[0] is False


def test_account_state_from_history_feeds_evaluate():
    hist = [(D0 - timedelta(hours=1), 10_000.0), (D0 + timedelta(hours=3), 9_400.0)]
    now = D0 + timedelta(hours=4)
    acct = account_state_from_history(hist, equity=9_700.0, balance=9_700.0, positions=(), now=now,
                                      profile="default")
    assert acct.day_start_equity == 10_000.0 and acct.peak_equity == 10_000.0 and acct.halted
    v = evaluate(risk_input(acct=acct))
    assert not v.approved
    assert any(r.startswith(f"entries halted until {(D0 + timedelta(days=1)).isoformat()}") for r in v.reasons)
    manual = account_state_from_history([], equity=10_000.0, balance=10_000.0, positions=(), now=now,
                                        profile="default", manual_halt="operator")
    v = evaluate(risk_input(acct=manual))
    assert not v.approved and any("until a manual resume: manual halt: operator" in r for r in v.reasons)


@settings(max_examples=examples(150), deadline=None)
@given(
    start=st.floats(1_000.0, 1_000_000.0),
    drop=st.floats(0.05, 0.6),
    drop_at=st.integers(1, 23 * 60),
    recover=st.floats(0.5, 1.5),
    after=st.integers(1, 24 * 60),
    profile=st.sampled_from(["default", "conservative", "kelly", "arena"]),
)
def test_property_no_entry_after_daily_halt_until_next_utc_day(start, drop, drop_at, recover, after, profile):
    prof = get_profile(profile)
    drop = max(drop, prof.daily_loss_pct / 100)
    t_drop = D0 + timedelta(minutes=drop_at)
    low = start * (1 - drop)
    recovered = low * recover
    hist = [(D0 - timedelta(hours=2), start), (t_drop, low), (t_drop + timedelta(minutes=30), recovered)]
    now = t_drop + timedelta(minutes=after)
    next_day = D0 + timedelta(days=1)
    equity = recovered if now >= t_drop + timedelta(minutes=30) else low
    if now < next_day:
        acct = account_state_from_history(hist, equity=equity, balance=equity, positions=(), now=now,
                                          profile=prof)
        v = evaluate(risk_input(profile=profile, acct=acct, atr_pct=2.0))
        assert not v.approved
        assert any("halted" in r or "daily loss" in r for r in v.reasons)
    # the next UTC day, with a fresh snapshot, entries are allowed again (other breakers permitting)
    later = next_day + timedelta(minutes=after % 60)
    acct = account_state_from_history(hist + [(next_day, recovered)], equity=recovered, balance=recovered,
                                      positions=(), now=later, profile=prof)
    v = evaluate(risk_input(profile=profile, acct=acct, atr_pct=2.0))
    if prof.weekly_loss_pct is None and prof.max_drawdown_pct is None:
        assert v.approved, v.reasons
    else:
        assert v.approved or not any(r.startswith("daily") for r in v.reasons)
