"""Paper trading on live public market data (data_source: ccxt) against the local exchange server,
through the flows as the deployments run them; the forward clock (`as_of="next"`) on replay."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.fakes.live_exchange import LiveFakeBybit

pytestmark = pytest.mark.prefect
SYMS = "BTC/USDT:USDT,ETH/USDT:USDT"


def test_cycle_and_monitor_on_live_public_data(prefect_harness, monkeypatch, tmp_path: Path) -> None:  # noqa: ARG001
    from flows.position_monitor import position_monitor
    from flows.trading_cycle import trading_cycle

    with LiveFakeBybit() as fx:
        monkeypatch.setenv("QUORUM_DATA_SOURCE", "ccxt")
        monkeypatch.setenv("QUORUM_EXCHANGE_API_BASE", fx.url)
        monkeypatch.setenv("QUORUM_SYMBOLS", SYMS)
        before = datetime.now(UTC)
        report = trading_cycle(broadcast=False)
        mon = position_monitor(broadcast=False)
        assert fx.calls("/v5/market/kline"), "the cycle read its candles from the local exchange"
        assert fx.calls("/v5/market/tickers")
    assert report["source"] == "ccxt:bybit"
    assert report["mode"] == "paper"
    t = datetime.fromisoformat(report["as_of"])
    assert before - timedelta(seconds=5) <= t <= datetime.now(UTC), "live data: the cycle decides now"
    assert sorted(c["symbol"] for c in report["candidates"]) == SYMS.split(",")
    for c in report["candidates"]:
        assert c["price"] > 0 and c["score"]["final"] == c["score"]["final"]
    assert datetime.fromisoformat(mon["as_of"]) >= t
    with sqlite3.connect(tmp_path / "quorum.db") as db:
        assert db.execute("select status, source from cycles").fetchall() == [("completed", "ccxt:bybit")]


def test_as_of_next_walks_one_bar_per_run(prefect_harness, monkeypatch, tmp_path: Path) -> None:  # noqa: ARG001
    from flows.trading_cycle import trading_cycle

    first = trading_cycle(as_of="2025-05-30T10:00:00Z", symbols=["BTC/USDT:USDT"], broadcast=False)
    times = [first["as_of"]]
    for _ in range(3):
        times.append(trading_cycle(as_of="next", symbols=["BTC/USDT:USDT"], broadcast=False)["as_of"])
    assert [datetime.fromisoformat(x) for x in times] == [
        datetime(2025, 5, 30, 10, tzinfo=UTC) + timedelta(hours=i) for i in range(4)]
    with sqlite3.connect(tmp_path / "quorum.db") as db:
        assert db.execute("select count(distinct as_of) from cycles").fetchone() == (4,)
        clock = db.execute("select clock from accounts").fetchone()[0]
    assert clock.startswith("2025-05-30 13:00")


def test_as_of_next_at_the_end_of_the_replay_is_a_clear_error(prefect_harness) -> None:  # noqa: ARG001
    from core.errors import DataError
    from flows.trading_cycle import trading_cycle

    trading_cycle(symbols=["BTC/USDT:USDT"], broadcast=False)  # the last bundled bar
    with pytest.raises(DataError, match="nothing left to replay"):
        trading_cycle(as_of="next", symbols=["BTC/USDT:USDT"], broadcast=False)
