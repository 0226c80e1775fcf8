"""Housekeeping tasks: delete old finished Prefect flow runs (their task runs, logs and artifacts go
with them, by the server's cascade) and prune Quorum's old analysis rows (store/retention.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prefect import task
from prefect.cache_policies import NO_CACHE

FINISHED = ("COMPLETED", "FAILED", "CANCELLED", "CRASHED")
PAGE = 200


def prune_flow_runs(older_than: datetime, keep: set[str] | None = None, client=None,  # type: ignore[no-untyped-def]
                    flow_names: list[str] | None = None) -> int:
    """Delete every finished flow run that ended before `older_than` (of the flows `flow_names`, default
    all) through the Prefect API; returns how many. Runs still scheduled, pending or running are never
    touched."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterEndTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    flows = FlowFilter(name=FlowFilterName(any_=flow_names)) if flow_names else None

    keep = keep or set()
    flt = FlowRunFilter(end_time=FlowRunFilterEndTime(before_=older_than),
                        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType(s) for s in FINISHED])))
    deleted = 0
    own = client is None
    client = client or get_client(sync_client=True)
    try:
        if own:
            client.__enter__()
        while True:
            runs = [r for r in client.read_flow_runs(flow_filter=flows, flow_run_filter=flt, limit=PAGE)
                    if str(r.id) not in keep]
            if not runs:
                return deleted
            for r in runs:
                client.delete_flow_run(r.id)
                deleted += 1
    finally:
        if own:
            client.__exit__(None, None, None)


@task(name="prune-flow-runs", cache_policy=NO_CACHE)
def prune_flow_runs_task(days: int, keep: set[str]) -> int:
    return prune_flow_runs(datetime.now(UTC) - timedelta(days=days), keep)


@task(name="prune-analysis", cache_policy=NO_CACHE)
def prune_analysis_task(settings, days: int) -> dict[str, int]:  # type: ignore[no-untyped-def]
    from store.db import get_session_factory, transaction
    from store.retention import prune_analysis

    with transaction(get_session_factory(settings)) as s:
        return prune_analysis(s, datetime.now(UTC) - timedelta(days=days))
