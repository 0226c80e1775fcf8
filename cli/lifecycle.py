"""The CLI process and the temporary Prefect server it may start.

- SIGTERM (and SIGHUP) are handled like Ctrl-C: `Terminated` (a BaseException, like
  KeyboardInterrupt, so no `except Exception` swallows it) unwinds the command: the flow run is
  marked crashed, the cycle row failed, and the temporary server is stopped before the exit.
- SIGKILL cannot be handled, so the temporary server is told to die with the CLI: Prefect 3.8.8
  starts it with `subprocess.Popen` in `SubprocessASGIServer._run_uvicorn_command`
  (prefect/server/api/server.py); when that happens on the main thread, the child gets
  PR_SET_PDEATHSIG (Linux) before it executes uvicorn, and the kernel sends it SIGTERM when the CLI
  ends, however it ends. Nothing else that module starts is affected, and a server started from
  another thread (where the death signal would fire when that thread ends) is left as Prefect made it.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import socket
import subprocess
import sys
import threading
from types import FrameType, ModuleType
from typing import Any

PR_SET_PDEATHSIG = 1


class Terminated(BaseException):  # noqa: N818 - named for what happened, like KeyboardInterrupt
    """The process got SIGTERM/SIGHUP: stop like Ctrl-C, with exit code 128 + signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


GRACE_S = 5.0  # after SIGTERM/SIGINT, the unwinding gets this long before the process leaves anyway
_armed = threading.Event()
_wakeup: tuple[socket.socket, socket.socket] | None = None


def _force_exit(signum: int) -> None:
    """The unwinding is stuck (e.g. Prefect's task runner waiting for a model call that has not
    answered yet): stop the temporary server and leave."""
    sys.stderr.write(f"terminated ({signal.Signals(signum).name}): stopped\n")
    exit_now(128 + signum)


def _arm(signum: int) -> None:
    if not _armed.is_set():
        _armed.set()
        timer = threading.Timer(GRACE_S, _force_exit, (signum,))
        timer.daemon = True
        timer.start()


def _watch_signals() -> None:
    """Arm the grace timer whenever SIGTERM/SIGHUP/SIGINT arrives, whichever Python handler is in
    place at that moment (Prefect installs its own SIGTERM handler while a flow runs): the C-level
    handler writes the signal number to the wakeup fd, a small thread reads it."""
    global _wakeup
    if _wakeup is not None:
        return
    r, w = socket.socketpair()
    w.setblocking(False)
    signal.set_wakeup_fd(w.fileno(), warn_on_full_buffer=False)
    _wakeup = (r, w)
    watched = {int(signal.SIGTERM), int(signal.SIGHUP), int(signal.SIGINT)}

    def run() -> None:
        while True:
            try:
                data = r.recv(64)
            except OSError:
                return
            if not data:
                return
            for b in data:
                if b in watched:
                    _arm(b)

    threading.Thread(target=run, name="quorum-signals", daemon=True).start()


def _raise_terminated(signum: int, _frame: FrameType | None) -> None:
    signal.signal(signum, signal.SIG_DFL)  # a second signal ends the process at once
    raise Terminated(signum)


def handle_termination() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_terminated)
    _watch_signals()


def _die_with(parent: int) -> None:
    """In the child, between fork and exec: get SIGTERM when the parent process ends."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


class _SubprocessWithParentDeath(ModuleType):
    """`subprocess` as seen by Prefect's server module only: Popen from the main thread adds the
    parent-death signal; everything else is the real module."""

    def __init__(self) -> None:
        super().__init__("subprocess")

    def __getattr__(self, name: str) -> Any:
        return getattr(subprocess, name)

    @staticmethod
    def Popen(*args: Any, **kwargs: Any) -> subprocess.Popen[Any]:  # noqa: N802 - the name Prefect calls
        if (sys.platform.startswith("linux") and "preexec_fn" not in kwargs
                and threading.current_thread() is threading.main_thread()):
            kwargs["preexec_fn"] = functools.partial(_die_with, os.getpid())
        return subprocess.Popen(*args, **kwargs)


def temporary_server_dies_with_cli() -> None:
    """Make Prefect's temporary server end when this process ends (idempotent)."""
    if not sys.platform.startswith("linux"):
        return
    from tasks import prefect_env

    prefect_env.apply()  # Prefect's env defaults (log level, timeouts) before Prefect is first imported
    from prefect.server.api import server

    if not isinstance(server.subprocess, _SubprocessWithParentDeath):
        server.subprocess = _SubprocessWithParentDeath()  # type: ignore[assignment]


def running_server() -> bool:
    """Is a Prefect server configured (`PREFECT_API_URL`, from the environment or a Prefect profile),
    rather than a temporary one started by this command?"""
    from tasks import prefect_env

    prefect_env.apply()  # Prefect's env defaults before Prefect is first imported
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


def before_flow() -> None:
    """Call before the CLI runs a flow (the temporary server starts with the first flow run)."""
    if not running_server():  # only the temporary server is ours to clean up
        temporary_server_dies_with_cli()


def stop_temporary_server() -> None:
    """Stop Prefect's temporary server now, if this process started one."""
    server = sys.modules.get("prefect.server.api.server")
    if server is None:
        return
    for inst in list(server.SubprocessASGIServer._instances.values()):
        try:
            inst.stop()
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass


def interrupted(exc: BaseException) -> bool:
    """Did this exit come from Ctrl-C (typer turns KeyboardInterrupt into exit code 130)?"""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, KeyboardInterrupt):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


def quick_exit(code: object) -> None:
    """End the process the way the interpreter would, without its teardown: the threading shutdown
    (Prefect drains its log and event workers there, non-daemon threads are joined), the atexit
    handlers (Prefect's temporary server stops there), flushed stdout/stderr, then `os._exit`.
    The teardown skipped is freeing every module and object one by one: 1-4 s for a cycle's imports
    (Prefect, pandas, the SDKs), longer than some cycles' own work. A code that is not an int
    (a message) takes the normal way out."""
    if code is None:
        code = 0
    shutdown = getattr(threading, "_shutdown", None)
    if not isinstance(code, int) or shutdown is None or threading.current_thread() is not threading.main_thread():
        raise SystemExit(code)
    shutdown()
    import atexit

    atexit._run_exitfuncs()
    _flush_and_exit(code)


def exit_now(code: int) -> None:
    """Leave at once after an interrupt: stop the temporary server, flush, and exit without waiting
    for worker threads still blocked in a network call (their work is not committed)."""
    stop_temporary_server()
    _flush_and_exit(code)


def _flush_and_exit(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
    os._exit(code)
