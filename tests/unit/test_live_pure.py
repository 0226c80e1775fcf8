"""Pure parts of the live broker: client order ids, exchange-code classification, the journal's book of
positions and the reconciliation diff, live settings and credentials."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import ccxt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import ConfigError
from core.settings import load_settings
from core.types import Side
from exchange.broker import OrderView, client_order_id, position_id_for
from exchange.capabilities import CAPABILITIES, capabilities_for, classify, exchange_code, protective_params
from exchange.live_client import build_client
from exchange.reconcile import ExchangeOrder, book_positions, diff, exit_kind, protective_exit, to_position

T = datetime(2025, 5, 23, 4, tzinfo=UTC)
ALLOWED = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")


@given(account=st.text(min_size=1, max_size=32), symbol=st.sampled_from(["BTC/USDT:USDT", "1000PEPE/USDT:USDT",
                                                                         "ETH/USDC:USDC", "XRP/USDT:USDT"]),
       intent=st.sampled_from(["entry", "stop", "tp1", "tp2", "close"]), seq=st.integers(0, 9999),
       minutes=st.integers(0, 10_000_000))
def test_client_ids_fit_every_exchange(account: str, symbol: str, intent: str, seq: int, minutes: int) -> None:
    t = T + timedelta(minutes=minutes)
    cid = client_order_id(account, t, symbol, intent, seq)
    assert ALLOWED.match(cid) and len(cid) <= 36
    assert cid == client_order_id(account, t, symbol, intent, seq)  # deterministic
    okx = client_order_id(account, t, symbol, intent, seq, max_len=32, style="alnum")
    assert okx.isalnum() and len(okx) <= 32
    hl = client_order_id(account, t, symbol, intent, seq, style="hex128")
    assert re.fullmatch(r"0x[0-9a-f]{32}", hl)


def test_client_ids_differ_by_every_part() -> None:
    base = client_order_id("live", T, "BTC/USDT:USDT", "entry", 0)
    others = {client_order_id("live2", T, "BTC/USDT:USDT", "entry", 0),
              client_order_id("live", T + timedelta(hours=1), "BTC/USDT:USDT", "entry", 0),
              client_order_id("live", T, "BTC/USDC:USDC", "entry", 0),
              client_order_id("live", T, "BTC/USDT:USDT", "stop", 0),
              client_order_id("live", T, "BTC/USDT:USDT", "entry", 1)}
    assert base not in others and len(others) == 5
    assert base.startswith("q2505230400BTCE0-")
    assert position_id_for("BTC/USDT:USDT", T) == "BTC-202505230400"


def test_capability_table_covers_the_supported_exchanges() -> None:
    from core.settings import SUPPORTED_EXCHANGES

    assert set(SUPPORTED_EXCHANGES) <= set(CAPABILITIES)
    for ex_id, caps in CAPABILITIES.items():
        assert ex_id in ccxt.exchanges and caps.client_id_max >= 32
    with pytest.raises(KeyError, match="known"):
        capabilities_for("nope")


@pytest.mark.parametrize(("exchange_id", "message", "outcome"), [
    ("bybit", 'bybit {"retCode":110072,"retMsg":"OrderLinkedID is duplicate"}', "duplicate"),
    ("bybit", 'bybit {"retCode":110043,"retMsg":"Set leverage not modified"}', "not_modified"),
    ("bybit", 'bybit {"retCode":110001,"retMsg":"order not exists"}', "not_found"),
    ("binanceusdm", 'binanceusdm {"code":-4116,"msg":"ClientOrderId is duplicated."}', "duplicate"),
    ("binanceusdm", 'binanceusdm {"code":-4046,"msg":"No need to change margin type."}', "not_modified"),
    ("binanceusdm", 'binanceusdm {"code":-2013,"msg":"Order does not exist."}', "not_found"),
])
def test_classified_by_exchange_code_whatever_the_class(exchange_id: str, message: str, outcome: str) -> None:
    # ccxt picks Binance's error table by the production URL: with another base the class can be anything
    for cls in (ccxt.ExchangeError, ccxt.OperationFailed, ccxt.InvalidOrder, ccxt.BadRequest):
        assert classify(cls(message), capabilities_for(exchange_id)) == outcome


def test_classified_by_class_without_a_code() -> None:
    caps = capabilities_for("bybit")
    assert classify(ccxt.RequestTimeout("timed out"), caps) == "unknown"
    assert classify(ccxt.ExchangeNotAvailable("502"), caps) == "unknown"
    assert classify(ccxt.RateLimitExceeded("429"), caps) == "unknown"
    assert classify(ccxt.NetworkError("connection reset"), caps) == "unknown"
    assert classify(ccxt.InsufficientFunds("no money"), caps) == "rejected"
    assert classify(ccxt.AuthenticationError("bad key"), caps) == "auth"
    assert classify(ccxt.ExchangeError("weird"), caps) == "unknown"  # unclassified: looked up, never resent blind
    assert exchange_code(ccxt.ExchangeError('x {"code": "-1022"}')) == "-1022"


def test_protective_params_directions() -> None:
    by = capabilities_for("bybit")
    assert protective_params(by, Side.LONG, "stop", "39000")["triggerDirection"] == "below"
    assert protective_params(by, Side.LONG, "tp", "41000")["triggerDirection"] == "above"
    assert protective_params(by, Side.SHORT, "stop", "41000")["triggerDirection"] == "above"
    bn = capabilities_for("binanceusdm")
    assert protective_params(bn, Side.LONG, "stop", "39000") == {"stopLossPrice": "39000", "reduceOnly": True}
    assert protective_params(bn, Side.SHORT, "tp", "38000") == {"takeProfitPrice": "38000", "reduceOnly": True}


def o(cid: str, intent: str, state: str, qty: str, filled: str = "0", px: str | None = None, trig: str | None = None,
      side: str = "sell", seq: int = 0, at: int = 0, meta: dict | None = None) -> OrderView:
    return OrderView(cid, "BTC-1", "BTC/USDT:USDT", intent, side, Decimal(qty), state,
                     None if trig is None else Decimal(trig), intent != "entry", f"x{cid}", Decimal(filled),
                     None if px is None else Decimal(px), Decimal("0.1"), seq, T,
                     T + timedelta(minutes=at) if Decimal(filled) > 0 else None, meta or {})


ENTRY = o("e", "entry", "filled", "1", "1", "100", side="buy", meta={"stop": "95", "tp1": "105", "tp2": "110",
                                                                       "leverage": 5})


def test_book_position_from_journal_fills() -> None:
    [b] = book_positions([ENTRY, o("s0", "stop", "cancelled", "1", trig="95"), o("s1", "stop", "open", "0.5",
                          trig="99", seq=1, meta={"phase": "breakeven"}),
                          o("t1", "tp1", "filled", "0.5", "0.5", "105", "105", at=5), o("t2", "tp2", "open", "0.5",
                                                                                      trig="110")])
    assert (b.qty_open, b.stop_price, b.phase, b.tp1_done) == (Decimal("0.5"), Decimal("99"), "breakeven", True)
    assert b.realised == Decimal("2.5") and b.fees == Decimal("0.2") and b.is_open
    assert [r.client_id for r in b.resting] == ["s1", "t2"]
    [closed] = book_positions([ENTRY, o("s0", "stop", "filled", "1", "1", "94", "95", at=9)])
    assert not closed.is_open and closed.exit_reason == "stop" and closed.realised == Decimal("-6")
    # a stop filled after it moved to breakeven / trailing is recorded as such (issue 13, item 13)
    for phase, kind in (("breakeven", "breakeven_stop"), ("trailing", "trailing_stop")):
        [b] = book_positions([ENTRY, o("s0", "stop", "cancelled", "1", trig="95"),
                              o("s1", "stop", "filled", "1", "1", "100.1", "100.15", seq=1, at=9, meta={"phase": phase})])
        assert not b.is_open and b.exit_reason == kind


def test_an_exit_the_exchange_filled_is_the_paper_exit() -> None:
    """protective_exit: the fill (at the exchange's price and fee) and the exit event of a filled stop or target,
    named and measured like the paper account's (gross P&L of the quantity, R against the initial stop)."""
    entry = o("e", "entry", "filled", "1", "1", "100", side="buy",
              meta={"stop": "95", "tp1": "105", "tp2": "110", "leverage": 5, "extra": {"entry_post_key": "k"}})
    [b] = book_positions([entry, o("s0", "stop", "open", "1", trig="95")])
    assert to_position(b).extra == {"entry_post_key": "k"}  # the caller's extra, rebuilt from the journal
    fill, ev = protective_exit(b, o("t1", "tp1", "filled", "0.5", "0.5", "105.5", "105", at=3))
    assert (fill.kind, fill.reason, fill.qty, fill.price, fill.fee) == ("close", "tp1", Decimal("0.5"),
                                                                        Decimal("105.5"), Decimal("0.1"))
    assert (ev.kind, ev.price, ev.pnl, ev.r_multiple, ev.ts) == ("tp1", 105.5, 2.75, 1.1, T + timedelta(minutes=3))
    _, ev = protective_exit(b, o("s1", "stop", "filled", "1", "1", "94", "95", at=9))
    assert (ev.kind, ev.pnl, ev.r_multiple) == ("stop", -6.0, -1.2)
    _, ev = protective_exit(b, o("s2", "stop", "filled", "1", "1", "101", "101", seq=2, at=9,
                                 meta={"phase": "trailing"}))
    assert ev.kind == "trailing_stop" and exit_kind(o("x", "tp2", "filled", "1")) == "tp2"


def test_the_live_broker_leaves_every_stop_kind_to_the_exchange() -> None:
    from exchange.live_broker import RESTING_EXIT_KINDS
    from risk.exits import STOP_KINDS

    assert {k for k, _ in STOP_KINDS.values()} | {"tp1", "tp2"} == RESTING_EXIT_KINDS


def test_diff_findings_and_actions() -> None:
    rows = [ENTRY, o("s0", "stop", "open", "1", trig="95"), o("t1", "tp1", "open", "0.5", trig="105")]
    journal = {r.client_id: r for r in rows}
    book = book_positions(rows)
    ex_open = [ExchangeOrder("s0", "xs0", "BTC/USDT:USDT", Decimal(1), True, Decimal(95)),
               ExchangeOrder("t1", "xt1", "BTC/USDT:USDT", Decimal("0.5"), True, Decimal(105)),
               ExchangeOrder("foreign", "9", "ETH/USDT:USDT", Decimal(1), True, Decimal(1))]
    assert diff(book, {"BTC/USDT:USDT": Decimal(1)}, ex_open, journal) == []
    # stop gone from the exchange → restore
    f = diff(book, {"BTC/USDT:USDT": Decimal(1)}, ex_open[1:], journal)
    assert [(x.kind, x.action) for x in f] == [("stop_restored", "restore_stop")]
    # exchange flat → mark closed; our resting orders are orphans; the foreign order is not ours
    f = diff(book, {}, ex_open, journal)
    assert sorted((x.kind, x.action) for x in f) == [("orphan_cancelled", "cancel"), ("orphan_cancelled", "cancel"),
                                                      ("position_closed_on_exchange", "mark_closed")]
    # a position nobody in the journal opened → report only
    f = diff(book, {"BTC/USDT:USDT": Decimal(1), "ETH/USDT:USDT": Decimal(-2)}, ex_open, journal)
    assert [(x.kind, x.action, x.qty) for x in f] == [("unknown_position", "none", Decimal(-2))]


def test_live_needs_mode_confirmation_and_keys_and_never_shows_them(monkeypatch) -> None:
    with pytest.raises(ConfigError, match="QUORUM_MODE=live and QUORUM_LIVE_TRADING_CONFIRMED=true"):
        build_client(load_settings(mode="live"))
    with pytest.raises(ConfigError, match="QUORUM_EXCHANGE_API_KEY, QUORUM_EXCHANGE_SECRET"):
        build_client(load_settings(mode="live", live_trading_confirmed=True))
    with pytest.raises(ConfigError, match="QUORUM_EXCHANGE_PASSWORD"):
        build_client(load_settings(mode="live", live_trading_confirmed=True, exchange="okx",
                                   exchange_api_key="k", exchange_secret="s"))
    monkeypatch.setenv("QUORUM_EXCHANGE_API_KEY", "AKIA-very-secret-key")
    monkeypatch.setenv("QUORUM_EXCHANGE_SECRET", "super-secret-value")
    s = load_settings(mode="live", live_trading_confirmed=True, exchange_api_base="http://127.0.0.1:9")
    text = repr(s) + str(s.model_dump()) + s.model_dump_json()
    assert "AKIA-very-secret-key" not in text and "super-secret-value" not in text
    client = build_client(s)
    assert client.apiKey == "AKIA-very-secret-key"
    assert all(str(v).startswith("http://127.0.0.1:9") for v in client.urls["api"].values())


@pytest.mark.parametrize(("exchange_id", "message"), [
    ("binanceusdm", 'binanceusdm {"code":-2021,"msg":"Order would immediately trigger."}'),
    ("binanceusdm", 'binanceusdm {"code":-2022,"msg":"ReduceOnly Order is rejected."}'),
    ("bybit", 'bybit {"retCode":110093,"retMsg":"expect Falling, but trigger_price >= current"}'),
])
def test_final_refusals_are_rejections_whatever_the_class(exchange_id: str, message: str) -> None:
    for cls in (ccxt.ExchangeError, ccxt.ExchangeNotAvailable, ccxt.OperationFailed):
        assert classify(cls(message), capabilities_for(exchange_id)) == "rejected"


def test_build_broker_by_mode() -> None:
    from exchange.factory import build_broker
    from exchange.paper import PaperAccount
    from exchange.paper_broker import PaperBroker
    from exchange.replay import ReplaySource

    s = load_settings()
    b = build_broker(s, None, paper_account=PaperAccount(Decimal(10_000)), source=ReplaySource(s.data_dir))
    assert isinstance(b, PaperBroker) and b.reconcile() == []
    with pytest.raises(ConfigError, match="QUORUM_LIVE_TRADING_CONFIRMED"):
        build_broker(load_settings(mode="live"), None)


def test_finding_text() -> None:
    from exchange.broker import Finding
    from exchange.reconcile import finding_text

    f = Finding("unknown_position", "ETH/USDT:USDT", "exchange position 1.5", None, "none")
    assert finding_text(f) == ("reconcile · ETH/USDT:USDT · position Quorum did not open (left alone): exchange "
                               "position 1.5 [none]")
