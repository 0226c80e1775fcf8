"""The sweep's task (one backtest variant) and its Dask task runner."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from backtest.sweep import Variant, run_variant


@task(name="backtest-variant", task_run_name="variant-{variant.name}", cache_policy=NO_CACHE)
def variant_task(variant: Variant, panel: str = "math") -> dict[str, Any]:
    return run_variant(variant, panel)


def dask_runner(settings):  # type: ignore[no-untyped-def]
    """prefect-dask's DaskTaskRunner: the cluster at `settings.dask_address` (QUORUM_DASK_ADDRESS, e.g.
    tcp://scheduler:8786), else a LocalCluster of `settings.dask_workers` processes on loopback, one
    thread each (a backtest is CPU-bound Python: processes, not threads)."""
    from prefect_dask import DaskTaskRunner

    if settings.dask_address:
        return DaskTaskRunner(address=settings.dask_address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": settings.dask_workers, "threads_per_worker": 1,
                                          "processes": True, "host": "127.0.0.1", "dashboard_address": None})
