"""store/llm_cache.py: the response cache and token totals on SQLite, PostgreSQL and Redis."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import sessionmaker

from agents.budget import TokenBudget
from store.base import Base
from store.llm_cache import (
    CachedResponse,
    CachedTokenUsageStore,
    InMemoryResponseCache,
    LLMResponseRow,
    RedisResponseCache,
    SqlResponseCache,
    SqlTokenUsageStore,
    TokenUsageRow,
    build_response_cache,
    cache_key,
)
from tests.conftest import PG_URL, REDIS_URL, service_missing  # noqa: E402

TABLES = [LLMResponseRow.__table__, TokenUsageRow.__table__]


def record(key: str) -> CachedResponse:
    return CachedResponse(key=key, provider="openai", model="gpt-x", prompt_version="decision_v1@abcd1234",
                          raw='{"verdicts": []}', parsed={"verdicts": []}, input_tokens=10, output_tokens=5,
                          cost_usd=0.001, latency_s=1.5, schema_name="PanelAnswer",
                          created_at=datetime(2026, 11, 20, tzinfo=UTC))


def test_key_definition():
    k = cache_key("openai", "m", "v1", [("system", "s"), ("user", "u")], "PanelAnswer")
    assert k == cache_key("openai", "m", "v1", [{"role": "system", "content": "s"},
                                                 {"role": "user", "content": "u"}], "PanelAnswer")
    assert k != cache_key("openai", "m", "v1", [("user", "u"), ("system", "s")], "PanelAnswer")
    assert k != cache_key("openai", "m", "v1", [("system", "s"), ("user", "u")], "NewsAnswer")
    assert k != cache_key("anthropic", "m", "v1", [("system", "s"), ("user", "u")], "PanelAnswer")


def test_record_json_roundtrip():
    r = record("k")
    assert CachedResponse.from_json(r.to_json()) == r


def _check_sql(factory):
    cache = SqlResponseCache(factory)
    key = uuid.uuid4().hex + uuid.uuid4().hex
    assert cache.get(key) is None
    cache.put(key, record(key))
    cache.put(key, record(key))  # same key again: ignored, no error
    got = cache.get(key)
    assert got == record(key)
    usage = SqlTokenUsageStore(factory)
    member = f"m-{uuid.uuid4().hex[:8]}"
    day = date(2026, 11, 20)
    assert usage.day_total(member, day) == 0
    assert usage.add(member, day, 100) == 100
    assert usage.add(member, day, 50) == 150
    # a restart (new budget object over the same table) keeps the day's spend
    budget = TokenBudget(None, 200, store=SqlTokenUsageStore(factory))
    now = datetime(2026, 11, 20, 18, tzinfo=UTC)
    assert budget.day_spent(member, now) == 150
    assert budget.allow(member, 40, now) and not budget.allow(member, 60, now)
    return key, member


def test_sqlite(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'c.db'}")
    Base.metadata.create_all(engine, tables=TABLES)
    _check_sql(sessionmaker(engine, expire_on_commit=False))
    engine.dispose()


def test_sql_errors_are_misses(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'empty.db'}")  # no tables
    cache = SqlResponseCache(sessionmaker(engine))
    assert cache.get("k") is None
    cache.put("k", record("k"))  # logged, not raised
    engine.dispose()


@pytest.mark.services
def test_postgresql():
    engine = create_engine(PG_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as c:
            c.execute(text("select 1"))
    except Exception as exc:  # noqa: BLE001
        service_missing("PostgreSQL", str(exc))
    Base.metadata.create_all(engine, tables=TABLES)
    key, member = _check_sql(sessionmaker(engine, expire_on_commit=False))
    with engine.begin() as c:
        c.execute(text("delete from llm_responses where key = :k"), {"k": key})
        c.execute(text("delete from llm_token_usage where member_id = :m"), {"m": member})
    engine.dispose()


@pytest.fixture
def redis_client():
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001
        service_missing("Redis", str(exc))
    prefix = f"quorum-test-{uuid.uuid4().hex[:8]}:"
    yield client, prefix
    for k in client.scan_iter(f"{prefix}*"):
        client.delete(k)
    client.close()


@pytest.mark.services
def test_redis_in_front_of_backing(redis_client):
    client, prefix = redis_client
    backing = InMemoryResponseCache()
    cache = RedisResponseCache(client, backing, prefix=prefix + "llm:", ttl_s=600)
    cache.put("k1", record("k1"))
    assert client.get(prefix + "llm:k1") is not None and len(backing) == 1
    assert cache.get("k1") == record("k1")
    # a Redis miss falls through to the backing cache and refills Redis
    backing.put("k2", record("k2"))
    assert cache.get("k2") == record("k2")
    assert client.get(prefix + "llm:k2") is not None
    assert cache.get("nope") is None


@pytest.mark.services
def test_redis_is_a_cache_in_front_of_the_database_record(redis_client, tmp_path):
    """Issue 13 item 23 with the real Redis: totals written to the database first, Redis mirrors them,
    a lost Redis entry is refilled from the record, and a stale lower total never lowers the cache."""
    client, prefix = redis_client
    engine = create_engine(f"sqlite:///{tmp_path / 't.db'}")
    Base.metadata.create_all(engine, tables=TABLES)
    factory = sessionmaker(engine, expire_on_commit=False)
    record_store = SqlTokenUsageStore(factory)
    a = CachedTokenUsageStore(record_store, client, prefix=prefix + "tok:")
    b = CachedTokenUsageStore(SqlTokenUsageStore(factory), client, prefix=prefix + "tok:")  # another process
    day = date(2026, 11, 20)
    key = f"{prefix}tok:{day.isoformat()}:gpt"
    assert a.add("gpt", day, 700) == 700 and b.add("gpt", day, 300) == 1000
    assert int(client.get(key)) == 1000 and record_store.day_total("gpt", day) == 1000
    assert a.day_total("gpt", day) == 1000 == b.day_total("gpt", day)
    client.delete(key)  # Redis lost the entry (restart, eviction): the record answers and refills it
    assert b.day_total("gpt", day) == 1000 and int(client.get(key)) == 1000
    a._raise_to("gpt", day, 400)  # a late writer with an older total cannot lower the cache
    assert int(client.get(key)) == 1000
    assert 0 < client.ttl(key) <= 600  # short-lived: a miss just reads the record
    # the budget over it is enforced across "processes"
    budget = TokenBudget(None, 1500, store=b)
    now = datetime(2026, 11, 20, 9, tzinfo=UTC)
    assert budget.allow("gpt", 400, now) and not budget.allow("gpt", 600, now)
    engine.dispose()


def _closed_port() -> int:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_day_budget_is_enforced_with_redis_configured_but_down(tmp_path):
    """Issue 13 item 23: the runtime a cycle builds, with QUORUM_REDIS_URL at a closed port, still stops a
    member whose day is spent (the database is the record), and a restart keeps the day."""
    import time

    from core.settings import load_settings
    from tasks import panel as tp

    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'q.db'}",
                             redis_url=f"redis://127.0.0.1:{_closed_port()}/0",
                             token_budget_cycle=100_000, token_budget_day=2_500)
    now = datetime.now(UTC)
    rt = tp._build_runtime(settings)
    rt.budget.spend("gpt", 2_000, now)
    assert rt.budget.day_spent("gpt", now) == 2_000
    restarted = tp._build_runtime(settings)  # a new process: nothing in memory, Redis still down
    t0 = time.monotonic()
    assert restarted.budget.refusal("gpt", 1_000, now) is not None
    assert "2,000 of 2,500 per day" in restarted.budget.refusal("gpt", 1_000, now)
    assert restarted.budget.allow("gpt", 400, now)
    assert time.monotonic() - t0 < 6.0  # a down Redis is skipped, not waited on per call
    from store.db import dispose_all

    dispose_all()


def test_unreadable_day_record_stops_the_member(tmp_path):
    """No "assuming 0 spent": when the record cannot be read the budget refuses (fail closed)."""
    engine = create_engine(f"sqlite:///{tmp_path / 'empty.db'}")  # no tables
    budget = TokenBudget(None, 1_000_000, store=SqlTokenUsageStore(sessionmaker(engine)))
    why = budget.refusal("gpt", 10)
    assert why is not None and "cannot be read" in why
    assert not budget.allow("gpt", 10)
    engine.dispose()


def test_redis_down_is_a_miss():
    class Broken:
        def get(self, k):
            raise ConnectionError("down")

        def set(self, *a, **k):
            raise ConnectionError("down")

    backing = InMemoryResponseCache()
    cache = RedisResponseCache(Broken(), backing)
    cache.put("k", record("k"))
    assert cache.get("k") == record("k")


def test_build_response_cache_without_anything(monkeypatch):
    monkeypatch.delenv("QUORUM_REDIS_URL", raising=False)
    assert isinstance(build_response_cache(), InMemoryResponseCache)


@pytest.mark.services
def test_cycle_runtime_with_the_real_redis_keeps_the_record_in_the_database(tmp_path, redis_client):
    """The runtime a cycle builds with QUORUM_REDIS_URL set: totals in the database and mirrored in Redis
    under this database's own prefix; with the Redis entry gone, the day is still enforced."""
    from core.settings import load_settings
    from store.llm_cache import token_prefix
    from tasks import panel as tp

    client, _ = redis_client
    url = f"sqlite:///{tmp_path / 'q.db'}"
    settings = load_settings(database_url=url, redis_url=REDIS_URL, token_budget_day=2_500)
    now = datetime.now(UTC)
    member = f"m-{uuid.uuid4().hex[:6]}"
    rt = tp._build_runtime(settings)
    rt.budget.spend(member, 2_000, now)
    key = f"{token_prefix(url)}{now.date().isoformat()}:{member}"
    try:
        assert int(client.get(key)) == 2_000
        assert SqlTokenUsageStore(rt.budget.store.record.session_factory).day_total(member, now.date()) == 2_000
        client.delete(key)
        again = tp._build_runtime(settings)
        assert again.budget.refusal(member, 1_000, now) is not None
    finally:
        client.delete(key)
        from store.db import dispose_all

        dispose_all()
