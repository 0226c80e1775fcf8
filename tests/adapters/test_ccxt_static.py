"""ccxt parsing and CcxtSource through ccxt's own recorded exchange responses (offline).

Same technique as ccxt's harness (ccxt/test/tests_sync.py `test_response_statically`): load markets
from the fixture, replace `exchange.fetch` with one returning the recorded HTTP body, call the
unified method with the recorded input and compare with the recorded unified result. Then drive
CcxtSource (snapshot, tickers, market_rules) over the same recorded bodies.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt
import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ccxt"


def load(kind: str, exchange_id: str) -> dict:
    return json.loads((FIXTURES / kind / f"{exchange_id}.json").read_text())


def offline_exchange(exchange_id: str) -> ccxt.Exchange:
    """A ccxt exchange with markets from the fixture that can never reach the network."""
    static = load("response", exchange_id)
    ex = getattr(ccxt, exchange_id)({
        "markets": load("markets", exchange_id),
        "enableRateLimit": False,
        "httpProxy": "http://fake:8080",
        "httpsProxy": "http://fake:8080",
        "options": dict(static.get("options") or {}),
    })
    return ex


def route(ex: ccxt.Exchange, bodies: dict[str, Any]) -> list[str]:
    """Serve recorded bodies by URL fragment; returns the list of URLs asked for."""
    seen: list[str] = []

    def fetch(url, method="GET", headers=None, body=None):
        seen.append(url)
        for fragment, data in bodies.items():
            if fragment in url:
                return data
        raise AssertionError(f"no recorded response for {url}")

    ex.fetch = fetch
    return seen


def same(computed: Any, stored: Any, skip: set[str], path: str = "") -> list[str]:
    """Differences between a computed unified result and the stored one (stored keys only)."""
    if isinstance(stored, dict):
        if not isinstance(computed, dict):
            return [f"{path}: expected a dict, got {type(computed).__name__}"]
        out: list[str] = []
        for k, v in stored.items():
            if k in skip:
                continue
            out += same(computed.get(k), v, skip, f"{path}.{k}")
        return out
    if isinstance(stored, list):
        if not isinstance(computed, list) or len(computed) != len(stored):
            return [f"{path}: length {len(computed) if isinstance(computed, list) else '-'} != {len(stored)}"]
        return [d for i, (c, s) in enumerate(zip(computed, stored, strict=True)) for d in same(c, s, skip, f"{path}[{i}]")]
    if isinstance(stored, int | float) and isinstance(computed, int | float) and not isinstance(stored, bool):
        return [] if abs(float(computed) - float(stored)) <= 1e-9 * max(1.0, abs(float(stored))) else [
            f"{path}: {computed!r} != {stored!r}"]
    return [] if computed == stored else [f"{path}: {computed!r} != {stored!r}"]


# Known drift between the recorded fixtures and ccxt 4.5.90 (see ../shared/data/ccxt-static/README.md).
DRIFT = {("aster", "fetchTicker"): {"percentage"}, ("aster", "fetchTickers"): {"percentage"}}
CASES = [
    (ex, method, i)
    for ex in ("bybit", "aster")
    for method, cases in load("response", ex)["methods"].items()
    for i, case in enumerate(cases)
    if not case.get("disabled")
]


@pytest.mark.parametrize(("exchange_id", "method", "index"), CASES,
                         ids=[f"{e}-{m}-{i}" for e, m, i in CASES])
def test_recorded_response_parses_like_ccxt_recorded_it(exchange_id: str, method: str, index: int) -> None:
    static = load("response", exchange_id)
    case = static["methods"][method][index]
    ex = offline_exchange(exchange_id)
    body = case.get("httpResponseByUrl") or {"": case["httpResponse"]}
    route(ex, body)
    result = getattr(ex, method)(*case["input"])
    skip = set(static.get("skipKeys") or []) | set(case.get("skipKeys") or []) | DRIFT.get((exchange_id, method), set())
    assert same(result, case["parsedResponse"], skip) == []


# ----------------------------------------------------------------------------- CcxtSource
from core.errors import (  # noqa: E402
    ConfigError,
    DataError,
    ExchangeError,
    OrderRejected,
    RateLimited,
    TransientError,
)
from exchange.base import MarketDataSource  # noqa: E402
from exchange.ccxt_errors import retry_reads, translate, translate_ccxt  # noqa: E402
from exchange.ccxt_source import CcxtSource  # noqa: E402

EMPTY_KLINE = {"retCode": 0, "retMsg": "OK", "result": {"category": "linear", "list": []}, "time": 0}


def recorded(exchange_id: str, method: str, index: int = 0) -> Any:
    return load("response", exchange_id)["methods"][method][index]["httpResponse"]


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def source_over(exchange_id: str, bodies: dict[str, Any], now: datetime) -> tuple[CcxtSource, list[str]]:
    ex = offline_exchange(exchange_id)
    seen = route(ex, bodies)
    return CcxtSource(client=ex, now=lambda: now, base_delay=0.0), seen


def test_bybit_snapshot_over_recorded_responses() -> None:
    # recorded 1h klines: 16:00, 17:00, 18:00 on 2024-01-30; at 18:30 the 18:00 bar is still forming
    as_of = datetime(2024, 1, 30, 18, 30, tzinfo=UTC)
    src, seen = source_over("bybit", {
        "interval=60": recorded("bybit", "fetchOHLCV"),
        "/v5/market/kline": EMPTY_KLINE,  # 4h and 1d: nothing recorded
        "/v5/market/tickers": recorded("bybit", "fetchTicker"),
        "/v5/market/open-interest": recorded("bybit", "fetchOpenInterest"),
    }, as_of)
    typed: MarketDataSource = src  # the protocol, checked by type checkers
    for member in ("symbols", "market_rules", "tickers", "snapshot", "price_after", "bars_between",
                   "funding_between"):
        assert callable(getattr(typed, member)), member
    snap = src.snapshot("BTC/USDT:USDT", as_of)

    h1 = snap.candles["1h"]
    assert list(h1.columns) == ["open", "high", "low", "close", "volume"]
    assert [t.isoformat() for t in h1.index] == ["2024-01-30T16:00:00+00:00", "2024-01-30T17:00:00+00:00"]
    assert h1["close"].tolist() == [43488.0, 43376.1]
    assert h1.dtypes.eq("float64").all() and str(h1.index.tz) == "UTC"
    assert snap.candles["4h"].empty and snap.candles["1d"].empty
    assert (snap.last, snap.bid, snap.ask) == (51444.4, 51444.3, 51444.4)
    assert snap.volume_24h_quote == pytest.approx(2352063794.0035)
    assert snap.funding_rate == pytest.approx(-0.00046295)
    assert snap.next_funding_time == at(1707926400000)
    assert snap.open_interest == pytest.approx(62129.455)  # openInterestAmount, base units
    assert snap.source == "ccxt:bybit"
    # the recorded OI point (2025-02-16) is after as_of: no history is invented before it
    assert snap.open_interest_history is None
    assert any("open-interest history" in n for n in snap.notes)
    assert any("category=linear" in u and "interval=60" in u for u in seen)


def test_aster_snapshot_has_no_open_interest_and_says_so() -> None:
    as_of = datetime(2025, 6, 16, 9, 0, tzinfo=UTC)
    src, seen = source_over("aster", {
        "/klines": recorded("aster", "fetchOHLCV"),  # one recorded (5m) bar, served for every timeframe
        "/ticker/24hr": recorded("aster", "fetchTicker", 1),
        "/depth": recorded("aster", "fetchOrderBook"),
        "/premiumIndex": recorded("aster", "fetchFundingRate"),
    }, as_of)
    snap = src.snapshot("BTC/USDT:USDT", as_of)
    assert snap.candles["1h"]["close"].tolist() == [104587.3]
    assert snap.last == 107121.3
    # aster's ticker has no bid/ask: the top of the recorded order book fills them
    assert (snap.bid, snap.ask) == (106626.8, 106626.9)
    assert snap.volume_24h_quote > 0
    assert snap.funding_rate == pytest.approx(0.0001)
    assert snap.next_funding_time == at(1750176000000)
    assert snap.open_interest is None and snap.open_interest_history is None
    assert any("no open interest" in n for n in snap.notes)
    assert not any("open-interest" in u or "openInterest" in u for u in seen)


def test_aster_funding_history_over_recorded_response() -> None:
    src, _ = source_over("aster", {"/fundingRate": recorded("aster", "fetchFundingRateHistory")},
                         datetime(2025, 6, 17, tzinfo=UTC))
    s = src.funding_between("BTC/USDT:USDT", datetime(2025, 6, 16, tzinfo=UTC), datetime(2025, 6, 16, 8, tzinfo=UTC))
    assert s.to_dict() == {at(1750060800000): pytest.approx(0.0001)}


def test_tickers_over_recorded_response() -> None:
    src, _ = source_over("aster", {"/ticker/24hr": recorded("aster", "fetchTickers")}, datetime(2025, 6, 16, tzinfo=UTC))
    t = src.tickers()
    assert set(t) == {"BTC/USDT:USDT"}  # the swap; aster's spot markets are not tradable here
    assert t["BTC/USDT:USDT"].last == 107121.3 and t["BTC/USDT:USDT"].volume_24h_quote > 1e6


def test_market_rules_from_recorded_markets() -> None:
    src, _ = source_over("bybit", {}, datetime(2025, 1, 1, tzinfo=UTC))
    r = src.market_rules("BTC/USDT:USDT")
    assert (r.qty_step, r.price_tick, r.min_qty) == (Decimal("0.001"), Decimal("0.1"), Decimal("0.001"))
    assert r.min_notional == Decimal("5")  # bybit states it only in the raw market (minNotionalValue)
    assert r.max_leverage == 100 and r.contract_size == Decimal("1")
    assert src.market_rules("ETH/USDT:USDT").price_tick == Decimal("0.01")


def test_market_rules_decimal_places_precision_mode() -> None:
    src, _ = source_over("bybit", {}, datetime(2025, 1, 1, tzinfo=UTC))
    src.client.precisionMode = ccxt.DECIMAL_PLACES
    src.client.markets["BTC/USDT:USDT"]["precision"] = {"amount": 3, "price": 1}
    r = src.market_rules("BTC/USDT:USDT")
    assert (r.qty_step, r.price_tick) == (Decimal("0.001"), Decimal("0.1"))


def test_unknown_symbol_is_a_data_error_naming_it() -> None:
    src, seen = source_over("bybit", {}, datetime(2025, 1, 1, tzinfo=UTC))
    with pytest.raises(DataError, match="NOPE/USDT:USDT"):
        src.snapshot("NOPE/USDT:USDT")
    assert seen == []


def test_ohlcv_request_matches_ccxt_recorded_url() -> None:
    # the recorded request: since + until -> start/end on /v5/market/kline
    case = load("request", "bybit")["methods"]["fetchOHLCV"][2]
    ex = offline_exchange("bybit")
    with pytest.raises(ccxt.InvalidProxySettings):
        ex.fetch_ohlcv(*case["input"])
    assert ex.last_request_url == case["url"]


# ----------------------------------------------------------------------------- error translation
@pytest.mark.parametrize(("exc", "expected"), [
    (ccxt.NetworkError("x"), TransientError),
    (ccxt.RequestTimeout("x"), TransientError),
    (ccxt.ExchangeNotAvailable("x"), TransientError),
    (ccxt.DDoSProtection("x"), TransientError),
    (ccxt.RateLimitExceeded("x"), RateLimited),
    (ccxt.BadSymbol("x"), DataError),
    (ccxt.AuthenticationError("x"), ConfigError),
    (ccxt.PermissionDenied("x"), ConfigError),
    (ccxt.InvalidOrder("x"), OrderRejected),
    (ccxt.InsufficientFunds("x"), OrderRejected),
    (ccxt.NotSupported("x"), ExchangeError),
    (ccxt.ExchangeError("x"), ExchangeError),
])
def test_translate_maps_ccxt_errors(exc: Exception, expected: type) -> None:
    out = translate(exc, "bybit", symbol="BTC/USDT:USDT")
    assert type(out) is expected
    assert "\n" not in str(out) and str(out).startswith("bybit")


def test_translate_symbol_and_secrets() -> None:
    assert "ETH/USDT:USDT" in str(translate(ccxt.BadSymbol("bybit does not have market symbol"), "bybit",
                                            symbol="ETH/USDT:USDT"))
    msg = str(translate(ccxt.AuthenticationError('{"retMsg":"API key sk-SECRET-123 is invalid"}'), "bybit"))
    assert "SECRET" not in msg and "API key" in msg
    rl = translate(ccxt.RateLimitExceeded("slow down"), "bybit", headers={"Retry-After": "7"})
    assert isinstance(rl, RateLimited) and rl.retry_after == 7.0
    other = ValueError("not ccxt")
    assert translate(other) is other


def test_translate_ccxt_context_manager_chains_the_original() -> None:
    with pytest.raises(DataError) as info, translate_ccxt("okx", symbol="FOO/USDT:USDT"):
        raise ccxt.BadSymbol("okx: no FOO")
    assert isinstance(info.value.__cause__, ccxt.BadSymbol)


def test_retry_reads_retries_only_transient_errors() -> None:
    sleeps: list[float] = []
    calls = {"n": 0}

    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise ccxt.RequestTimeout("timeout")
        return "ok"

    assert retry_reads(flaky, attempts=3, base_delay=0.1, sleep=sleeps.append) == "ok"
    assert calls["n"] == 3 and len(sleeps) == 2 and sleeps[1] > sleeps[0]

    def bad() -> None:
        calls["n"] += 1
        raise ccxt.BadSymbol("nope")

    calls["n"] = 0
    with pytest.raises(DataError):
        retry_reads(bad, attempts=5, sleep=sleeps.append)
    assert calls["n"] == 1  # never retried

    def limited() -> None:
        raise RateLimited("429", retry_after=4.0)

    sleeps.clear()
    with pytest.raises(RateLimited):
        retry_reads(limited, attempts=2, base_delay=0.01, sleep=sleeps.append)
    assert sleeps == [4.0]  # waited what the exchange asked

    def always_down() -> None:
        raise ccxt.ExchangeNotAvailable("502")

    with pytest.raises(TransientError):
        retry_reads(always_down, attempts=2, base_delay=0.0, sleep=sleeps.append)


# ----------------------------------------------------------------------------- pagination
from exchange.ccxt_source import paginate  # noqa: E402


@pytest.mark.parametrize("newest_first", [True, False])
def test_paginate_handles_both_page_semantics(newest_first: bool) -> None:
    """Exchanges answer a full window with its newest rows (bybit) or its oldest (binance): both work."""
    events = list(range(0, 1000, 3)) + list(range(1000, 1100, 1))  # sparse, then dense rows
    asked: list[tuple[int, int]] = []

    def fetch(since: int, limit: int, until: int) -> list[list[int]]:
        asked.append((since, until))
        inside = [[t] for t in events if since <= t <= until]
        return inside[-limit:] if newest_first else inside[:limit]

    rows = paginate(fetch, 0, 1099, step_ms=1, limit=20, max_window_ms=200)
    assert [r[0] for r in rows] == events
    assert len(asked) < 120


def test_paginate_empty_range_asks_nothing() -> None:
    assert paginate(lambda *a: pytest.fail("asked"), 10, 9, step_ms=1, limit=5) == []
