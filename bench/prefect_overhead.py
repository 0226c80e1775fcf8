"""What Prefect costs a `quorum cycle`: wall time against the flow's own work.

    .venv/bin/python bench/prefect_overhead.py [--runs 3]

One offline paper cycle (replay, 6 symbols, no keys, a fresh SQLite file each run):
1. with a running Prefect server (`prefect server start` on a free port, started once here):
   a. `quorum cycle --json` handed to a warm process (`quorum warm`, started once here): wall time of
      the `quorum` command from exec to exit, the target (<= 1.5x the flow's own work);
   b. the `quorum cycle --json` process on its own (QUORUM_WARM=0): Python start-up and imports included;
   c. the flow call as the CLI makes it (in one process, after imports): the overhead Prefect adds
      per run (flow-run and task-run records, logs and artifacts through the API);
2. with a temporary server (no PREFECT_API_URL): the `quorum cycle --json` process wall time.
"The flow's own work" is the flow function's body, its first line to its return (`timings_s.flow`, measured
inside the flow: the stages, the report, storing it, the artifacts); the last column is the same ratio
against the stages alone (`timings_s.total`, which leaves out the report, its storing and the artifacts).
For scale, the last row is a Python process that only imports what a cycle needs (the CLI, Prefect,
pandas, SQLAlchemy, pandas-ta): the part of 1a that no Prefect setting changes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
AS_OF = "2025-05-23T04:00:00Z"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUORUM_", "PREFECT_"))}
    env.update(PREFECT_HOME=str(tmp / "prefect-home"), PYTHONPATH=str(ROOT),
               PREFECT_LOCAL_STORAGE_PATH=str(tmp / "results"), QUORUM_WARM="0")
    return env


def start_warm(env: dict[str, str], tmp: Path) -> tuple[subprocess.Popen, dict[str, str], float]:
    """`quorum warm` on a socket of its own; the environment that hands commands to it; its load time."""
    sock = tmp / "warm.sock"
    warm_env = {k: v for k, v in env.items() if k != "QUORUM_WARM"}
    warm_env["QUORUM_WARM_SOCKET"] = str(sock)
    log = tmp / "warm.log"
    t0 = time.perf_counter()
    with log.open("w") as fh:
        p = subprocess.Popen([str(BIN / "quorum"), "warm"], env=warm_env, cwd=tmp, stdout=fh,
                             stderr=subprocess.STDOUT, start_new_session=True)
    while "listening on" not in log.read_text():
        if p.poll() is not None:
            raise SystemExit(f"quorum warm exited: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    return p, warm_env, time.perf_counter() - t0


def handed(tmp: Path) -> int:
    """How many cycles the warm process ran (so its row is not cold starts by mistake)."""
    return (tmp / "warm.log").read_text().count("runs `quorum cycle")


def cli_cycle(env: dict[str, str], db: Path) -> tuple[float, float, float]:
    """(process wall s, the flow's own work s, its stages s) of one `quorum cycle --json` on a fresh database."""
    env = dict(env, QUORUM_DATABASE_URL=f"sqlite:///{db}")
    t0 = time.perf_counter()
    r = subprocess.run([str(BIN / "quorum"), "cycle", "--as-of", AS_OF, "--json"], env=env, cwd=db.parent,
                       capture_output=True, text=True, timeout=600, check=False)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"quorum cycle failed: {r.stderr[-2000:]}")
    tm = json.loads(r.stdout)["timings_s"]
    return wall, float(tm["flow"]), float(tm["total"])


def start_server(env: dict[str, str], tmp: Path) -> tuple[subprocess.Popen, str, float]:
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    t0 = time.perf_counter()
    p = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                         env=dict(env, PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_ENABLED="false"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, cwd=tmp)
    import httpx

    while True:
        if p.poll() is not None:
            raise SystemExit("prefect server start exited")
        try:
            if httpx.get(api + "/health", timeout=2).status_code == 200:
                return p, api, time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.3)


def imports_only(env: dict[str, str]) -> float:
    """Wall s of a Python process that imports the CLI and the cycle's flow, and exits."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import cli.app, cli.trading, flows.trading_cycle"], env=env, cwd=ROOT,
                   check=True, timeout=300)
    return time.perf_counter() - t0


def in_process(api: str, tmp: Path, runs: int) -> list[tuple[float, float, float]]:
    """The flow call as the CLI makes it, in one process with a running server."""
    code = f"""
import json, os, sys, time
from tasks import prefect_env
prefect_env.apply()
from flows.trading_cycle import trading_cycle
out = []
for i in range({runs} + 1):
    os.environ["QUORUM_DATABASE_URL"] = "sqlite:///{tmp}/inproc-%d.db" % i
    t0 = time.perf_counter()
    r = trading_cycle(as_of="{AS_OF}", broadcast=False)
    out.append((time.perf_counter() - t0, r["timings_s"]["flow"], r["timings_s"]["total"]))
print(json.dumps(out[1:]))  # the first call warms caches (imports inside tasks, the bundled history)
"""
    env = dict(base_env(tmp), PREFECT_API_URL=api)
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                       timeout=900, check=False)
    if r.returncode != 0:
        raise SystemExit(r.stderr[-2000:])
    return [tuple(x) for x in json.loads(r.stdout.strip().splitlines()[-1])]


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="quorum-bench-prefect-"))
    server = None
    try:
        env = base_env(tmp)
        server, api, startup = start_server(env, tmp)
        print(f"running Prefect server: started in {startup:.1f} s (once)")
        warm, warm_env, loaded = start_warm(dict(env, PREFECT_API_URL=api), tmp)
        print(f"quorum warm: loaded in {loaded:.1f} s (once)")
        warmed = [cli_cycle(warm_env, tmp / f"warm-{i}" / "q.db") for i in range(args.runs)
                  if (tmp / f"warm-{i}").mkdir() is None]
        stop(warm)
        if handed(tmp) != len(warmed):
            raise SystemExit(f"the warm process ran {handed(tmp)} of {len(warmed)} cycles: {(tmp / 'warm.log').read_text()}")
        running = [cli_cycle(dict(env, PREFECT_API_URL=api), tmp / f"run-{i}" / "q.db") for i in range(args.runs)
                   if (tmp / f"run-{i}").mkdir() is None]
        inproc = in_process(api, tmp, args.runs)
        stop(server)
        server = None
        temp = [cli_cycle(env, tmp / f"temp-{i}" / "q.db") for i in range(max(1, args.runs - 1))
                if (tmp / f"temp-{i}").mkdir() is None]
        rows = [
            ("running server, warm process: quorum cycle", warmed),
            ("running server: quorum cycle process", running),
            ("running server: the flow call (after imports)", inproc),
            ("temporary server: quorum cycle process", temp),
        ]
        imports = [imports_only(env) for _ in range(args.runs)]
        print(f"median of {args.runs} runs (ratio: median of the runs' ratios, range in brackets), one offline "
              f"paper cycle (replay, 6 symbols) as of {AS_OF}")
        print(f"{'':48} {'wall s':>7} {'flow s':>7} {'ratio':>18} {'stages s':>9} {'ratio':>7}")
        for label, runs in rows:
            walls, flows, stages = zip(*runs, strict=True)
            ratios = [w / f for w, f, _ in runs]
            print(f"{label:48} {med(walls):7.2f} {med(flows):7.2f} {med(ratios):6.2f}x ({min(ratios):.2f}-"
                  f"{max(ratios):.2f}) {med(stages):9.2f} {med([w / t for w, _, t in runs]):6.2f}x")
        print(f"{'python start-up + the imports of a cycle':48} {med(imports):8.2f}")
    finally:
        if server is not None:
            stop(server)
        shutil.rmtree(tmp, ignore_errors=True)


def stop(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


if __name__ == "__main__":
    main()
