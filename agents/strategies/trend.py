"""trend: today's logic as a strategy. The consensus decision (panel + math score, after the daily
veto) becomes one `Open` in its direction; the risk manager sizes it (stop, TP1/TP2, leverage,
quantity) and the exit rules manage it, exactly as before. WAIT is no intent."""

from __future__ import annotations

from agents.strategies.base import Facts, Open, Step
from core.types import Action, Side


class TrendStrategy:
    name = "trend"

    def step(self, facts: Facts) -> Step:
        d = facts.decision
        if d is None or d.action is Action.WAIT:
            return Step((), facts.state, "decision is WAIT")
        return Step((Open(facts.symbol, Side.from_action(d.action), d, d.reason),), facts.state)
