"""`quorum warm`: commands handed to a warm process behave as the same commands started cold: the
caller's environment, directory, streams and exit code; signals forwarded; a killed caller takes
its command with it; a warm process that cannot run a command as a cold start would declines it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cli import warm
from tests.e2e.harness import BIN, ROOT, free_port, start_warm, stop_group

pytestmark = pytest.mark.slow


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUORUM_")}
    env.update({"QUORUM_WARM_SOCKET": str(tmp / "warm.sock"), "PYTHONPATH": str(ROOT), **extra})
    return env


@pytest.fixture(scope="module")
def warm_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """One `quorum warm` for the module (it loads for ~10 s): {"env", "log", "proc"}."""
    tmp = tmp_path_factory.mktemp("warm")
    procs: list[tuple[subprocess.Popen, int]] = []
    env, log = start_warm(procs, _env(tmp), tmp)
    yield {"env": env, "log": log, "proc": procs[0][0]}
    stop_group(*procs[0])
    assert not (tmp / "warm.sock").exists(), "the socket is removed when the warm process stops"


def _quorum(args: list[str], env: dict[str, str], cwd: Path, **kw) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    return subprocess.run([str(BIN / "quorum"), *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=240, check=False, **kw)


def _ran(log: Path, what: str) -> list[str]:
    return [ln for ln in log.read_text().splitlines() if f"runs `quorum {what}" in ln]


def test_a_command_runs_warm_with_the_callers_database_directory_and_output(warm_process: dict, tmp_path: Path) -> None:
    db = tmp_path / "own.db"
    env = dict(warm_process["env"], QUORUM_DATABASE_URL=f"sqlite:///{db}")
    before = len(_ran(warm_process["log"], "positions"))
    r = _quorum(["positions"], env, tmp_path)
    cold = _quorum(["positions"], dict(env, QUORUM_WARM="0"), tmp_path)
    assert r.returncode == 0 == cold.returncode, r.stderr + cold.stderr
    assert len(_ran(warm_process["log"], "positions")) == before + 1, warm_process["log"].read_text()
    assert r.stdout == cold.stdout and "equity $10,000.00" in r.stdout
    assert db.exists(), "the caller's QUORUM_DATABASE_URL was used (created and migrated)"


def test_the_exit_code_and_the_error_line_are_the_commands(warm_process: dict, tmp_path: Path) -> None:
    env = dict(warm_process["env"], QUORUM_DATABASE_URL=f"sqlite:///{tmp_path / 'q.db'}")
    before = len(_ran(warm_process["log"], "cycle"))
    r = _quorum(["cycle", "--as-of", "1999-01-01T00:00:00Z"], env, tmp_path)
    cold = _quorum(["cycle", "--as-of", "1999-01-01T00:00:00Z"], dict(env, QUORUM_WARM="0"), tmp_path)
    assert len(_ran(warm_process["log"], "cycle")) == before + 1
    assert r.returncode == 2 == cold.returncode
    assert "outside the replay data" in r.stderr and r.stderr == cold.stderr
    assert r.stdout == ""


def test_what_a_warm_command_writes_a_cold_one_reads(warm_process: dict, tmp_path: Path) -> None:
    env = dict(warm_process["env"], QUORUM_DATABASE_URL=f"sqlite:///{tmp_path / 'q.db'}")
    r = _quorum(["halt", "--reason", "from the warm test"], env, tmp_path)
    assert r.returncode == 0, r.stderr
    assert _ran(warm_process["log"], "halt")
    s = _quorum(["positions"], dict(env, QUORUM_WARM="0"), tmp_path)
    assert "from the warm test" in s.stdout, s.stdout


def test_a_different_import_time_setting_runs_cold(warm_process: dict, tmp_path: Path) -> None:
    env = dict(warm_process["env"], QUORUM_DATABASE_URL=f"sqlite:///{tmp_path / 'q.db'}",
               PREFECT_HOME=str(tmp_path / "other-home"))
    r = _quorum(["positions"], env, tmp_path)
    assert r.returncode == 0 and "equity $10,000.00" in r.stdout, r.stderr
    assert "declined `positions`: import-time settings differ: PREFECT_HOME" in warm_process["log"].read_text()


def _child_pid(log: Path, what: str, seen: int) -> int:
    deadline = time.monotonic() + 60
    while len(lines := _ran(log, what)) <= seen:
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    return int(lines[seen].split("pid ")[1].split()[0])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie not yet reaped by the warm process counts as gone
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def _serve_dashboard(warm_process: dict, tmp_path: Path) -> tuple[subprocess.Popen, int, int]:
    port = free_port()
    env = dict(warm_process["env"], QUORUM_DATABASE_URL=f"sqlite:///{tmp_path / 'q.db'}")
    seen = len(_ran(warm_process["log"], "dashboard"))
    caller = subprocess.Popen([str(BIN / "quorum"), "dashboard", "--port", str(port)], env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    child = _child_pid(warm_process["log"], "dashboard", seen)
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline and caller.poll() is None
        time.sleep(0.2)
    return caller, child, port


def test_sigterm_to_the_caller_reaches_the_command(warm_process: dict, tmp_path: Path) -> None:
    caller, child, _port = _serve_dashboard(warm_process, tmp_path)
    caller.send_signal(signal.SIGTERM)
    rc = caller.wait(timeout=60)
    assert not _alive(child)
    assert f"pid {child} `quorum dashboard --port" in warm_process["log"].read_text()
    line = next(ln for ln in warm_process["log"].read_text().splitlines() if f"pid {child} `" in ln and " exit " in ln)
    assert line.split(" exit ")[1].split()[0] == str(rc), "the caller exits with the command's code"


def test_a_killed_caller_takes_its_command_with_it(warm_process: dict, tmp_path: Path) -> None:
    caller, child, _port = _serve_dashboard(warm_process, tmp_path)
    caller.kill()
    caller.wait(timeout=30)
    deadline = time.monotonic() + 30
    while _alive(child):
        assert time.monotonic() < deadline, "the command outlived its killed caller"
        time.sleep(0.1)
    # (not "its port is closed": under xdist another test's server may be given the same free port)
    deadline = time.monotonic() + 30
    while not any(f"pid {child} `quorum dashboard" in ln and " exit 137 " in ln
                  for ln in warm_process["log"].read_text().splitlines()):
        assert time.monotonic() < deadline, warm_process["log"].read_text()
        time.sleep(0.1)


def test_changed_code_is_declined() -> None:
    """A warm process whose code changed on disk declines (the caller runs cold) and restarts."""
    files = warm.code_files()
    assert any(f.endswith("cli/warm.py") for f in files)
    own = dict(os.environ)
    request = {"executable": __import__("sys").executable, "env": own}
    assert warm.decline_reason(request, own, files) is None
    stale = dict(files)
    stale[next(f for f in files if f.endswith("cli/warm.py"))] = 0.0
    assert warm.decline_reason(request, own, stale).startswith("code changed since start: cli/warm.py")
    assert warm.decline_reason(dict(request, executable="/usr/bin/python3"), own, files).startswith("another Python")


def test_without_a_warm_process_the_command_runs_here(tmp_path: Path) -> None:
    env = _env(tmp_path, QUORUM_WARM_SOCKET=str(tmp_path / "nobody.sock"),
               QUORUM_DATABASE_URL=f"sqlite:///{tmp_path / 'q.db'}")
    r = _quorum(["positions"], env, tmp_path)
    assert r.returncode == 0 and "equity $10,000.00" in r.stdout, r.stderr


def test_a_socket_in_a_folder_others_can_enter_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller sends its environment (keys included): never to a socket another user could have put there."""
    folder = tmp_path / "open"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    path = folder / "warm.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    listener.setblocking(False)
    monkeypatch.setenv("QUORUM_WARM_SOCKET", str(path))
    monkeypatch.delenv("QUORUM_WARM", raising=False)
    assert warm.handed_over(["quorum", "positions"]) is None
    with pytest.raises(BlockingIOError):
        listener.accept()  # nobody connected
    os.chmod(folder, 0o700)
    assert warm._ours(path)
    listener.close()


def _in_terminal(args: list[str], env: dict[str, str], cwd: Path, cols: int = 100) -> bytes:
    """Run `quorum ARGS` with its stdout and stderr on a pseudo-terminal `cols` wide; what it printed."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, cols, 0, 0))
    p = subprocess.Popen([str(BIN / "quorum"), *args], env=dict(env, TERM="xterm-256color"), cwd=cwd,
                         stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the other end closed
            break
        if not data:
            break
        chunks.append(data)
    assert p.wait(timeout=120) == 0
    os.close(master)
    return b"".join(chunks)


def test_on_a_terminal_the_output_is_the_cold_ones(warm_process: dict, tmp_path: Path) -> None:
    """Colours and the terminal's width, as a cold start prints them (the consoles were built for the
    warm process's own log file, and are set up again for the caller's terminal)."""
    env = dict(warm_process["env"], QUORUM_DATABASE_URL=f"sqlite:///{tmp_path / 'q.db'}")
    seen = len(_ran(warm_process["log"], "positions"))
    warm_out = _in_terminal(["positions"], env, tmp_path)
    assert len(_ran(warm_process["log"], "positions")) == seen + 1
    cold_out = _in_terminal(["positions"], dict(env, QUORUM_WARM="0"), tmp_path)
    assert b"\x1b[" in cold_out, "a terminal gets colours"
    assert warm_out == cold_out


@pytest.mark.prefect
def test_two_cycles_handed_over_at_once_take_one_bar_each(warm_process: dict, tmp_path: Path,
                                                           prefect_api_url: str) -> None:
    """Two children of one warm process on one account: the account lock holds across them (each
    cycle takes its own bar of `--as-of next`, nothing doubled), on the worker's Prefect server."""
    import json
    import sqlite3

    db = tmp_path / "q.db"
    env = dict(warm_process["env"], QUORUM_DATABASE_URL=f"sqlite:///{db}", PREFECT_API_URL=prefect_api_url)
    seen = len(_ran(warm_process["log"], "cycle --as-of next"))
    procs = [subprocess.Popen([str(BIN / "quorum"), "cycle", "--as-of", "next", "--json"], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for _, e in outs]
    assert len(_ran(warm_process["log"], "cycle --as-of next")) == seen + 2, "both ran in the warm process"
    from datetime import datetime

    times = sorted(datetime.fromisoformat(json.loads(o)["as_of"]) for o, _ in outs)
    assert (times[1] - times[0]).total_seconds() == 3600, f"not one bar each: {times}"
    with sqlite3.connect(db) as c:
        assert c.execute("select count(*), sum(status = 'completed') from cycles").fetchone() == (2, 2)
        open_syms = [r[0] for r in c.execute("select symbol from positions where closed_at is null")]
        fills = c.execute("select symbol, qty, price, ts from fills").fetchall()
    assert len(open_syms) == len(set(open_syms)) and len(fills) == len(set(fills))
