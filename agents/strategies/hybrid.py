"""hybrid: the grid while the math engine's regime is RANGE, the trend strategy while it is
TREND_UP / TREND_DOWN.

Handover range -> trend (`handover`): "close" cancels every grid order and closes the grid's
positions at once; "finish" cancels the grid's entry orders and lets its positions run to their
take-profit or stop. The trend strategy opens nothing while a grid position is still open in the
symbol. Handover trend -> range: the grid is built once no other position is open in the symbol
(a trend position keeps its stop and targets until the exit rules close it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from agents.strategies.base import Facts, Intent, Step, regime
from agents.strategies.grid import GridState, GridStrategy, cancel_entries, is_grid, teardown
from agents.strategies.trend import TrendStrategy
from core.settings import GridSettings, HybridSettings


@dataclass(frozen=True)
class HybridState:
    mode: str  # "grid" | "trend"
    grid: GridState | None = None
    handovers: int = 0


class HybridStrategy:
    name = "hybrid"

    def __init__(self, grid: GridSettings | None = None, settings: HybridSettings | None = None) -> None:
        g = (grid or GridSettings()).model_copy(update={"reposition_on_trend": False})
        self.grid = GridStrategy(g)
        self.trend = TrendStrategy()
        self.cfg = settings or HybridSettings()

    def step(self, facts: Facts) -> Step:
        st = facts.state if isinstance(facts.state, HybridState) else HybridState(mode="grid")
        reg = regime(facts)
        grid_pos = [p for p in facts.account.positions if is_grid(p.extra.get("tag"))]
        other_pos = [p for p in facts.account.positions if not is_grid(p.extra.get("tag"))]
        if reg == "RANGE":
            turned = st.mode == "trend"
            handovers = st.handovers + turned
            prefix = "handover trend -> grid; " if turned else ""
            if other_pos:
                return Step((), HybridState("grid", None, handovers),
                            prefix + "range: waiting for the trend position to close before the grid starts")
            g = self.grid.step(replace(facts, state=st.grid))
            return Step(g.intents, HybridState("grid", g.state, handovers), prefix + g.note)
        # trend regime
        intents: list[Intent] = []
        note = ""
        handovers = st.handovers
        if st.mode == "grid":
            handovers += 1
            if self.cfg.handover == "close":
                intents += teardown(facts, f"hybrid handover to trend ({reg}): grid closed")
                grid_pos = []
            else:
                intents += cancel_entries(facts, f"hybrid handover to trend ({reg}): grid left to finish")
            note = f"handover grid -> trend ({self.cfg.handover})"
        elif self.cfg.handover == "finish":
            # entries of a grid left to finish were cancelled at the handover; nothing new is placed
            pass
        if grid_pos:
            return Step(tuple(intents), HybridState("trend", None, handovers),
                        (note + "; " if note else "") + f"{len(grid_pos)} grid position(s) still finishing")
        t = self.trend.step(replace(facts, state=None))
        return Step(tuple(intents) + t.intents, HybridState("trend", None, handovers), note or t.note)
