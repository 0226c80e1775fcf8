"""`quorum dashboard`: registered on the CLI, bound to 127.0.0.1 by default, options passed through."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner


def test_dashboard_command_defaults_to_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    import dashboard.app
    from cli.app import app

    calls = []
    monkeypatch.setattr(dashboard.app, "serve", lambda **kw: calls.append(kw))
    r = CliRunner().invoke(app, ["dashboard"])
    assert r.exit_code == 0, r.output
    assert calls == [{"host": "127.0.0.1", "port": 8000, "reports_dir": "reports"}]
    assert "controls disabled" in r.output

    monkeypatch.setenv("QUORUM_DASHBOARD_TOKEN", "t")
    r = CliRunner().invoke(app, ["dashboard", "--host", "0.0.0.0", "--port", "8123", "--reports", "out"])
    assert r.exit_code == 0 and calls[-1] == {"host": "0.0.0.0", "port": 8123, "reports_dir": "out"}
    assert "controls enabled" in r.output


def test_formatting_of_numbers_on_the_pages() -> None:
    from dashboard.app import money, pct, price, smoney

    assert money(10123.456) == "$10,123.46" and money(None) == "—" and money(float("nan")) == "—"
    assert smoney(-5.5) == "−$5.50" and smoney(2) == "+$2.00" and smoney(0) == "$0.00"
    assert pct(0.0123) == "+1.23%" and price(184.976988) == "184.977"


def test_the_cycle_output_lists_the_shadow_accounts() -> None:
    from cli.trading import _shadow_line

    assert _shadow_line("gpt", {"orders": {"SOL/USDT:USDT": "filled LONG 16 @ 185"}, "equity": 10000.0}) == \
        "gpt $10,000.00 (SOL filled LONG 16 @ 185)"
    assert _shadow_line("qwen-local", {"orders": {}, "equity": 9990.5}) == "qwen-local $9,990.50"


def test_the_token_comes_from_the_environment_and_is_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from core.settings import load_settings
    from dashboard.app import create_app

    monkeypatch.setenv("QUORUM_DASHBOARD_TOKEN", "env-token")
    assert "env-token" not in repr(load_settings())
    c = TestClient(create_app(reports_dir="reports"))
    assert c.post("/api/halt", headers={"Authorization": "Bearer nope"}).status_code == 403
    r = c.post("/api/halt", json={"reason": "env"}, headers={"Authorization": "Bearer env-token"})
    assert r.status_code == 200 and r.json()["reason"] == "env"
