"""docker-compose.yml is valid for Compose (`docker-compose config`, Debian's package, installed by
.ci/run) and wires the services as the README says."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def compose(*args: str) -> str:
    exe = shutil.which("docker-compose")
    if exe is None:
        msg = "docker-compose is not installed (apt-get install docker-compose; .ci/run does it)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    r = subprocess.run([exe, "-f", str(ROOT / "docker-compose.yml"), *args], cwd=ROOT, capture_output=True,
                       text=True, timeout=60, check=False, env={**os.environ, "POSTGRES_PASSWORD": "pw"})
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_compose_file_is_valid_and_wired() -> None:
    compose("config", "-q")
    cfg = yaml.safe_load(compose("--profile", "tools", "--profile", "sweep", "config"))
    svc = cfg["services"]
    assert {"postgres", "redis", "prefect-server", "worker", "deploy", "quorum", "dask-scheduler",
            "dask-worker"} <= set(svc)
    assert "postgresql+asyncpg://postgres:pw@postgres:5432/prefect" in str(
        svc["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"])
    for name in ("worker", "quorum", "deploy"):
        env = svc[name]["environment"]
        assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
        assert env["QUORUM_DATABASE_URL"] == "postgresql://postgres:pw@postgres:5432/quorum"
        assert env["QUORUM_REDIS_URL"] == "redis://redis:6379/0"
    assert svc["worker"]["command"][:4] == ["prefect", "worker", "start", "--pool"]
    assert svc["worker"]["stop_signal"] == "SIGINT"  # a Prefect worker stops on SIGINT
    assert "deploy --all" in " ".join(svc["deploy"]["command"])
    assert (ROOT / "Dockerfile").exists() and (ROOT / "deployments/compose/init-prefect-db.sql").exists()
