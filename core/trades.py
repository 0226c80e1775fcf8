"""Closed trades: :class:`TradeRecord` (a whole position, partial exits folded together), how a trade
counts (win, loss or draw) and the folding of closed :class:`core.types.Position` s into records."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from core.jsonsafe import json_safe
from core.types import Position, Side


@dataclass(frozen=True)
class TradeRecord:
    """One closed trade (a whole position, all its partial exits folded together).

    ``entry``/``exit`` are average prices; ``qty`` the initial quantity (base units); ``pnl`` is net
    of ``fees`` and ``funding`` (``funding`` > 0 means paid); ``r_multiple`` = ``pnl`` / initial risk
    (``|entry - initial_stop| * qty``), ``nan`` when the risk is unknown or zero.
    """

    symbol: str
    side: Side
    opened_at: datetime
    closed_at: datetime
    entry: float
    exit: float
    qty: float
    pnl: float
    fees: float = 0.0
    funding: float = 0.0
    r_multiple: float = math.nan
    reason: str = ""
    position_id: str = ""

    @property
    def outcome(self) -> str:
        """``win`` | ``draw`` | ``loss``: see :func:`trade_outcome`."""
        return trade_outcome(self.pnl, self.r_multiple)

    @property
    def gross_pnl(self) -> float:
        """Price PnL before fees and funding."""
        return self.pnl + self.fees + self.funding

    @property
    def duration(self) -> timedelta:
        return self.closed_at - self.opened_at

    def to_dict(self) -> dict[str, Any]:
        """The one trade row of every view (``quorum trades --json``, ``quorum export``, the report)."""
        return json_safe(
            {
                "position_id": self.position_id,
                "symbol": self.symbol,
                "side": str(self.side.value if isinstance(self.side, Side) else self.side),
                "opened_at": self.opened_at,
                "closed_at": self.closed_at,
                "entry": self.entry,
                "exit": self.exit,
                "qty": self.qty,
                "pnl": self.pnl,
                "fees": self.fees,
                "funding": self.funding,
                "r_multiple": self.r_multiple,
                "reason": self.reason,
                "outcome": self.outcome,
            }
        )


# A trade within +-SCRATCH_R of its initial risk is a draw (a scratch): freqtrade counts a draw at a
# profit of exactly 0, but with fees and funding a breakeven exit is never exactly 0, and counting
# those scratches as wins inflated the win rate.
SCRATCH_R = 0.1


def trade_outcome(pnl: float, r_multiple: float = math.nan) -> str:
    """``draw`` when ``|r_multiple| < SCRATCH_R`` (or, with no known risk, when the net pnl is 0),
    else ``win`` (net pnl > 0) or ``loss``."""
    if math.isfinite(r_multiple):
        if abs(r_multiple) < SCRATCH_R:
            return "draw"
    elif pnl == 0:
        return "draw"
    return "win" if pnl > 0 else "loss"


def trade_records_from_positions(
    positions: Iterable[Position], *, realised_is_net: bool = False
) -> list[TradeRecord]:
    """Fold closed :class:`core.types.Position` objects into :class:`TradeRecord` s.

    Open positions (``closed_at is None``) are skipped. Output is sorted by (closed_at, opened_at,
    symbol, id) so it is deterministic.

    Convention: by default ``Position.realised_pnl`` is the PRICE PnL summed over all partial exits
    (gross of fees and funding, which the position tracks separately in ``fees_paid`` and
    ``funding_paid``). Pass ``realised_is_net=True`` if the producer already subtracted them.

    * net ``pnl`` = gross - fees_paid - funding_paid
    * average ``exit`` = ``extra["exit_avg"]`` (or ``extra["exit_price"]``) when the producer stored
      it, else derived from the gross PnL: ``entry + gross / (sign * qty_initial)``
    * ``r_multiple`` = net pnl / (|entry - initial_stop| * qty_initial); ``nan`` when that risk is 0.
    """
    out: list[tuple[tuple[Any, ...], TradeRecord]] = []
    for p in positions:
        if p.closed_at is None:
            continue
        qty = float(p.qty_initial)
        fees = float(p.fees_paid)
        funding = float(p.funding_paid)
        realised = float(p.realised_pnl)
        if realised_is_net:
            net = realised
            gross = realised + fees + funding
        else:
            gross = realised
            net = realised - fees - funding
        side = Side(p.side)
        exit_px = p.extra.get("exit_avg", p.extra.get("exit_price")) if p.extra else None
        if exit_px is None:
            exit_px = p.entry + gross / (side.sign * qty) if qty else p.entry
        risk = abs(p.entry - p.initial_stop) * qty
        r_mult = net / risk if risk > 0 else math.nan
        rec = TradeRecord(
            symbol=p.symbol,
            side=side,
            opened_at=p.opened_at,
            closed_at=p.closed_at,
            entry=float(p.entry),
            exit=float(exit_px),
            qty=qty,
            pnl=net,
            fees=fees,
            funding=funding,
            r_multiple=r_mult,
            reason=p.exit_reason or "",
            position_id=p.id,
        )
        out.append(((p.closed_at, p.opened_at, p.symbol, p.id), rec))
    out.sort(key=lambda kv: kv[0])
    return [rec for _, rec in out]


# --------------------------------------------------------------------------------------------------
# Equity-curve statistics
