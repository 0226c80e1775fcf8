"""A Quorum process for the crash tests: `python -m tests.fakes.live_run` builds the live broker from the
QUORUM_* environment (keys, QUORUM_EXCHANGE_API_BASE, database), reconciles, then opens the standard
test plan for the decision time in QUORUM_TEST_DECISION, like a cycle does; with QUORUM_TEST_RUN=reconcile it runs
`quorum reconcile`'s function instead (pipeline.manual.reconcile). QUORUM_CRASH_AT kills it.

`child` runs the same in a process forked from a server that has already imported this module
(multiprocessing's forkserver, as tests/integration/test_live_crash.py starts it): a process of its own,
without the ~2 s of imports each time."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime

from core.settings import load_settings
from exchange.broker import OpenRequest
from exchange.live_broker import LiveBroker
from store.db import get_session_factory
from tests.fakes.live_setup import plan


class NoBars:
    """The market-data source of a `QUORUM_TEST_RUN=reconcile` run (the live broker reads the exchange)."""

    name = "none"

    def price_after(self, symbol: str, t: datetime) -> None:
        return None


def no_client_throttle() -> None:
    """The local exchange has no rate limit: ccxt's client-side throttle (a sleep of ~80 ms before each
    request, 1-2 s a run) is off in this process; the client is otherwise the one build_client makes."""
    from exchange import live_broker, live_client

    def build(settings):  # type: ignore[no-untyped-def]
        client = live_client.build_client(settings)
        client.enableRateLimit = False
        return client

    live_broker.build_client = build  # type: ignore[assignment]


def main() -> int:
    no_client_throttle()
    settings = load_settings()
    if os.environ.get("QUORUM_TEST_RUN") == "reconcile":  # what `quorum reconcile` runs
        from pipeline.manual import reconcile

        lines = reconcile(get_session_factory(settings), NoBars(), settings, datetime.now(UTC))  # type: ignore[arg-type]
        print(json.dumps({"findings": lines}))
        return 0
    broker = LiveBroker.from_settings(settings, get_session_factory(settings))
    findings = broker.reconcile()
    res = broker.open_position(OpenRequest(plan(), datetime.fromisoformat(os.environ["QUORUM_TEST_DECISION"])))
    print(json.dumps({"status": res.status, "note": res.note, "findings": [f.kind for f in findings]}))
    return 0


def child(env: dict[str, str], cwd: str, out: str, err: str) -> None:
    """main() in a freshly forked process: this run's environment (all of it), folder and output files
    first; exits with main()'s code (or by SIGKILL at a crash point)."""
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    for fd, path in ((1, out), (2, err)):
        f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(f, fd)
        os.close(f)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - the process's own stdout
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
