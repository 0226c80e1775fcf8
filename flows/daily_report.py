"""daily_report: the day's stats post and a market pulse post (both through the outbox)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger

from agents.math_engine import score_snapshot
from core.settings import load_settings
from exchange.factory import build_source
from notify.daily_stats import compute_daily_stats, daily_stats_post
from notify.format import MarketPulse, daily_stats_key, market_pulse_key, market_pulse_post
from pipeline.broadcast import deliver
from pipeline.daily import day_equity_path
from store import outbox, repo
from store.db import get_session_factory, transaction
from store.models import AccountRow
from tasks.artifacts import publish_daily_artifact

BTC = "BTC/USDT:USDT"


def model_hits(s, day_start: datetime, day_end: datetime, source) -> dict[str, tuple[int, int]]:  # type: ignore[no-untyped-def]
    """Per member: (direction right at +24 h, directional votes) for votes cast in the day before `day_start`."""
    hits: dict[str, list[int]] = {}
    for v in repo.votes_table(s):
        if v.action not in ("LONG", "SHORT") or v.price_at_vote is None:
            continue
        if not (day_start - timedelta(days=1) <= v.as_of < day_start):
            continue
        if v.as_of + timedelta(hours=24) > day_end:  # its 24 h outcome is not known yet
            continue
        bars = source.bars_between(v.symbol, v.as_of, v.as_of + timedelta(hours=24))
        if len(bars) < 24:
            continue
        later = float(bars["close"].iloc[-1])
        right = (later > v.price_at_vote) == (v.action == "LONG")
        h = hits.setdefault(v.member_id, [0, 0])
        h[0] += int(right)
        h[1] += 1
    return {k: (a, b) for k, (a, b) in hits.items()}


def market_pulse(source, settings, as_of: datetime) -> MarketPulse:  # type: ignore[no-untyped-def]
    moves, funding = [], []
    btc_trend, regime = "unknown", "unknown"
    for sym in settings.symbols:
        try:
            snap = source.snapshot(sym, as_of)
        except Exception:  # noqa: BLE001 - a missing symbol is left out of the pulse
            continue
        close = snap.candles["1h"]["close"]
        if len(close) >= 25:
            moves.append((sym, float(close.iloc[-1] / close.iloc[-25] - 1) * 100))
        if snap.funding_rate is not None:
            funding.append((sym, snap.funding_rate))
        if sym == BTC:
            sc = score_snapshot(snap, settings.signal)
            btc_trend, regime = sc.trend.value, sc.vol_state.value
    moves.sort(key=lambda x: -abs(x[1]))
    funding.sort(key=lambda x: -abs(x[1]))
    return MarketPulse(as_of=as_of, regime=regime, btc_trend=btc_trend, top_movers=tuple(moves[:5]),
                       funding_extremes=tuple(funding[:3]))


def daily_run_name() -> str:
    from prefect.runtime import flow_run

    return f"daily-report-{(flow_run.parameters or {}).get('as_of') or 'now'}"


@flow(name="daily-report", flow_run_name=daily_run_name, log_prints=False)
def daily_report(as_of: str | None = None) -> dict[str, Any]:
    """The last complete UTC day's stats and a market pulse (`as_of` "next": the account's clock)."""
    logger = get_run_logger()
    settings = load_settings()
    source = build_source(settings)
    factory = get_session_factory(settings)
    if as_of in (None, "next") and hasattr(source, "check_as_of"):
        # replay: the account's own clock (the last decision time it was brought to), as every account
        # command reads "now"; without one, the last bundled bar
        with transaction(factory) as s:
            row = s.get(AccountRow, settings.mode)
            clock = None if row is None else row.clock
        t = clock if clock is not None else source.check_as_of(None).to_pydatetime()
    else:
        t = source.check_as_of(as_of).to_pydatetime() if hasattr(source, "check_as_of") else datetime.now(UTC)
    day_start = pd.Timestamp(t).floor("D").to_pydatetime()
    day = (day_start - timedelta(days=1)).date()  # report the last complete UTC day
    with transaction(factory) as s:
        closed = repo.closed_positions(s, settings.mode)
        # drawdown from the intraday path (hourly closes of the open positions), not only the snapshots
        # taken at cycle and monitor times
        curve = sorted(repo.equity_history(s, settings.mode)
                       + day_equity_path(s, source, settings.mode, day_start - timedelta(days=1), t))
        votes_hit = model_hits(s, day_start, t, source)
        stats = compute_daily_stats(closed, day, curve, votes_hit,
                                    pnl_of=lambda p: p.realised_pnl - p.fees_paid - p.funding_paid)
        outbox.enqueue(s, daily_stats_key(day), "daily_stats", daily_stats_post(stats))
        pulse = market_pulse(source, settings, t)
        outbox.enqueue(s, market_pulse_key(t), "market_pulse", market_pulse_post(pulse))
    delivery = deliver(factory, settings)
    logger.info("daily report for %s: %d trades, P&L %+.2f; market pulse: BTC %s, regime %s; delivery %s",
                day.isoformat(), stats.trades, stats.pnl, pulse.btc_trend, pulse.regime, delivery)
    res = {"day": day.isoformat(), "as_of": t.isoformat(), "trades": stats.trades, "pnl": stats.pnl,
           "max_drawdown_pct": stats.max_drawdown_pct, "delivery": delivery}
    publish_daily_artifact(res, stats, pulse)
    return res
