"""Execution, persistence and reporting steps of the cycle (plain functions).

Restart safety:
- the paper account (balance, open positions and their exact Decimal ledgers) is stored in the
  `accounts` row and mirrored into `positions`, `orders`, `fills` and `position_events`; every
  change to it commits in ONE transaction together with what caused it (a cycle's decisions and
  orders, or one position's monitor update), so a crash leaves either all of it or none of it;
- an opening order's client id is deterministic (mode + decision time + symbol): rerunning the
  same decision time never opens a second position;
- the monitor records how far each position has been checked (`checked_until`), so bars and
  funding events are applied exactly once.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from agents.math_engine import hourly_atr
from core.errors import DataError, OrderRejected
from core.faults import crash_point
from core.settings import Settings
from core.types import (
    Candidate,
    Decision,
    MarketSnapshot,
    NewsReport,
    Position,
    PositionEvent,
    RiskVerdict,
    Score,
    TradePlan,
    Vote,
)
from exchange.base import MarketDataSource
from exchange.paper import PaperAccount
from risk import exits
from risk.manager import AccountState, MarketLimits, TrackRecord, account_state_from_history
from risk.profiles import RiskProfile, get_profile
from store import repo
from store.db import transaction
from store.models import AccountRow, CycleRow

log = logging.getLogger("quorum.execution")
ATR_WARMUP_H = 72  # 1h bars before a monitor window, so ATR(14) is settled at its first bar
Factory = sessionmaker[Session]


# ---- account load/save -----------------------------------------------------------------------
def load_account(s: Session, settings: Settings) -> PaperAccount:
    row = repo.get_account(s, settings.mode, settings.paper.starting_balance)
    prof = get_profile(settings.risk_profile)
    if row.state:
        return PaperAccount.from_dict(row.state)
    acct = PaperAccount.from_settings(settings.paper, prof.maintenance_margin_rate)
    return acct


def save_account(s: Session, settings: Settings, acct: PaperAccount, clock: datetime | None,
                 checked: Mapping[str, datetime] | None = None) -> list[PositionEvent]:
    """Persist the account: compact state (open positions + their ledgers), every position row,
    the new fills and events. Returns the new events (for the broadcaster)."""
    state = acct.to_dict()
    open_ids = {p.id for p in acct.open_positions()}
    compact = {**state, "positions": [p for p in state["positions"] if p["id"] in open_ids],
               "ledger": {k: v for k, v in state["ledger"].items() if k in open_ids}, "fills": [], "events": []}
    row = repo.get_account(s, settings.mode, settings.paper.starting_balance)
    row.state = compact
    row.balance = acct.balance
    row.realised_pnl = acct.realised_pnl
    row.fees_paid = acct.fees_paid
    row.funding_paid = acct.funding_paid
    if clock is not None and (row.clock is None or clock > row.clock):
        row.clock = clock
    row.updated_at = datetime.now(UTC)
    for p in acct.positions.values():
        repo.upsert_position(s, p, settings.mode, (checked or {}).get(p.id))
    s.flush()
    events = list(acct.events)
    repo.add_events(s, events)
    return events


def _record_fills(s: Session, acct: PaperAccount, settings: Settings, cycle_id: str | None,
                  start: int, position_for_fill: Sequence[str]) -> None:
    """Store the account's new fills as orders + fills. A close's client order id is the position id
    and its sequence number among that position's orders (deterministic: the same work after a
    crash and restart produces the same ids, so nothing is stored twice)."""
    seq: dict[str, int] = {}
    for i, fill in enumerate(acct.fills[start:]):
        pid = position_for_fill[i]
        if pid not in seq:
            seq[pid] = repo.order_count(s, pid)
        coid = f"{settings.mode}:{pid}:{fill.kind}:{seq[pid]}"
        seq[pid] += 1
        if repo.order_exists(s, coid) is None:
            repo.add_order_fill(s, coid, cycle_id, pid, fill, settings.mode)


# ---- marks and equity ------------------------------------------------------------------------
def marks(source: MarketDataSource, symbols: Sequence[str], t: datetime,
          known: Mapping[str, float] | None = None) -> dict[str, float]:
    out = dict(known or {})
    for sym in symbols:
        if sym not in out:
            bars = source.bars_between(sym, t - timedelta(hours=48), t)
            if len(bars):
                out[sym] = float(bars["close"].iloc[-1])
    return out


def _snapshot_equity(s: Session, settings: Settings, acct: PaperAccount, prices: Mapping[str, float],
                     t: datetime) -> float:
    unreal = acct.unrealised(prices)
    equity = acct.equity(prices)
    repo.add_equity_snapshot(s, settings.mode, t, float(equity), float(acct.balance), float(unreal),
                             len(acct.open_positions()))
    return float(equity)


# ---- position monitor ------------------------------------------------------------------------
def monitor_bar(acct: PaperAccount, position_id: str, t_open: pd.Timestamp, o: float, h: float, lo: float,
                c: float, funding_due: Sequence[tuple[pd.Timestamp, float]], prof: RiskProfile,
                news_critical: bool = False, atr: float | None = None,
                qty_step: Decimal | None = None) -> datetime:
    """One bar of the position monitor, shared by the live monitor (`advance_position`) and the
    backtest: settle the funding events due by this bar's close (`funding_due`, in time order; a
    funding time equal to the bar's open is marked at the open, later ones at the close), apply the
    exit rules to the bar, then check liquidation. Returns the bar's close time."""
    t_close = (t_open + pd.Timedelta(hours=1)).to_pydatetime()

    def settle(ft: pd.Timestamp, rate: float, mark: float) -> None:
        cur = acct.get(position_id)
        if cur.is_open and ft.to_pydatetime() > cur.opened_at:
            acct.apply_funding(cur.id, float(rate), mark, ft.to_pydatetime())

    # funding due before the bar's close (at its open) is settled first, at the open price
    for ft, rate in funding_due:
        if ft.to_pydatetime() < t_close:
            settle(ft, rate, o)
    if atr is not None and not atr == atr:  # NaN: not enough bars yet
        atr = None
    result = exits.step(acct.get(position_id), exits.Bar(t_close, o, h, lo, c), prof, news_critical=news_critical,
                        atr=atr, qty_step=qty_step)
    acct.apply_exit_step(result)
    if acct.get(position_id).is_open:
        acct.check_liquidation(position_id, h, lo, t_close)
    # funding at the bar's close is owed only by a position still open then (a stop inside the bar
    # closed it before the funding time)
    for ft, rate in funding_due:
        if ft.to_pydatetime() >= t_close:
            settle(ft, rate, c)
    return t_close


def advance_position(acct: PaperAccount, pos: Position, bars: pd.DataFrame, funding: pd.Series,
                     profile_name: str, news_critical: bool = False,
                     atr: pd.Series | None = None, qty_step: Decimal | None = None) -> datetime | None:
    """Apply funding and the exit rules bar by bar (bars indexed by open time; `atr` the 1h ATR per
    bar for the Chandelier exit). Returns the close time of the last bar processed."""
    prof = get_profile(profile_name)
    last = None
    fund = list(funding.items())
    fi = 0
    cols = bars[["open", "high", "low", "close"]].to_numpy(dtype=float)
    for t_open, (o, h, lo, c) in zip(bars.index, cols, strict=True):
        o, h, lo, c = float(o), float(h), float(lo), float(c)
        t_close = (t_open + pd.Timedelta(hours=1)).to_pydatetime()
        if not acct.get(pos.id).is_open:
            break
        due = []
        while fi < len(fund) and fund[fi][0].to_pydatetime() <= t_close:
            due.append(fund[fi])
            fi += 1
        a = None if atr is None else atr.get(t_open)
        last = monitor_bar(acct, pos.id, t_open, o, h, lo, c, due, prof, news_critical,
                           None if a is None or a != a else float(a), qty_step)
    return last


def sync_positions(factory: Factory, source: MarketDataSource, settings: Settings, until: datetime) -> dict[str, Any]:
    """Bring every open position up to `until`, one transaction per position. (Critical news closes
    positions at the next price through `news_exits`, not on past bars.)"""
    summary: dict[str, Any] = {"checked": 0, "events": []}
    with transaction(factory) as s:
        ids = [p.id for p in repo.open_positions(s, settings.mode)]
    for pid in ids:
        with transaction(factory) as s:
            acct = load_account(s, settings)
            if pid not in acct.positions or not acct.get(pid).is_open:
                continue
            pos = acct.get(pid)
            start = repo.checked_until(s, pid) or pos.opened_at
            if until <= start:
                continue
            # 1h ATR for the Chandelier exit, from bars before `start` too (warm-up), known at each close
            warm = source.bars_between(pos.symbol, start - timedelta(hours=ATR_WARMUP_H), until)
            atr = pd.Series(hourly_atr(warm), index=warm.index) if len(warm) else None
            bars = warm.loc[pd.Timestamp(start):] if len(warm) else warm
            funding = source.funding_between(pos.symbol, start, until)
            n_fills = len(acct.fills)
            last = advance_position(acct, pos, bars, funding, settings.risk_profile, False, atr,
                                    source.market_rules(pos.symbol).qty_step)
            _record_fills(s, acct, settings, None, n_fills, [pid] * (len(acct.fills) - n_fills))
            events = save_account(s, settings, acct, until, {pid: last or start})
            enqueue_event_posts(s, acct, events)
            crash_point("monitor:before-commit")
            summary["checked"] += 1
            summary["events"] += [f"{e.symbol} {e.kind} @ {e.price:.6g} ({e.reason})" for e in events
                                  if e.kind != "funding"]
        crash_point("monitor:after-commit")
    return summary


# ---- account state for risk ------------------------------------------------------------------
def open_positions(factory: Factory, settings: Settings) -> list[Position]:
    with transaction(factory) as s:
        return repo.open_positions(s, settings.mode)


def account_state(factory: Factory, source: MarketDataSource, settings: Settings, now: datetime) -> AccountState:
    with transaction(factory) as s:
        acct = load_account(s, settings)
        prices = marks(source, [p.symbol for p in acct.open_positions()], now)
        equity = float(acct.equity(prices))
        hist = repo.equity_history(s, settings.mode)
        halt = repo.active_halt(s, settings.mode, now)
        manual = halt.reason if halt is not None and halt.set_by == "manual" else None
        return account_state_from_history(
            hist + [(now, equity)], equity=equity, balance=float(acct.balance),
            positions=acct.open_positions(), now=now, profile=settings.risk_profile, manual_halt=manual,
            reset_at=repo.last_resume(s, settings.mode))


def with_planned(account: AccountState, plan: TradePlan | None, now: datetime) -> AccountState:
    """The account as later candidates of the same cycle should see it (the plan counted as open)."""
    if plan is None:
        return account
    ghost = Position(id=f"planned-{plan.symbol}", symbol=plan.symbol, side=plan.side, entry=plan.entry,
                     qty_initial=plan.qty, qty_open=plan.qty, stop=plan.stop, initial_stop=plan.stop, tp1=plan.tp1,
                     tp2=plan.tp2, leverage=plan.leverage, margin=plan.margin,
                     liquidation_price=plan.liquidation_price, opened_at=now, best_price=plan.entry)
    return replace(account, positions=account.positions + (ghost,), balance=account.balance - plan.margin)


def limits_for(source: MarketDataSource, symbol: str) -> MarketLimits:
    return MarketLimits.from_rules(source.market_rules(symbol))


def track_record(factory: Factory, settings: Settings) -> TrackRecord | None:
    with transaction(factory) as s:
        closed = repo.closed_positions(s, settings.mode)
    return track_record_from(closed)


def track_record_from(closed: Sequence[Position]) -> TrackRecord | None:
    """Win rate and win/loss ratio of closed positions (net of fees and funding), for Kelly sizing;
    shared by the live cycle and the backtest."""
    if not closed:
        return None
    pnl = [p.realised_pnl - p.fees_paid - p.funding_paid for p in closed]
    wins = [x for x in pnl if x > 0]
    losses = [-x for x in pnl if x <= 0]
    wl = (sum(wins) / len(wins)) / (sum(losses) / len(losses)) if wins and losses and sum(losses) > 0 else 1.0
    return TrackRecord(len(wins) / len(pnl), wl, len(pnl))


# ---- news and panel --------------------------------------------------------------------------
def submit_news(settings: Settings, symbols: Sequence[str], now: datetime) -> dict[str, Any]:
    """Start the news task per candidate (cached 1 h per symbol); it runs while the data is collected."""
    from agents.llm.registry import member_status
    from tasks.panel import news_member, news_task

    member = news_member(settings)
    st = member_status(member)
    if not st.available:
        return {s: NewsReport(s, now, available=False, note=f"news analyst off: {st.reason}") for s in symbols}
    return {s: news_task.submit(member, s, now) for s in symbols}


def news_reports(pending: Mapping[str, Any], now: datetime) -> dict[str, NewsReport]:
    """The news reports of `submit_news`; a failed news call never fails the cycle."""
    out: dict[str, NewsReport] = {}
    for s, f in pending.items():
        if isinstance(f, NewsReport):
            out[s] = f
            continue
        try:
            out[s] = f.result()
        except Exception as exc:  # noqa: BLE001 - news never fails the cycle
            out[s] = NewsReport(s, now, available=False, note=f"news analyst failed: {type(exc).__name__}")
    return out


def hunt(settings: Settings, source: MarketDataSource, tickers: Mapping[str, Any], hunter_future: Any,
         logger: Any) -> list[Candidate] | None:
    """The LLM hunter's validated candidates, or None (the volume scanner is the fallback)."""
    if hunter_future is None:
        return None
    from tasks.panel import hunted_candidates

    try:
        return hunted_candidates(hunter_future.result(), source.symbols(), tickers, settings)
    except Exception as exc:  # noqa: BLE001
        logger.warning("LLM coin hunter failed (%s); falling back to the volume scanner", type(exc).__name__)
        return None


def run_panel_tasks(settings: Settings, available: Sequence[Any], statuses: Sequence[Any],
                    snapshots: Mapping[str, MarketSnapshot], scores: Mapping[str, Score],
                    news: Mapping[str, NewsReport], positions: Sequence[Position], now: datetime,
                    use_cache: bool) -> list[Vote]:
    """Fan out one decision task per available member (all candidates in one prompt), concurrently."""
    if not available or not snapshots:
        return []
    from agents.panel import build_payload
    from tasks import panel

    panel.set_runtime(panel._build_runtime(settings))  # this cycle's database/Redis cache and budgets
    payload = build_payload(snapshots, scores, news, positions, settings, as_of=now)
    futures = [panel.decision_task_for(m).submit(m, list(snapshots), payload, now, use_cache) for m in available]
    votes: list[Vote] = []
    for m, f in zip(available, futures, strict=True):
        try:
            votes.extend(f.result())
        except Exception as exc:  # noqa: BLE001 - a member never crashes the cycle
            votes.extend(Vote(m.id, sym, None, abstain_reason=f"error:{type(exc).__name__}", provider=m.provider,
                              model=m.model) for sym in snapshots)
    return votes


def panel_status_line(statuses: Sequence[Any], votes: Sequence[Vote]) -> str:
    n_av = sum(1 for st in statuses if st.available)
    if n_av == 0:
        return (f"panel: 0/{len(statuses)} models configured; the panel abstains and the cycle decides on the "
                "math score alone (set OPENAI_API_KEY, ANTHROPIC_API_KEY, XAI_API_KEY, DEEPSEEK_API_KEY or OLLAMA_HOST)")
    valid = sum(1 for v in votes if v.valid)
    return f"panel: {n_av}/{len(statuses)} models available, {valid}/{len(votes)} valid votes"


# ---- execution + persistence -----------------------------------------------------------------
def check_clock(factory: Factory, settings: Settings, as_of: datetime) -> None:
    """A decision may not be earlier than the account's clock (the paper account cannot go back in
    time: its balance already holds what happened later)."""
    with transaction(factory) as s:
        row = s.get(AccountRow, settings.mode)
        clock = None if row is None else row.clock
    if clock is not None and as_of < clock:
        raise DataError(f"--as-of {as_of.isoformat()} is before the {settings.mode} account's clock "
                        f"{clock.isoformat()}: use a later time, or another QUORUM_DATABASE_URL")


def start_cycle(factory: Factory, cycle_id: str, as_of: datetime, settings: Settings, source: str,
                flow_run_id: str | None) -> None:
    with transaction(factory) as s:
        repo.start_cycle(s, cycle_id, as_of, settings.mode, source, datetime.now(UTC), flow_run_id)


def execute_and_persist(factory: Factory, source: MarketDataSource, settings: Settings, cycle_id: str,
                        as_of: datetime, candidates: Sequence[Candidate], scores: Mapping[str, Score],
                        news: Mapping[str, NewsReport], votes: Sequence[Vote], decisions: Mapping[str, Decision],
                        verdicts: Mapping[str, RiskVerdict], prices: Mapping[str, float]) -> dict[str, Any]:
    """Open approved plans at the first price after the decision and store the whole cycle, in one
    transaction (all or nothing)."""
    if settings.mode == "live":
        from core.errors import ConfigError

        raise ConfigError("live execution is not available in this build: use mode=paper")
    out: dict[str, Any] = {}
    with transaction(factory) as s:
        repo.record_analysis(s, cycle_id, as_of, candidates, dict(scores),
                             {k: repo.jsonable(v) for k, v in news.items()}, votes, dict(decisions),
                             dict(verdicts), dict(prices))
        acct = load_account(s, settings)
        opened: list[tuple[Position, TradePlan, Decision]] = []
        for sym, verdict in verdicts.items():
            if not verdict.approved or verdict.plan is None:
                continue
            coid_key = f"{settings.mode}:{as_of:%Y%m%dT%H%M}:{sym}:open"
            prior = repo.order_exists(s, coid_key)
            if prior is not None:
                out[sym] = {"status": "skipped", "note": f"already executed for this decision time (cycle {prior.cycle_id})"}
                continue
            nxt = source.price_after(sym, as_of)
            if nxt is None:
                out[sym] = {"status": "not_filled", "note": "no price after the decision time yet; order not placed"}
                continue
            fill_ts, fill_px = nxt
            pid = f"{sym.split('/')[0]}-{as_of:%Y%m%d%H%M}"
            plan = verdict.plan
            try:
                pos, fill = acct.open(plan, fill_px, fill_ts, position_id=pid, cycle_id=cycle_id)
            except OrderRejected as exc:
                out[sym] = {"status": "rejected", "note": str(exc)}
                continue
            pos = acct.positions[pid] = pos.with_(extra={"entry_post_key": f"{cycle_id}:{sym}:entry",
                                                         "plan_entry": plan.entry})
            opened.append((pos, plan, decisions[sym]))
            repo.add_order_fill(s, coid_key, cycle_id, pid, fill, settings.mode)
            out[sym] = {"status": "filled", "position_id": pid, "fill_price": float(fill.price),
                        "fill_time": fill.ts.isoformat(), "qty": str(fill.qty), "fee": float(fill.fee)}
        save_account(s, settings, acct, as_of, {p.id: p.opened_at for p, _, _ in opened})
        prices_all = marks(source, [p.symbol for p in acct.open_positions()], as_of, prices)
        _snapshot_equity(s, settings, acct, prices_all, as_of)
        for pos, plan, decision in opened:
            enqueue_entry_post(s, cycle_id, pos, replace(plan, entry=pos.entry), decision)
        crash_point("cycle:before-commit")
    crash_point("cycle:after-commit")
    return out


def enqueue_entry_post(s: Session, cycle_id: str, pos: Position, plan: TradePlan, decision: Decision) -> None:
    from notify.format import entry_key, entry_post
    from store import outbox

    outbox.enqueue(s, entry_key(cycle_id, pos.symbol), "entry", entry_post(plan, decision), symbol=pos.symbol,
                   position_id=pos.id)


def enqueue_event_posts(s: Session, acct: PaperAccount, events: Sequence[PositionEvent]) -> None:
    from notify.format import entry_key_for, event_key, event_post, post_kind_for_event
    from store import outbox

    for e in events:
        pos = acct.positions.get(e.position_id)
        if pos is None or pos.extra.get("shadow_of"):  # a member's shadow account is never posted
            continue
        kind = post_kind_for_event(e, pos)
        if kind is None:
            continue
        parent = entry_key_for(pos)
        outbox.enqueue(s, event_key(pos.id, kind, e.ts), kind, event_post(e, pos), symbol=pos.symbol,
                       position_id=pos.id, parent_key=parent)


def deliver(factory: Factory, settings: Settings, console: bool = True) -> dict[str, Any]:
    """Deliver pending posts (Telegram) or print this run's posts (console). Never raises."""
    try:
        from notify.delivery import deliver_pending
        from notify.telegram import sink_from_settings

        sink = sink_from_settings(settings)
        if not getattr(sink, "records_delivery", False):
            if not console:
                return {"sink": "console", "printed": 0}
            from notify.console import ConsoleSink

            sink = ConsoleSink(stream=sys.stdout)
        rep = deliver_pending(factory, sink, log=log)
        return {"sink": getattr(sink, "name", "?"), "sent": rep.sent, "failed": rep.failed,
                "config_error": rep.config_error, "errors": rep.errors[:5]}
    except Exception as exc:  # noqa: BLE001
        return {"sink": "?", "error": f"{type(exc).__name__}: {exc}"}


def fail_cycle(factory: Factory, cycle_id: str, error: BaseException) -> None:
    try:
        with transaction(factory) as s:
            row = s.get(CycleRow, cycle_id)
            if row is not None and row.status == "running":
                row.status = "failed"
                row.finished_at = datetime.now(UTC)
                row.summary = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
    except Exception:  # noqa: BLE001 - the original error is what matters
        log.exception("could not mark cycle %s failed", cycle_id)


def finish_cycle(factory: Factory, cycle_id: str, report: Mapping[str, Any]) -> None:
    with transaction(factory) as s:
        row = s.get(CycleRow, cycle_id)
        if row is None:
            return
        row.status = "completed"
        row.finished_at = datetime.now(UTC)
        row.panel_status = report["panel"]["status"]
        row.llm_cost_usd = report["llm_cost"]["cost_usd"]
        row.llm_tokens = report["llm_cost"]["tokens"]
        row.summary = repo.jsonable({k: report[k] for k in ("candidates", "account", "timings_s", "universe")})


def account_summary(factory: Factory, source: MarketDataSource, settings: Settings, now: datetime) -> dict[str, Any]:
    with transaction(factory) as s:
        acct = load_account(s, settings)
        open_pos = acct.open_positions()
        prices = marks(source, [p.symbol for p in open_pos], now)
        halt = repo.active_halt(s, settings.mode, now)
        halt_info = None if halt is None else {"reason": halt.reason, "set_by": halt.set_by,
                                               "until": halt.until.isoformat() if halt.until else None}
        if halt_info is None:  # a breaker halt is derived from the stored equity snapshots
            st = account_state_from_history(
                repo.equity_history(s, settings.mode), equity=float(acct.equity(prices)),
                balance=float(acct.balance), positions=open_pos, now=now, profile=settings.risk_profile,
                reset_at=repo.last_resume(s, settings.mode))
            if st.halted:
                halt_info = {"reason": st.halt_reason, "set_by": "breaker",
                             "until": st.halted_until.isoformat() if st.halted_until else None}
        return {
            "balance": float(acct.balance), "equity": float(acct.equity(prices)),
            "unrealised": float(acct.unrealised(prices)), "realised_pnl": float(acct.realised_pnl),
            "fees_paid": float(acct.fees_paid), "funding_paid": float(acct.funding_paid),
            "open_positions": [{"id": p.id, "symbol": p.symbol, "side": p.side.value, "entry": p.entry,
                                "qty": str(p.qty_open), "stop": p.stop, "tp1": p.tp1, "tp2": p.tp2,
                                "mark": prices.get(p.symbol), "phase": p.phase,
                                "opened_at": p.opened_at.isoformat()} for p in open_pos],
            "halt": halt_info,
        }


def cost_summary(votes: Sequence[Vote], news: Mapping[str, NewsReport] | None = None) -> dict[str, Any]:
    """Per-member (and news analyst) tokens and cost of this cycle; cached answers cost nothing."""
    members: dict[str, dict[str, Any]] = {}
    spent = [r for r in (news or {}).values() if r.tokens or r.cost_usd]
    if spent:
        members["news"] = {"tokens": sum(r.tokens for r in spent), "cost_usd": round(sum(r.cost_usd for r in spent), 6),
                           "latency_s": 0.0, "cached": False}
    for v in votes:
        m = members.setdefault(v.member_id, {"tokens": 0, "cost_usd": 0.0, "latency_s": 0.0, "cached": v.cached})
        m["tokens"] += v.input_tokens + v.output_tokens
        m["cost_usd"] = round(m["cost_usd"] + v.cost_usd, 6)
        m["latency_s"] = round(max(m["latency_s"], v.latency_s), 3)
    return {"tokens": sum(m["tokens"] for m in members.values()),
            "cost_usd": round(sum(m["cost_usd"] for m in members.values()), 6), "members": members}


def vote_dict(v: Vote) -> dict[str, Any]:
    return {"member": v.member_id, "action": v.action.value if v.action else None, "confidence": v.confidence,
            "abstain": v.abstain_reason, "rationale": v.rationale, "latency_s": round(v.latency_s, 3),
            "tokens": v.input_tokens + v.output_tokens, "cost_usd": round(v.cost_usd, 6), "cached": v.cached,
            "prompt_version": v.prompt_version}


def decision_dict(d: Decision) -> dict[str, Any]:
    return {"action": d.action.value, "confidence": round(d.confidence, 4), "math_score": d.math_score,
            "combined_score": round(d.combined_score, 4), "votes_valid": d.votes_valid, "votes_total": d.votes_total,
            "dissent": list(d.dissent), "fallback_to_math": d.fallback_to_math, "reason": d.reason}


def verdict_dict(v: RiskVerdict) -> dict[str, Any]:
    plan = None
    if v.plan is not None:
        p = v.plan
        plan = {"side": p.side.value, "entry": p.entry, "stop": p.stop, "tp1": p.tp1, "tp2": p.tp2,
                "leverage": p.leverage, "qty": str(p.qty), "notional": round(p.notional, 2),
                "margin": round(p.margin, 2), "risk_usd": round(p.risk_usd, 2), "risk_pct": round(p.risk_pct, 3),
                "liquidation_price": p.liquidation_price, "stop_pct": round(p.stop_pct, 3)}
    return {"approved": v.approved, "profile": v.profile, "reasons": list(v.reasons), "plan": plan}


def publish_artifacts(report: Mapping[str, Any]) -> None:
    """A table of candidates and a markdown summary of any trade plan on the flow run."""
    try:
        from prefect.artifacts import create_markdown_artifact, create_table_artifact
    except ImportError:  # pragma: no cover
        return
    rows = []
    for c in report["candidates"]:
        votes = ", ".join(f"{v['member']}:{v['action'] or 'abstain(' + str(v['abstain']) + ')'}"
                          for v in c["votes"]) or "none"
        rows.append({"symbol": c["symbol"], "score": c["score"]["final"], "signal": c["score"]["signal"],
                     "trend": c["score"]["trend"], "regime": c["score"]["vol_state"], "votes": votes,
                     "decision": c["decision"]["action"], "dissent": ", ".join(c["decision"]["dissent"]),
                     "llm_cost_usd": round(sum(v["cost_usd"] for v in c["votes"]), 6),
                     "risk": "approved" if c["risk"]["approved"] else "denied",
                     "reasons": "; ".join(c["risk"]["reasons"])[:300]})
    try:
        create_table_artifact(key="cycle-candidates", table=rows, description=f"Cycle {report['cycle_id']}")
        cost = report["llm_cost"]
        per = ", ".join(f"{m} {v['tokens']} tok ${v['cost_usd']:.4f}" for m, v in sorted(cost["members"].items()))
        md = [f"# Cycle {report['cycle_id']}", f"as of {report['as_of']} · {report['panel']['status']}",
              f"LLM cost: {cost['tokens']} tokens, ${cost['cost_usd']:.4f}" + (f" ({per})" if per else ""), ""]
        for c in report["candidates"]:
            plan = c["risk"]["plan"]
            if c["risk"]["approved"] and plan:
                md.append(f"## {plan['side']} {c['symbol']}")
                md.append(f"entry {plan['entry']} · stop {plan['stop']} · TP1 {plan['tp1']} (50%) · TP2 {plan['tp2']}"
                          f" · {plan['leverage']}x · qty {plan['qty']} · risk ${plan['risk_usd']}")
        if len(md) == 4:
            md.append("No trade this cycle.")
        create_markdown_artifact(key="cycle-summary", markdown="\n".join(md))
    except Exception as exc:  # noqa: BLE001 - artifacts never fail the cycle
        log.warning("could not publish artifacts: %s", exc)


def close_at_market(factory: Factory, source: MarketDataSource, settings: Settings, now: datetime,
                    which: Any, reason: str, kind: str) -> list[str]:
    """Close the open positions `which(position)` selects at the first price after `now`, through the
    same account path, in one transaction; their exit posts go to the outbox."""
    closed = []
    with transaction(factory) as s:
        acct = load_account(s, settings)
        n_fills = len(acct.fills)
        pids = []
        for p in acct.open_positions():
            if not which(p):
                continue
            nxt = source.price_after(p.symbol, now)
            px_ts = nxt if nxt is not None else (now, marks(source, [p.symbol], now)[p.symbol])
            acct.close(p.id, p.qty_open, px_ts[1], px_ts[0], reason=reason, kind=kind)
            pids.append(p.id)
            closed.append(f"{p.symbol} @ {px_ts[1]:.6g}")
        _record_fills(s, acct, settings, None, n_fills, pids)
        events = save_account(s, settings, acct, now)
        enqueue_event_posts(s, acct, events)
        if pids:
            prices = marks(source, [p.symbol for p in acct.open_positions()], now)
            _snapshot_equity(s, settings, acct, prices, now)
    return closed


def close_all(factory: Factory, source: MarketDataSource, settings: Settings, now: datetime, reason: str) -> list[str]:
    """Close every open position at market (`quorum halt --close-all`), after the monitor has walked
    them up to `now` (stops, targets and funding first)."""
    sync_positions(factory, source, settings, now)
    return close_at_market(factory, source, settings, now, lambda p: True, f"manual close-all: {reason}", "manual")


def news_exits(factory: Factory, source: MarketDataSource, settings: Settings, now: datetime,
               news: Mapping[str, NewsReport]) -> list[str]:
    """Close longs whose symbol has critical negative news now, when the profile closes on it."""
    from risk.profiles import get_profile

    if not get_profile(settings.risk_profile).close_on_critical_news:
        return []
    hit = {s for s, r in news.items() if r.available and r.critical_negative}
    if not hit:
        return []
    return close_at_market(factory, source, settings, now,
                           lambda p: p.symbol in hit and p.side.value == "LONG",
                           "critical negative news", "news")
