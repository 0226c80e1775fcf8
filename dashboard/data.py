"""What the dashboard shows, read from the store (plain dicts, JSON-safe): the pages and the JSON API
render the same data. The account summary, the halts, close-all, the live leaderboard and the exports
are the project's own functions (pipeline/, store.repo, backtest/); nothing here re-implements them.

Every function takes a `Ctx` (settings, the reports directory, and the database and market data
opened lazily: an unreachable database raises `core.errors.StorageError`, which the app turns into
a clear page)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from core.settings import Settings
from store import repo
from store.db import get_session_factory, transaction
from store.models import (
    AccountRow,
    CandidateRow,
    CycleRow,
    DecisionRow,
    FillRow,
    OrderRow,
    PositionEventRow,
    PositionRow,
    RiskVerdictRow,
    ScoreRow,
    VoteRow,
)

REPORT_NAME = re.compile(r"^backtest-[A-Za-z0-9_.:-]+$")
EXIT_KINDS = ("stop", "breakeven", "trailing", "tp1", "tp2", "stale", "time", "news", "liquidation", "manual")


class NotFound(LookupError):
    """Something the page or API call names does not exist (a 404)."""


@dataclass
class Ctx:
    settings: Settings
    reports_dir: Path
    _source: Any = field(default=None, repr=False)
    _board: tuple[Any, list[dict[str, Any]]] | None = field(default=None, repr=False)

    @property
    def mode(self) -> str:
        return self.settings.mode

    def factory(self) -> Any:
        return get_session_factory(self.settings)  # cached engine; StorageError when unreachable

    def source(self) -> Any:
        if self._source is None:
            from exchange.factory import build_source

            self._source = build_source(self.settings)
        return self._source


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


def _num(x: Any) -> float | None:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def now(ctx: Ctx) -> datetime:
    """'Now' for the account: the wall clock with live data; in replay, the account's own clock (the
    last decision time it was brought to), else the last bundled bar (as the CLI's account commands)."""
    src = ctx.source()
    if not hasattr(src, "default_as_of"):
        return datetime.now(UTC)
    with transaction(ctx.factory()) as s:
        row = s.get(AccountRow, ctx.mode)
        if row is not None and row.clock is not None:
            return row.clock
    return src.default_as_of().to_pydatetime()


# ---- overview --------------------------------------------------------------------------------
def counts(ctx: Ctx) -> dict[str, int]:
    with transaction(ctx.factory()) as s:
        n_cycles = int(s.scalar(select(func.count()).select_from(CycleRow).where(CycleRow.mode == ctx.mode)) or 0)
        n_trades = int(s.scalar(select(func.count()).select_from(PositionRow).where(
            PositionRow.mode == ctx.mode, PositionRow.closed_at.is_not(None))) or 0)
        n_open = int(s.scalar(select(func.count()).select_from(PositionRow).where(
            PositionRow.mode == ctx.mode, PositionRow.closed_at.is_(None))) or 0)
    return {"cycles": n_cycles, "closed_trades": n_trades, "open_positions": n_open}


def positions(ctx: Ctx) -> dict[str, Any]:
    """The account summary (pipeline.account.account_summary) with each open position's unrealised
    P&L, age and trailing phase, at the account's 'now'. Read-only: nothing is walked or stored."""
    from pipeline.account import account_summary

    t = now(ctx)
    with transaction(ctx.factory()) as s:
        exists = s.get(AccountRow, ctx.mode) is not None
        h = None if exists else repo.active_halt(s, ctx.mode, t)
    if not exists:  # no cycle yet: show the configured start without creating the account row
        start = float(ctx.settings.paper.starting_balance)
        halt = None if h is None else {"reason": h.reason, "set_by": h.set_by, "until": _iso(h.until)}
        return {"balance": start, "equity": start, "unrealised": 0.0, "realised_pnl": 0.0, "fees_paid": 0.0,
                "funding_paid": 0.0, "open_positions": [], "halt": halt, "as_of": t.isoformat(), "mode": ctx.mode,
                "starting_balance": start}
    summary = account_summary(ctx.factory(), ctx.source(), ctx.settings, t)
    for p in summary["open_positions"]:
        mark = p.get("mark")
        sign = 1 if p["side"] == "LONG" else -1
        p["unrealised"] = None if mark is None else (mark - p["entry"]) * float(p["qty"]) * sign
        p["age_h"] = round((t - datetime.fromisoformat(p["opened_at"])).total_seconds() / 3600, 1)
    summary["as_of"] = t.isoformat()
    summary["mode"] = ctx.mode
    summary["starting_balance"] = float(ctx.settings.paper.starting_balance)
    with transaction(ctx.factory()) as s:
        row = s.get(AccountRow, ctx.mode)
        if row is not None:
            summary["starting_balance"] = float(row.starting_balance)
    return summary


def equity_curves(ctx: Ctx) -> dict[str, dict[str, list[Any]]]:
    """The real account's equity curve and every member's shadow account beside it."""
    from pipeline.shadow import member_of, shadow_key, shadow_members

    out: dict[str, dict[str, list[Any]]] = {}
    with transaction(ctx.factory()) as s:
        keys = [ctx.mode] + [shadow_key(ctx.mode, m) for m in shadow_members(s, ctx.mode)]
        for k in keys:
            hist = repo.equity_history(s, k)
            out[member_of(k) or "consensus"] = {"time": [t.isoformat() for t, _ in hist],
                                                "equity": [e for _, e in hist]}
    return out


def recent_cycles(ctx: Ctx, limit: int = 15) -> list[dict[str, Any]]:
    with transaction(ctx.factory()) as s:
        rows = list(s.scalars(select(CycleRow).where(CycleRow.mode == ctx.mode)
                              .order_by(CycleRow.as_of.desc(), CycleRow.started_at.desc()).limit(limit)))
        ids = [r.id for r in rows]
        decs: dict[str, list[DecisionRow]] = {}
        for d in s.scalars(select(DecisionRow).where(DecisionRow.cycle_id.in_(ids)).order_by(DecisionRow.symbol)):
            decs.setdefault(d.cycle_id, []).append(d)
        opened: dict[str, list[str]] = {}
        for o in s.scalars(select(OrderRow).where(OrderRow.cycle_id.in_(ids), OrderRow.mode == ctx.mode,
                                                  OrderRow.kind == "open")):
            opened.setdefault(o.cycle_id or "", []).append(o.symbol)
    out = []
    for r in rows:
        ds = decs.get(r.id, [])
        trades = opened.get(r.id, [])
        non_wait = [f"{d.symbol.split('/')[0]} {d.action}" for d in ds if d.action != "WAIT"]
        if r.status != "completed":
            outcome = r.status + (f": {r.summary.get('error')}" if r.summary and r.summary.get("error") else "")
        elif trades:
            outcome = "opened " + ", ".join(sorted(s.split("/")[0] for s in trades))
        elif non_wait:
            outcome = "no trade (" + ", ".join(non_wait) + " denied)"
        else:
            outcome = "no trade (all WAIT)"
        out.append({"id": r.id, "as_of": _iso(r.as_of), "status": r.status, "candidates": len(ds),
                    "decisions": non_wait, "opened": sorted(trades), "outcome": outcome,
                    "panel_status": r.panel_status, "llm_cost_usd": r.llm_cost_usd})
    return out


def overview(ctx: Ctx) -> dict[str, Any]:
    c = counts(ctx)
    return {"counts": c, "account": positions(ctx), "curves": equity_curves(ctx), "cycles": recent_cycles(ctx),
            "empty": c["cycles"] == 0}


# ---- one cycle -------------------------------------------------------------------------------
def cycle_detail(ctx: Ctx, cycle_id: str) -> dict[str, Any] | None:
    with transaction(ctx.factory()) as s:
        row = s.get(CycleRow, cycle_id)
        if row is None:
            return None
        cands = {c.symbol: c for c in s.scalars(select(CandidateRow).where(CandidateRow.cycle_id == cycle_id))}
        scores = {x.symbol: x for x in s.scalars(select(ScoreRow).where(ScoreRow.cycle_id == cycle_id))}
        votes: dict[str, list[VoteRow]] = {}
        for v in s.scalars(select(VoteRow).where(VoteRow.cycle_id == cycle_id).order_by(VoteRow.member_id)):
            votes.setdefault(v.symbol, []).append(v)
        decs = {d.symbol: d for d in s.scalars(select(DecisionRow).where(DecisionRow.cycle_id == cycle_id))}
        verdicts = {v.symbol: v for v in s.scalars(select(RiskVerdictRow).where(RiskVerdictRow.cycle_id == cycle_id))}
        orders = list(s.scalars(select(OrderRow).where(OrderRow.cycle_id == cycle_id).order_by(OrderRow.id)))
        fills = {f.order_id: f for f in s.scalars(select(FillRow).where(FillRow.order_id.in_([o.id for o in orders])))}
        candidates = []
        for sym in sorted(set(scores) | set(cands)):
            sc, d, rv = scores.get(sym), decs.get(sym), verdicts.get(sym)
            candidates.append({
                "symbol": sym,
                "source": cands[sym].source if sym in cands else None,
                "reason": cands[sym].reason if sym in cands else "",
                "score": None if sc is None else {
                    "final": sc.final, "signal": sc.signal, "trend": sc.trend, "vol_state": sc.vol_state,
                    "vol_ratio": sc.vol_ratio, "atr_pct": sc.atr_pct, "daily_veto": sc.daily_veto,
                    "components": sc.components or {}, "timeframes": sc.timeframes or {}, "flags": sc.flags or [],
                    "news": sc.news or {}},
                "votes": [{"member": v.member_id, "provider": v.provider, "model": v.model,
                           "action": v.action if not v.abstain_reason else None, "confidence": v.confidence,
                           "rationale": v.rationale, "key_factors": list(v.key_factors or []),
                           "abstain_reason": v.abstain_reason, "latency_s": v.latency_s,
                           "tokens": v.input_tokens + v.output_tokens, "cost_usd": v.cost_usd, "cached": v.cached}
                          for v in votes.get(sym, [])],
                "decision": None if d is None else {
                    "action": d.action, "confidence": d.confidence, "math_score": d.math_score,
                    "combined_score": d.combined_score, "votes_valid": d.votes_valid, "votes_total": d.votes_total,
                    "tally": d.tally or {}, "dissent": list(d.dissent or []), "fallback_to_math": d.fallback_to_math,
                    "reason": d.reason},
                "risk": None if rv is None else {"approved": rv.approved, "profile": rv.profile,
                                                 "reasons": list(rv.reasons or []), "plan": rv.plan},
            })
        order_rows = []
        for o in orders:
            f = fills.get(o.id)
            order_rows.append({"client_order_id": o.client_order_id, "account": o.mode, "symbol": o.symbol,
                               "side": o.side, "kind": o.kind, "qty": str(o.qty), "status": o.status,
                               "position_id": o.position_id, "price": _num(f.price) if f else None,
                               "fee": _num(f.fee) if f else None, "ts": _iso(f.ts) if f else None})
        return {"id": row.id, "as_of": _iso(row.as_of), "status": row.status, "mode": row.mode, "source": row.source,
                "started_at": _iso(row.started_at), "finished_at": _iso(row.finished_at),
                "panel_status": row.panel_status, "llm_cost_usd": row.llm_cost_usd, "llm_tokens": row.llm_tokens,
                "summary": row.summary or {}, "candidates": candidates,
                "orders": [o for o in order_rows if o["account"] == ctx.mode],
                "shadow_orders": [o for o in order_rows if o["account"] != ctx.mode]}


# ---- trades ----------------------------------------------------------------------------------
def _trade_row(p: Any, tr: Any) -> dict[str, Any]:
    return {"id": p.id, "symbol": p.symbol, "side": p.side.value, "opened_at": _iso(p.opened_at),
            "closed_at": _iso(p.closed_at), "exit_reason": p.exit_reason, "entry": p.entry,
            "exit": _num(tr.exit) if tr else None, "qty": str(p.qty_initial), "leverage": p.leverage,
            "r_multiple": _num(tr.r_multiple) if tr else None, "fees": round(float(p.fees_paid), 6),
            "funding": round(float(p.funding_paid), 6), "gross_pnl": round(float(p.realised_pnl), 6),
            "net_pnl": round(float(p.realised_pnl - p.fees_paid - p.funding_paid), 6), "cycle_id": p.cycle_id}


def account_key(ctx: Ctx, account: str | None) -> str:
    """The real account (default) or one of its members' shadow accounts; anything else is a
    NotFound (a 404 on the pages and the API)."""
    from pipeline.shadow import member_of

    if not account or account == ctx.mode:
        return ctx.mode
    if not account.startswith(f"{ctx.mode}:shadow:") or not member_of(account):
        raise NotFound(f"no account {account!r}: use {ctx.mode} or {ctx.mode}:shadow:<member>")
    return account


def trades(ctx: Ctx, account: str | None = None) -> list[dict[str, Any]]:
    """Closed trades, newest first: exit reason, R multiple, fees, funding, net P&L."""
    from core.metrics import trade_records_from_positions

    with transaction(ctx.factory()) as s:
        closed = repo.closed_positions(s, account or ctx.mode)
    out = []
    for p in closed:
        tr = trade_records_from_positions([p])
        out.append(_trade_row(p, tr[0] if tr else None))
    return sorted(out, key=lambda r: (r["closed_at"] or "", r["id"]), reverse=True)


def trade_detail(ctx: Ctx, position_id: str) -> dict[str, Any] | None:
    """One position: its events, fills and the 1h bars around it (entry and exit markers)."""
    from core.metrics import trade_records_from_positions

    with transaction(ctx.factory()) as s:
        row = s.get(PositionRow, position_id)
        if row is None:
            return None
        p = repo.row_to_position(row)
        events = list(s.scalars(select(PositionEventRow).where(PositionEventRow.position_id == position_id)
                                .order_by(PositionEventRow.ts, PositionEventRow.id)))
        fills = list(s.execute(select(OrderRow, FillRow).join(FillRow, FillRow.order_id == OrderRow.id)
                               .where(OrderRow.position_id == position_id).order_by(FillRow.ts, FillRow.id)))
        account = row.mode
    tr = trade_records_from_positions([p]) if p.closed_at else []
    t_end = p.closed_at or now(ctx)
    bars = ctx.source().bars_between(p.symbol, p.opened_at - timedelta(hours=24), t_end + timedelta(hours=12))
    return {
        "position": {**_trade_row(p, tr[0] if tr else None), "stop": p.stop, "initial_stop": p.initial_stop,
                     "tp1": p.tp1, "tp2": p.tp2, "phase": p.phase, "qty_open": str(p.qty_open), "account": account},
        "events": [{"kind": e.kind, "ts": _iso(e.ts), "price": e.price, "qty": str(e.qty), "pnl": e.pnl,
                    "r_multiple": e.r_multiple, "reason": e.reason, "old_stop": e.old_stop, "new_stop": e.new_stop}
                   for e in events],
        "fills": [{"kind": o.kind, "side": o.side, "ts": _iso(f.ts), "price": float(f.price), "qty": str(f.qty),
                   "fee": float(f.fee), "reason": o.reason, "client_order_id": o.client_order_id} for o, f in fills],
        "bars": {"time": [t.isoformat() for t in bars.index], "open": bars["open"].tolist(),
                 "high": bars["high"].tolist(), "low": bars["low"].tolist(), "close": bars["close"].tolist()}
        if len(bars) else None,
    }


# ---- leaderboard and performance --------------------------------------------------------------
def data_version(ctx: Ctx) -> tuple[Any, ...]:
    """Changes whenever a cycle, the monitor or a control changed what the leaderboard reads."""
    from store.models import EquitySnapshotRow

    with transaction(ctx.factory()) as s:
        cyc = s.execute(select(func.count(), func.max(CycleRow.finished_at))).one()
        snaps = s.execute(select(func.count(), func.max(EquitySnapshotRow.ts))).one()
        pos = s.execute(select(func.count(), func.max(PositionRow.closed_at))).one()
        upd = s.scalar(select(func.max(AccountRow.updated_at)))
    return (*cyc, *snaps, *pos, upd)


def leaderboard(ctx: Ctx, runs: int = 1000) -> list[dict[str, Any]]:
    """The live leaderboard (pipeline.shadow.live_leaderboard), recomputed only when the record
    changed (it reads every stored vote; the pages poll it)."""
    from pipeline.shadow import live_leaderboard

    version = (data_version(ctx), runs)
    if ctx._board is not None and ctx._board[0] == version:
        return ctx._board[1]
    rows = live_leaderboard(ctx.factory(), ctx.source(), ctx.settings, runs=runs)
    ctx._board = (version, rows)
    return rows


def performance(ctx: Ctx) -> dict[str, Any]:
    """The real account's metrics (core.metrics.compute_metrics) over its equity snapshots and trades."""
    import pandas as pd

    from core.metrics import compute_metrics, trade_records_from_positions

    with transaction(ctx.factory()) as s:
        hist = repo.equity_history(s, ctx.mode)
        closed = repo.closed_positions(s, ctx.mode)
        still_open = repo.open_positions(s, ctx.mode)
    if not hist:
        return {"metrics": None, "equity": {"time": [], "equity": []}, "note": "no equity snapshots yet"}
    eq = pd.Series([e for _, e in hist], index=pd.DatetimeIndex([t for t, _ in hist]), dtype=float)
    m = compute_metrics(eq, trade_records_from_positions(closed), hist[0][0], hist[-1][0], still_open)
    return {"metrics": m.to_dict(), "equity": {"time": [t.isoformat() for t, _ in hist], "equity": [e for _, e in hist]},
            "start": _iso(hist[0][0]), "end": _iso(hist[-1][0])}


# ---- backtests -------------------------------------------------------------------------------
def backtests(ctx: Ctx) -> list[dict[str, Any]]:
    """The stored backtest reports (`quorum backtest` writes <dir>/backtest-*.json + .html), newest first."""
    d = ctx.reports_dir
    if not d.is_dir():
        return []
    out = []
    for js in sorted(d.glob("backtest-*.json"), key=lambda p: (p.stat().st_mtime, p.name), reverse=True):
        try:
            data = json.loads(js.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            out.append({"name": js.stem, "title": js.name, "error": "unreadable report"})
            continue
        m = data.get("metrics") or {}
        params = data.get("params") or {}
        out.append({"name": js.stem, "title": data.get("title", js.stem), "panel": params.get("panel"),
                    "start": params.get("start"), "end": params.get("end"), "symbols": params.get("symbols") or [],
                    "total_return": m.get("total_return"), "sharpe": m.get("sharpe"),
                    "max_drawdown": m.get("max_drawdown"), "n_trades": m.get("n_trades"),
                    "win_rate": m.get("win_rate"), "html": js.with_suffix(".html").exists(),
                    "leaderboard": len(data.get("leaderboard") or [])})
    return out


def backtest_file(ctx: Ctx, name: str, suffix: str) -> Path | None:
    """The report file of a listed backtest; None for anything else (no path outside the directory)."""
    if not REPORT_NAME.match(name) or suffix not in (".html", ".json"):
        return None
    p = (ctx.reports_dir / name).with_suffix(suffix)
    try:
        p.resolve().relative_to(ctx.reports_dir.resolve())
    except ValueError:
        return None
    return p if p.is_file() else None


# ---- exports and health ----------------------------------------------------------------------
def export(ctx: Ctx, fmt: str) -> str:
    from backtest.export import export_to_string
    from backtest.records import load_export_data

    trades_, rows = load_export_data(ctx.factory(), ctx.mode, audit=fmt == "audit")
    return export_to_string(trades_, fmt, audit_rows=rows)  # type: ignore[arg-type]


def health(ctx: Ctx) -> dict[str, Any]:
    c = counts(ctx)
    with transaction(ctx.factory()) as s:
        last = s.scalar(select(CycleRow).where(CycleRow.mode == ctx.mode).order_by(CycleRow.as_of.desc()).limit(1))
        halt = repo.active_halt(s, ctx.mode, now(ctx))
    return {"status": "ok", "database": "ok", "mode": ctx.mode, **c,
            "last_cycle": None if last is None else {"id": last.id, "as_of": _iso(last.as_of), "status": last.status},
            "halted": halt is not None}


# ---- controls (the CLI's `quorum halt` / `resume` / `halt --close-all`) --------------------------
def halt(ctx: Ctx, reason: str) -> dict[str, Any]:
    t = now(ctx)
    with transaction(ctx.factory()) as s:
        repo.set_halt(s, ctx.mode, reason, "manual", t)
    return {"halted": True, "reason": reason, "at": t.isoformat()}


def resume(ctx: Ctx) -> dict[str, Any]:
    t = now(ctx)
    with transaction(ctx.factory()) as s:
        n = repo.release_halts(s, ctx.mode, t)
    return {"halted": False, "released": n, "at": t.isoformat()}


def close_all(ctx: Ctx, reason: str) -> dict[str, Any]:
    from pipeline.monitor import close_all as close_all_positions
    from store.lock import account_lock

    with account_lock(ctx.settings, "close-all from the dashboard"):  # as `quorum halt --close-all`
        t = now(ctx)
        closed = close_all_positions(ctx.factory(), ctx.source(), ctx.settings, t, reason)
    return {"closed": closed, "at": t.isoformat()}
