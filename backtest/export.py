"""Exports of closed trades and of the decision audit trail: ``json | csv | tax | audit``.

All functions take already-loaded plain data (:class:`core.metrics.TradeRecord` s and
:class:`AuditRow` s); the CLI / API layer loads them from the database. Output is deterministic:
fixed column order, rows sorted by time, datetimes in ISO 8601 UTC, nan/inf written as empty cells
(CSV) or ``null`` (JSON).

Trade rows (:func:`trade_row`) have the field names of ``TradeRecord.to_dict()`` -- the same as
``quorum trades --json`` -- and are rounded by kind (:data:`MONEY_DP`): P&L, proceeds, cost basis and
gain to the cent, fees and funding to 6 dp (often fractions of a cent on small trades), prices at the
market's tick when known (else 8 significant digits), quantities at the market's step when known,
R multiples and holding days to 4 dp. The tax gain is rounded from the unrounded values, so it equals
the rounded net pnl.

Tax CSV convention (one row per closed position; fees and funding are separate columns and the gain is
net of both):

* LONG: ``date_acquired`` = open date, ``date_sold`` = close date, ``proceeds`` = exit x qty (the
  sale), ``cost_basis`` = entry x qty (the purchase).
* SHORT: the sale comes first. ``date_acquired`` = open date, ``date_sold`` = close date (the dates of
  the position, so the holding period reads naturally), ``proceeds`` = entry x qty (the sale at
  entry), ``cost_basis`` = exit x qty (the buy-back at exit).
* ``gain = proceeds - cost_basis - fees - funding`` (funding > 0 = paid), which equals the trade's net
  ``pnl``. Quantities and prices are in the quote currency of the contract (USDT for ``BTC/USDT:USDT``).
  This is a convenience view for an accountant, not tax advice; jurisdictions treat futures differently.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any, Literal, TextIO

import pandas as pd

from core.metrics import TradeRecord, json_safe
from core.types import Side

__all__ = [
    "AUDIT_COLUMNS",
    "TAX_COLUMNS",
    "TRADE_COLUMNS",
    "AuditFill",
    "AuditOrder",
    "AuditRow",
    "AuditVote",
    "audit_rows_to_csv",
    "export_to_string",
    "export_trades",
    "tax_rows",
    "trade_row",
    "trades_to_csv",
    "trades_to_json",
]

ExportFormat = Literal["json", "csv", "tax", "audit"]

TRADE_COLUMNS: tuple[str, ...] = (
    "position_id",
    "symbol",
    "side",
    "opened_at",
    "closed_at",
    "entry",
    "exit",
    "qty",
    "pnl",
    "fees",
    "funding",
    "r_multiple",
    "reason",
    "outcome",
)
# decimals of money fields by kind (quote currency, USDT)
MONEY_DP: Mapping[str, int] = {"pnl": 2, "proceeds": 2, "cost_basis": 2, "gain": 2, "fees": 6, "funding": 6}
RATIO_DP = 4  # r_multiple, holding_days
TAX_COLUMNS: tuple[str, ...] = (
    "date_acquired",
    "date_sold",
    "asset",
    "symbol",
    "side",
    "quantity",
    "proceeds",
    "cost_basis",
    "fees",
    "funding",
    "gain",
    "holding_days",
)
AUDIT_COLUMNS: tuple[str, ...] = (
    "cycle_id",
    "time",
    "symbol",
    "math_score",
    "math_components",
    "votes",
    "votes_valid",
    "votes_total",
    "consensus_action",
    "consensus_confidence",
    "dissent",
    "risk_approved",
    "risk_reasons",
    "orders",
    "fills",
    "traded",
    "note",
)


# --------------------------------------------------------------------------------------------------
# audit rows (plain data the lead builds from the database)


@dataclass(frozen=True)
class AuditVote:
    member_id: str
    action: str | None  # LONG | SHORT | WAIT, None when abstained
    confidence: float = 0.0
    rationale: str = ""
    abstain_reason: str | None = None
    model: str = ""
    latency_s: float | None = None
    cost_usd: float | None = None


@dataclass(frozen=True)
class AuditOrder:
    order_id: str
    side: str  # buy | sell
    kind: str  # market | limit | stop | ...
    qty: float
    price: float | None = None
    status: str = ""
    reduce_only: bool = False


@dataclass(frozen=True)
class AuditFill:
    ts: datetime
    side: str
    kind: str  # open | close
    qty: float
    price: float
    fee: float = 0.0
    reason: str = ""


@dataclass(frozen=True)
class AuditRow:
    """Why we traded (or did not) one symbol in one cycle."""

    cycle_id: str
    time: datetime
    symbol: str
    math_score: float | None
    math_components: Mapping[str, float] = field(default_factory=dict)
    votes: Sequence[AuditVote] = ()
    consensus_action: str = "WAIT"
    consensus_confidence: float | None = None
    dissent: Sequence[str] = ()  # member ids that disagreed with the consensus
    risk_approved: bool | None = None  # None when risk was not consulted (e.g. WAIT)
    risk_reasons: Sequence[str] = ()
    orders: Sequence[AuditOrder] = ()
    fills: Sequence[AuditFill] = ()
    note: str = ""


# --------------------------------------------------------------------------------------------------
# helpers


def _iso(t: datetime | pd.Timestamp | None) -> str:
    if t is None:
        return ""
    ts = pd.Timestamp(t)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.isoformat()


def _date(t: datetime) -> str:
    return _iso(t)[:10]


def _num(x: Any) -> str:
    if x is None:
        return ""
    f = float(x)
    return repr(f) if math.isfinite(f) else ""


def _side(s: Side | str) -> str:
    return str(getattr(s, "value", s))


def _asset(symbol: str) -> str:
    """Base asset of a ccxt symbol: ``BTC/USDT:USDT`` -> ``BTC``."""
    return symbol.split("/", 1)[0].split(":", 1)[0]


def _sorted(trades: Sequence[TradeRecord]) -> list[TradeRecord]:
    return sorted(trades, key=lambda t: (_iso(t.closed_at), _iso(t.opened_at), t.symbol, _side(t.side)))


def _compact(obj: Any) -> str:
    return json.dumps(
        json_safe(obj), sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False
    )


def _write_csv(out: str | Path | TextIO, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    def emit(fh: TextIO) -> None:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)

    if isinstance(out, (str, Path)):
        with Path(out).open("w", encoding="utf-8", newline="") as fh:
            emit(fh)
    else:
        emit(out)


def _write_text(out: str | Path | TextIO, text: str) -> None:
    if isinstance(out, (str, Path)):
        Path(out).write_text(text, encoding="utf-8")
    else:
        out.write(text)


# --------------------------------------------------------------------------------------------------
# trades


Precision = Mapping[str, tuple[Decimal | None, Decimal | None]]  # symbol -> (price tick, qty step)


def _round_dp(x: Any, dp: int) -> float | None:
    if x is None:
        return None
    f = float(x)
    if not math.isfinite(f):
        return None
    r = round(f, dp)
    return 0.0 if r == 0 else r  # no -0.0


def _round_step(x: Any, step: Decimal | None, sig: int = 8) -> float | None:
    """At the step (half-even) when known, else `sig` significant digits."""
    if x is None:
        return None
    f = float(x)
    if not math.isfinite(f):
        return None
    if step is not None and step > 0:
        q = (Decimal(repr(f)) / step).quantize(Decimal(1), rounding=ROUND_HALF_EVEN) * step
        return float(q.normalize())
    return float(f"{f:.{sig}g}")


def trade_row(t: TradeRecord, precision: Precision | None = None) -> dict[str, Any]:
    """A closed trade as exported and as ``quorum trades`` prints it: the keys of
    ``TradeRecord.to_dict()``, rounded by kind (see the module docstring)."""
    tick, step = (precision or {}).get(t.symbol, (None, None))
    d = t.to_dict()
    d["entry"], d["exit"] = _round_step(t.entry, tick), _round_step(t.exit, tick)
    d["qty"] = _round_step(t.qty, step, sig=12)
    for k in ("pnl", "fees", "funding"):
        d[k] = _round_dp(getattr(t, k), MONEY_DP[k])
    d["r_multiple"] = _round_dp(t.r_multiple, RATIO_DP)
    return d


def trades_to_json(trades: Sequence[TradeRecord], precision: Precision | None = None) -> str:
    """``{"trades": [...], "count": n}``, sorted keys, 2-space indent, trades sorted by close time."""
    doc = {"count": len(trades), "trades": [trade_row(t, precision) for t in _sorted(trades)]}
    return json.dumps(doc, sort_keys=True, indent=2, allow_nan=False) + "\n"


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return _num(v)
    return str(v)


def trades_to_csv(trades: Sequence[TradeRecord], out: str | Path | TextIO,
                  precision: Precision | None = None) -> None:
    rows = [trade_row(t, precision) for t in _sorted(trades)]
    _write_csv(out, TRADE_COLUMNS, [[_cell(r[c]) for c in TRADE_COLUMNS] for r in rows])


def tax_rows(trades: Sequence[TradeRecord], precision: Precision | None = None,
             rounded: bool = False) -> list[dict[str, Any]]:
    """One dict per trade with :data:`TAX_COLUMNS` (numbers as floats; `rounded`: as exported);
    see the module docstring."""
    rows = []
    for t in _sorted(trades):
        buy, sell = t.entry * t.qty, t.exit * t.qty
        if _side(t.side) == "SHORT":
            proceeds, cost = buy, sell  # sold at entry, bought back at exit
        else:
            proceeds, cost = sell, buy
        rows.append(
            {
                "date_acquired": _date(t.opened_at),
                "date_sold": _date(t.closed_at),
                "asset": _asset(t.symbol),
                "symbol": t.symbol,
                "side": _side(t.side),
                "quantity": t.qty,
                "proceeds": proceeds,
                "cost_basis": cost,
                "fees": t.fees,
                "funding": t.funding,
                "gain": proceeds - cost - t.fees - t.funding,
                "holding_days": (pd.Timestamp(t.closed_at) - pd.Timestamp(t.opened_at)).total_seconds()
                / 86400.0,
            }
        )
        if rounded:
            r = rows[-1]
            r["quantity"] = _round_step(t.qty, (precision or {}).get(t.symbol, (None, None))[1], sig=12)
            for k in ("proceeds", "cost_basis", "fees", "funding", "gain"):
                r[k] = _round_dp(r[k], MONEY_DP[k])
            r["holding_days"] = _round_dp(r["holding_days"], RATIO_DP)
    return rows


def _tax_csv(trades: Sequence[TradeRecord], out: str | Path | TextIO, precision: Precision | None = None) -> None:
    rows = [[_cell(r[c]) for c in TAX_COLUMNS] for r in tax_rows(trades, precision, rounded=True)]
    _write_csv(out, TAX_COLUMNS, rows)


# --------------------------------------------------------------------------------------------------
# audit


def _audit_cells(r: AuditRow) -> list[str]:
    votes = [
        {
            "member": v.member_id,
            "action": v.action,
            "confidence": v.confidence,
            "rationale": v.rationale,
            **({"abstain_reason": v.abstain_reason} if v.abstain_reason else {}),
            **({"model": v.model} if v.model else {}),
            **({"latency_s": v.latency_s} if v.latency_s is not None else {}),
            **({"cost_usd": v.cost_usd} if v.cost_usd is not None else {}),
        }
        for v in sorted(r.votes, key=lambda v: v.member_id)
    ]
    orders = [
        {
            "id": o.order_id,
            "side": o.side,
            "kind": o.kind,
            "qty": o.qty,
            "price": o.price,
            "status": o.status,
            "reduce_only": o.reduce_only,
        }
        for o in r.orders
    ]
    fills = [
        {
            "ts": _iso(f.ts),
            "side": f.side,
            "kind": f.kind,
            "qty": f.qty,
            "price": f.price,
            "fee": f.fee,
            "reason": f.reason,
        }
        for f in sorted(r.fills, key=lambda f: _iso(f.ts))
    ]
    valid = sum(1 for v in r.votes if v.action is not None and not v.abstain_reason)
    return [
        r.cycle_id,
        _iso(r.time),
        r.symbol,
        _num(r.math_score),
        _compact({k: r.math_components[k] for k in sorted(r.math_components)}),
        _compact(votes),
        str(valid),
        str(len(r.votes)),
        r.consensus_action,
        _num(r.consensus_confidence),
        ";".join(r.dissent),
        "" if r.risk_approved is None else ("true" if r.risk_approved else "false"),
        ";".join(r.risk_reasons),
        _compact(orders),
        _compact(fills),
        "true" if r.fills else "false",
        r.note,
    ]


def audit_rows_to_csv(rows: Sequence[AuditRow], out: str | Path | TextIO) -> None:
    """One CSV row per (cycle, symbol), sorted by (time, cycle_id, symbol). Structured cells (math
    components, votes, orders, fills) are compact JSON; lists of reasons / dissenters are ``;``-joined.
    """
    ordered = sorted(rows, key=lambda r: (_iso(r.time), r.cycle_id, r.symbol))
    _write_csv(out, AUDIT_COLUMNS, [_audit_cells(r) for r in ordered])


# --------------------------------------------------------------------------------------------------
# entry point


def export_trades(
    trades: Sequence[TradeRecord],
    fmt: ExportFormat,
    out: str | Path | TextIO,
    *,
    audit_rows: Sequence[AuditRow] | None = None,
    precision: Precision | None = None,
) -> None:
    """Write ``trades`` as ``json`` / ``csv`` / ``tax`` CSV to ``out`` (a path or an open text stream).
    ``precision`` maps a symbol to its (price tick, qty step) for the rounding of prices and quantities.

    ``fmt="audit"`` writes the decision audit trail instead and needs ``audit_rows`` (``trades`` is
    ignored then; pass ``[]``).
    """
    if fmt == "json":
        _write_text(out, trades_to_json(trades, precision))
    elif fmt == "csv":
        trades_to_csv(trades, out, precision)
    elif fmt == "tax":
        _tax_csv(trades, out, precision)
    elif fmt == "audit":
        if audit_rows is None:
            raise ValueError("fmt='audit' needs audit_rows")
        audit_rows_to_csv(audit_rows, out)
    else:
        raise ValueError(f"unknown export format {fmt!r}; expected json, csv, tax or audit")


def export_to_string(
    trades: Sequence[TradeRecord], fmt: ExportFormat, *, audit_rows: Sequence[AuditRow] | None = None,
    precision: Precision | None = None,
) -> str:
    """Same as :func:`export_trades` into a string (for an API response or a Prefect artifact)."""
    buf = io.StringIO()
    export_trades(trades, fmt, buf, audit_rows=audit_rows, precision=precision)
    return buf.getvalue()
