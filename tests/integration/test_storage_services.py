"""Storage against the real PostgreSQL and Redis (fail, not skip, under CI when one is missing)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import func, inspect, select

from core.types import Position, Side
from store import repo
from store.db import migrate, open_database, transaction
from store.models import CycleRow, OrderRow, PositionRow

pytestmark = pytest.mark.services


def _pos(pid: str) -> Position:
    t = datetime(2025, 5, 1, tzinfo=UTC)
    return Position(pid, "BTC/USDT:USDT", Side.LONG, 100_000.0, Decimal("0.015"), Decimal("0.015"), 97_000.0,
                    97_000.0, 104_500.0, 107_500.0, 5, 300.0, 80_500.0, t, 100_000.0, extra={"k": "v"})


def test_migrations_and_repositories_on_postgres(pg_schema_url: str) -> None:
    from sqlalchemy.orm import sessionmaker

    engine = open_database(pg_schema_url)
    tables = set(inspect(engine).get_table_names())
    assert {"cycles", "votes", "positions", "orders", "fills", "outbox_posts", "llm_responses",
            "alembic_version"} <= tables
    migrate(engine)  # idempotent
    f = sessionmaker(engine, expire_on_commit=False)
    with transaction(f) as s:
        repo.upsert_position(s, _pos("P1"))
        repo.get_account(s, "paper", 10_000)
    with transaction(f) as s:
        [p] = repo.open_positions(s)
        assert p == _pos("P1")  # Decimal, tz-aware datetimes and JSON survive the round trip
    with pytest.raises(RuntimeError), transaction(f) as s:  # a failure mid-way writes nothing
        repo.upsert_position(s, _pos("P2"))
        s.flush()
        raise RuntimeError("crash")
    with transaction(f) as s:
        assert s.scalar(select(func.count()).select_from(PositionRow)) == 1


@pytest.mark.prefect
def test_a_cycle_persists_to_postgres(pg_schema_url: str, prefect_harness, monkeypatch) -> None:  # noqa: ARG001
    monkeypatch.setenv("QUORUM_DATABASE_URL", pg_schema_url)
    from flows.trading_cycle import trading_cycle

    rep = trading_cycle(as_of="2025-05-23T04:00:00Z", symbols=["SOL/USDT:USDT", "DOGE/USDT:USDT"], broadcast=False)
    from sqlalchemy.orm import sessionmaker

    f = sessionmaker(open_database(pg_schema_url))
    with transaction(f) as s:
        assert s.get(CycleRow, rep["cycle_id"]).status == "completed"
        assert s.scalar(select(func.count()).select_from(OrderRow)) == 2


def test_unreachable_postgres_is_a_clear_error() -> None:
    from core.errors import StorageError

    with pytest.raises(StorageError, match=r"database postgresql\+psycopg://postgres:\*\*\*@127.0.0.1:1/x is unreachable"):
        open_database("postgresql://postgres:secret@127.0.0.1:1/x")


def test_redis_cache_round_trip(redis_url: str) -> None:
    import uuid

    import redis

    r = redis.Redis.from_url(redis_url)
    key = f"quorum-test:{uuid.uuid4().hex}"
    r.set(key, "1", ex=30)
    assert r.get(key) == b"1"
    r.delete(key)


def test_migrations_match_the_models(tmp_path) -> None:
    """Autogenerate against a migrated database finds nothing: no model change without a migration."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import store.all_models  # noqa: F401
    from store.base import Base

    engine = open_database(f"sqlite:///{tmp_path / 'm.db'}")
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), Base.metadata)
    assert diff == []
