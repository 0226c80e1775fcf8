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


def state_to_data(state: Any) -> Any:
    """A strategy state (frozen dataclasses, Decimals, datetimes) as plain JSON data."""
    import dataclasses
    from datetime import datetime
    from decimal import Decimal

    if state is None or isinstance(state, bool | int | float | str):
        return state
    if isinstance(state, Decimal):
        return {"__decimal__": str(state)}
    if isinstance(state, datetime):
        return {"__datetime__": state.isoformat()}
    if dataclasses.is_dataclass(state) and not isinstance(state, type):
        return {"__type__": type(state).__name__,
                **{f.name: state_to_data(getattr(state, f.name)) for f in dataclasses.fields(state)}}
    raise TypeError(f"strategy state of type {type(state).__name__} is not serialisable")


def state_from_data(data: Any) -> Any:
    """The inverse of `state_to_data` (unknown types are an error, never guessed)."""
    from datetime import datetime
    from decimal import Decimal

    from agents.strategies.grid import GridState
    from agents.strategies.hybrid import HybridState
    from agents.strategies.rebalance import RebalanceState

    types = {c.__name__: c for c in (GridState, HybridState, RebalanceState)}
    if not isinstance(data, dict):
        return data
    if "__decimal__" in data:
        return Decimal(data["__decimal__"])
    if "__datetime__" in data:
        return datetime.fromisoformat(data["__datetime__"])
    name = data.get("__type__")
    if name not in types:
        raise ValueError(f"unknown strategy state type {name!r}")
    return types[name](**{k: state_from_data(v) for k, v in data.items() if k != "__type__"})
