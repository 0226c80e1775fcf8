"""The dashboard in a real headless browser: Debian's chromium driven by playwright, against the app
served by uvicorn on a loopback port, on real demo cycles and a backtest (`demo_db`). Checks what is
on the screen: numbers that match the database, a model's rationale, the charts drawn, and the halt
button refused without a token and working with it.

Set DASHBOARD_SCREENSHOT=docs/dashboard-overview.png to (re)write the README's screenshot."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import QWEN_RATIONALE

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TOKEN = "browser-test-token"



def _browser_missing_here() -> bool:
    """Outside CI without playwright or chromium: skip before the session's demo database is built for
    nothing (under CI the `browser` fixture fails instead)."""
    if os.environ.get("CI"):
        return False
    import importlib.util

    return importlib.util.find_spec("playwright") is None or not Path(CHROMIUM).exists()


pytestmark = [pytest.mark.prefect, pytest.mark.slow,
              pytest.mark.skipif(_browser_missing_here(), reason=f"playwright or {CHROMIUM} is missing "
                                 "(`make setup`, `make browser`)")]


def _need_browser() -> None:
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.fail("playwright is missing: `make setup` installs the dev extras") if os.environ.get("CI") else \
            pytest.skip("playwright is not installed")
    if not Path(CHROMIUM).exists():
        msg = f"{CHROMIUM} is missing: `make browser` installs Debian's chromium"
        pytest.fail(msg) if os.environ.get("CI") else pytest.skip(msg)


class Served:
    """The dashboard app on an OS-chosen loopback port, in a thread."""

    def __init__(self, app) -> None:  # type: ignore[no-untyped-def]
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the dashboard did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    _need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def site(demo_db, tmp_path_factory, browser) -> Iterator[tuple[str, str]]:  # type: ignore[no-untyped-def]  # noqa: ARG001
    """The app over a private copy of the demo database (the halt test changes it): (base URL, db URL)."""
    from dashboard.app import create_app

    url = demo_db.copy(tmp_path_factory.mktemp("browser-db"))
    with Served(create_app(demo_db.settings(url), demo_db.reports, token=TOKEN)) as base:
        yield base, url


def _factory(url: str):  # type: ignore[no-untyped-def]
    from store.db import get_session_factory

    return get_session_factory(type("S", (), {"database_url": url})())


def test_overview_shows_the_account_as_stored(site, browser, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from core.settings import Settings
    from dashboard.app import money
    from exchange.factory import build_source
    from pipeline.account import account_summary
    from store import repo
    from store.db import transaction

    base, url = site
    settings = Settings(database_url=url)
    with transaction(_factory(url)) as s:
        clock = repo.get_account(s, "paper", 1).clock
        open_ids = [p.id for p in repo.open_positions(s, "paper")]
        n_closed = len(repo.closed_positions(s, "paper"))
    summary = account_summary(_factory(url), build_source(settings), settings, clock)

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(base + "/")
    page.wait_for_selector("#equity-chart .main-svg")  # plotly (served locally) drew the equity curves
    assert page.inner_text("#equity") == money(summary["equity"])
    assert page.inner_text("#balance") == money(summary["balance"])
    assert page.inner_text("#counts") == f"3 / {n_closed}"
    assert page.locator("#positions tr[data-position]").evaluate_all("rs => rs.map(r => r.dataset.position)") == open_ids
    legend = page.inner_text("#equity-chart")
    assert "account (consensus)" in legend and "qwen-local (shadow)" in legend
    assert page.locator("#cycles tr").count() == 1 + 3
    assert "Entries allowed" in page.inner_text("#halt-state")
    shot = os.environ.get("DASHBOARD_SCREENSHOT")
    out = Path(shot) if shot else tmp_path / "overview.png"
    page.screenshot(path=str(out), full_page=False)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page.close()


def test_cycle_page_shows_every_vote_and_its_rationale(site, demo_db, browser) -> None:  # type: ignore[no-untyped-def]
    base, _ = site
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(base + "/")
    page.click(f"a[href='/cycles/{demo_db.cycle_ids[0]}']")
    page.wait_for_selector("#cycle-id")
    assert page.inner_text("#cycle-id") == demo_db.cycle_ids[0]
    xrp = page.locator("#cand-XRP-USDT-USDT")
    qwen = xrp.locator(".vote[data-member='qwen-local']")
    assert qwen.locator(".rationale").inner_text() == QWEN_RATIONALE.format(symbol="XRP/USDT:USDT")
    assert qwen.locator(".badge").inner_text() == "LONG"
    assert xrp.locator(".vote").count() == 6
    sol = page.locator("#cand-SOL-USDT-USDT")
    assert "qwen-local" in sol.locator(".dissent").inner_text()
    assert sol.locator(".risk-reasons li").count() >= 1
    assert sol.locator(".components tr").count() > 3  # the score breakdown
    assert page.locator("#orders tr").count() >= 2
    page.close()


def test_leaderboard_trades_and_backtests_pages(site, demo_db, browser) -> None:  # type: ignore[no-untyped-def]
    from dashboard.app import money
    from pipeline.shadow import shadow_key
    from store import repo
    from store.db import transaction

    base, url = site
    with transaction(_factory(url)) as s:
        last = {m: repo.equity_history(s, shadow_key("paper", m))[-1][1] for m in ("gpt", "qwen-local")}
        last["consensus"] = repo.equity_history(s, "paper")[-1][1]
        closed = repo.closed_positions(s, "paper")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(base + "/leaderboard")
    page.wait_for_selector("#bars-chart .main-svg")
    page.wait_for_selector("#lines-chart .main-svg")
    assert page.locator("#board tr[data-member]").count() == 7
    for m, v in last.items():
        assert page.inner_text(f"#board tr[data-member='{m}'] .account-value") == money(v)

    page.click("header a[href='/trades']")
    page.wait_for_selector("#trades")
    ids = page.locator("#trades tr[data-position]").evaluate_all("rs => rs.map(r => r.dataset.position)")
    assert sorted(ids) == sorted(p.id for p in closed)
    first = next(p for p in closed if p.id == ids[0])
    row = page.locator(f"#trades tr[data-position='{first.id}']")
    assert row.locator(".exit-reason").inner_text() == first.exit_reason
    from dashboard.app import smoney

    assert row.locator(".net").inner_text() == smoney(first.realised_pnl - first.fees_paid - first.funding_paid)
    row.locator("a").click()
    page.wait_for_selector("#price-chart .main-svg")  # candles with the entry/exit markers
    legend = page.inner_text("#price-chart")
    assert "entry" in legend and "exit" in legend
    assert page.inner_text("#exit-reason") == first.exit_reason

    page.click("header a[href='/backtests']")
    page.wait_for_selector("#backtests")
    link = page.locator("#backtests tr[data-report] a").first
    title = link.inner_text()
    link.click()
    page.wait_for_load_state()
    assert title in page.title() or title in page.inner_text("body")
    page.close()


def test_halt_button_refused_without_token_and_works_with_it(site, browser) -> None:  # type: ignore[no-untyped-def]
    from store import repo
    from store.db import transaction

    base, url = site

    def active():  # type: ignore[no-untyped-def]
        with transaction(_factory(url)) as s:
            return repo.active_halt(s, "paper", repo.get_account(s, "paper", 1).clock)

    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    page.goto(base + "/")
    page.fill("#control-reason", "browser test halt")
    page.click("#halt-button")
    page.wait_for_function("document.getElementById('control-status').textContent.startsWith('refused')")
    assert "refused (401)" in page.inner_text("#control-status")
    assert active() is None

    page.goto(base + "/login")
    page.fill("#token", "not-the-token")
    page.click("#login-button")
    assert "wrong token" in page.inner_text("#login-error")
    page.fill("#token", TOKEN)
    page.click("#login-button")
    page.wait_for_url(base + "/")
    page.fill("#control-reason", "browser test halt")
    page.click("#halt-button")
    page.wait_for_function("document.getElementById('control-status').textContent.startsWith('halted')")
    halt = active()
    assert halt is not None and halt.reason == "browser test halt"
    page.wait_for_function("document.getElementById('halt-state').textContent.includes('HALTED')")  # htmx refresh
    assert "browser test halt" in page.inner_text("#halt-state")
    page.click("#resume-button")
    page.wait_for_function("document.getElementById('control-status').textContent.startsWith('resumed')")
    assert active() is None
    ctx.close()


def test_unreachable_database_page(demo_db, browser) -> None:  # type: ignore[no-untyped-def]
    from dashboard.app import create_app

    app = create_app(demo_db.settings("postgresql://quorum:pw@127.0.0.1:9/quorum"), demo_db.reports)
    with Served(app) as base:
        page = browser.new_page()
        resp = page.goto(base + "/")
        assert resp is not None and resp.status == 503
        assert "unreachable" in page.inner_text("#message") and "Traceback" not in page.content()
        page.close()


def test_trades_page_refreshes_itself_when_a_position_closes(demo_db, browser, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The trades page polls (htmx): a close-all made elsewhere shows up as new rows without a reload."""
    import httpx

    from dashboard.app import create_app
    from store import repo
    from store.db import transaction

    url = demo_db.copy(tmp_path / "refresh")
    with transaction(_factory(url)) as s:
        n_open = len(repo.open_positions(s, "paper"))
    assert n_open >= 1
    with Served(create_app(demo_db.settings(url), demo_db.reports, token=TOKEN, refresh_s=1)) as base:
        page = browser.new_page()
        page.goto(base + "/trades")
        before = page.locator("#trades tr[data-position]").count()
        r = httpx.post(base + "/api/close-all", json={"reason": "refresh test"},
                       headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
        assert r.status_code == 200 and len(r.json()["closed"]) == n_open
        page.wait_for_function(f"document.querySelectorAll('#trades tr[data-position]').length === {before + n_open}",
                               timeout=30_000)
        shown = {page.locator("#trades tr[data-position]").nth(i).get_attribute("data-position")
                 for i in range(before + n_open)}
        with transaction(_factory(url)) as s:
            closed = {p.id for p in repo.closed_positions(s, "paper")}
        assert shown == closed
        page.close()
