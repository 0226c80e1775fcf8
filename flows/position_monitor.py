"""position_monitor: walk every open position through the bars since it was last checked.

Same rules as the cycle's first step (tasks.execution.sync_positions → risk.exits.step + funding +
liquidation, per position in one transaction), then delivery of the exit/update posts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from core.settings import load_settings
from exchange.factory import build_source
from pipeline import shadow
from store.db import get_session_factory
from tasks import execution


@task(name="sync-positions", cache_policy=NO_CACHE)
def sync_task(factory, source, settings, until: datetime) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return execution.sync_positions(factory, source, settings, until)


@task(name="broadcast", cache_policy=NO_CACHE)
def deliver_task(factory, settings, console: bool = True) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return execution.deliver(factory, settings, console=console)


@flow(name="position-monitor", log_prints=False)
def position_monitor(as_of: str | None = None, broadcast: bool = True) -> dict[str, Any]:
    settings = load_settings()
    source = build_source(settings)
    if hasattr(source, "check_as_of"):
        until = source.check_as_of(as_of).to_pydatetime()
    else:
        until = datetime.now(UTC)
    factory = get_session_factory(settings)
    summary = sync_task(factory, source, settings, until)
    open_syms = sorted({p.symbol for p in execution.open_positions(factory, settings)})
    news = execution.news_reports(execution.submit_news(settings, open_syms, until), until)  # cached 1 h
    summary["events"] += [f"closed on critical negative news: {x}"
                          for x in execution.news_exits(factory, source, settings, until, news)]
    summary["shadows"] = shadow.sync_shadows(factory, source, settings, until, news)  # members' shadow accounts
    summary["delivery"] = deliver_task(factory, settings, console=broadcast)
    summary["as_of"] = until.isoformat()
    return summary
