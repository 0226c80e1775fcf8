"""Faults in the middle of a command, with real processes: a cycle killed after its commit (its row
was left `running`), and a database connection lost in the middle of a cycle (PostgreSQL behind a
local TCP proxy that drops every connection when the cycle writes its analysis)."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.prefect]
ROOT = Path(__file__).resolve().parents[2]
AS_OF = "2025-05-23T04:00:00Z"


@pytest.fixture
def api_url(prefect_harness) -> str:  # noqa: ARG001
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value())


def quorum(url: str, api_url: str, cwd: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUORUM_")}
    env.update(QUORUM_DATABASE_URL=url, PREFECT_API_URL=api_url, PYTHONPATH=str(ROOT), **extra)
    return subprocess.run([sys.executable, "-m", "cli.app", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


def test_a_killed_cycle_is_reconciled_and_its_rerun_replaces_the_analysis(tmp_path: Path, api_url: str) -> None:
    db = tmp_path / "q.db"
    url = f"sqlite:///{db}"
    killed = quorum(url, api_url, tmp_path, "cycle", "--as-of", AS_OF, QUORUM_CRASH_AT="cycle:after-commit")
    assert killed.returncode == -9
    with sqlite3.connect(db) as c:
        assert c.execute("select status from cycles").fetchall() == [("running",)]

    doc = quorum(url, api_url, tmp_path, "doctor")
    line = next(x for x in doc.stdout.splitlines() if "cycles" in x)
    assert "warn" in line and "left running by a process that is gone" in doc.stdout, doc.stdout

    rerun = quorum(url, api_url, tmp_path, "cycle", "--as-of", AS_OF)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "was left running by a process that is gone: marked failed" in rerun.stdout
    with sqlite3.connect(db) as c:
        cycles = c.execute("select status, summary from cycles order by started_at").fetchall()
        per_table = {t: c.execute(f"select count(*), count(distinct symbol) from {t}").fetchone()
                     for t in ("candidates", "scores", "decisions", "risk_verdicts")}
        orders = c.execute("select count(*) from orders").fetchone()[0]
    assert [s for s, _ in cycles] == ["failed", "completed"]
    assert "stopped without finishing" in cycles[0][1]
    for table, (rows, symbols) in per_table.items():
        assert rows == symbols == 6, (table, rows)  # one set of analysis rows for the decision time
    assert orders == 2  # the killed run's orders stand; the rerun opened nothing twice

    doc = quorum(url, api_url, tmp_path, "doctor")
    assert "left running" not in doc.stdout and "completed" in doc.stdout


class DroppingProxy:
    """TCP proxy to PostgreSQL that drops every open connection the first time a client sends
    `trigger` (the database is lost), then accepts new connections again (it is back)."""

    def __init__(self, upstream: tuple[str, int], trigger: bytes) -> None:
        self.upstream, self.trigger = upstream, trigger
        self.tripped = threading.Event()
        self.lsock = socket.create_server(("127.0.0.1", 0))
        self.port = self.lsock.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.lsock.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            with self._lock:
                self._conns += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, watch: bool) -> None:
        try:
            while data := src.recv(65536):
                if watch and not self.tripped.is_set() and self.trigger in data:
                    self.tripped.set()
                    self.drop_all()
                    return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def drop_all(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def close(self) -> None:
        self.lsock.close()
        self.drop_all()


@pytest.mark.services
def test_database_lost_mid_cycle_is_one_line_and_the_cycle_is_marked(tmp_path: Path, api_url: str,
                                                                     pg_schema_url: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    real = make_url(pg_schema_url)
    proxy = DroppingProxy((real.host or "127.0.0.1", real.port or 5432), b"INSERT INTO candidates")
    try:
        url = real.set(host="127.0.0.1", port=proxy.port).update_query_dict({"sslmode": "disable"})
        r = quorum(url.render_as_string(hide_password=False), api_url, tmp_path, "cycle", "--as-of", AS_OF)
    finally:
        proxy.close()
    assert proxy.tripped.is_set(), "the cycle never wrote its analysis"
    assert r.returncode == 2, r.stdout[-1000:] + r.stderr[-3000:]
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr[-3000:]
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: database ") and " failed: " in lines[0], r.stderr
    eng = create_engine(pg_schema_url)
    try:
        with eng.connect() as c:
            status, summary = c.execute(text("select status, summary from cycles")).one()
            n_candidates = c.execute(text("select count(*) from candidates")).scalar()
    finally:
        eng.dispose()
    assert status == "failed" and "StorageError" in str(summary)
    assert n_candidates == 0  # the unit of work was all or nothing
