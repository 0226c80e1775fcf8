"""Serve every Quorum flow from one process (no work pool needed):

    .venv/bin/python -m deployments.serve

Equivalent to the deployments in prefect.yaml. For scale-out use a process work pool and
`prefect deploy --all` instead; each flow run is then its own process.
"""

from __future__ import annotations

from tasks import prefect_env

prefect_env.apply()

from prefect import serve  # noqa: E402

from flows.daily_report import daily_report  # noqa: E402
from flows.position_monitor import position_monitor  # noqa: E402
from flows.trading_cycle import trading_cycle  # noqa: E402


def main() -> None:
    serve(
        trading_cycle.to_deployment(name="hourly", cron="1 * * * *"),
        position_monitor.to_deployment(name="every-5-minutes", interval=300),
        daily_report.to_deployment(name="daily", cron="5 0 * * *"),
    )


if __name__ == "__main__":
    main()
