"""pipeline/shadow.py pure parts: account keys, and the leaderboard's fast forward returns equal
`core.leaderboard.forward_return` on the bundled history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from core.leaderboard import forward_return
from pipeline.shadow import forward_returns, is_shadow, member_of, shadow_key


def test_account_keys() -> None:
    assert shadow_key("paper", "claude-opus") == "paper:shadow:claude-opus"
    assert member_of("paper:shadow:claude-opus") == "claude-opus" and member_of("paper") is None
    assert is_shadow("live:shadow:gpt") and not is_shadow("live")


def test_fast_forward_returns_equal_the_definition() -> None:
    from core.settings import Settings
    from exchange.factory import build_source

    source = build_source(Settings())
    fwd = forward_returns(source)
    sym = "SOL/USDT:USDT"
    h1 = source.history(sym).h1
    close = pd.Series(h1["close"].to_numpy(), index=h1.index + pd.Timedelta(hours=1))
    last = close.index[-1].to_pydatetime()
    times = [datetime(2025, 5, 23, 4, tzinfo=UTC), datetime(2025, 5, 23, 4, 30, tzinfo=UTC),
             last - timedelta(hours=5), last - timedelta(hours=4), last - timedelta(hours=3), last,
             close.index[0].to_pydatetime() - timedelta(hours=1)]
    for t in times:
        want = (forward_return(close, t, timedelta(hours=4)), forward_return(close, t, timedelta(hours=24)))
        got = fwd(sym, t)
        for g, w in zip(got, want, strict=True):
            assert (g is None and w is None) or g == pytest.approx(w, rel=1e-12), (t, got, want)
    assert fwd("NOPE/USDT:USDT", times[0]) == (None, None)
