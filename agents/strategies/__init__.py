"""Strategies: pure functions from the cycle's facts to intents (see base.py)."""

from __future__ import annotations

from typing import Any

from core.settings import STRATEGIES, Settings


def build(name: str, settings: Settings) -> Any:
    """The strategy called `name`, configured from the settings."""
    p = settings.strategies
    if name == "trend":
        from agents.strategies.trend import TrendStrategy

        return TrendStrategy()
    if name == "grid":
        from agents.strategies.grid import GridStrategy

        return GridStrategy(p.grid)
    if name == "volatility":
        from agents.strategies.volatility import VolatilityStrategy

        return VolatilityStrategy(p.volatility)
    if name == "hybrid":
        from agents.strategies.hybrid import HybridStrategy

        return HybridStrategy(p.grid, p.hybrid)
    if name == "rebalance":
        from agents.strategies.rebalance import RebalanceStrategy

        return RebalanceStrategy(p.rebalance)
    from core.errors import ConfigError

    raise ConfigError(f"unknown strategy {name!r}; allowed: {', '.join(STRATEGIES)}")
