"""Pure formatting of channel posts as Telegram HTML (parse_mode="HTML").

Every dynamic value (symbols, reasons, model names, numbers) goes through `esc()` (html.escape), so
hostile text such as ``<script>``, ``&`` or unmatched Markdown characters (``*_[``) reaches readers
as literal text and can never break the message's markup. Only the fixed tags written here
(<b>, <i>, <code>) appear in the output. Every post is at most 4096 characters (Telegram's limit),
cut by `truncate_html()` without splitting an entity or leaving a tag open.

Nothing here does I/O or reads the clock.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from core.metrics import trade_outcome
from core.types import Decision, Position, PositionEvent, Side, TradePlan

TELEGRAM_LIMIT = 4096
DISCLAIMER = "Automated signal from a paper/experimental system. Not financial advice; trade at your own risk."


# ---------------------------------------------------------------------------------------- helpers


def esc(value: object) -> str:
    """Escape any value for Telegram HTML (&, <, >, and quotes)."""
    return html.escape(str(value), quote=True)


def display_symbol(symbol: str) -> str:
    """'BTC/USDT:USDT' -> 'BTC/USDT' (the settlement suffix is noise for readers)."""
    return symbol.split(":", 1)[0] if "/" in symbol else symbol


def fmt_price(value: float | Decimal | None) -> str:
    if value is None:
        return "—"
    v = float(value)
    if not math.isfinite(v):
        return "—"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.2f}"
    if a >= 10:
        return f"{v:.3f}"
    if a >= 1:
        return f"{v:.4f}"
    if a == 0:
        return "0"
    decimals = min(10, -math.floor(math.log10(a)) + 4)
    return f"{v:.{decimals}f}"


def fmt_pct(value: float | None, *, signed: bool = True, digits: int = 2) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:+.{digits}f}%" if signed else f"{value:.{digits}f}%"


def fmt_usd(value: float | None, *, signed: bool = True) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    sign = ("+" if value > 0 else "−" if value < 0 else "") if signed else ("−" if value < 0 else "")
    return f"{sign}${abs(value):,.2f}"


def fmt_r(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:+.2f}R"


def _pct_from(entry: float, price: float) -> float:
    return 0.0 if entry == 0 else (price - entry) / entry * 100.0


def _side_badge(side: Side | str) -> str:
    s = str(side.value if isinstance(side, Side) else side).upper()
    icon = "🟢" if s == "LONG" else "🔴" if s == "SHORT" else "⚪"
    return f"{icon} {esc(s)}"


_TOKEN = re.compile(r"<[^>]*>|&[#A-Za-z0-9]+;|[\s\S]", re.UNICODE)


def utf16_len(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def truncate_html(text: str, limit: int = TELEGRAM_LIMIT, ellipsis: str = "…") -> str:
    """Cut `text` to at most `limit` UTF-16 units without splitting an entity or leaving a tag open.

    Works on the simple HTML this module writes (tags and entities are atomic tokens); open tags are
    closed after the ellipsis.
    """
    if utf16_len(text) <= limit:
        return text
    out: list[str] = []
    stack: list[str] = []
    used = 0
    for m in _TOKEN.finditer(text):
        tok = m.group(0)
        closing = "".join(f"</{t}>" for t in reversed(stack))
        if tok.startswith("<") and len(tok) > 1 and tok.endswith(">"):
            name = re.match(r"</?\s*([A-Za-z0-9-]+)", tok)
            tag = name.group(1).lower() if name else ""
            if tok.startswith("</"):
                if stack and stack[-1] == tag:
                    stack.pop()
                out.append(tok)
                used += utf16_len(tok)
                continue
            # only open a tag if there is room to also close it and add the ellipsis
            need = utf16_len(tok) + len(f"</{tag}>") + utf16_len(closing) + utf16_len(ellipsis)
            if used + need > limit:
                break
            out.append(tok)
            used += utf16_len(tok)
            if not tok.endswith("/>"):
                stack.append(tag)
            continue
        size = utf16_len(tok)
        if used + size + utf16_len(closing) + utf16_len(ellipsis) > limit:
            break
        out.append(tok)
        used += size
    # drop a dangling empty tag we opened last
    while stack and out and out[-1].startswith(f"<{stack[-1]}"):
        out.pop()
        stack.pop()
    return "".join(out).rstrip() + ellipsis + "".join(f"</{t}>" for t in reversed(stack))


def _finish(lines: Iterable[str], limit: int = TELEGRAM_LIMIT) -> str:
    return truncate_html("\n".join(line for line in lines if line is not None), limit)


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


# ---------------------------------------------------------------------------------------- stats


@dataclass(frozen=True)
class ModelHitRate:
    member_id: str
    hits: int
    total: int

    @property
    def rate(self) -> float | None:
        return self.hits / self.total if self.total else None


@dataclass(frozen=True)
class DailyStats:
    day: date
    trades: int
    wins: int
    losses: int
    win_rate: float | None  # 0..1, None without trades
    profit_factor: float | None  # gross profit / gross loss; inf when no losing trade; None without trades
    pnl: float
    gross_profit: float
    gross_loss: float  # positive number
    best_trade: float | None
    worst_trade: float | None
    max_drawdown_usd: float  # positive number, peak-to-trough
    max_drawdown_pct: float | None  # from the equity curve when given
    model_hit_rates: tuple[ModelHitRate, ...] = ()
    draws: int = 0  # scratches within +-0.1R (core.metrics.trade_outcome), neither wins nor losses


def _dd_from_series(values: Sequence[float]) -> tuple[float, float | None]:
    """Max peak-to-trough drop in absolute units and as % of the peak."""
    peak = -math.inf
    dd_abs = 0.0
    dd_pct: float | None = None
    for v in values:
        peak = max(peak, v)
        drop = peak - v
        if drop > dd_abs:
            dd_abs = drop
        if peak > 0:
            pct = drop / peak * 100.0
            dd_pct = pct if dd_pct is None else max(dd_pct, pct)
    return dd_abs, dd_pct


def _utc_day(ts: datetime) -> date:
    from datetime import UTC

    return (ts.astimezone(UTC) if ts.tzinfo else ts).date()


def compute_daily_stats(
    closed_positions: list[Position],
    day: date,
    equity_curve: list[tuple[datetime, float]] | None = None,
    votes_hit: dict[str, tuple[int, int]] | None = None,
    *,
    pnl_of: Callable[[Position], float] = lambda p: p.realised_pnl,
) -> DailyStats:
    """Stats for the positions closed on `day` (UTC).

    - P&L of a trade is `pnl_of(position)`: by default `Position.realised_pnl` as recorded by the broker.
    - Wins, draws and losses as the trade records count them (`core.metrics.trade_outcome`: a scratch
      within ±0.1R of the position's initial risk is a draw); the win rate is wins / trades, and the
      post adds the rate without the scratches.
    - Profit factor = gross profit / gross loss (inf without losing trades, None without trades).
    - Max drawdown: from `equity_curve` points on `day` (absolute and % of the running peak) when given;
      else from the running sum of trade P&L in close order starting at 0 (absolute only).
    - Per-model hit rate: `votes_hit[member] = (hits, total)`, sorted by rate then name.
    """
    trades = sorted(
        (p for p in closed_positions if p.closed_at is not None and _utc_day(p.closed_at) == day),
        key=lambda p: p.closed_at,  # type: ignore[arg-type, return-value]
    )
    pnls = [float(pnl_of(p)) for p in trades]
    # wins, draws and losses as the trade records count them (a scratch within +-0.1R is a draw)
    outcomes = [trade_outcome(x, x / position_risk_usd(p) if position_risk_usd(p) > 0 else math.nan)
                for x, p in zip(pnls, trades, strict=True)]
    wins, losses, draws = outcomes.count("win"), outcomes.count("loss"), outcomes.count("draw")
    gross_profit = sum(x for x in pnls if x > 0)
    gross_loss = -sum(x for x in pnls if x < 0)
    if not pnls:
        pf: float | None = None
    elif gross_loss == 0:
        pf = math.inf if gross_profit > 0 else None
    else:
        pf = gross_profit / gross_loss
    if equity_curve:
        points = [v for ts, v in sorted(equity_curve) if _utc_day(ts) == day]
        dd_usd, dd_pct = _dd_from_series(points)
    else:
        running, curve = 0.0, [0.0]
        for x in pnls:
            running += x
            curve.append(running)
        dd_usd, _ = _dd_from_series(curve)
        dd_pct = None
    hits = tuple(
        sorted(
            (ModelHitRate(m, int(h), int(t)) for m, (h, t) in (votes_hit or {}).items()),
            key=lambda r: (-(r.rate if r.rate is not None else -1.0), r.member_id),
        )
    )
    return DailyStats(
        day=day,
        trades=len(pnls),
        wins=wins,
        losses=losses,
        draws=draws,
        win_rate=(wins / len(pnls)) if pnls else None,
        profit_factor=pf,
        pnl=sum(pnls),
        gross_profit=gross_profit,
        gross_loss=gross_loss,
        best_trade=max(pnls) if pnls else None,
        worst_trade=min(pnls) if pnls else None,
        max_drawdown_usd=dd_usd,
        max_drawdown_pct=dd_pct,
        model_hit_rates=hits,
    )


def _fmt_pf(pf: float | None) -> str:
    if pf is None:
        return "—"
    if math.isinf(pf):
        return "∞"
    return f"{pf:.2f}"


def daily_stats_post(stats: DailyStats, *, limit: int = TELEGRAM_LIMIT) -> str:
    lines = [f"<b>📊 Daily stats · {esc(stats.day.isoformat())}</b>"]
    if stats.trades == 0:
        lines.append("No trades closed today.")
    else:
        wr = f"{stats.win_rate * 100:.0f}%" if stats.win_rate is not None else "—"
        if stats.draws and stats.wins + stats.losses:
            wr += f" ({stats.wins / (stats.wins + stats.losses) * 100:.0f}% without scratches)"
        lines += [
            f"Trades: <b>{stats.trades}</b> · wins {stats.wins} · draws {stats.draws} · losses {stats.losses} · "
            f"win rate <b>{esc(wr)}</b>",
            f"P&amp;L: <b>{esc(fmt_usd(stats.pnl))}</b> · profit factor <b>{esc(_fmt_pf(stats.profit_factor))}</b>",
            f"Best {esc(fmt_usd(stats.best_trade))} · worst {esc(fmt_usd(stats.worst_trade))}",
        ]
    dd = f"Max drawdown: {esc(fmt_usd(-stats.max_drawdown_usd) if stats.max_drawdown_usd else fmt_usd(0.0))}"
    if stats.max_drawdown_pct is not None:
        dd += f" ({esc(fmt_pct(-stats.max_drawdown_pct) if stats.max_drawdown_pct else '0.00%')})"
    lines.append(dd)
    if stats.model_hit_rates:
        lines.append("")
        lines.append("<b>Model hit rate</b>")
        for r in stats.model_hit_rates:
            rate = f"{r.rate * 100:.0f}%" if r.rate is not None else "—"
            lines.append(f"• {esc(r.member_id)}: {esc(rate)} ({r.hits}/{r.total})")
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


def strip_tags(text: str) -> str:
    """Plain text of a post (for the console)."""
    return html.unescape(re.sub(r"<[^>]+>", "", text))
