"""Pure formatting of channel posts as Telegram HTML (parse_mode="HTML").

Every dynamic value (symbols, reasons, model names, numbers) goes through `esc()` (html.escape), so
hostile text such as ``<script>``, ``&`` or unmatched Markdown characters (``*_[``) reaches readers
as literal text and can never break the message's markup. Only the fixed tags written here
(<b>, <i>, <code>) appear in the output. Every post is at most 4096 characters (Telegram's limit),
cut by `truncate_html()` without splitting an entity or leaving a tag open. The escaping, number and
truncation helpers are in `notify.telegram_html`, the daily stats post in `notify.daily_stats`; here are
the entry, update/exit and market-pulse posts and the outbox keys of every post.

Nothing here does I/O or reads the clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from core.types import Decision, Position, PositionEvent, TradePlan
from notify.telegram_html import (
    TELEGRAM_LIMIT,
    _finish,
    _pct_from,
    _side_badge,
    display_symbol,
    esc,
    fmt_pct,
    fmt_price,
    fmt_r,
    fmt_usd,
)

DISCLAIMER = "Automated signal from a paper/experimental system. Not financial advice; trade at your own risk."


# ---------------------------------------------------------------------------------------- entry


def consensus_line(decision: Decision) -> str:
    """One line: panel support, the tally and who dissented."""
    if decision.fallback_to_math or decision.votes_valid == 0:
        head = f"Panel: no quorum ({decision.votes_valid}/{decision.votes_total} valid), math engine decided"
    else:
        head = f"Panel: {decision.votes_valid}/{decision.votes_total} valid"
        if decision.tally:
            parts = [f"{esc(k)} {float(v):.2f}" for k, v in sorted(decision.tally.items(), key=lambda kv: -kv[1])]
            head += " · " + " / ".join(parts)
    dissent = ", ".join(esc(d) for d in decision.dissent) if decision.dissent else "none"
    return f"{head} · dissent: {dissent}"


def entry_post(
    plan: TradePlan,
    decision: Decision,
    *,
    disclaimer: str = DISCLAIMER,
    limit: int = TELEGRAM_LIMIT,
) -> str:
    entry = plan.entry
    reason = (plan.reason or decision.reason or "").strip().splitlines()
    reason_line = reason[0] if reason else "—"
    tp1_share = int(round(plan.tp1_fraction * 100))
    lines = [
        f"<b>{_side_badge(plan.side)} {esc(display_symbol(plan.symbol))}</b>",
        f"Confidence: <b>{decision.confidence * 100:.0f}%</b> · math {decision.math_score:+.2f} · "
        f"combined {decision.combined_score:+.2f}",
        consensus_line(decision),
        "",
        f"Entry: <code>{esc(fmt_price(entry))}</code>",
        f"Stop: <code>{esc(fmt_price(plan.stop))}</code> ({esc(fmt_pct(_pct_from(entry, plan.stop)))})",
        f"TP1: <code>{esc(fmt_price(plan.tp1))}</code> ({esc(fmt_pct(_pct_from(entry, plan.tp1)))}) "
        f"· close {tp1_share}%",
        f"TP2: <code>{esc(fmt_price(plan.tp2))}</code> ({esc(fmt_pct(_pct_from(entry, plan.tp2)))}) "
        f"· close the rest",
        f"Leverage: {int(plan.leverage)}× · Risk: {esc(fmt_pct(plan.risk_pct, signed=False))} of equity",
        "",
        f"<i>{esc(reason_line)}</i>",
        "",
        f"<i>{esc(disclaimer)}</i>" if disclaimer else None,
    ]
    return _finish([x for x in lines if x is not None], limit)


# ---------------------------------------------------------------------------------------- events

EXIT_KINDS = frozenset({"tp2", "stop", "breakeven_stop", "trailing_stop", "stale", "time", "news", "liquidation",
                        "manual", "data_end"})


def post_kind_for_event(event: PositionEvent, position: Position | None = None) -> str | None:
    """The outbox kind for a position event, or None for events that are not posted (opened, funding)."""
    k = event.kind
    if k in ("tp1", "tp2", "stop", "breakeven_stop", "trailing_stop", "stale", "time", "news"):
        return k
    if k == "stop_moved":
        phase = position.phase if position is not None else ""
        reason = (event.reason or "").lower()
        if phase == "trailing" or "trail" in reason:
            return "trailing"
        return "breakeven"
    if k in ("liquidation", "manual"):
        return "exit"
    return None


_TITLES = {
    "tp1": "✅ TP1 hit",
    "tp2": "🎯 TP2 hit, trade closed",
    "breakeven": "🛡 Stop moved to breakeven",
    "trailing": "📈 Trailing stop moved",
    "stop": "🛑 Stopped out",
    "breakeven_stop": "🛡 Breakeven stop hit, trade closed",
    "trailing_stop": "📈 Trailing stop hit, trade closed",
    "stale": "⌛ Stale exit",
    "time": "⏱ Time exit",
    "news": "📰 News exit",
    "exit": "⏹ Position closed",
}


def position_risk_usd(position: Position) -> float:
    return abs(position.entry - position.initial_stop) * float(position.qty_initial)


def event_post(event: PositionEvent, position: Position, *, limit: int = TELEGRAM_LIMIT) -> str:
    """An update or exit post (sent as a reply to the entry post), with realised R and P&L."""
    kind = post_kind_for_event(event, position) or "exit"
    title = _TITLES.get(kind, "⏹ Position update")
    if event.kind == "liquidation":
        title = "💥 Liquidated"
    lines = [f"<b>{esc(title)}</b> · {esc(display_symbol(position.symbol))} {_side_badge(position.side)}"]
    entry = position.entry
    if event.kind == "stop_moved":
        old = event.old_stop
        new = event.new_stop if event.new_stop is not None else position.stop
        move = f"<code>{esc(fmt_price(old))}</code> → " if old is not None else ""
        lines.append(f"Stop: {move}<code>{esc(fmt_price(new))}</code> ({esc(fmt_pct(_pct_from(entry, new)))} from entry)")
        lines.append(f"Price: <code>{esc(fmt_price(event.price))}</code>")
    else:
        qty = float(event.qty)
        share = ""
        if qty > 0 and float(position.qty_initial) > 0:
            share = f"{qty / float(position.qty_initial) * 100:.0f}% "
        lines.append(
            f"Closed {esc(share)}at <code>{esc(fmt_price(event.price))}</code> "
            f"({esc(fmt_pct(_pct_from(entry, event.price) * position.side.sign))} on entry "
            f"<code>{esc(fmt_price(entry))}</code>)"
        )
        lines.append(f"Realised: <b>{esc(fmt_r(event.r_multiple))}</b> · price P&amp;L <b>{esc(fmt_usd(event.pnl))}</b>")
        if kind == "tp1":
            lines.append(f"Stop now <code>{esc(fmt_price(position.stop))}</code> · rest rides to TP2 "
                         f"<code>{esc(fmt_price(position.tp2))}</code>")
        closed = position.closed_at is not None or (event.kind in EXIT_KINDS and position.qty_open == 0)
        if closed:
            # net of fees and funding, as `quorum trades` and the exports report it
            risk = position_risk_usd(position)
            net = position.realised_pnl - position.fees_paid - position.funding_paid
            total_r = net / risk if risk > 0 else None
            costs = []
            if position.fees_paid:
                costs.append(f"fees {esc(fmt_usd(position.fees_paid, signed=False))}")
            if position.funding_paid:
                costs.append(f"funding {esc(fmt_usd(position.funding_paid, signed=False))}" if position.funding_paid > 0
                             else f"funding received {esc(fmt_usd(-position.funding_paid, signed=False))}")
            lines.append(
                f"Trade total: <b>{esc(fmt_usd(net))}</b>"
                + (f" ({esc(fmt_r(total_r))})" if total_r is not None else "")
                + (f" net of {' and '.join(costs)}" if costs else "")
            )
    if event.reason:
        lines.append(f"<i>{esc(event.reason.strip())}</i>")
    return _finish(lines, limit)


# ---------------------------------------------------------------------------------------- pulse


@dataclass(frozen=True)
class MarketPulse:
    as_of: datetime
    regime: str  # e.g. NORMAL / DIGESTING / PANIC
    btc_trend: str  # e.g. TREND_UP / TREND_DOWN / RANGE
    btc_change_24h_pct: float | None = None
    top_movers: tuple[tuple[str, float], ...] = ()  # (symbol, 24h change %)
    funding_extremes: tuple[tuple[str, float], ...] = ()  # (symbol, funding rate per 8h as a fraction)
    note: str = ""


def market_pulse_post(pulse: MarketPulse, *, limit: int = TELEGRAM_LIMIT) -> str:
    stamp = pulse.as_of.strftime("%Y-%m-%d %H:%M UTC")
    btc = esc(pulse.btc_trend)
    if pulse.btc_change_24h_pct is not None:
        btc += f" ({esc(fmt_pct(pulse.btc_change_24h_pct))} 24h)"
    lines = [
        f"<b>🌐 Market pulse · {esc(stamp)}</b>",
        f"Regime: <b>{esc(pulse.regime)}</b> · BTC: <b>{btc}</b>",
    ]
    if pulse.top_movers:
        lines.append("")
        lines.append("<b>Top movers</b>")
        for sym, chg in pulse.top_movers:
            lines.append(f"• {esc(display_symbol(sym))} {esc(fmt_pct(chg))}")
    if pulse.funding_extremes:
        lines.append("")
        lines.append("<b>Funding extremes</b> (per 8h)")
        for sym, rate in pulse.funding_extremes:
            lines.append(f"• {esc(display_symbol(sym))} {esc(fmt_pct(rate * 100, digits=3))}")
    if pulse.note:
        lines.append("")
        lines.append(f"<i>{esc(pulse.note)}</i>")
    return _finish(lines, limit)


# ---------------------------------------------------------------------------------------- keys


def entry_key(cycle_id: str, symbol: str) -> str:
    return f"{cycle_id}:{symbol}:entry"


def entry_key_for(position: Position) -> str | None:
    """The key of a position's entry post: `extra["entry_post_key"]` when recorded, else from its cycle."""
    explicit = position.extra.get("entry_post_key") if position.extra else None
    if explicit:
        return str(explicit)
    return entry_key(position.cycle_id, position.symbol) if position.cycle_id else None


def event_key(position_id: str, kind: str, ts: datetime | None = None) -> str:
    """Key of an update post; stop moves can repeat, so they carry the event time."""
    if kind in ("breakeven", "trailing") and ts is not None:
        return f"{position_id}:{kind}:{ts.strftime('%Y%m%dT%H%M%S')}"
    return f"{position_id}:{kind}"


def daily_stats_key(day: date) -> str:
    return f"daily_stats:{day.isoformat()}"


def market_pulse_key(as_of: datetime) -> str:
    return f"market_pulse:{as_of.strftime('%Y-%m-%dT%H')}"
