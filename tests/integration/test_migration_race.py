"""Issue 13 item 21: commands started together on a fresh database must not race on the migrations.

Several real processes open the same fresh database at the same instant (each says it is ready after its
imports, then waits for the go that the test sends to all of them at once); every one must succeed, and the
schema ends at head exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[2]
N = 4

SCRIPT = textwrap.dedent("""
    import sys
    from store.db import open_database
    from sqlalchemy import text
    url = sys.argv[1]
    print("ready", flush=True)
    sys.stdin.readline()  # the go, once every process has done its imports
    engine = open_database(url)
    with engine.connect() as c:
        print(c.execute(text("SELECT version_num FROM alembic_version")).scalar_one())
""")


def _race(url: str) -> list[subprocess.CompletedProcess[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUORUM_")}
    env["PYTHONPATH"] = str(ROOT)
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, url], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(N)]
    try:
        for p in procs:  # every process has imported SQLAlchemy and Alembic (or has failed: shown below)
            p.stdout.readline()  # type: ignore[union-attr]
        for p in procs:  # then all go at once
            p.stdin.write("go\n")  # type: ignore[union-attr]
            p.stdin.flush()  # type: ignore[union-attr]
    except BrokenPipeError:
        pass
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def _head() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from store.db import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()


def _check(results: list[subprocess.CompletedProcess[str]], url: str) -> None:
    failed = [r.stderr.strip().splitlines()[-1:] for r in results if r.returncode != 0]
    assert not failed, f"{len(failed)} of {N} processes failed: {failed}"
    head = _head()
    assert [r.stdout.strip() for r in results] == [head] * N
    from store.db import normalise_url

    engine = create_engine(normalise_url(url))
    try:
        with engine.connect() as c:
            assert c.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
    finally:
        engine.dispose()


@pytest.mark.slow
def test_processes_racing_on_a_fresh_sqlite_database_all_succeed(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh' / 'quorum.db'}"
    _check(_race(url), url)


@pytest.mark.slow
def test_processes_racing_on_a_fresh_postgres_schema_all_succeed(pg_schema_url: str) -> None:
    _check(_race(pg_schema_url), pg_schema_url)
