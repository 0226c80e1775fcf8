"""Crash points for restart-safety tests.

`crash_point("name")` kills the process with SIGKILL (no cleanup, no finally blocks, no atexit)
when QUORUM_CRASH_AT=name is set; otherwise it does nothing. The names mark the moments where a
real crash would hurt most (after work is done, before or between commits).
"""

from __future__ import annotations

import os
import signal


def crash_point(name: str) -> None:
    if os.environ.get("QUORUM_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def pause_point(name: str) -> None:
    """When QUORUM_PAUSE_AT=name (overlap tests: hold a run mid-way): wait until the file named by
    QUORUM_PAUSE_RELEASE exists, at most QUORUM_PAUSE_S seconds (default 5)."""
    if os.environ.get("QUORUM_PAUSE_AT") == name:
        import time

        deadline = time.monotonic() + float(os.environ.get("QUORUM_PAUSE_S", "5"))
        release = os.environ.get("QUORUM_PAUSE_RELEASE")
        while time.monotonic() < deadline and not (release and os.path.exists(release)):
            time.sleep(0.1)
