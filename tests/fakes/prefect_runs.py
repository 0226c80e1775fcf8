"""What the Prefect API holds of one flow run, read back through the real client (the API the
environment points at): the run, its logs, its task runs and its artifacts."""

from __future__ import annotations

from typing import Any, NamedTuple


class RunRecord(NamedTuple):
    run: Any
    logs: list[Any]
    tasks: list[Any]
    artifacts: list[Any]


def read_run(run_id: Any) -> RunRecord:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )

    with get_client(sync_client=True) as client:
        return RunRecord(
            client.read_flow_run(run_id),
            client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])), limit=200),
            client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])), limit=200),
            client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))),
        )
