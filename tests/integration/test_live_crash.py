"""SIGKILL (a real process of its own) between "intent committed" and "sent", and between "sent" and "recorded", for
the entry and for its stop, on Bybit v5 and Binance USDⓈ-M (local exchange, real ccxt): after a restart
(reconcile, then the same decision again) the exchange holds exactly one order per intent and the database
equals the exchange."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from decimal import Decimal
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


def _processes():  # type: ignore[no-untyped-def]
    """Processes forked from one server per test process that has imported tests.fakes.live_run (and what
    its reconcile run needs) once: each run is a process of its own, killed for real, without paying
    the imports again."""
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["tests.fakes.live_run", "pipeline.manual"])
    return ctx


def run(fx: FakePrivateExchange, db: Path, decision: datetime, crash: str | None = None,
        what: str = "open") -> subprocess.CompletedProcess[str]:
    """One run of tests.fakes.live_run in a process of its own; its exit code (-9 when killed) and output."""
    import uuid

    from tests.fakes import live_run

    env = {k: v for k, v in os.environ.items() if not k.startswith("QUORUM_")}
    env.update(QUORUM_MODE="live", QUORUM_LIVE_TRADING_CONFIRMED="true", QUORUM_EXCHANGE=fx.dialect,
               QUORUM_EXCHANGE_API_KEY=fx.api_key, QUORUM_EXCHANGE_SECRET=fx.secret,
               QUORUM_EXCHANGE_API_BASE=fx.url, QUORUM_DATABASE_URL=f"sqlite:///{db}",
               QUORUM_TEST_DECISION=decision.isoformat(), PYTHONPATH=str(ROOT))
    if crash:
        env["QUORUM_CRASH_AT"] = crash
    if what != "open":
        env["QUORUM_TEST_RUN"] = what
    out, err = (db.parent / f"run-{uuid.uuid4().hex[:8]}.{x}" for x in ("out", "err"))
    p = _processes().Process(target=live_run.child, args=(env, str(db.parent), str(out), str(err)))
    p.start()
    p.join(120)
    if p.exitcode is None:
        p.kill()
        p.join()
        raise AssertionError(f"the run did not end in 120 s: {err.read_text()[-1500:]}")
    return subprocess.CompletedProcess(["tests.fakes.live_run"], p.exitcode, out.read_text(), err.read_text())


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


# (exchange, price the exchange moves to while Quorum is down, the exit it fills, where the reconcile run dies):
# the caller's transaction before its commit, and the stop resize after TP1 (its new stop sent or only intended)
EXIT_CASES = [("bybit", "38900", "stop", "reconcile:before-commit"),
              ("binanceusdm", "38900", "stop", "reconcile:before-commit"),
              ("bybit", "41600", "tp1", "live:sent-not-recorded:stop"),
              ("binanceusdm", "41600", "tp1", "live:intent-committed:stop")]


def exit_rows(db: Path, client_id: str, kind: str) -> tuple[int, int, int, int, int]:
    """(orders, fills, exit events, exit posts, open-position quantity) of the exit the exchange filled, as
    the database has it: the trade's order + fill rows (keyed by the exchange order's client id), the exit
    event, its channel post, and the signed open quantity of the positions table."""
    from sqlalchemy import func, select

    from store.db import transaction
    from store.models import FillRow, OrderRow, PositionEventRow, PositionRow
    from store.outbox import OutboxPost

    with transaction(factory_for(db)) as s:
        orders = s.scalar(select(func.count()).select_from(OrderRow)
                          .where(OrderRow.client_order_id == f"live:{client_id}"))
        fills = s.scalar(select(func.count()).select_from(FillRow).join(OrderRow, FillRow.order_id == OrderRow.id)
                         .where(OrderRow.client_order_id == f"live:{client_id}"))
        events = s.scalar(select(func.count()).select_from(PositionEventRow).where(PositionEventRow.kind == kind))
        posts = s.scalar(select(func.count()).select_from(OutboxPost).where(OutboxPost.kind == kind))
        rows = s.scalars(select(PositionRow).where(PositionRow.mode == "live", PositionRow.closed_at.is_(None)))
        open_qty = sum((Decimal(str(r.qty_open)) * (1 if r.side == "LONG" else -1) for r in rows), Decimal(0))
    return orders, fills, events, posts, open_qty


@pytest.mark.parametrize(("ex", "price", "kind", "point"), EXIT_CASES)
def test_sigkill_before_an_exchange_exit_is_stored_then_restart_stores_it_once(ex: str, price: str, kind: str,
                                                                              point: str, tmp_path: Path) -> None:
    decision = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    db = tmp_path / "q.db"
    with FakePrivateExchange(ex) as fx:
        r = run(fx, db, decision)  # the entry, its stop, TP1 and TP2
        assert r.returncode == 0 and json.loads(r.stdout.strip().splitlines()[-1])["status"] == "filled", r.stderr
        fx.set_price(MARKET, price)  # the exchange fills the stop (or TP1) while Quorum is down
        [filled] = [o for o in fx.orders_of(MARKET) if o.status == "Filled" and o.trigger is not None]
        r = run(fx, db, decision, crash=point, what="reconcile")
        assert r.returncode == -9, r.stdout[-1500:] + r.stderr[-1500:]
        b = LiveBroker(client_for(fx), factory_for(db), read_delay=0)
        # the journal has the fill (the position is right), the database has none of the exit: the gap
        [row] = [o for o in b.journal() if o.client_id == filled.client_id]
        assert (row.state, row.filled) == ("filled", filled.filled)
        assert exit_rows(db, filled.client_id, kind)[:4] == (0, 0, 0, 0)
        r = run(fx, db, decision, what="reconcile")  # the restart
        assert r.returncode == 0, r.stdout[-1500:] + r.stderr[-1500:]
        assert any("filled on the exchange" in x for x in json.loads(r.stdout.strip().splitlines()[-1])["findings"])
        r = run(fx, db, decision, what="reconcile")  # and once more: nothing new
        assert r.returncode == 0 and json.loads(r.stdout.strip().splitlines()[-1])["findings"] == [], r.stdout
        assert exit_rows(db, filled.client_id, kind) == (1, 1, 1, 1, fx.position(MARKET).size)
        assert b.reconcile() == []
        assert_db_equals_exchange(fx, b)
        # exactly one stop left on the exchange while the position is open (none after the stop filled)
        stops = [o for o in fx.open_protective(MARKET) if o.direction == 2]
        assert [s.qty for s in stops] == ([] if kind == "stop" else [fx.position(MARKET).size])
