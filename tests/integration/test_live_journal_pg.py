"""The live broker's order journal on the real PostgreSQL (the same code as on SQLite)."""

from __future__ import annotations

from sqlalchemy.orm import sessionmaker

from exchange.broker import OpenRequest
from exchange.live_broker import LiveBroker
from store.db import open_database
from tests.fakes.exchange_private import FakePrivateExchange
from tests.fakes.live_setup import DECISION, MARKET, assert_db_equals_exchange, client_for, plan


def test_journal_on_postgresql(pg_schema_url: str) -> None:
    with FakePrivateExchange("bybit") as fx:
        factory = sessionmaker(open_database(pg_schema_url), expire_on_commit=False, future=True)
        b = LiveBroker(client_for(fx), factory, read_delay=0)
        assert b.open_position(OpenRequest(plan(), DECISION)).status == "filled"
        assert b.open_position(OpenRequest(plan(), DECISION)).status == "skipped"
        fx.set_price(MARKET, "38900")
        found = LiveBroker(client_for(fx), factory, read_delay=0).reconcile()
        assert sorted(f.kind for f in found) == ["orphan_cancelled", "orphan_cancelled", "protective_filled"]
        assert_db_equals_exchange(fx, b)
        assert b.all_positions()[0].exit_reason == "stop"
