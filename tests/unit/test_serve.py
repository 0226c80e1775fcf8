"""deployments/serve.py mirrors prefect.yaml's scheduled deployments under distinct names."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_serve_mirrors_prefect_yaml_without_colliding(monkeypatch) -> None:
    from deployments import serve

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    yaml_names = {(d["entrypoint"], d["name"]) for d in spec["deployments"]}
    served = serve.build()
    assert len(served) == len(serve.SCHEDULED) == 4
    by_name = {d.name: d for d in served}
    for d in spec["deployments"]:
        if d["name"] not in serve.SCHEDULED:
            continue
        mine = by_name[d["name"] + serve.SUFFIX]
        assert (d["entrypoint"], mine.name) not in yaml_names, "a served name never equals a deployed one"
        sched = mine.schedules[0].schedule
        want = d["schedules"][0]
        if "cron" in want:
            assert sched.cron == want["cron"]
        else:
            assert sched.interval.total_seconds() == want["interval"]
        assert mine.entrypoint.endswith(d["entrypoint"].split(":")[1]) or mine.flow_name
    # paper trading on live public data, like the work-pool deployments
    env = spec["definitions"]["job_variables"]["env"]
    assert env == {"QUORUM_MODE": "paper", "QUORUM_DATA_SOURCE": "ccxt"}
    assert all(d["env"] == env for d in serve.deployments_spec() if d["name"] != "nightly" + serve.SUFFIX)
