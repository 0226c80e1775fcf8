"""backtest-sweep: risk profiles × symbol sets × walk-forward windows, one backtest task per variant
fanned out on a Dask cluster (prefect-dask's DaskTaskRunner: QUORUM_DASK_ADDRESS, or a local
cluster), then one comparison report (table + equity curves) of all variants."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from backtest.sweep import Variant, parse_symbol_sets, sweep_windows, variants, write_sweep_report
from core.settings import load_settings
from tasks.sweep import dask_runner, variant_task

DEFAULT_PROFILES = "default,conservative,kelly"
DEFAULT_SYMBOL_SETS = "BTC/USDT:USDT,ETH/USDT:USDT;SOL/USDT:USDT,XRP/USDT:USDT"


@flow(name="backtest-sweep-variants", log_prints=False)
def run_variants(todo: list[Variant], panel: str = "math") -> list[dict[str, Any]]:
    """The fan-out: one task per variant on the flow's task runner (set by `sweep`)."""
    futures = [variant_task.submit(v, panel) for v in todo]
    return [f.result() for f in futures]


@flow(name="backtest-sweep", log_prints=False)
def sweep(start: str = "2025-03-01", end: str = "2025-05-31", profiles: str = DEFAULT_PROFILES,
          symbol_sets: str = DEFAULT_SYMBOL_SETS, train_days: int = 0, test_days: int = 30, panel: str = "math",
          out_dir: str = "reports") -> dict[str, Any]:
    logger = get_run_logger()
    settings = load_settings()
    windows = sweep_windows(start, end, train_days, test_days, settings.cycle_interval_minutes)
    todo = variants([p.strip() for p in profiles.split(",") if p.strip()], parse_symbol_sets(symbol_sets), windows)
    where = settings.dask_address or f"a local Dask cluster ({settings.dask_workers} processes)"
    logger.info("sweep: %d variants (%s profiles x %d symbol sets x %d windows) on %s", len(todo),
                profiles, len(parse_symbol_sets(symbol_sets)), len(windows), where)
    results = run_variants.with_options(task_runner=dask_runner(settings))(todo, panel)
    params = {"start": start, "end": end, "profiles": profiles, "symbol_sets": symbol_sets, "train_days": train_days,
              "test_days": test_days, "panel": panel, "cluster": where}
    html, js = write_sweep_report(results, out_dir, params,
                                  basename=f"sweep-{windows[0][0]:%Y%m%d}-{windows[-1][1]:%Y%m%d}")
    logger.info("sweep report: %s", html)
    _publish(results, html)
    return {"variants": len(results), "report_html": str(html), "report_json": str(js),
            "workers": sorted({r["worker"] for r in results}), "results": results}


def _publish(results: list[dict[str, Any]], html) -> None:  # type: ignore[no-untyped-def]
    try:
        from prefect.artifacts import create_markdown_artifact, create_table_artifact

        from backtest.sweep import comparison_rows

        create_table_artifact(key="backtest-sweep", table=comparison_rows(results),
                              description=f"{len(results)} variants")
        create_markdown_artifact(key="backtest-sweep-report",
                                 markdown=f"[sweep report]({html.resolve().as_uri()})")
    except Exception:  # noqa: BLE001 - artifacts never fail a run
        pass
