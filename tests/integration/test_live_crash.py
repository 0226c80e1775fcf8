"""SIGKILL (a real subprocess) between "intent committed" and "sent", and between "sent" and "recorded", for
the entry and for its stop, on Bybit v5 and Binance USDⓈ-M (local exchange, real ccxt): after a restart
(reconcile, then the same decision again) the exchange holds exactly one order per intent and the database
equals the exchange."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from exchange.broker import OpenRequest
from exchange.live_broker import LiveBroker
from tests.fakes.exchange_private import FakePrivateExchange
from tests.fakes.live_setup import MARKET, assert_db_equals_exchange, client_for, factory_for, plan

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
POINTS = ("live:intent-committed:entry", "live:sent-not-recorded:entry", "live:intent-committed:stop",
          "live:sent-not-recorded:stop")
# orders on the exchange right after the kill
AT_KILL = {"live:intent-committed:entry": 0, "live:sent-not-recorded:entry": 1, "live:intent-committed:stop": 1,
           "live:sent-not-recorded:stop": 2}


def run(fx: FakePrivateExchange, db: Path, decision: datetime, crash: str | None = None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUORUM_")}
    env.update(QUORUM_MODE="live", QUORUM_LIVE_TRADING_CONFIRMED="true", QUORUM_EXCHANGE=fx.dialect,
               QUORUM_EXCHANGE_API_KEY=fx.api_key, QUORUM_EXCHANGE_SECRET=fx.secret,
               QUORUM_EXCHANGE_API_BASE=fx.url, QUORUM_DATABASE_URL=f"sqlite:///{db}",
               QUORUM_TEST_DECISION=decision.isoformat(), PYTHONPATH=str(ROOT))
    if crash:
        env["QUORUM_CRASH_AT"] = crash
    return subprocess.run([sys.executable, "-m", "tests.fakes.live_run"], cwd=db.parent, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


CASES = [(ex, p) for p in POINTS for ex in ("bybit", "binanceusdm") if p.endswith(":entry") or ex == "bybit"]


@pytest.mark.parametrize(("ex", "point"), CASES)
def test_sigkill_then_restart_exactly_one_order_per_intent(ex: str, point: str, tmp_path: Path) -> None:
    decision = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    db = tmp_path / "q.db"
    with FakePrivateExchange(ex) as fx:
        r = run(fx, db, decision, crash=point)
        assert r.returncode == -9, r.stdout[-1500:] + r.stderr[-1500:]
        assert len(fx.orders_of()) == AT_KILL[point]
        r = run(fx, db, decision)
        assert r.returncode == 0, r.stdout[-1500:] + r.stderr[-1500:]
        assert json.loads(r.stdout.strip().splitlines()[-1])["status"] in ("filled", "skipped")
        codes = sorted(o.client_id.split("-")[0][-2] for o in fx.orders_of(MARKET))
        assert codes == ["E", "S", "T", "U"], [(o.client_id, o.status) for o in fx.orders_of()]
        b = LiveBroker(client_for(fx), factory_for(db), read_delay=0)
        assert b.reconcile() == []
        assert_db_equals_exchange(fx, b)
        # and the same decision once more changes nothing
        assert b.open_position(OpenRequest(plan(), decision)).status == "skipped"
        assert len(fx.orders_of()) == 4
