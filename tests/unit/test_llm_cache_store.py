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
    InMemoryResponseCache,
    LLMResponseRow,
    RedisResponseCache,
    RedisTokenUsageStore,
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
def test_redis_token_usage(redis_client):
    client, prefix = redis_client
    store = RedisTokenUsageStore(client, prefix=prefix + "tok:")
    day = date(2026, 11, 20)
    assert store.add("gpt", day, 7) == 7 and store.add("gpt", day, 3) == 10
    assert store.day_total("gpt", day) == 10 and store.day_total("gpt", date(2026, 11, 21)) == 0


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
