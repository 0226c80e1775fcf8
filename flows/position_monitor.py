"""position_monitor: walk every open position through the bars since it was last checked.

Same rules as the cycle's first step (pipeline.monitor.sync_positions → risk.exits.step + funding +
liquidation, per position in one transaction), then critical-news exits and delivery of the posts.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from core.faults import pause_point
from core.settings import load_settings
from exchange.factory import build_source
from pipeline import shadow
from pipeline.account import decision_time, load
from pipeline.monitor import news_exits
from store.db import get_session_factory
from store.lock import account_lock
from tasks import fanout
from tasks.artifacts import publish_monitor_artifact
from tasks.cycle import broadcast_task, monitor_task


def monitor_run_name() -> str:
    from prefect.runtime import flow_run

    as_of = (flow_run.parameters or {}).get("as_of")
    return f"monitor-{as_of or 'now'}"


@flow(name="position-monitor", flow_run_name=monitor_run_name, log_prints=False)
def position_monitor(as_of: str | None = None, broadcast: bool = True) -> dict[str, Any]:
    """Walk the open positions up to `as_of` (replay; "next": the account's clock) or now (live data),
    holding the account's lock like a cycle."""
    logger = get_run_logger()
    settings = load_settings()
    source = build_source(settings)
    factory = get_session_factory(settings)
    with account_lock(settings, "the position monitor", on_wait=logger.warning):
        until = decision_time(factory, source, settings.mode, as_of, advance=False)
        acct, summary = monitor_task(factory, source, settings, until, load(factory, settings))
        pause_point("monitor:after-load")
        open_syms = sorted({p.symbol for p in acct.open_positions()} | shadow.open_symbols(factory, settings.mode))
        news = fanout.news_reports(fanout.submit_news(settings, open_syms, until), until)  # cached 1 h
        _, closed = news_exits(factory, source, settings, until, news, acct)
        summary["events"] += [f"closed on critical negative news: {x}" for x in closed]
        summary["shadows"] = shadow.sync_shadows(factory, source, settings, until, news)  # members' shadow accounts
    logger.info("monitor: %d position(s) checked up to %s; %s", summary["checked"], until.isoformat(),
                "; ".join(summary["events"]) or "no exit or stop move")
    summary["delivery"] = broadcast_task(factory, settings, console=broadcast)
    logger.info("broadcast: %s", summary["delivery"])
    summary["as_of"] = until.isoformat()
    publish_monitor_artifact(summary)
    return summary
