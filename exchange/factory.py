"""Build the configured market-data source."""

from __future__ import annotations

from core.errors import ConfigError
from core.settings import Settings
from exchange.base import MarketDataSource


def build_source(settings: Settings) -> MarketDataSource:
    if settings.data_source == "replay":
        from exchange.replay import ReplaySource

        return ReplaySource(settings.data_dir, exchange=settings.replay_exchange,
                            spread_pct=settings.replay_spread_pct)
    if settings.data_source == "ccxt":
        from exchange.ccxt_source import CcxtSource

        return CcxtSource(settings.exchange, api_base=settings.exchange_api_base)
    raise ConfigError(f"setting 'data_source' = {settings.data_source!r}: allowed replay, ccxt")
