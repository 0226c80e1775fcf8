"""Deterministic risk: sizing, leverage, stops and targets, vetoes, breakers, exit rules, profiles.

Imports only core/ (and the standard library): a test enforces it.
"""

from risk.breakers import account_state_from_history, breaker_state
from risk.exits import Bar, ExitOrder, StepResult, step
from risk.formulas import liquidation_price
from risk.manager import (
    AccountState,
    MarketLimits,
    RiskInput,
    TrackRecord,
    evaluate,
)
from risk.profiles import PROFILES, AccountTier, RiskProfile, get_profile

__all__ = [
    "PROFILES",
    "AccountState",
    "AccountTier",
    "Bar",
    "ExitOrder",
    "MarketLimits",
    "RiskInput",
    "RiskProfile",
    "StepResult",
    "TrackRecord",
    "account_state_from_history",
    "breaker_state",
    "evaluate",
    "get_profile",
    "liquidation_price",
    "step",
]
