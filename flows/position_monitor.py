"""position_monitor: walk every open position through the bars since it was last checked.

Same rules as the cycle's first step (pipeline.monitor.sync_positions → risk.exits.step + funding +
liquidation, per position in one transaction), then critical-news exits and delivery of the posts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow

from core.settings import load_settings
from exchange.factory import build_source
from pipeline import shadow
from pipeline.account import load
from pipeline.monitor import news_exits
from store.db import get_session_factory
from tasks import fanout
from tasks.cycle import broadcast_task, monitor_task


@flow(name="position-monitor", log_prints=False)
def position_monitor(as_of: str | None = None, broadcast: bool = True) -> dict[str, Any]:
    settings = load_settings()
    source = build_source(settings)
    until = source.check_as_of(as_of).to_pydatetime() if hasattr(source, "check_as_of") else datetime.now(UTC)
    factory = get_session_factory(settings)
    acct, summary = monitor_task(factory, source, settings, until, load(factory, settings))
    open_syms = sorted({p.symbol for p in acct.open_positions()} | shadow.open_symbols(factory, settings.mode))
    news = fanout.news_reports(fanout.submit_news(settings, open_syms, until), until)  # cached 1 h
    _, closed = news_exits(factory, source, settings, until, news, acct)
    summary["events"] += [f"closed on critical negative news: {x}" for x in closed]
    summary["shadows"] = shadow.sync_shadows(factory, source, settings, until, news)  # members' shadow accounts
    summary["delivery"] = broadcast_task(factory, settings, console=broadcast)
    summary["as_of"] = until.isoformat()
    return summary
