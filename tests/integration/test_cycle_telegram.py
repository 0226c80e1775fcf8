"""The cycle and the monitor posting to a local Bot API server through python-telegram-bot: entry
posts, exits as replies to their entry, and a bad token that never fails the cycle."""

from __future__ import annotations

import json

import pytest

from tests.fakes.telegram_server import FakeTelegramServer

pytestmark = [pytest.mark.prefect]


@pytest.fixture
def tg(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    with FakeTelegramServer() as server:
        monkeypatch.setenv("QUORUM_TELEGRAM_TOKEN", server.token)
        monkeypatch.setenv("QUORUM_TELEGRAM_CHANNEL", "@quorum_signals")
        monkeypatch.setenv("QUORUM_TELEGRAM_BASE_URL", server.base_url)
        yield server


def test_entries_then_exits_as_replies(tg: FakeTelegramServer, prefect_harness) -> None:  # noqa: ARG001
    from flows.position_monitor import position_monitor
    from flows.trading_cycle import trading_cycle

    rep = trading_cycle(as_of="2025-05-23T04:00:00Z")
    opened = {p["symbol"]: p["id"] for p in rep["account"]["open_positions"]}
    sends = tg.calls("sendMessage")
    assert len(sends) == len(opened) == rep["delivery"]["sent"]
    entry_ids = {}
    for r in sends:
        assert r.params["parse_mode"] == "HTML" and "reply_parameters" not in r.params
        sym = next(s for s in opened if s.split(":")[0] in r.params["text"])
        entry_ids[sym] = r.message_id
    tg.clear()
    res = position_monitor(as_of="2025-05-31T23:00:00Z")
    replies = tg.calls("sendMessage")
    assert replies and res["delivery"]["sent"] == len(replies)
    for r in replies:
        rp = r.params["reply_parameters"]
        parent = (json.loads(rp) if isinstance(rp, str) else rp)["message_id"]
        assert parent in entry_ids.values()
    # a rerun of the monitor (and its delivery) sends nothing twice
    tg.clear()
    position_monitor(as_of="2025-05-31T23:00:00Z")
    assert tg.calls("sendMessage") == []


def test_bad_token_is_reported_and_the_cycle_completes(tg: FakeTelegramServer, prefect_harness) -> None:  # noqa: ARG001
    from flows.trading_cycle import trading_cycle

    tg.fail_next("getMe", "401", times=5)
    tg.fail_next("sendMessage", "401", times=5)
    rep = trading_cycle(as_of="2025-05-23T04:00:00Z")
    assert rep["account"]["open_positions"], "the trades happen whatever the channel does"
    assert rep["delivery"]["sent"] == 0 and rep["delivery"]["config_error"]
    assert tg.token not in json.dumps(rep)


def test_json_output_still_delivers_to_telegram(tg: FakeTelegramServer, prefect_harness) -> None:  # noqa: ARG001
    """`cycle --json` (broadcast=False) keeps the posts off the console, not off the channel."""
    from flows.trading_cycle import trading_cycle

    rep = trading_cycle(as_of="2025-05-23T04:00:00Z", broadcast=False)
    assert rep["account"]["open_positions"]
    assert len(tg.calls("sendMessage")) == len(rep["account"]["open_positions"]) == rep["delivery"]["sent"]
