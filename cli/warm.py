"""`quorum warm`: a process that keeps Quorum loaded, so `quorum` commands start in milliseconds.

A `quorum cycle` spends about 3.5 s importing Python, Prefect, pandas, pandas-ta, SQLAlchemy and the
SDKs before its first line of work, against about 1 s of work. `quorum warm` imports all of that once
and waits on a Unix socket; the `quorum` command (this module's `entry`, the console script) first
looks for that socket and, when a warm process of this checkout answers, hands the command over:

- it sends its argv, working directory and environment, and its stdin/stdout/stderr themselves
  (SCM_RIGHTS), so the command reads and writes the caller's terminal or pipes directly;
- the warm process forks; the child takes the caller's environment and directory (Prefect's settings
  are read again from them: `PREFECT_API_URL`, profiles, `.env`), and runs the same `cli.app.entry`
  a cold start runs, against the same Prefect server and database;
- the caller forwards SIGINT/SIGTERM/SIGHUP to the child, and exits with the child's exit code
  (128 + N when a signal N ended it). If the caller is killed (SIGKILL), the child is killed too:
  the command dies as it would have, and the crash-recovery paths stay the ones that are tested.

The caller runs the command itself (a cold start, exactly as without `quorum warm`) when there is no
warm process, when `QUORUM_WARM=0`, and when the warm process declines: its code changed since it
started (it then restarts itself), or a variable that is read at import time differs
(`PYTHON*`, `PREFECT_HOME`, `PREFECT_LOGGING_*`, `NUMBA_*`). Only the same user can connect (the
socket's folder is 0700 and the peer's uid is checked).

The client half of this module imports only the standard library.
"""

from __future__ import annotations

import array
import hashlib
import json
import os
import signal
import socket
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMPORT_TIME_PREFIXES = ("PYTHON", "PREFECT_LOGGING_", "NUMBA_")
IMPORT_TIME_NAMES = ("PREFECT_HOME",)
NOT_HANDED = {"warm"}  # `quorum warm` itself always runs here


def socket_path() -> Path:
    """`QUORUM_WARM_SOCKET`, else one per user and checkout under the temporary directory."""
    explicit = os.environ.get("QUORUM_WARM_SOCKET")
    if explicit:
        return Path(explicit)
    tag = hashlib.sha256(f"{ROOT}|{sys.executable}".encode()).hexdigest()[:12]
    tmp = os.environ.get("TMPDIR") or "/tmp"  # tempfile.gettempdir() without importing tempfile (10 ms)
    return Path(tmp) / f"quorum-{os.getuid()}" / f"warm-{tag}.sock"


def _mtime(path: str) -> int | None:
    """The file's modification time (ns), None when it is not there."""
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def settings_key(env: dict[str, str], cwd: str) -> tuple:
    """What Prefect's settings are read from: the PREFECT_* variables, the files it reads in the working
    directory and the profiles file (by modification time). Equal keys, equal settings."""
    home = env.get("PREFECT_HOME") or os.path.expanduser("~/.prefect")
    profiles = env.get("PREFECT_PROFILES_PATH") or os.path.join(home, "profiles.toml")
    return (tuple(sorted((k, v) for k, v in env.items() if k.startswith("PREFECT_"))),
            tuple((name, _mtime(os.path.join(cwd, name))) for name in (".env", "prefect.toml", "pyproject.toml")),
            _mtime(profiles))


def import_time_env(env: dict[str, str]) -> dict[str, str]:
    """The variables a warm process has already consumed at import time: they must match."""
    return {k: v for k, v in env.items() if k.startswith(IMPORT_TIME_PREFIXES) or k in IMPORT_TIME_NAMES}


# ---------------------------------------------------------------- the client (standard library only)

def _send_frame(sock: socket.socket, payload: bytes, fds: list[int] | None = None) -> None:
    data = struct.pack("!I", len(payload)) + payload
    if fds:
        sock.sendmsg([data[:4096]], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        data = data[4096:]
    if data:
        sock.sendall(data)


def _read_line(sock: socket.socket, buf: bytearray) -> str | None:
    while b"\n" not in buf:
        try:
            chunk = sock.recv(4096)
        except InterruptedError:
            continue
        if not chunk:
            return None
        buf += chunk
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    return line.decode()


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[2]


def _ours(path: Path) -> bool:
    """The socket and its folder belong to this user, and the folder is closed to others."""
    try:
        folder, sock = os.stat(path.parent), os.stat(path)
    except OSError:
        return False
    uid = os.getuid()
    return folder.st_uid == uid and sock.st_uid == uid and not folder.st_mode & 0o077


def handed_over(argv: list[str]) -> int | None:
    """Run `argv` in the warm process: its exit code, or None when the caller must run it itself."""
    if os.environ.get("QUORUM_WARM", "").lower() in ("0", "off", "false", "no"):
        return None
    if len(argv) < 2 or argv[1] in NOT_HANDED:
        return None
    path = socket_path()
    if not _ours(path):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
        if _peer_uid(sock) != os.getuid():  # the environment (keys included) goes only to our own user
            sock.close()
            return None
    except OSError:
        sock.close()
        return None
    request = {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ), "executable": sys.executable}
    buf = bytearray()
    try:
        _send_frame(sock, json.dumps(request).encode(), [0, 1, 2])
        first = _read_line(sock, buf)
    except OSError:
        return None
    if not first or not first.startswith("pid "):
        return None  # declined (stale code, other import-time settings) or gone: run it here
    child = int(first.split()[1])

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    line = _read_line(sock, buf)
    if line is None or not line.startswith("exit "):
        sys.stderr.write("quorum: the warm process ended before the command did\n")
        return 1
    return int(line.split()[1])


def entry() -> None:
    """The `quorum` console script: the warm process when one runs, else a normal start."""
    if sys.argv[1:2] == ["warm"] and "--help" not in sys.argv:
        main(sys.argv[2:])  # not through cli.app: its signal-watching thread would make forking unsafe
        return
    code = handed_over(sys.argv)
    if code is not None:
        os._exit(code)
    from cli.app import entry as cold_entry

    cold_entry()


# ---------------------------------------------------------------- the warm process

def preload() -> list[str]:
    """Import what commands import: every module of Quorum's packages, and the libraries they import
    lazily (the SDKs, Prefect's engines and client). The names that failed to import are returned."""
    import importlib
    import pkgutil

    failed: list[str] = []
    packages = ("core", "risk", "agents", "exchange", "store", "notify", "tasks", "flows", "pipeline",
                "backtest", "deployments", "dashboard", "cli")
    names: list[str] = []
    for pkg in packages:
        mod = importlib.import_module(pkg)
        names += [m.name for m in pkgutil.walk_packages(mod.__path__, pkg + ".")
                  if ".migrations" not in m.name and not m.name.endswith("__main__")]
    names += ["prefect.flow_engine", "prefect.task_engine", "prefect.task_runners", "prefect.artifacts",
              "prefect.client.orchestration", "prefect.events.clients", "prefect.logging.handlers",
              "prefect.results", "prefect.server.api.server", "ccxt", "openai", "anthropic", "ollama",
              "prefect.utilities.visualization", "xai_sdk", "telegram", "alembic.command", "store.migrations"]
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - an optional SDK missing: that command imports it when run
            failed.append(name)
    _build_api_models()
    from cli.app import click_command

    click_command()
    return failed


def _build_api_models() -> None:
    """Build the validators of Prefect's API models now (pydantic defers some to their first use)."""
    from pydantic import BaseModel

    for modname in ("prefect.client.schemas.actions", "prefect.client.schemas.objects",
                    "prefect.client.schemas.filters", "prefect.client.schemas.responses", "prefect.events.schemas.events"):
        mod = sys.modules.get(modname)
        for obj in vars(mod).values() if mod else ():
            if isinstance(obj, type) and issubclass(obj, BaseModel) and not obj.__pydantic_complete__:
                try:
                    obj.model_rebuild()
                except Exception:  # noqa: BLE001 - one that cannot be built yet is built on first use, as before
                    pass


def code_files() -> dict[str, int | None]:
    """Quorum's loaded module files and their modification times."""
    files = (getattr(mod, "__file__", None) for mod in list(sys.modules.values()))
    return {f: _mtime(f) for f in files if f and f.startswith(str(ROOT)) and "/.venv/" not in f}


def changed(files: dict[str, int | None]) -> list[str]:
    """The files of `files` whose modification time is not the one recorded."""
    return [f for f, t in files.items() if _mtime(f) != t]


def decline_reason(request: dict, own_env: dict[str, str], files: dict[str, int | None]) -> str | None:
    """Why this warm process cannot run `request` as a cold start would, or None."""
    if request.get("executable") != sys.executable:
        return f"another Python ({request.get('executable')})"
    from tasks.prefect_env import with_defaults

    mine, theirs = import_time_env(own_env), import_time_env(with_defaults(request.get("env") or {}))
    if mine != theirs:
        diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        return "import-time settings differ: " + ", ".join(diff)
    stale = changed(files)
    if stale:
        return f"code changed since start: {os.path.relpath(stale[0], ROOT)}" + (
            f" and {len(stale) - 1} more" if len(stale) > 1 else "")
    return None


def _recv_request(conn: socket.socket) -> tuple[dict, list[int]]:
    conn.settimeout(10)
    data, fds, _flags, _addr = socket.recv_fds(conn, 65536, 3)
    if len(data) < 4:
        raise ValueError("short request")
    (size,) = struct.unpack("!I", data[:4])
    body = bytearray(data[4:])
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            raise ValueError("truncated request")
        body += chunk
    conn.settimeout(None)
    return json.loads(bytes(body)), list(fds)


def _child(conn: socket.socket, inherited: list[socket.socket], request: dict, fds: list[int],
           own_settings: tuple) -> None:
    """In the forked child: become the caller's command and run it (never returns)."""
    code = 1
    try:
        os.setpgid(0, 0)  # out of the warm process's group: its terminal's Ctrl-C is not ours
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for sock in inherited:  # the warm process's sockets: not the command's
            sock.close()
        for target, fd in zip((0, 1, 2), fds, strict=False):
            os.dup2(fd, target)
            os.close(fd)
        for stream in (sys.stdout, sys.stderr):
            stream.reconfigure(line_buffering=os.isatty(stream.fileno()))
        from cli.common import reopen_consoles

        reopen_consoles()  # built at import for the warm process's own streams
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        import time

        time.tzset()  # TZ as the caller has it
        sys.argv = list(request["argv"])
        from tasks import prefect_env

        prefect_env.apply()
        if settings_key(dict(os.environ), request["cwd"]) != own_settings:
            import prefect.context

            prefect.context.refresh_global_settings_context()  # PREFECT_API_URL, profiles, .env of the caller
        conn.close()
        from cli.app import entry as cold_entry

        cold_entry()  # exits through lifecycle.quick_exit (os._exit) with the command's code
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - the command's own handler did not run: say what happened
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def serve(path: Path, log=print) -> None:  # type: ignore[no-untyped-def]
    """Listen on `path` and run each command in a forked child until SIGINT/SIGTERM."""
    import selectors
    import threading
    import time

    files = code_files()
    own_env = dict(os.environ)
    own_settings = settings_key(own_env, os.getcwd())  # what Prefect's settings were built from
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if os.stat(path.parent).st_uid != os.getuid():
        raise SystemExit(f"quorum warm: {path.parent} belongs to another user; set QUORUM_WARM_SOCKET to a path of yours")
    os.chmod(path.parent, 0o700)
    if path.exists():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # left by a warm process that was killed
        else:
            raise SystemExit(f"a warm process already listens on {path}")
        finally:
            probe.close()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(16)
    wake_r, wake_w = socket.socketpair()
    wake_w.setblocking(False)
    signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
    stop = {"signum": 0}

    def on_stop(signum: int, _frame: object) -> None:
        stop["signum"] = signum

    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGTERM, on_stop)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, "accept")
    sel.register(wake_r, selectors.EVENT_READ, "wake")
    children: dict[int, tuple[socket.socket, float, str]] = {}  # pid -> (caller's connection, start, what)
    restart = False
    log(f"warm: listening on {path} (pid {os.getpid()}); `quorum` commands of this checkout start here")
    try:
        while not stop["signum"] and not restart:
            for key, _ in sel.select(timeout=1.0):
                if key.data == "wake":
                    wake_r.recv(4096)
                elif key.data == "accept":
                    conn, _ = listener.accept()
                    if threading.active_count() > 1:
                        log("warm: a thread is running in the warm process; forking is unsafe, restarting")
                        conn.close()
                        restart = True
                        break
                    inherited = [listener, wake_r, wake_w, *(c for c, _t, _w in children.values())]
                    restart = _accept(conn, inherited, own_env, own_settings, files, children, sel, log)
                else:  # a caller's connection: readable means it went away (it never writes after its request)
                    pid = key.data
                    sel.unregister(key.fileobj)
                    if pid in children:
                        try:
                            os.kill(pid, signal.SIGKILL)  # the caller was killed: so is its command
                        except ProcessLookupError:
                            pass
            _reap(children, sel, log, time.monotonic)
    finally:
        sel.close()
        listener.close()
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        for pid, (conn, _t, _w) in children.items():
            log(f"warm: pid {pid} still running ({_w}); it finishes on its own")
            conn.close()
    if restart:
        log("warm: restarting with the current code")
        exec_afresh(str(path))
    raise SystemExit(128 + stop["signum"] if stop["signum"] else 0)


def _accept(conn, inherited, own_env, own_settings, files, children, sel, log) -> bool:  # type: ignore[no-untyped-def]
    """Take one request: fork its command, or decline. True when the warm process must restart."""
    import selectors
    import time

    fds: list[int] = []
    try:
        if _peer_uid(conn) != os.getuid():
            conn.close()
            return False
        request, fds = _recv_request(conn)
        why = decline_reason(request, own_env, files)
        if why or len(fds) != 3:
            conn.sendall(f"declined {why or 'no standard streams'}\n".encode())
            log(f"warm: declined `{' '.join(request.get('argv', [])[1:3])}`: {why}")
            conn.close()
            return bool(why and why.startswith("code changed"))
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            sel.close()
            _child(conn, inherited, request, fds, own_settings)
        what = " ".join(request["argv"][1:4])
        conn.sendall(f"pid {pid}\n".encode())
        children[pid] = (conn, time.monotonic(), what)
        sel.register(conn, selectors.EVENT_READ, pid)
        log(f"warm: pid {pid} runs `quorum {what}`")
    except (OSError, ValueError) as exc:
        log(f"warm: a request failed: {exc}")
        conn.close()
    finally:
        for fd in fds:
            os.close(fd)
    return False


def _reap(children, sel, log, clock) -> None:  # type: ignore[no-untyped-def]
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        entry = children.pop(pid, None)
        if entry is None:
            continue
        conn, started, what = entry
        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code
        try:
            if conn.fileno() in sel.get_map():
                sel.unregister(conn)
            conn.sendall(f"exit {code}\n".encode())
        except (OSError, KeyError, ValueError):
            pass
        conn.close()
        log(f"warm: pid {pid} `quorum {what}` exit {code} in {clock() - started:.2f} s")


def run(socket_arg: str | None = None) -> None:
    """`quorum warm`: preload, then serve until SIGINT/SIGTERM."""
    import time

    t0 = time.perf_counter()
    from tasks import prefect_env

    prefect_env.apply()
    failed = preload()
    path = Path(socket_arg) if socket_arg else socket_path()
    print(f"warm: loaded in {time.perf_counter() - t0:.1f} s" + (
        f" (not installed, imported when a command needs them: {', '.join(failed)})" if failed else ""), flush=True)
    serve(path, log=lambda m: print(m, flush=True))


def exec_afresh(socket_arg: str | None) -> None:
    """Replace this process with a new `quorum warm` (new code, no thread started by anything before)."""
    os.execv(sys.executable, [sys.executable, "-c", "from cli.warm import main; main()",
                              *(["--socket", socket_arg] if socket_arg else [])])


def main(args: list[str] | None = None) -> None:
    """`quorum warm [--socket PATH]`; also `python -c "from cli.warm import main; main()"` (a restart)."""
    import argparse

    ap = argparse.ArgumentParser(prog="quorum warm")
    ap.add_argument("--socket", default=None)
    run(ap.parse_args(args).socket)
