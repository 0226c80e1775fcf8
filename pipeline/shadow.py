"""Per-model shadow paper accounts in the live loop (the arena behind the live leaderboard).

Every panel member that votes in a paper or live cycle gets its own paper account, stored like the
real one under the account key ``<mode>:shadow:<member>`` (``accounts``, ``positions``, ``orders``,
``fills``, ``position_events`` and ``equity_snapshots`` rows carry that key in their ``mode``
column). A member's valid LONG/SHORT votes are its decisions (`pipeline.stages.member_decision`,
the function the backtest's shadow books use), the daily veto applies, and they go through the SAME
risk manager (`risk_verdict` with the shadow's own account state, breakers and track record), the
same fills (`PaperAccount.open` at the first price after the decision) and the same exit rules: the
cycle's shadow step (`trade_shadows`) and the position monitor (`sync_shadows`) walk shadow
positions with `sync_positions` exactly like the real ones, and critical negative news closes their
longs too. Nothing about a shadow is posted to Telegram (its positions carry
``extra["shadow_of"]``). The consensus account is the real account.

Each shadow gets one equity snapshot per cycle (even with no trade), so its curve and the real
account's are aligned on the cycle times for the leaderboard's paired bootstrap.

Only symbols the trend strategy runs are traded by the shadows (on a symbol another strategy runs,
grid or volatility say, the votes are an input of that strategy, not trades). A manual halt or a
close-all applies to the real account only (an operator's stop on real entries); a shadow's own
breakers (daily loss, drawdown) apply to it from its own equity history.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.errors import OrderRejected
from core.settings import Settings
from core.types import Action, MarketSnapshot, NewsReport, Score, Vote
from exchange.base import MarketDataSource
from store import repo
from store.db import transaction
from store.models import AccountRow

log = logging.getLogger("quorum.shadow")
Factory = sessionmaker[Session]
SHADOW = ":shadow:"


# ---- account keys ------------------------------------------------------------------------------
def shadow_key(mode: str, member_id: str) -> str:
    """The account key of a member's shadow account, e.g. ``paper:shadow:gpt``."""
    return f"{mode}{SHADOW}{member_id}"


def member_of(key: str) -> str | None:
    """The member id of a shadow account key, None for a real account key."""
    return key.split(SHADOW, 1)[1] if SHADOW in key else None


def is_shadow(key: str) -> bool:
    return SHADOW in key


def shadow_settings(settings: Settings, member_id: str) -> Settings:
    """The settings as the account functions should see them for a member's shadow account: only the
    account key (``mode``) differs, so load/save/monitor/risk run unchanged on it."""
    return settings.model_copy(update={"mode": shadow_key(settings.mode, member_id)})


def shadow_members(s: Session, mode: str) -> list[str]:
    """Members that have a shadow account under ``mode``."""
    keys = s.scalars(select(AccountRow.mode).where(AccountRow.mode.like(f"{mode}{SHADOW}%")))
    return sorted(m for m in (member_of(k) for k in keys) if m)


# ---- the cycle: walk, then trade every member's shadow ------------------------------------------
def trade_shadows(factory: Factory, source: MarketDataSource, settings: Settings, cycle_id: str, as_of: datetime,
                  votes: Sequence[Vote], scores: Mapping[str, Score], snapshots: Mapping[str, MarketSnapshot],
                  news: Mapping[str, NewsReport]) -> dict[str, Any]:
    """The cycle's shadow step (after the real account's execution): for every member that voted
    (and every member that already has a shadow account), walk its open positions up to ``as_of``
    (`sync_positions`), close its longs on critical negative news (`news_exits`), then trade its
    valid LONG/SHORT votes through `risk_verdict` and snapshot its equity. One transaction per step
    and member, as for the real account; a failing shadow never fails the cycle."""
    from pipeline.account import account_state, track_record
    from pipeline.monitor import news_exits, sync_positions
    from pipeline.positions import limits_for, with_planned
    from pipeline.stages import btc_change_4h_pct, daily_veto, member_decision, risk_verdict

    with transaction(factory) as s:
        members = sorted({v.member_id for v in votes} | set(shadow_members(s, settings.mode)))
    btc4h = btc_change_4h_pct(snapshots, source, as_of) if members else None
    out: dict[str, Any] = {}
    for mid in members:
        sett = shadow_settings(settings, mid)
        try:
            with transaction(factory) as s:
                row = s.get(AccountRow, sett.mode)
                if row is not None and row.clock is not None and as_of < row.clock:
                    out[mid] = {"skipped": f"decision time before the shadow account's clock {row.clock.isoformat()}"}
                    continue
            acct, _ = sync_positions(factory, source, sett, as_of)
            acct, _ = news_exits(factory, source, sett, as_of, news, acct)
            account = account_state(factory, source, sett, as_of, acct)
            track = track_record(factory, sett.mode)
            mine = {v.symbol: v for v in votes if v.member_id == mid}
            verdicts = {}
            for sym, score in scores.items():
                vote = mine.get(sym)
                if vote is None or sym not in snapshots or settings.strategy_for(sym) != "trend":
                    continue  # a symbol another strategy runs: the votes are only that strategy's input
                d = daily_veto(member_decision(vote, score), score)
                if d.action is Action.WAIT:
                    continue
                v = risk_verdict(d, score, snapshots[sym], account, limits_for(source, sym), settings, btc4h,
                                 news.get(sym), track)
                verdicts[sym] = v
                if v.approved:
                    account = with_planned(account, v.plan, as_of)
            out[mid] = _execute(factory, source, sett, mid, cycle_id, as_of, verdicts,
                                {s: snap.last for s, snap in snapshots.items()}, acct)
        except Exception as exc:  # noqa: BLE001 - a shadow account never fails the real cycle
            log.warning("shadow account of %s failed at %s: %s", mid, as_of.isoformat(), exc)
            out[mid] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    return out


def _execute(factory: Factory, source: MarketDataSource, sett: Settings, member_id: str, cycle_id: str,
             as_of: datetime, verdicts: Mapping[str, Any], prices: Mapping[str, float],
             acct: Any) -> dict[str, Any]:
    """Fill the shadow's approved plans at the first price after the decision, save the account and
    its equity snapshot: one transaction (the real account's execution path, without posts)."""
    from pipeline.account import save_account, snapshot_equity
    from pipeline.positions import marks

    res: dict[str, Any] = {"orders": {}, "denied": {}}
    with transaction(factory) as s:
        opened = {}
        for sym, verdict in verdicts.items():
            if not verdict.approved or verdict.plan is None:
                res["denied"][sym] = list(verdict.reasons)
                continue
            coid = f"{sett.mode}:{as_of:%Y%m%dT%H%M}:{sym}:open"
            if repo.order_exists(s, coid) is not None:
                res["orders"][sym] = "skipped: already executed for this decision time"
                continue
            nxt = source.price_after(sym, as_of)
            if nxt is None:
                res["orders"][sym] = "not_filled: no price after the decision time yet"
                continue
            pid = f"{member_id}:{sym.split('/')[0]}-{as_of:%Y%m%d%H%M}"
            try:
                pos, fill = acct.open(verdict.plan, nxt[1], nxt[0], position_id=pid, cycle_id=cycle_id)
            except OrderRejected as exc:
                res["orders"][sym] = f"rejected: {exc}"
                continue
            acct.positions[pid] = pos.with_(extra={"shadow_of": member_id, "plan_entry": verdict.plan.entry})
            opened[pid] = pos.opened_at
            repo.add_order_fill(s, coid, cycle_id, pid, fill, sett.mode)
            res["orders"][sym] = f"filled {pos.side.value} {fill.qty} @ {float(fill.price):.6g}"
        save_account(s, sett, acct, as_of, opened)
        res["equity"] = snapshot_equity(s, sett.mode, acct,
                                        marks(source, [p.symbol for p in acct.open_positions()], as_of, prices), as_of)
    return res


# ---- the position monitor ------------------------------------------------------------------------
def sync_shadows(factory: Factory, source: MarketDataSource, settings: Settings, until: datetime,
                 news: Mapping[str, NewsReport] | None = None) -> dict[str, Any]:
    """The monitor's shadow step: every shadow account's open positions walked up to ``until`` with
    the real account's rules (and its longs closed on critical negative news)."""
    from pipeline.monitor import news_exits, sync_positions

    with transaction(factory) as s:
        members = shadow_members(s, settings.mode)
    out: dict[str, Any] = {}
    for mid in members:
        sett = shadow_settings(settings, mid)
        try:
            acct, rep = sync_positions(factory, source, sett, until)
            if news:
                _, closed = news_exits(factory, source, sett, until, news, acct)
                rep["events"] += [f"closed on critical negative news: {x}" for x in closed]
            out[mid] = rep
        except Exception as exc:  # noqa: BLE001 - a shadow never fails the monitor
            log.warning("shadow monitor of %s failed: %s", mid, exc)
            out[mid] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    return out


def open_symbols(factory: Factory, mode: str) -> set[str]:
    """Symbols the shadow accounts hold (the monitor asks the news analyst about them too)."""
    from store.models import PositionRow

    with transaction(factory) as s:
        return set(s.scalars(select(PositionRow.symbol).where(PositionRow.mode.like(f"{mode}{SHADOW}%"),
                                                              PositionRow.closed_at.is_(None))))


# ---- the live leaderboard --------------------------------------------------------------------
def forward_returns(source: Any) -> Any:
    """fwd(symbol, t) -> (4 h, 24 h) returns as `core.leaderboard.forward_return` defines them (last
    close at or before each time, by bar close time; None when not known yet), on arrays of the
    source's 1h history: one search per vote instead of a Series scan, memoised per (symbol, t)."""
    import numpy as np
    import pandas as pd

    closes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    memo: dict[tuple[str, datetime], tuple[float | None, float | None]] = {}
    h4, h24 = pd.Timedelta(hours=4).value, pd.Timedelta(hours=24).value

    def fwd(sym: str, t: datetime) -> tuple[float | None, float | None]:
        if (sym, t) in memo:
            return memo[(sym, t)]
        if sym not in closes:
            try:
                h1 = source.history(sym).h1["close"].dropna().sort_index()
                closes[sym] = ((h1.index + pd.Timedelta(hours=1)).as_unit("ns").asi8, h1.to_numpy(dtype=float))
            except Exception:  # noqa: BLE001 - a symbol the source does not have: no outcome
                closes[sym] = (np.array([], dtype=np.int64), np.array([]))
        ts, px = closes[sym]
        t0 = pd.Timestamp(t).value
        out: list[float | None] = []
        for h in (h4, h24):
            if not len(ts) or t0 < ts[0] or t0 + h > ts[-1]:
                out.append(None)
                continue
            p0 = px[np.searchsorted(ts, t0, side="right") - 1]
            p1 = px[np.searchsorted(ts, t0 + h, side="right") - 1]
            out.append(float(p1 / p0 - 1.0) if p0 and math.isfinite(p0) and math.isfinite(p1) else None)
        memo[(sym, t)] = (out[0], out[1])
        return memo[(sym, t)]

    return fwd


def live_leaderboard(factory: Factory, source: Any, settings: Settings, *, runs: int = 1000,
                     sort_by: str = "total_return") -> list[dict[str, Any]]:
    """Leaderboard rows from the live record: the consensus is the real account, each member its
    shadow account (equity curve from the stored snapshots, closed trades), plus hit rates at
    4 h / 24 h of the stored votes and decisions against the market's later closes, Brier,
    abstention, latency, cost and the bootstrap interval against the consensus. Each row's
    ``account_value`` is the last stored equity of that account."""
    import pandas as pd

    from core.leaderboard import CONSENSUS_ID, MemberResult, VoteOutcome, leaderboard
    from core.metrics import trade_records_from_positions
    from store.models import CycleRow, DecisionRow, VoteRow

    fwd = forward_returns(source)

    def curve(s: Session, key: str) -> pd.Series:
        hist = repo.equity_history(s, key)
        if not hist:
            return pd.Series(dtype=float)
        return pd.Series([e for _, e in hist], index=pd.DatetimeIndex([t for t, _ in hist]), dtype=float)

    mode = settings.mode
    with transaction(factory) as s:
        # only the columns the statistics read (not the rationales): rows, not ORM objects
        votes = list(s.execute(select(VoteRow.member_id, VoteRow.symbol, VoteRow.action, VoteRow.abstain_reason,
                                      VoteRow.confidence, VoteRow.latency_s, VoteRow.cost_usd, VoteRow.as_of)
                               .join(CycleRow, CycleRow.id == VoteRow.cycle_id).where(CycleRow.mode == mode)
                               .order_by(VoteRow.as_of, VoteRow.symbol, VoteRow.member_id)))
        decs = list(s.execute(select(DecisionRow.symbol, DecisionRow.action, DecisionRow.confidence, CycleRow.as_of)
                              .join(CycleRow, CycleRow.id == DecisionRow.cycle_id)
                              .where(CycleRow.mode == mode).order_by(CycleRow.as_of, DecisionRow.symbol)))
        members = sorted({v.member_id for v in votes} | set(shadow_members(s, mode)))
        curves = {CONSENSUS_ID: curve(s, mode)} | {m: curve(s, shadow_key(mode, m)) for m in members}
        trades = {CONSENSUS_ID: trade_records_from_positions(repo.closed_positions(s, mode))}
        trades |= {m: trade_records_from_positions(repo.closed_positions(s, shadow_key(mode, m))) for m in members}
    by_member: dict[str, list[VoteOutcome]] = {m: [] for m in members}
    times: list[datetime] = []
    for v in votes:
        a = Action(v.action) if v.action and not v.abstain_reason else None
        by_member.setdefault(v.member_id, []).append(
            VoteOutcome(a, float(v.confidence), *fwd(v.symbol, v.as_of), latency_s=float(v.latency_s),
                        cost_usd=float(v.cost_usd), symbol=v.symbol, as_of=v.as_of))
        times.append(v.as_of)
    cons = []
    for d in decs:
        as_of = d.as_of
        a = Action(d.action)
        f = (None, None) if a is Action.WAIT else fwd(d.symbol, as_of)
        cons.append(VoteOutcome(a, float(d.confidence), *f, latency_s=None, symbol=d.symbol, as_of=as_of))
        times.append(as_of)
    for c in curves.values():
        if len(c):
            times += [c.index[0].to_pydatetime(), c.index[-1].to_pydatetime()]
    if not times:
        return []
    results = [MemberResult(CONSENSUS_ID, curves[CONSENSUS_ID], trades[CONSENSUS_ID], cons)]
    results += [MemberResult(m, curves[m], trades[m], by_member.get(m, [])) for m in members]
    rows = leaderboard(results, min(times), max(times), sort_by=sort_by, runs=runs)
    out = []
    for r in rows:
        d = r.to_dict()
        c = curves.get(r.member_id)
        last = float(c.iloc[-1]) if c is not None and len(c) else None
        d["account_value"] = last if last is None or math.isfinite(last) else None
        d["account"] = mode if r.member_id == CONSENSUS_ID else shadow_key(mode, r.member_id)
        out.append(d)
    return out
