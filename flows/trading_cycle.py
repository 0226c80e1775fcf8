"""The trading cycle: one Prefect flow run per cycle.

hunter ∥ tickers → collect (map over symbols) → news + math scores → six decision tasks in
parallel → consensus → risk (pure, final word) → paper/live execution + persistence (one
transaction) → broadcast (its own task, never fails the cycle) → artifacts.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.context import get_run_context

from core.faults import pause_point
from core.settings import Settings, load_settings, require_live_confirmation
from core.types import Action, NewsReport, RiskVerdict, Score, Vote
from exchange.factory import build_source
from pipeline import record, shadow
from pipeline.account import account_summary, as_before, check_clock, load
from pipeline.account import decision_time as resolve_decision_time
from pipeline.monitor import news_exits
from pipeline.stages import score_breakdown, select_candidates
from pipeline.strategy_cycle import check_cycle_strategy
from store.db import get_session_factory
from store.lock import account_lock
from tasks import fanout
from tasks.artifacts import publish_artifacts
from tasks.cycle import (
    broadcast_task,
    collect_task,
    execute_task,
    monitor_task,
    rebalance_task,
    risk_task,
    score_task,
    strategy_task,
    tickers_task,
)


def _now() -> datetime:
    return datetime.now(UTC)


def _flow_run_id() -> str | None:
    try:
        ctx = get_run_context()
        return str(ctx.flow_run.id) if getattr(ctx, "flow_run", None) else None
    except Exception:  # noqa: BLE001
        return None


def _panel(settings: Settings):  # -> (available members, statuses)
    from agents.llm.registry import member_status

    statuses = [member_status(m) for m in settings.panel]
    available = [m for m, st in zip(settings.panel, statuses, strict=True) if st.available]
    return available, statuses


def cycle_run_name() -> str:
    """`cycle-20250523T0400` from an explicit --as-of; the flow renames its run once it knows the
    decision time (the last bar, the next bar of the account's clock, or now)."""
    from prefect.runtime import flow_run

    as_of = (flow_run.parameters or {}).get("as_of")
    if as_of and as_of != "next":
        try:
            import pandas as pd

            return f"cycle-{pd.Timestamp(as_of):%Y%m%dT%H%M}"
        except ValueError:
            pass
    return f"cycle-{as_of or 'now'}"


def rename_run(name: str) -> None:
    """Give the current flow run its final name (best effort: a name never fails a run)."""
    try:
        ctx = get_run_context()
        fr = getattr(ctx, "flow_run", None)
        if fr is None or fr.name == name:
            return
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            client.update_flow_run(fr.id, name=name)
    except Exception:  # noqa: BLE001
        pass


@flow(name="trading-cycle", flow_run_name=cycle_run_name, log_prints=False, retries=0)
def trading_cycle(as_of: str | None = None, symbols: list[str] | None = None, use_llm_cache: bool = True,
                  broadcast: bool = True) -> dict[str, Any]:
    """Run one trading cycle and return its report (also stored in the database). The posts are
    always delivered to Telegram when it is configured; `broadcast=False` (e.g. `cycle --json`) only
    keeps them off the console (they stay pending in the outbox). `as_of`: a UTC time, None (replay:
    the last bundled bar; live data: now) or "next" (replay: the first bar after the account's clock,
    so scheduled runs walk forward one bar per run). One run per account at a time: the cycle holds
    the account's lock (store/lock.py) from its first read to its last write."""
    started = time.perf_counter()
    logger = get_run_logger()
    settings = load_settings()
    check_cycle_strategy(settings)
    require_live_confirmation(settings)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    source = build_source(settings)
    factory = get_session_factory(settings)
    with account_lock(settings, "a trading cycle", on_wait=logger.warning):
        decision_time = resolve_decision_time(factory, source, settings.mode, as_of)
        check_clock(factory, settings.mode, decision_time)
        rename_run(f"cycle-{decision_time:%Y%m%dT%H%M}")
        cycle_id = f"{settings.mode}-{decision_time:%Y%m%dT%H%M}-{uuid.uuid4().hex[:6]}"
        reconciled = record.start_cycle(factory, cycle_id, decision_time, settings.mode, source.name,
                                        _flow_run_id())
        logger.info("cycle %s: %s account, source %s, decision time %s (as_of=%s)", cycle_id, settings.mode,
                    source.name, decision_time.isoformat(), as_of)
        timings["setup"] = time.perf_counter() - t0
        try:
            report = _run_cycle(settings, source, factory, cycle_id, decision_time, symbols, use_llm_cache,
                                broadcast, timings, t0, logger)
            if reconciled:
                report["reconciled"] = [f"cycle {c} was left running by a process that is gone: marked failed"
                                        for c in reconciled]
            # the flow function's body, first line to here: `total` and the report, its storing and the
            # artifacts (the stored copy, written before this, has `total` only)
            report["timings_s"]["flow"] = round(time.perf_counter() - started, 3)
            return report
        except BaseException as exc:
            record.fail_cycle(factory, cycle_id, exc)
            raise


def _run_cycle(settings: Settings, source, factory, cycle_id: str, decision_time: datetime,  # type: ignore[no-untyped-def]
               symbols: list[str] | None, use_llm_cache: bool, broadcast: bool, timings: dict[str, float],
               t0: float, logger) -> dict[str, Any]:
    """The cycle's stages after its row is started (a failure marks the row failed)."""
    # 0. load the account once; bring open positions up to the decision time (the monitor's rules)
    t1 = time.perf_counter()
    acct, monitor = monitor_task(factory, source, settings, decision_time, load(factory, settings))
    pause_point("cycle:after-load")
    timings["monitor"] = time.perf_counter() - t1
    logger.info("monitor: %d open position(s) walked to %s; %s", len(acct.open_positions()),
                decision_time.isoformat(), "; ".join(monitor.get("events", [])) or "no exit or stop move")

    # 1. coin hunter ∥ data collector
    t1 = time.perf_counter()
    available, statuses = _panel(settings)
    hunter_future = None
    if settings.universe == "hunter" and not symbols:
        from tasks.panel import hunter_task

        hunter_future = hunter_task.submit(settings, decision_time)
    tickers = tickers_task.submit(source, decision_time).result()
    hunted = fanout.hunt(settings, source, tickers, hunter_future, logger)
    candidates, dropped, universe_note = select_candidates(settings, tickers, source.symbols(), symbols, hunted)
    pending_news = fanout.submit_news(settings, [c.symbol for c in candidates], decision_time)
    futures = {c.symbol: collect_task.submit(source, c.symbol, decision_time) for c in candidates}
    bad = source.quarantined() if hasattr(source, "quarantined") else {}
    dropped = [(s, f"quarantined: {bad[s]}" if s in bad else r) for s, r in dropped]
    snapshots, left_out = fanout.collect_snapshots(futures, bad, logger)
    dropped += left_out
    timings["collect"] = time.perf_counter() - t1
    logger.info("candidates (%s): %s%s", universe_note, ", ".join(snapshots) or "none",
                "".join(f"; dropped {sym}: {why}" for sym, why in dropped))

    # 2. news analyst (started with the collection) + math engine
    t1 = time.perf_counter()
    news: dict[str, NewsReport] = fanout.news_reports(pending_news, decision_time)
    acct, closed_on_news = news_exits(factory, source, settings, decision_time, news, acct)
    if closed_on_news:
        monitor["events"] += [f"closed on critical negative news: {x}" for x in closed_on_news]
    scores: dict[str, Score] = score_task(snapshots, settings.signal, news)
    timings["score"] = time.perf_counter() - t1
    logger.info("math scores: %s", ", ".join(
        f"{sym} {sc.final:+.3f} {sc.signal.value} ({sc.trend.value}/{sc.vol_state.value})" for sym, sc in scores.items()))
    logger.info("news: %s", ", ".join(f"{sym} {'n/a' if not n.available else f'{n.score:+.2f}'}"
                                      for sym, n in news.items()) or "none")

    # 3. the decision panel: one task per model, all candidates in one prompt. A rerun of a decision
    #    time reuses what was decided then; the panel sees the account as it was before this decision
    #    (not the positions an earlier run of it opened).
    t1 = time.perf_counter()
    prior = record.reuse_prior(factory, settings, decision_time, list(scores), available) if use_llm_cache else None
    before = as_before(acct, decision_time)  # a view for the panel and risk; `acct` is what gets stored
    if prior is not None:
        votes: list[Vote] = [v for sym in scores for v in prior[sym].votes]
    else:
        votes = fanout.run_panel_tasks(settings, available, statuses, snapshots, scores, news,
                                       before.open_positions(), decision_time, use_llm_cache)
    timings["panel"] = time.perf_counter() - t1
    logger.info("%s", record.panel_status_line(statuses, votes))

    # 4. consensus → risk (pure; the last word)
    t1 = time.perf_counter()
    if prior is not None:
        decisions = {sym: prior[sym].decision for sym in scores}
        verdicts = {sym: prior[sym].verdict for sym in scores}
    else:
        decisions, verdicts = risk_task(factory, source, settings, decision_time, scores, snapshots, votes, news,
                                        before)
    # a symbol run by another strategy than trend: its decision is an input of that strategy, whose
    # intents the risk manager checks in the strategy step (step 5b)
    verdicts = {s: v if settings.strategy_for(s) == "trend" else
                RiskVerdict(s, False, (f"strategy {settings.strategy_for(s)}: intents checked in the strategy step",))
                for s, v in verdicts.items()}
    timings["decide+risk"] = time.perf_counter() - t1
    for sym in scores:
        dec, ver = decisions[sym], verdicts[sym]
        logger.info("decision %s: %s (confidence %.2f, combined %+.3f; %s) -> risk %s%s", sym, dec.action.value,
                    dec.confidence, dec.combined_score, dec.reason[:200], "APPROVED" if ver.approved else "denied",
                    "" if ver.approved else ": " + "; ".join(ver.reasons)[:300])

    # 5. execute + persist in one transaction
    t1 = time.perf_counter()
    prices = {s: snap.last for s, snap in snapshots.items()}
    acct, executed = execute_task(factory, source, settings, cycle_id, decision_time, candidates, scores, news,
                                  votes, decisions, verdicts, prices, acct)
    strategy_out: dict[str, Any] = {}
    if any(settings.strategy_for(s) not in ("trend", "rebalance") for s in scores):
        acct, strategy_out = strategy_task(factory, source, settings, cycle_id, decision_time, snapshots, scores,
                                           decisions, news, acct)
    rebalance_out = (rebalance_task(factory, source, settings, decision_time, decisions, cycle_id)
                     if settings.strategy == "rebalance" else None)
    timings["execute+persist"] = time.perf_counter() - t1
    logger.info("execution: %s", ", ".join(f"{sym} {ex.get('status')} {ex.get('fill_price', '')}".strip()
                                           for sym, ex in executed.items() if ex) or "no order")
    t1 = time.perf_counter()  # 5b. each member's shadow paper account trades its own votes (live leaderboard)
    shadows = shadow.trade_shadows(factory, source, settings, cycle_id, decision_time, votes, scores, snapshots,
                                   news)
    timings["shadows"] = time.perf_counter() - t1

    # 6. broadcast (never fails the cycle)
    t1 = time.perf_counter()
    delivery = broadcast_task(factory, settings, console=broadcast)  # Telegram always; console only if asked
    timings["broadcast"] = time.perf_counter() - t1
    logger.info("broadcast: %s", delivery)
    timings["total"] = time.perf_counter() - t0

    report = {
        "cycle_id": cycle_id,
        "as_of": decision_time.isoformat(),
        "mode": settings.mode,
        "source": source.name,
        "risk_profile": settings.risk_profile,
        "universe": universe_note,
        "dropped": [{"symbol": s, "reason": r} for s, r in dropped],
        "panel": {
            "members": [{"id": st.member_id, "available": st.available, "reason": st.reason} for st in statuses],
            "status": record.panel_status_line(statuses, votes, decisions),
        },
        "candidates": [
            {
                "symbol": s,
                "price": snapshots[s].last,
                "spread_pct": round(snapshots[s].spread_pct, 4),
                "funding_rate": snapshots[s].funding_rate,
                "notes": list(snapshots[s].notes),
                "score": score_breakdown(scores[s]),
                "news": {"available": news[s].available, "score": news[s].score, "note": news[s].note,
                         "events": len(news[s].events)} if s in news else None,
                "votes": [record.vote_dict(v) for v in votes if v.symbol == s],
                "decision": record.decision_dict(decisions[s]),
                "risk": record.verdict_dict(verdicts[s]),
                "execution": executed.get(s),
                **({"strategy": strategy_out[s]} if s in strategy_out else {}),
            }
            for s in scores
        ],
        "reused": None if prior is None else sorted({sd.cycle_id for sd in prior.values()}),
        **({"rebalance": rebalance_out} if rebalance_out is not None else {}),
        "monitor": monitor,
        "shadows": shadows,
        "account": account_summary(factory, source, settings, decision_time, acct),
        "llm_cost": record.cost_summary(votes, news),
        "delivery": delivery,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
    record.finish_cycle(factory, cycle_id, report)
    publish_artifacts(report)
    logger.info("cycle %s done: %s", cycle_id, ", ".join(
        f"{c['symbol']} {c['decision']['action']}" for c in report["candidates"]))
    return report


def any_trade(report: dict[str, Any]) -> bool:
    return any(c["decision"]["action"] != Action.WAIT.value and c["risk"]["approved"] for c in report["candidates"])
