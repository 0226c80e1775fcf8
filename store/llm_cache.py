"""Content-addressed cache of LLM answers, and the persisted per-day token totals.

Cache key (`cache_key`): the SHA-256 hex digest of the canonical JSON (sorted keys, no spaces,
UTF-8) of

    {"provider": ..., "model": ..., "prompt_version": ..., "schema": <schema class name>,
     "messages": [[role, content], ...]}            # the exact messages, in order

so the same model asked the same thing with the same prompt file gets the same key, and any change
to the snapshot, the prompt file (its version carries a content hash) or the model gives a new one.

Layers:
- `InMemoryResponseCache`: a dict behind a lock (no database; tests; backtests in one process).
- `SqlResponseCache(session_factory)`: table `llm_responses` on store.base.Base (SQLite/PostgreSQL).
- `RedisResponseCache(client, backing=...)`: Redis in front of another cache (QUORUM_REDIS_URL);
  a Redis miss falls through to the backing cache and refills Redis; Redis errors are ignored
  (the cache is an optimisation, never a reason for a cycle to fail).
Only successfully parsed answers are stored. Every cache swallows its own storage errors on `get`
(a miss) and `put` (logged), so the panel never fails because the cache did.

Token totals: table `llm_token_usage` (member_id, day) -> tokens, through `SqlTokenUsageStore`: the
record of the day's spend (a restart keeps it). With Redis configured, `CachedTokenUsageStore` puts
Redis in front of that record as a cache only: reads try Redis and fall back to the record (refilling
Redis), writes go to the record first; Redis being down changes nothing but speed, so the daily budget
is enforced either way. A record that cannot be read raises StorageError, and the budget then stops
the member rather than assume nothing was spent.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Protocol

from sqlalchemy import JSON, Date, Float, Integer, String, Text, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.errors import StorageError
from store.base import Base, UTCDateTime, utcnow

log = logging.getLogger(__name__)

REDIS_URL_ENV = "QUORUM_REDIS_URL"


# --------------------------------------------------------------------------- key and record


def cache_key(
    provider: str,
    model: str,
    prompt_version: str,
    messages: Sequence[Any],
    schema_name: str,
) -> str:
    """SHA-256 of (provider, model, prompt_version, exact messages, schema name); see module doc.

    `messages` items are agents.llm.base.Message (role, content) or (role, content) pairs.
    """
    msgs = []
    for m in messages:
        if isinstance(m, tuple | list):
            role, content = m
        elif isinstance(m, dict):
            role, content = m["role"], m["content"]
        else:
            role, content = m.role, m.content
        msgs.append([str(role), str(content)])
    doc = {
        "provider": provider,
        "model": model,
        "prompt_version": prompt_version,
        "schema": schema_name,
        "messages": msgs,
    }
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


@dataclass(frozen=True)
class CachedResponse:
    """One stored answer. `parsed` is the validated answer as JSON-able data (model_dump)."""

    key: str
    provider: str
    model: str
    prompt_version: str
    raw: str
    parsed: dict[str, Any]
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    schema_name: str = ""
    created_at: datetime = field(default_factory=utcnow)

    def to_json(self) -> str:
        d = asdict(self)
        d["created_at"] = self.created_at.isoformat()
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> CachedResponse:
        d = json.loads(text)
        d["created_at"] = datetime.fromisoformat(d["created_at"])
        return cls(**d)


class ResponseCache(Protocol):
    def get(self, key: str) -> CachedResponse | None: ...

    def put(self, key: str, record: CachedResponse) -> None: ...


# --------------------------------------------------------------------------- in process


class InMemoryResponseCache:
    """Thread-safe dict cache; also counts hits and misses (handy in tests and the bench)."""

    def __init__(self) -> None:
        self._data: dict[str, CachedResponse] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> CachedResponse | None:
        with self._lock:
            rec = self._data.get(key)
            if rec is None:
                self.misses += 1
            else:
                self.hits += 1
            return rec

    def put(self, key: str, record: CachedResponse) -> None:
        with self._lock:
            self._data[key] = record

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)


# --------------------------------------------------------------------------- SQL


class LLMResponseRow(Base):
    __tablename__ = "llm_responses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    provider: Mapped[str] = mapped_column(String(32), nullable=False)
    model: Mapped[str] = mapped_column(String(128), nullable=False)
    prompt_version: Mapped[str] = mapped_column(String(128), nullable=False)
    schema_name: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    response_raw: Mapped[str] = mapped_column(Text, nullable=False, default="")
    response_parsed: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    input_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    latency_s: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)

    def to_record(self) -> CachedResponse:
        return CachedResponse(
            key=self.key,
            provider=self.provider,
            model=self.model,
            prompt_version=self.prompt_version,
            raw=self.response_raw,
            parsed=dict(self.response_parsed),
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cost_usd=self.cost_usd,
            latency_s=self.latency_s,
            schema_name=self.schema_name,
            created_at=self.created_at,
        )


SessionFactory = Callable[[], Session]


class SqlResponseCache:
    """`llm_responses` through a SQLAlchemy session factory (e.g. a `sessionmaker`)."""

    def __init__(self, session_factory: SessionFactory):
        self.session_factory = session_factory

    def get(self, key: str) -> CachedResponse | None:
        try:
            with self.session_factory() as s:
                row = s.scalar(select(LLMResponseRow).where(LLMResponseRow.key == key))
                return None if row is None else row.to_record()
        except SQLAlchemyError as exc:
            log.warning("llm cache: read failed (%s); treating as a miss", type(exc).__name__)
            return None

    def put(self, key: str, record: CachedResponse) -> None:
        row = LLMResponseRow(
            key=key,
            provider=record.provider,
            model=record.model,
            prompt_version=record.prompt_version,
            schema_name=record.schema_name,
            response_raw=record.raw,
            response_parsed=record.parsed,
            input_tokens=record.input_tokens,
            output_tokens=record.output_tokens,
            cost_usd=record.cost_usd,
            latency_s=record.latency_s,
            created_at=record.created_at,
        )
        try:
            with self.session_factory() as s:
                s.add(row)
                s.commit()
        except IntegrityError:
            pass  # the same key stored concurrently: content-addressed, so identical
        except SQLAlchemyError as exc:
            log.warning("llm cache: write failed (%s); answer not cached", type(exc).__name__)


# --------------------------------------------------------------------------- Redis


class RedisResponseCache:
    """Redis in front of `backing` (or alone). Keys are `prefix + key`; `ttl_s` None keeps forever."""

    def __init__(
        self,
        client: Any,
        backing: ResponseCache | None = None,
        *,
        prefix: str = "quorum:llm:",
        ttl_s: int | None = 30 * 24 * 3600,
    ):
        self.client = client
        self.backing = backing
        self.prefix = prefix
        self.ttl_s = ttl_s

    @classmethod
    def from_url(cls, url: str, backing: ResponseCache | None = None, **kw: Any) -> RedisResponseCache:
        import redis

        return cls(redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0), backing, **kw)

    def _set(self, key: str, record: CachedResponse) -> None:
        try:
            self.client.set(self.prefix + key, record.to_json(), ex=self.ttl_s)
        except Exception as exc:  # noqa: BLE001 - redis is optional; never fail the caller
            log.warning("llm cache: redis write failed (%s)", type(exc).__name__)

    def get(self, key: str) -> CachedResponse | None:
        try:
            blob = self.client.get(self.prefix + key)
        except Exception as exc:  # noqa: BLE001
            log.warning("llm cache: redis read failed (%s); trying the database", type(exc).__name__)
            blob = None
        if blob is not None:
            try:
                return CachedResponse.from_json(blob)
            except (ValueError, TypeError, KeyError):
                log.warning("llm cache: unreadable redis entry %s; ignoring it", key[:12])
        if self.backing is None:
            return None
        rec = self.backing.get(key)
        if rec is not None:
            self._set(key, rec)
        return rec

    def put(self, key: str, record: CachedResponse) -> None:
        if self.backing is not None:
            self.backing.put(key, record)
        self._set(key, record)


def build_response_cache(
    session_factory: SessionFactory | None = None,
    redis_url: str | None = None,
) -> ResponseCache:
    """The cache for a deployment: SQL when a session factory is given, else in process; with Redis in
    front when `redis_url` (or QUORUM_REDIS_URL) is set."""
    base: ResponseCache = (
        SqlResponseCache(session_factory) if session_factory is not None else InMemoryResponseCache()
    )
    url = redis_url or os.environ.get(REDIS_URL_ENV)
    if url:
        try:
            return RedisResponseCache.from_url(url, backing=base)
        except Exception as exc:  # noqa: BLE001 - redis missing or bad URL: run without it
            log.warning("llm cache: redis at %s not usable (%s); using %s only",
                        url.split("@")[-1], type(exc).__name__, type(base).__name__)
    return base


# --------------------------------------------------------------------------- token usage per day


class TokenUsageRow(Base):
    __tablename__ = "llm_token_usage"

    member_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class SqlTokenUsageStore:
    """Per member and UTC day token totals in `llm_token_usage` (agents.budget.UsageStore)."""

    def __init__(self, session_factory: SessionFactory):
        self.session_factory = session_factory
        self._lock = threading.Lock()

    def day_total(self, member_id: str, day: date) -> int:
        """The day's total; StorageError when the record cannot be read (never "assume 0 spent")."""
        try:
            with self.session_factory() as s:
                row = s.get(TokenUsageRow, (member_id, day))
                return 0 if row is None else int(row.tokens)
        except SQLAlchemyError as exc:
            raise StorageError(f"token budget: cannot read the day total of {member_id} "
                               f"({type(exc).__name__})") from None

    def add(self, member_id: str, day: date, tokens: int) -> int:
        with self._lock:
            for _ in range(3):
                try:
                    with self.session_factory() as s:
                        row = s.get(TokenUsageRow, (member_id, day), with_for_update=True)
                        if row is None:
                            row = TokenUsageRow(member_id=member_id, day=day, tokens=0)
                            s.add(row)
                        row.tokens = int(row.tokens or 0) + int(tokens)
                        row.updated_at = datetime.now(UTC)
                        total = row.tokens
                        s.commit()
                        return total
                except IntegrityError:
                    continue  # inserted concurrently by another process: read and add again
                except SQLAlchemyError as exc:
                    log.warning("token budget: write failed (%s); spend not persisted", type(exc).__name__)
                    return 0
            return self.day_total(member_id, day)


# only ever raise a cached total: totals grow, so the largest value any process saw is the latest
_MAX_SET = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '-1')
local new = tonumber(ARGV[1])
if new > cur then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) return new end
return cur
"""


def token_prefix(database_url: str) -> str:
    """The Redis key prefix of one database's token totals (two databases never share totals)."""
    return f"quorum:tokens:{hashlib.sha256(database_url.encode()).hexdigest()[:10]}:"


class CachedTokenUsageStore:
    """Redis in front of the record (`SqlTokenUsageStore`, or any UsageStore). The record is written
    first and is the truth; Redis holds the latest total per member and day (set only upwards, so
    processes racing cannot lower it) and is skipped for `backoff_s` after a failure. Entries live
    `ttl_s` (a miss just reads the record), so a database that was reset is not shadowed for long;
    give each database its own `prefix` (`token_prefix(url)`)."""

    def __init__(self, record: Any, client: Any, *, prefix: str = "quorum:tokens:", ttl_s: int = 600,
                 backoff_s: float = 30.0, clock: Callable[[], float] | None = None):
        import time

        self.record = record
        self.client = client
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.backoff_s = backoff_s
        self._clock = clock or time.monotonic
        self._down_until = 0.0
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, record: Any, url: str, **kw: Any) -> CachedTokenUsageStore:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        return cls(record, client, **kw)

    def _k(self, member_id: str, day: date) -> str:
        return f"{self.prefix}{day.isoformat()}:{member_id}"

    def _usable(self) -> bool:
        with self._lock:
            return self._clock() >= self._down_until

    def _failed(self, what: str, exc: Exception) -> None:
        with self._lock:
            first = self._clock() >= self._down_until
            self._down_until = self._clock() + self.backoff_s
        if first:
            log.warning("token budget: redis %s failed (%s); using the database record for %.0fs",
                        what, type(exc).__name__, self.backoff_s)

    def _raise_to(self, member_id: str, day: date, total: int) -> None:
        if not self._usable():
            return
        try:
            self.client.eval(_MAX_SET, 1, self._k(member_id, day), int(total), int(self.ttl_s))
        except Exception as exc:  # noqa: BLE001 - the cache is optional
            self._failed("write", exc)

    def day_total(self, member_id: str, day: date) -> int:
        if self._usable():
            try:
                v = self.client.get(self._k(member_id, day))
            except Exception as exc:  # noqa: BLE001
                self._failed("read", exc)
            else:
                if v is not None:
                    try:
                        return int(v)
                    except (TypeError, ValueError):
                        log.warning("token budget: unreadable redis total for %s; reading the record", member_id)
        total = int(self.record.day_total(member_id, day))  # the record; raises when unreadable
        self._raise_to(member_id, day, total)
        return total

    def add(self, member_id: str, day: date, tokens: int) -> int:
        total = int(self.record.add(member_id, day, tokens))
        self._raise_to(member_id, day, total)
        return total
