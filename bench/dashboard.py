"""Benchmark of the dashboard's overview page with 1,000 cycles and 500 trades in the database.

    .venv/bin/python bench/dashboard.py [--cycles 1000] [--trades 500] [--pg URL] [--no-browser]

Seeds a fresh database (SQLite in a temporary directory; `--pg` a PostgreSQL URL, used in a
throw-away schema) with `--cycles` completed cycles (3 candidates each: scores, six votes with
rationales, decisions, risk verdicts), one equity snapshot per cycle for the account and for six
member shadow accounts, `--trades` closed positions with their orders, fills and exit events; then
measures:

1. server time of the overview (GET /, and the htmx partial GET /partials/overview), of
   /api/positions, /api/trades and /leaderboard, through FastAPI's TestClient: the first request,
   then median and p95 of the repeats (the leaderboard is recomputed only when the record changes);
2. in a real browser (Debian's chromium via playwright, when installed): navigation until the
   equity chart is drawn, cold (new context: plotly.js, 4.8 MB, fetched) and warm (cached).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
import warnings
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
warnings.filterwarnings("ignore")

MEMBERS = ["gpt", "grok", "deepseek", "claude-sonnet", "claude-opus", "qwen-local"]
SYMS = ["BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"]
START = datetime(2025, 4, 10, tzinfo=UTC)  # 1,000 hourly cycles end inside the bundled history


def seed(url: str, n_cycles: int, n_trades: int) -> dict[str, float]:
    import numpy as np

    from store.db import get_session_factory, transaction
    from store.models import (
        AccountRow,
        CycleRow,
        DecisionRow,
        EquitySnapshotRow,
        FillRow,
        OrderRow,
        PositionEventRow,
        PositionRow,
        RiskVerdictRow,
        ScoreRow,
        VoteRow,
    )

    t0 = time.perf_counter()
    factory = get_session_factory(type("S", (), {"database_url": url})())
    rng = np.random.default_rng(7)
    keys = ["paper"] + [f"paper:shadow:{m}" for m in MEMBERS]
    equity = {k: 10_000.0 for k in keys}
    with transaction(factory) as s:
        for i in range(n_cycles):
            t = START + timedelta(hours=i)
            cid = f"paper-{t:%Y%m%dT%H%M}-{uuid.uuid4().hex[:6]}"
            s.add(CycleRow(id=cid, as_of=t, started_at=t, finished_at=t + timedelta(seconds=20), status="completed",
                           mode="paper", source="replay:binance", panel_status="panel: 6/6 models available",
                           llm_cost_usd=0.02, llm_tokens=9000, summary={}))
            for sym in SYMS:
                final = float(rng.normal(0, 0.3))
                action = "LONG" if final > 0.45 else "SHORT" if final < -0.45 else "WAIT"
                s.add(ScoreRow(cycle_id=cid, symbol=sym, final=final, signal=action, trend="RANGE",
                               vol_state="NORMAL", vol_ratio=1.0, atr_pct=1.2, daily_veto=False,
                               components={"trend": final, "momentum": 0.1, "volume": 0.0, "open_interest": 0.0,
                                           "news": 0.0},
                               timeframes={"1h": final, "4h": final, "1d": final}, flags=[], news={}))
                for m in MEMBERS:
                    s.add(VoteRow(cycle_id=cid, symbol=sym, member_id=m, provider="openai", model="m",
                                  prompt_version="decision_v1", action=action, confidence=0.6,
                                  rationale=f"{m}: {sym} looks {action.lower()} on the 4h trend " * 3,
                                  key_factors=["trend"], latency_s=2.0, input_tokens=700, output_tokens=80,
                                  cost_usd=0.003, as_of=t, price_at_vote=100.0))
                s.add(DecisionRow(cycle_id=cid, symbol=sym, action=action, confidence=0.6, math_score=final,
                                  combined_score=final, votes_valid=6, votes_total=6, tally={}, dissent=[],
                                  fallback_to_math=False, reason="weighted vote"))
                s.add(RiskVerdictRow(cycle_id=cid, symbol=sym, approved=False, profile="default",
                                     reasons=["decision is WAIT"], plan=None))
            for k in keys:
                equity[k] *= 1 + float(rng.normal(0, 0.002))
                s.add(EquitySnapshotRow(mode=k, ts=t, equity=equity[k], balance=equity[k], unrealised=0.0,
                                        open_positions=0))
        for j in range(n_trades):
            t = START + timedelta(hours=2 * j)
            sym = SYMS[j % 3]
            pid = f"{sym.split('/')[0]}-{t:%Y%m%d%H%M}"
            closed = True
            pnl = float(rng.normal(5, 40))
            s.add(PositionRow(id=pid, symbol=sym, side="LONG", entry=100.0, qty_initial=Decimal(3), qty_open=Decimal(0 if closed else 3),
                              stop=98.0, initial_stop=98.0, tp1=103.0, tp2=105.0, leverage=3, margin=100.0,
                              liquidation_price=70.0, opened_at=t, best_price=101.0, phase="initial",
                              tp1_done=False, realised_pnl=pnl if closed else 0.0, fees_paid=0.3, funding_paid=0.05,
                              closed_at=t + timedelta(hours=5) if closed else None,
                              exit_reason="stop" if closed and pnl < 0 else ("tp2" if closed else None),
                              cycle_id=None, mode="paper", extra={}))
            s.flush()
            o = OrderRow(client_order_id=f"paper:{pid}:open:0", cycle_id=None, position_id=pid, symbol=sym, side="LONG",
                         kind="open", qty=Decimal(3), status="filled", reason="", created_at=t, mode="paper")
            s.add(o)
            s.flush()
            s.add(FillRow(order_id=o.id, symbol=sym, qty=Decimal(3), price=Decimal(100), fee=Decimal("0.15"), ts=t))
            if closed:
                s.add(PositionEventRow(position_id=pid, symbol=sym, kind="stop" if pnl < 0 else "tp2",
                                       ts=t + timedelta(hours=5), price=100 + pnl / 3, qty=Decimal(3), pnl=pnl))
        for k in keys:
            s.add(AccountRow(mode=k, starting_balance=Decimal(10_000), balance=Decimal(str(round(equity[k], 2))),
                             realised_pnl=Decimal(0), fees_paid=Decimal(0), funding_paid=Decimal(0),
                             clock=START + timedelta(hours=n_cycles - 1), state={}))
    return {"seed_s": time.perf_counter() - t0}


def timed(client, path: str, repeats: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    r = client.get(path)  # the first request (engine, source load; the leaderboard's computation)
    first = time.perf_counter() - t
    assert r.status_code == 200, (path, r.status_code, r.text[:300])
    xs = []
    for _ in range(repeats):
        t = time.perf_counter()
        r = client.get(path)
        xs.append(time.perf_counter() - t)
        assert r.status_code == 200
    xs.sort()
    return {"first_ms": 1000 * first, "median_ms": 1000 * statistics.median(xs), "p95_ms": 1000 * xs[max(0, int(len(xs) * 0.95) - 1)],
            "bytes": len(r.content)}


def browser_load(app, repeats: int) -> dict[str, float] | None:  # type: ignore[no-untyped-def]
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not Path("/usr/bin/chromium").exists():
        return None
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    while not server.started:
        time.sleep(0.02)
    base = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/"
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    out: dict[str, float] = {}
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path="/usr/bin/chromium", args=args)
            cold, warm = [], []
            for _ in range(repeats):
                ctx = b.new_context(viewport={"width": 1400, "height": 1000})
                page = ctx.new_page()
                for bucket in (cold, warm):
                    t = time.perf_counter()
                    page.goto(base)
                    page.wait_for_selector("#equity-chart .main-svg")
                    bucket.append(time.perf_counter() - t)
                ctx.close()
            b.close()
        out = {"cold_median_s": statistics.median(cold), "warm_median_s": statistics.median(warm)}
    finally:
        server.should_exit = True
        th.join(10)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=1000)
    ap.add_argument("--trades", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--pg", help="a PostgreSQL URL (a throw-away schema is created and dropped)")
    ap.add_argument("--no-browser", action="store_true")
    a = ap.parse_args()

    from fastapi.testclient import TestClient

    from core.settings import Settings
    from dashboard.app import create_app

    schema = None
    if a.pg:
        import psycopg

        schema = f"qbench_{uuid.uuid4().hex[:8]}"
        raw = a.pg.replace("postgresql+psycopg", "postgresql")
        with psycopg.connect(raw, autocommit=True) as c:
            c.execute(f'CREATE SCHEMA "{schema}"')
        url = f"{a.pg}?options=-csearch_path%3D{schema}"
        label = "PostgreSQL"
    else:
        url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='qbench-')) / 'dash.db'}"
        label = "SQLite"
    try:
        seeded = seed(url, a.cycles, a.trades)
        app = create_app(Settings(database_url=url), "reports")
        client = TestClient(app)
        print(f"dashboard overview benchmark · {label} · {a.cycles} cycles, {a.trades} closed trades, "
              f"7 accounts (seeded in {seeded['seed_s']:.1f} s)")
        for path in ("/", "/partials/overview", "/api/positions", "/api/trades", "/leaderboard"):
            r = timed(client, path, a.repeats if path != "/leaderboard" else max(3, a.repeats // 5))
            print(f"  GET {path:<20} first {r['first_ms']:7.1f} ms   then median {r['median_ms']:7.1f} ms   "
                  f"p95 {r['p95_ms']:7.1f} ms   {r['bytes'] / 1024:7.1f} KiB")
        if not a.no_browser:
            b = browser_load(app, 3)
            if b is None:
                print("  browser: skipped (playwright or /usr/bin/chromium missing)")
            else:
                print(f"  chromium: overview until the equity chart is drawn: cold {b['cold_median_s']:.2f} s "
                      f"(plotly.js fetched), warm {b['warm_median_s']:.2f} s (median of 3)")
    finally:
        if schema:
            from store.db import dispose_all

            dispose_all()
            with psycopg.connect(a.pg.replace("postgresql+psycopg", "postgresql"), autocommit=True) as c:
                c.execute(f'DROP SCHEMA "{schema}" CASCADE')


if __name__ == "__main__":
    main()
