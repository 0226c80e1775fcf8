"""The daily stats post: the day's closed trades, win/loss/draw counts, PnL, profit factor, drawdown
and each panel model's hit rate (:class:`DailyStats`, `compute_daily_stats`, `daily_stats_post`).
Pure: no I/O, no clock."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from core.trades import trade_outcome
from core.types import Position
from notify.format import position_risk_usd
from notify.telegram_html import TELEGRAM_LIMIT, _finish, esc, fmt_pct, fmt_usd


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
    draws: int = 0  # scratches within +-0.1R (core.trades.trade_outcome), neither wins nor losses


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
    - Wins, draws and losses as the trade records count them (`core.trades.trade_outcome`: a scratch
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
