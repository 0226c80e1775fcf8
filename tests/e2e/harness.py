"""A real Prefect server on loopback for the end-to-end tests (the `stack` fixture in conftest.py),
and the helpers to drive it: a free port per test (safe under pytest-xdist), everything under the
test's tmp_path, every process started killed by process group, even on failure."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(p: subprocess.Popen, sig: int, grace: float = 20) -> None:
    if p.poll() is not None:
        return
    try:
        os.killpg(p.pid, sig)
        p.wait(timeout=grace)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait(timeout=10)


def base_env(tmp_path: Path, api: str, **extra: str) -> dict[str, str]:
    """This process's environment without QUORUM_/PREFECT_ settings, pointed at `api`, with Prefect's
    home and result storage under tmp_path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUORUM_", "PREFECT_"))}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_API_URL=api,
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_ENABLED="false",
               PREFECT_LOCAL_STORAGE_PATH=str(tmp_path / "results"), PYTHONPATH=str(ROOT), **extra)
    return env


@contextmanager
def prefect_stack(tmp_path: Path, **server_env: str) -> Iterator[dict]:
    """`prefect server start` on a free loopback port, its own home and database under tmp_path.
    Yields {"api", "env", "procs", "tmp"}: append (Popen, stop signal) to "procs" for anything
    started against it; all of them are stopped (in reverse order) on the way out."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = base_env(tmp_path, api, **server_env)
    procs: list[tuple[subprocess.Popen, int]] = []
    server = spawn(procs, [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                   env, tmp_path / "server.log", signal.SIGTERM, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                if httpx.get(api + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the Prefect server did not start in 120 s"
            time.sleep(0.5)
        yield {"api": api, "env": env, "procs": procs, "tmp": tmp_path}
    finally:
        for p, sig in reversed(procs):
            stop_group(p, sig)


def spawn(procs: list[tuple[subprocess.Popen, int]], argv: list[str], env: dict, log: Path, stop: int,
          cwd: Path = ROOT) -> subprocess.Popen:
    """Start `argv` in a process group of its own, output to `log`, and register it in `procs`
    (a stack's "procs"), to be stopped with `stop` (then SIGKILL) on the way out."""
    with open(log, "w") as out:
        p = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    procs.append((p, stop))
    return p


def start_warm(procs: list[tuple[subprocess.Popen, int]], env: dict, tmp: Path) -> tuple[dict[str, str], Path]:
    """`quorum warm` on a socket under `tmp`, registered in `procs` (stopped with SIGTERM), once it
    listens (it loads for ~10 s). Returns (the environment that hands commands to it, its log)."""
    env = dict(env, QUORUM_WARM_SOCKET=str(tmp / "warm.sock"))
    log = tmp / "warm.log"
    p = spawn(procs, [str(BIN / "quorum"), "warm"], env, log, signal.SIGTERM, cwd=tmp)
    deadline = time.monotonic() + 240
    while "listening on" not in log.read_text():
        assert p.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    return env, log


def migrated_db(tmp_path: Path) -> Path:
    """A Quorum SQLite database under tmp_path, migrated once before runs that start together on it
    (serialising concurrent first migrations is store/db.py's job, not the e2e tests')."""
    from store.db import dispose_all, open_database

    db = tmp_path / "quorum.db"
    open_database(f"sqlite:///{db}")
    dispose_all()
    return db


def prefect(env: dict, *args: str) -> str:
    """Run the `prefect` CLI against the stack; its stdout (a failure shows its output)."""
    r = subprocess.run([str(BIN / "prefect"), *args], env=env, cwd=ROOT, capture_output=True, text=True,
                       timeout=180, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


def tail(path: Path, n: int = 3000) -> str:
    return path.read_text()[-n:] if path.exists() else f"({path.name} missing)"
