"""The flow-run heartbeat (tasks/prefect_heartbeat.py): the same beats as Prefect's, and a run that
ends when its work does, not after the heartbeat thread's current 1-second sleep."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from tasks import prefect_heartbeat


class FakeEngine:
    """What `_send_heartbeats` reads from Prefect's FlowRunEngine."""

    def __init__(self, seconds: int | None) -> None:
        self.heartbeat_seconds = seconds
        self.beats: list[tuple[Any, Any]] = []
        self.flow_run = SimpleNamespace(state=None)
        self.logger = SimpleNamespace(debug=lambda *a, **k: None)
        self.beat = threading.Event()

    def _build_heartbeat_event_template(self) -> tuple[str, list[str]]:
        return "resource", ["related"]

    def _emit_flow_run_heartbeat(self, resource: Any, related: Any) -> None:
        self.beats.append((resource, related))
        self.beat.set()


def test_installed_for_the_pinned_prefect() -> None:
    import prefect.flow_engine as fe

    import flows  # noqa: F401 - importing the flows installs it

    assert prefect_heartbeat.prefect_source_sha256() == prefect_heartbeat.PREFECT_SOURCE_SHA256
    assert prefect_heartbeat.installed() and fe._send_heartbeats is prefect_heartbeat.send_heartbeats
    assert prefect_heartbeat.install() is True  # idempotent


def test_another_prefect_source_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    import prefect.flow_engine as fe

    monkeypatch.setattr(prefect_heartbeat, "PREFECT_SOURCE_SHA256", "0" * 64)
    original = fe._quorum_original_send_heartbeats
    monkeypatch.setattr(fe, "_send_heartbeats", original)
    assert prefect_heartbeat.install() is False and fe._send_heartbeats is original


def test_it_beats_at_once_and_stops_without_sleeping(monkeypatch: pytest.MonkeyPatch) -> None:
    """Prefect's loop sleeps `time.sleep(1)` steps between beats (so its join waits up to a second);
    this one waits on the stop event: no sleep at all, the thread is gone when the context exits."""
    slept: list[float] = []
    real_sleep = time.sleep
    monkeypatch.setattr(time, "sleep", lambda s: (slept.append(s), real_sleep(s)))
    engine = FakeEngine(30)
    with prefect_heartbeat.send_heartbeats(engine):
        assert engine.beat.wait(20), "the first beat is sent when the run starts"
    assert engine.beats == [("resource", ["related"])]
    assert not [t for t in threading.enumerate() if t.name == "prefect-flow-heartbeat" and t.is_alive()]
    assert slept == []


def test_no_beat_after_the_run_is_final_and_none_when_disabled() -> None:
    engine = FakeEngine(30)
    engine.flow_run = SimpleNamespace(state=SimpleNamespace(is_final=lambda: True))
    with prefect_heartbeat.send_heartbeats(engine):
        pass
    assert engine.beats == []
    off = FakeEngine(None)
    with prefect_heartbeat.send_heartbeats(off):
        pass
    assert off.beats == [] and not [t for t in threading.enumerate() if t.name == "prefect-flow-heartbeat"]


@pytest.mark.prefect
def test_a_real_flow_run_goes_through_it(prefect_harness: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import prefect.flow_engine as fe
    from prefect import flow

    import flows  # noqa: F401

    used: list[Any] = []
    ours = prefect_heartbeat.send_heartbeats

    def counting(engine: Any, join_on_exit: bool = True) -> Any:
        used.append(engine.heartbeat_seconds)
        return ours(engine, join_on_exit)

    monkeypatch.setattr(fe, "_send_heartbeats", counting)

    @flow
    def tiny() -> int:
        return 7

    assert tiny() == 7
    assert used and used[0] is not None and used[0] >= 30, "a sync flow run beats through this module"
