"""A CLI stopped by SIGTERM or SIGKILL in the middle of a cycle leaves no temporary Prefect server
behind: nothing listening, no process, and the CLI's pipes close (whatever waits on them returns).
Real processes: the `quorum` CLI, Prefect 3's temporary server, and a slow local Ollama server that
keeps the cycle busy in the panel."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fakes.llm_servers import OllamaServer

pytestmark = [pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def _children(pid: int) -> list[tuple[int, str]]:
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                found.append((int(d.name), (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()))
        except (OSError, ValueError, IndexError):
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait(cond, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_stopped_cli_leaves_no_prefect_server(tmp_path: Path, sig: signal.Signals) -> None:
    db = tmp_path / "sig.db"
    with OllamaServer(delay_s=100) as llm:  # the panel call hangs: the cycle is busy when the signal comes
        env = {k: v for k, v in os.environ.items() if not k.startswith(("QUORUM_", "PREFECT_API_URL"))}
        env.update({"QUORUM_DATABASE_URL": f"sqlite:///{db}", "OLLAMA_HOST": llm.base_url, "PYTHONPATH": str(ROOT)})
        proc = subprocess.Popen([sys.executable, "-m", "cli.app", "cycle", "--as-of", "2025-05-23T04:00:00Z",
                                 "--symbols", "SOL/USDT:USDT"], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            _wait(lambda: llm.calls >= 1 or proc.poll() is not None, 150, "the panel call")
            assert proc.poll() is None, proc.communicate()
            servers = [(pid, cmd) for pid, cmd in _children(proc.pid) if "uvicorn" in cmd]
            assert len(servers) == 1, _children(proc.pid)
            server_pid, cmd = servers[0]
            port = int(cmd.split("--port ")[1].split()[0])
            assert _listening(port)

            proc.send_signal(sig)
            out, err = proc.communicate(timeout=60)  # returns only when nobody holds the pipes any more
            _wait(lambda: not _alive(server_pid), 20, "the temporary server to end")
            _wait(lambda: not _listening(port), 10, "the port to close")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    if sig == signal.SIGTERM:
        assert proc.returncode == 128 + signal.SIGTERM, err
        assert b"Traceback" not in err and b"terminated (SIGTERM)" in err, err
        with sqlite3.connect(db) as c:
            status, summary = c.execute("select status, summary from cycles").fetchone()
        assert status == "failed" and "Terminat" in summary, summary
    else:
        assert proc.returncode == -signal.SIGKILL
