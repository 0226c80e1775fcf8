"""volatility: trade volatility expansion in the direction of momentum; in a range regime, trade
the move back inside the Bollinger bands; leave every position after `hold_hours`.

Features (per closed 1h bar, causal: row i uses bars up to i only), by pandas-ta:
Bollinger bands (`bb_length`, `bb_std`), ATR(`atr_fast`) / ATR(`atr_slow`), momentum =
close / close `momentum_bars` ago − 1.

Rules at a decision (the last closed bar's row, and the one before it):
- time exit: a position of this strategy open for `hold_hours` or more is closed;
- no entry while a position in the symbol is open;
- breakout: expansion (ATR fast / slow ≥ `expansion`) and close above the upper band with positive
  momentum → LONG; below the lower band with negative momentum → SHORT;
- mean reversion (`mean_reversion`, regime RANGE, no expansion): the previous close below the lower
  band and this close back inside → LONG; above the upper band and back inside → SHORT.
An entry is an `Open` with a decision of its own; the risk manager sizes it and keeps its veto.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

import numpy as np
import pandas as pd

from agents.strategies.base import Facts, Intent, Open, Reduce, Step, regime
from core.settings import VolatilitySettings
from core.types import Action, Decision, Side

FEATURES = ("close", "prev_close", "bb_lower", "bb_mid", "bb_upper", "prev_lower", "prev_upper", "atr_ratio", "mom")


def features(h1: pd.DataFrame, cfg: VolatilitySettings) -> pd.DataFrame:
    """The strategy's features per 1h bar (index = bar open time; known at the bar's close)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pandas_ta as ta

        bb = ta.bbands(h1["close"], length=cfg.bb_length, std=cfg.bb_std)
        fast = ta.atr(h1["high"], h1["low"], h1["close"], length=cfg.atr_fast)
        slow = ta.atr(h1["high"], h1["low"], h1["close"], length=cfg.atr_slow)
    out = pd.DataFrame(index=h1.index)
    close = h1["close"].astype(float)
    out["close"] = close
    out["prev_close"] = close.shift(1)
    if bb is None or fast is None or slow is None:
        for c in FEATURES[2:]:
            out[c] = np.nan
        return out
    lower = bb[[c for c in bb.columns if c.startswith("BBL_")][0]]
    mid = bb[[c for c in bb.columns if c.startswith("BBM_")][0]]
    upper = bb[[c for c in bb.columns if c.startswith("BBU_")][0]]
    out["bb_lower"], out["bb_mid"], out["bb_upper"] = lower, mid, upper
    out["prev_lower"], out["prev_upper"] = lower.shift(1), upper.shift(1)
    out["atr_ratio"] = fast / slow
    out["mom"] = close / close.shift(cfg.momentum_bars) - 1.0
    return out


def _ok(f: Mapping[str, float]) -> bool:
    return all(k in f and f[k] == f[k] for k in FEATURES)


class VolatilityStrategy:
    name = "volatility"

    def __init__(self, settings: VolatilitySettings | None = None) -> None:
        self.cfg = settings or VolatilitySettings()

    def signal(self, f: Mapping[str, float], reg: str) -> tuple[Action, str]:
        if not _ok(f):
            return Action.WAIT, "features not ready"
        c = self.cfg
        expanding = f["atr_ratio"] >= c.expansion
        if expanding and f["close"] > f["bb_upper"] and f["mom"] > 0:
            return Action.LONG, (f"breakout: close {f['close']:.6g} above the upper band {f['bb_upper']:.6g}, "
                                 f"ATR ratio {f['atr_ratio']:.2f}, momentum {f['mom']:+.2%}")
        if expanding and f["close"] < f["bb_lower"] and f["mom"] < 0:
            return Action.SHORT, (f"breakdown: close {f['close']:.6g} below the lower band {f['bb_lower']:.6g}, "
                                  f"ATR ratio {f['atr_ratio']:.2f}, momentum {f['mom']:+.2%}")
        if c.mean_reversion and reg == "RANGE" and not expanding:
            if f["prev_close"] < f["prev_lower"] and f["bb_lower"] <= f["close"] < f["bb_upper"]:
                return Action.LONG, f"mean reversion: back above the lower band {f['bb_lower']:.6g} in a range"
            if f["prev_close"] > f["prev_upper"] and f["bb_lower"] < f["close"] <= f["bb_upper"]:
                return Action.SHORT, f"mean reversion: back below the upper band {f['bb_upper']:.6g} in a range"
        return Action.WAIT, "no volatility signal"

    def step(self, facts: Facts) -> Step:
        intents: list[Intent] = []
        hold = timedelta(hours=self.cfg.hold_hours)
        mine = [p for p in facts.account.positions if p.extra.get("strategy") == self.name]
        for p in mine:
            if facts.as_of - p.opened_at >= hold:
                intents.append(Reduce(facts.symbol, p.id, None, f"time exit after {self.cfg.hold_hours:g} h",
                                      kind="time"))
        if facts.account.positions and len(intents) < len(facts.account.positions):
            return Step(tuple(intents), facts.state, "position open")
        action, why = self.signal(facts.features, regime(facts))
        if action is Action.WAIT or intents:
            return Step(tuple(intents), facts.state, why)
        math_score = facts.score.final if facts.score is not None else 0.0
        d = Decision(symbol=facts.symbol, as_of=facts.as_of, action=action, confidence=1.0, math_score=math_score,
                     combined_score=math_score, votes_valid=0, votes_total=0, tally={}, dissent=(),
                     fallback_to_math=True, reason=f"volatility: {why}")
        return Step((Open(facts.symbol, Side.from_action(action), d, d.reason, self.cfg.hold_hours),), facts.state, why)
