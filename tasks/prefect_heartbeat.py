"""A flow run's heartbeat thread that stops at once when the run ends.

Prefect 3.8.8 (`prefect.flow_engine._send_heartbeats`) beats every `PREFECT_FLOWS_HEARTBEAT_FREQUENCY`
seconds (180 by default; the server uses the beats to find crashed runs) from a daemon thread that
sleeps in 1-second steps, and joins that thread when the flow run ends: every sync flow run waits up
to a second (half a second on average) after its work is done. That is most of what Prefect costs a
`quorum cycle` with a running server (bench/prefect_overhead.py).

`install()` swaps in the same heartbeat loop waiting on the stop event instead of sleeping, so the
run ends as soon as its work does; the beats themselves are unchanged (the first when the run starts,
then one per interval, none after the run is final). It replaces Prefect's function only when that
function's source is the one this was written against (a hash), so a Prefect upgrade falls back to
Prefect's own loop instead of being patched blindly; `installed()` says which is in place.
"""

from __future__ import annotations

import contextvars
import hashlib
import inspect
import threading
from collections.abc import Generator
from contextlib import contextmanager
from typing import Any

# sha256 of inspect.getsource(prefect.flow_engine._send_heartbeats) in prefect 3.8.8
PREFECT_SOURCE_SHA256 = "83e152cb73a04e977ca181188e99b3d583c894892b5456043b2eb51e45dbe996"


@contextmanager
def send_heartbeats(engine: Any, join_on_exit: bool = True) -> Generator[None, None, None]:
    """Prefect's `_send_heartbeats`, with `stop_event.wait(interval)` in place of 1 s sleeps."""
    from prefect.flow_engine import MINIMUM_HEARTBEAT_INTERVAL

    heartbeat_seconds = engine.heartbeat_seconds
    if heartbeat_seconds is None:
        yield
        return
    heartbeat_seconds = max(heartbeat_seconds, MINIMUM_HEARTBEAT_INTERVAL)
    resource, related = engine._build_heartbeat_event_template()
    stop_event = threading.Event()

    def heartbeat_loop() -> None:
        while not stop_event.is_set():
            if engine.flow_run and engine.flow_run.state and engine.flow_run.state.is_final():
                engine.logger.debug("Flow run in terminal state, stopping heartbeat")
                return
            try:
                engine._emit_flow_run_heartbeat(resource, related)
            except Exception:  # noqa: BLE001 - as Prefect: a failed beat is logged at debug, the run goes on
                engine.logger.debug("Failed to emit heartbeat", exc_info=True)
            if stop_event.wait(heartbeat_seconds):
                return

    # the thread sees the caller's SettingsContext (PREFECT_API_URL), as in Prefect
    heartbeat_ctx = contextvars.copy_context()
    thread = threading.Thread(target=heartbeat_ctx.run, args=(heartbeat_loop,), daemon=True,
                              name="prefect-flow-heartbeat")
    thread.start()
    engine.logger.debug("Started flow run heartbeat context")
    try:
        yield
    finally:
        stop_event.set()
        if join_on_exit:
            thread.join(timeout=2)
        engine.logger.debug("Stopped flow run heartbeat context")


def prefect_source_sha256() -> str:
    import prefect.flow_engine as fe

    original = getattr(fe, "_quorum_original_send_heartbeats", fe._send_heartbeats)
    return hashlib.sha256(inspect.getsource(original).encode()).hexdigest()


def install() -> bool:
    """Use `send_heartbeats` in Prefect's flow engine if its own is the known one (idempotent)."""
    import prefect.flow_engine as fe

    if installed():
        return True
    if prefect_source_sha256() != PREFECT_SOURCE_SHA256:
        return False
    fe._quorum_original_send_heartbeats = fe._send_heartbeats  # type: ignore[attr-defined]
    fe._send_heartbeats = send_heartbeats  # type: ignore[assignment]
    return True


def installed() -> bool:
    import prefect.flow_engine as fe

    return fe._send_heartbeats is send_heartbeats
