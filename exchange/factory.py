"""Build the configured market-data source and the configured broker."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from core.errors import ConfigError
from core.settings import Settings
from exchange.base import MarketDataSource
from exchange.broker import Broker


def build_source(settings: Settings) -> MarketDataSource:
    if settings.data_source == "replay":
        from exchange.replay import ReplaySource

        return ReplaySource(settings.data_dir, exchange=settings.replay_exchange,
                            spread_pct=settings.replay_spread_pct)
    if settings.data_source == "ccxt":
        from exchange.ccxt_source import CcxtSource

        return CcxtSource(settings.exchange, api_base=settings.exchange_api_base)
    raise ConfigError(f"setting 'data_source' = {settings.data_source!r}: allowed replay, ccxt")


# the live broker holds a ccxt client (building one takes about a second): one per (database, exchange,
# account) for the life of the process
_LIVE: dict[tuple[Any, ...], Broker] = {}


def _live_key(settings: Settings, factory: Any) -> tuple[Any, ...]:
    """The cache key of a live broker: the database (its engine: store.db keeps one per URL, so every
    session factory of a run, and of every run of a long-lived process, finds the same broker instead of
    building a new ccxt client each time), the exchange and the account."""
    db = getattr(factory, "kw", {}).get("bind") or factory
    return (id(db), settings.exchange, settings.exchange_api_base, settings.live_account)


def build_broker(settings: Settings, factory: Any, *, paper_account: Any = None, source: MarketDataSource | None = None,
                 now: Callable[[], datetime] | None = None, client: Any = None,
                 marks: Callable[[str], float | None] | None = None) -> Broker:
    """The broker for settings.mode: the paper broker over `paper_account` (fills at `source.price_after`,
    balance at `marks`), or the ccxt live broker (keys, confirmation and caps from settings; kept for the
    process unless `client` is given, for tests). The one place that looks at the mode: everything else holds
    a `Broker`."""
    if settings.mode == "live":
        from exchange.live_broker import LiveBroker

        key = _live_key(settings, factory)
        if client is None and key in _LIVE:
            return _LIVE[key]
        broker = LiveBroker.from_settings(settings, factory, client=client)
        if client is None:
            _LIVE[key] = broker
        return broker
    from exchange.paper_broker import PaperBroker

    if paper_account is None or source is None:
        raise ConfigError("the paper broker needs the paper account and a market-data source")
    return PaperBroker(paper_account, source.price_after, now=now,
                       qty_step=lambda sym: source.market_rules(sym).qty_step, marks=marks)


def use_client(settings: Settings, factory: Any, client: Any) -> None:
    """Tests and tools: make this process's live broker for `factory` use `client` (a ccxt client)."""
    if settings.mode == "live":
        from exchange.live_broker import LiveBroker

        _LIVE[_live_key(settings, factory)] = LiveBroker.from_settings(settings, factory, client=client)


def check_broker(settings: Settings) -> None:
    """The pre-flight check of the configured broker, before anything runs (ConfigError, one line): the paper
    broker needs nothing; the live broker needs its keys set and accepted by the exchange (one balance read,
    exchange.live_client.check_credentials). Like build_broker, the one place that looks at the mode."""
    if settings.mode == "live":
        from exchange.live_client import check_credentials

        check_credentials(settings)
