"""The dashboard's JSON API and pages through FastAPI's TestClient, on a database of real demo cycles
(tests/integration/conftest.py `demo_db`): the numbers match the database, the controls need the
token, and a missing or unreachable database is a clear message."""

from __future__ import annotations

import csv
import io
import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.integration.conftest import QWEN_RATIONALE

pytestmark = [pytest.mark.prefect]
TOKEN = "s3cret-dashboard-token"


def client(demo_db, url: str | None = None, token: str | None = None) -> TestClient:  # type: ignore[no-untyped-def]
    from dashboard.app import create_app

    return TestClient(create_app(demo_db.settings(url), demo_db.reports, token=token))


def factory(url: str):  # type: ignore[no-untyped-def]
    from store.db import get_session_factory

    return get_session_factory(type("S", (), {"database_url": url})())


def test_api_numbers_match_the_database(demo_db) -> None:  # type: ignore[no-untyped-def]
    from core.metrics import trade_records_from_positions
    from pipeline.shadow import shadow_key
    from store import repo
    from store.db import transaction
    from store.models import CycleRow

    c = client(demo_db)
    with transaction(factory(demo_db.url)) as s:
        hist = repo.equity_history(s, "paper")
        closed = repo.closed_positions(s, "paper")
        still_open = repo.open_positions(s, "paper")
        n_cycles = s.scalar(select(func.count()).select_from(CycleRow))
        shadow_last = {m: repo.equity_history(s, shadow_key("paper", m))[-1][1]
                       for m in ("gpt", "qwen-local", "claude-opus")}
    h = c.get("/api/health").json()
    assert h["status"] == "ok" and h["cycles"] == n_cycles == 3 and h["closed_trades"] == len(closed)

    pos = c.get("/api/positions").json()
    assert pos["as_of"].startswith("2025-05-30T04:00")
    assert [p["id"] for p in pos["open_positions"]] == [p.id for p in still_open]
    assert pos["equity"] == pytest.approx(hist[-1][1], abs=0.01)  # marked at the same time as the snapshot
    for p in pos["open_positions"]:
        side = 1 if p["side"] == "LONG" else -1
        assert p["unrealised"] == pytest.approx((p["mark"] - p["entry"]) * float(p["qty"]) * side)

    trades = c.get("/api/trades").json()
    assert sorted(t["id"] for t in trades) == sorted(p.id for p in closed) and trades
    recs = {(r.symbol, r.opened_at.isoformat()): r for r in trade_records_from_positions(closed)}
    for t in trades:
        r = recs[(t["symbol"], t["opened_at"])]
        assert t["net_pnl"] == pytest.approx(r.pnl, abs=1e-6) and t["exit_reason"] == r.reason
        assert t["r_multiple"] == pytest.approx(r.r_multiple)

    qwen = c.get("/api/trades?account=paper:shadow:qwen-local").json()
    with transaction(factory(demo_db.url)) as s:
        assert sorted(t["id"] for t in qwen) == sorted(p.id for p in repo.closed_positions(s, "paper:shadow:qwen-local"))
    assert all(t["id"].startswith("qwen-local:") for t in qwen)
    assert c.get("/api/trades?account=other").status_code == 404
    assert "shadow account" in c.get("/trades?account=paper:shadow:qwen-local").text

    perf = c.get("/api/performance").json()
    assert perf["metrics"]["total_return"] == pytest.approx(hist[-1][1] / hist[0][1] - 1)

    board = c.get("/api/leaderboard").json()
    by = {r["member_id"]: r for r in board}
    assert set(by) == {"consensus", "gpt", "grok", "deepseek", "claude-sonnet", "claude-opus", "qwen-local"}
    assert by["consensus"]["account_value"] == pytest.approx(hist[-1][1])
    for m, v in shadow_last.items():
        assert by[m]["account_value"] == pytest.approx(v)
    assert by["qwen-local"]["n_votes"] == 9  # three cycles x three symbols

    cycles = c.get("/api/cycles").json()
    assert [x["id"] for x in cycles] == list(reversed(demo_db.cycle_ids))


def test_cycle_api_has_every_vote_with_its_rationale(demo_db) -> None:  # type: ignore[no-untyped-def]
    c = client(demo_db)
    cyc = c.get(f"/api/cycles/{demo_db.cycle_ids[0]}").json()
    xrp = next(x for x in cyc["candidates"] if x["symbol"] == "XRP/USDT:USDT")
    qwen = next(v for v in xrp["votes"] if v["member"] == "qwen-local")
    assert qwen["rationale"] == QWEN_RATIONALE.format(symbol="XRP/USDT:USDT") and qwen["action"] == "LONG"
    assert len(xrp["votes"]) == 6 and xrp["decision"]["votes_total"] == 6
    assert xrp["score"]["components"] and xrp["risk"]["reasons"]
    sol = next(x for x in cyc["candidates"] if x["symbol"] == "SOL/USDT:USDT")
    assert any("qwen-local" in d for d in sol["decision"]["dissent"])
    assert cyc["orders"] and all(o["account"] == "paper" for o in cyc["orders"])
    assert any(o["account"] == "paper:shadow:qwen-local" for o in cyc["shadow_orders"])
    assert c.get("/api/cycles/nope").status_code == 404
    page = c.get(f"/cycles/{demo_db.cycle_ids[0]}")
    assert page.status_code == 200 and QWEN_RATIONALE.format(symbol="XRP/USDT:USDT") in page.text


def test_exports_in_every_format(demo_db) -> None:  # type: ignore[no-untyped-def]
    c = client(demo_db)
    n_trades = len(c.get("/api/trades").json())
    js = c.get("/api/export?format=json")
    assert js.status_code == 200 and len(json.loads(js.text)["trades"]) == n_trades == json.loads(js.text)["count"]
    rows = list(csv.DictReader(io.StringIO(c.get("/api/export?format=csv").text)))
    assert len(rows) == n_trades
    tax = list(csv.DictReader(io.StringIO(c.get("/api/export?format=tax").text)))
    assert len(tax) == n_trades and "gain" in tax[0]
    audit = c.get("/api/export?format=audit")
    assert audit.headers["content-disposition"].endswith('quorum-audit.csv"')
    arows = list(csv.DictReader(io.StringIO(audit.text)))
    assert len(arows) == 9 and QWEN_RATIONALE.format(symbol="XRP/USDT:USDT") in audit.text
    assert all("shadow" not in r["orders"] for r in arows)  # the members' shadow orders are not the account's
    bad = c.get("/api/export?format=xls")
    assert bad.status_code == 400 and "expected json, csv, tax or audit" in bad.json()["detail"]


def test_controls_need_the_token(demo_db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from store import repo
    from store.db import transaction

    url = demo_db.copy(tmp_path / "ctl")
    off = client(demo_db, url, token=None)
    r = off.post("/api/halt", json={"reason": "x"})
    assert r.status_code == 403 and "QUORUM_DASHBOARD_TOKEN" in r.json()["detail"]

    c = client(demo_db, url, token=TOKEN)
    for path in ("/api/halt", "/api/resume", "/api/close-all"):
        r = c.post(path)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", path
        r = c.post(path, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 403 and r.json()["detail"] == "wrong token"
    with transaction(factory(url)) as s:
        assert repo.active_halt(s, "paper", repo.get_account(s, "paper", 1).clock) is None

    ok = c.post("/api/halt", json={"reason": "news event"}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.json()["halted"]
    with transaction(factory(url)) as s:
        clock = repo.get_account(s, "paper", 1).clock
        halt = repo.active_halt(s, "paper", clock)
        assert halt is not None and halt.reason == "news event" and halt.set_by == "manual"
    assert "HALTED (manual): news event" in c.get("/").text
    assert c.post("/api/resume", headers={"Authorization": f"Bearer {TOKEN}"}).json()["released"] == 1

    # the page's login: a wrong token is refused; the right one sets a session cookie (not the token)
    c2 = client(demo_db, url, token=TOKEN)
    bad = c2.post("/login", content="token=nope", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert bad.status_code == 403 and "wrong token" in bad.text
    good = c2.post("/login", content=f"token={TOKEN}", headers={"Content-Type": "application/x-www-form-urlencoded"},
                   follow_redirects=False)
    assert good.status_code == 303 and TOKEN not in good.headers["set-cookie"]
    assert "httponly" in good.headers["set-cookie"].lower() and "samesite=strict" in good.headers["set-cookie"].lower()
    # a cookie alone (a cross-site form post) is not enough: the page's buttons send a header
    assert c2.post("/api/halt").status_code == 403
    shadows = [f"paper:shadow:{m}" for m in ("gpt", "grok", "deepseek", "claude-sonnet", "claude-opus", "qwen-local")]
    with transaction(factory(url)) as s:
        n_open = len(repo.open_positions(s, "paper"))
        shadow_open = {k: [p.id for p in repo.open_positions(s, k)] for k in shadows}
    assert n_open >= 1
    r = c2.post("/api/close-all", json={"reason": "flatten"}, headers={"X-Quorum-Control": "1"})
    assert r.status_code == 200 and len(r.json()["closed"]) == n_open
    with transaction(factory(url)) as s:
        assert repo.open_positions(s, "paper") == []
        assert repo.active_halt(s, "paper", repo.get_account(s, "paper", 1).clock).reason == "flatten"
        # the shadow accounts are not the operator's: close-all leaves them alone
        assert {k: [p.id for p in repo.open_positions(s, k)] for k in shadows} == shadow_open


def test_close_all_waits_for_a_running_cycle_and_closes_nothing_while_refused(demo_db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Close-all from the page takes the account's lock like `quorum halt --close-all`: while a cycle
    holds the account it is refused with 409 and the cycle's message, nothing closed; then it works."""
    from fastapi.testclient import TestClient

    from dashboard.app import create_app
    from store import repo
    from store.db import transaction
    from tests.integration.conftest import account_held

    url = demo_db.copy(tmp_path / "busy")
    c = TestClient(create_app(demo_db.settings(url, account_lock_wait_s=0), demo_db.reports, token=TOKEN))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with transaction(factory(url)) as s:
        n_open = len(repo.open_positions(s, "paper"))
    assert n_open >= 1
    with account_held(demo_db.settings(url)):
        r = c.post("/api/close-all", json={"reason": "flatten"}, headers=auth)
        assert r.status_code == 409 and "a trading cycle (pid" in r.json()["error"], r.text
        with transaction(factory(url)) as s:
            assert len(repo.open_positions(s, "paper")) == n_open
    r = c.post("/api/close-all", json={"reason": "flatten"}, headers=auth)
    assert r.status_code == 200 and len(r.json()["closed"]) == n_open


def test_backtest_reports_are_listed_and_open(demo_db) -> None:  # type: ignore[no-untyped-def]
    c = client(demo_db)
    rows = c.get("/api/backtests").json()
    assert len(rows) == 1 and rows[0]["panel"] == "math" and rows[0]["html"]
    report = json.loads((demo_db.reports / f"{rows[0]['name']}.json").read_text())
    assert rows[0]["total_return"] == report["metrics"]["total_return"]
    html = c.get(f"/backtests/{rows[0]['name']}")
    assert html.status_code == 200 and report["title"] in html.text
    assert c.get(f"/backtests/{rows[0]['name']}.json").json()["title"] == report["title"]
    assert c.get("/backtests/..%2F..%2Fetc%2Fpasswd").status_code == 404
    assert c.get("/backtests/backtest-nope").status_code == 404


def test_empty_and_unreachable_databases_are_clear_messages(demo_db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    empty = client(demo_db, f"sqlite:///{tmp_path / 'empty.db'}")
    r = empty.get("/")
    assert r.status_code == 200 and "No cycles in this database yet" in r.text
    for path in ("/leaderboard", "/trades", "/backtests", "/api/leaderboard", "/api/trades"):
        assert empty.get(path).status_code == 200, path
    assert empty.get("/api/health").json()["cycles"] == 0
    from store.db import transaction
    from store.models import AccountRow

    with transaction(factory(f"sqlite:///{tmp_path / 'empty.db'}")) as s:  # viewing writes no account row
        assert s.scalar(select(func.count()).select_from(AccountRow)) == 0

    down = client(demo_db, "postgresql://quorum:hunter2@127.0.0.1:9/quorum")
    page = down.get("/")
    assert page.status_code == 503 and "Database unavailable" in page.text and "unreachable" in page.text
    assert "Traceback" not in page.text and "hunter2" not in page.text
    api = down.get("/api/health")
    assert api.status_code == 503 and api.json()["database"] == "unavailable" and "hunter2" not in api.text


@pytest.mark.services
def test_dashboard_on_postgresql_with_long_shadow_account_keys(demo_db, pg_schema_url: str) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    from pipeline.shadow import shadow_key
    from store import repo
    from store.db import transaction

    key = shadow_key("paper", "claude-sonnet-with-a-long-member-id")  # > 8 characters: needs 0003
    with transaction(factory(pg_schema_url)) as s:
        repo.get_account(s, key, 10_000)
        repo.add_equity_snapshot(s, key, datetime(2025, 5, 23, 4, tzinfo=UTC), 10_000.0, 10_000.0, 0.0, 0)
    c = client(demo_db, pg_schema_url)
    assert c.get("/").status_code == 200
    board = {r["member_id"]: r for r in c.get("/api/leaderboard").json()}
    assert board["claude-sonnet-with-a-long-member-id"]["account_value"] == 10_000.0
