"""Shared fixtures: isolated settings, real PostgreSQL/Redis (fail under CI when missing), and one
session-scoped Prefect test harness for flow tests."""

from __future__ import annotations

import os
import tempfile
import uuid
import warnings
from collections.abc import Iterator

import pytest

from tasks import prefect_env

prefect_env.apply()
# task results cached by Prefect (news 1 h, hunter 4 h) go to a per-session folder, not ~/.prefect
os.environ.setdefault("PREFECT_LOCAL_STORAGE_PATH", tempfile.mkdtemp(prefix="quorum-prefect-results-"))
# and Prefect's home (profiles, memo store) per test process: nothing shared between xdist workers
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="quorum-prefect-home-"))
warnings.filterwarnings("ignore", message=".*Pandas4Warning.*")

PG_URL = os.environ.get("QUORUM_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("QUORUM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
_SECRETS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "XAI_API_KEY", "DEEPSEEK_API_KEY", "OPENROUTER_API_KEY",
            "OLLAMA_HOST", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "XAI_API_HOST", "DEEPSEEK_BASE_URL",
            "OPENROUTER_BASE_URL")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long tests (marked slow) first, in their collection order, then the others in theirs: under
    pytest-xdist's worksteal the workers take the long ones while there is still short work to balance
    against, instead of one starting last and the run waiting on it (the same tests, in any order)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def service_missing(what: str, why: str) -> None:
    """Under CI a missing service is a failure, never a skip."""
    msg = f"{what} is not reachable ({why}); start it (see DESIGN.md §5)"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """No developer settings, keys or quorum.yaml leak into a test; each test gets its own SQLite file."""
    for k in list(os.environ):
        if k.startswith("QUORUM_") and k not in ("QUORUM_TEST_PG_URL", "QUORUM_TEST_REDIS_URL", "QUORUM_DEBUG"):
            monkeypatch.delenv(k, raising=False)
    for k in _SECRETS:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("QUORUM_DATABASE_URL", f"sqlite:///{tmp_path / 'quorum.db'}")
    monkeypatch.setenv("QUORUM_WARM", "0")  # `quorum` subprocesses start cold unless a test hands them over
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def pg_url() -> str:
    try:
        import psycopg

        with psycopg.connect(PG_URL.replace("postgresql+psycopg", "postgresql"), connect_timeout=3) as c:
            c.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001
        service_missing("PostgreSQL", str(exc).splitlines()[0])
    return PG_URL


@pytest.fixture
def pg_schema_url(pg_url: str) -> Iterator[str]:
    """A throw-away schema on the real PostgreSQL, as a URL whose search_path points at it."""
    import psycopg

    schema = f"qt_{uuid.uuid4().hex[:10]}"
    raw = pg_url.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(raw, autocommit=True) as c:
        c.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{pg_url}?options=-csearch_path%3D{schema}"
    finally:
        from store.db import dispose_all

        dispose_all()
        with psycopg.connect(raw, autocommit=True) as c:
            c.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except Exception as exc:  # noqa: BLE001
        service_missing("Redis", str(exc).splitlines()[0])
    return REDIS_URL


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One ephemeral Prefect server for every flow test (~12 s once)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def prefect_api_url(prefect_harness) -> str:  # noqa: ARG001
    """The API URL of this worker's Prefect test server (a real server on loopback), for the
    PREFECT_API_URL of the `quorum` subprocesses: one server per worker, not one per process."""
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value())
