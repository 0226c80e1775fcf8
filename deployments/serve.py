"""Serve Quorum's scheduled flows from one process, the alternative to a work pool:

    .venv/bin/python -m deployments.serve

The same flows, schedules and settings as prefect.yaml (paper trading on live public data), under
distinct names (`trading-cycle/hourly-served`, ...) so that running it next to `prefect deploy --all`
never takes over, pauses or rewrites the work-pool deployments. Flow runs run inside this process.
For scale-out use a process work pool and `prefect deploy --all` instead (each flow run its own process).
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from tasks import prefect_env

prefect_env.apply()

SUFFIX = "-served"
PREFECT_YAML = Path(__file__).resolve().parent.parent / "prefect.yaml"
SCHEDULED = ("hourly", "every-5-minutes", "daily", "nightly")


def deployments_spec(path: Path = PREFECT_YAML) -> list[dict]:
    """The scheduled deployments of prefect.yaml: name (with SUFFIX), entrypoint, schedule kwargs, env."""
    spec = yaml.safe_load(path.read_text())
    out = []
    for d in spec["deployments"]:
        if d["name"] not in SCHEDULED:
            continue
        sched = d["schedules"][0]
        kw = {"cron": sched["cron"]} if "cron" in sched else {"interval": sched["interval"]}
        env = ((d.get("work_pool") or {}).get("job_variables") or {}).get("env") or {}
        out.append({"name": d["name"] + SUFFIX, "entrypoint": d["entrypoint"], "schedule": kw,
                    "parameters": d.get("parameters") or {}, "env": env})
    return out


def build(apply_env: bool = False) -> list:
    """RunnerDeployments for `prefect.serve` (one per scheduled deployment of prefect.yaml); with
    `apply_env` the deployments' job env becomes this process's (where the served runs run)."""
    from prefect.flows import load_flow_from_entrypoint

    root = PREFECT_YAML.parent
    deployments = []
    for d in deployments_spec():
        for k, v in d["env"].items() if apply_env else ():
            os.environ.setdefault(k, v)
        file, fn = d["entrypoint"].split(":")
        flow = load_flow_from_entrypoint(f"{root / file}:{fn}")
        deployments.append(flow.to_deployment(name=d["name"], parameters=d["parameters"], **d["schedule"]))
    return deployments


def main() -> None:
    from prefect import serve

    serve(*build(apply_env=True))


if __name__ == "__main__":
    main()
