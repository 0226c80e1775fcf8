"""grid: resting limit orders at N levels around a reference price.

Levels: reference ± k × spacing for k = 1..N (`levels`); spacing = max(atr_mult × ATR(1h),
spacing_floor_pct % of the reference). A neutral grid buys at the levels below and sells (opens
shorts) at the levels above; `direction` long / short keeps one side only. Every level trades
`size_pct` % of equity (notional at the reference) at `leverage`.

Each entry order carries its exits (ccxt stopLoss / takeProfit): the take-profit of a long filled
at level −k is the next level up (−k+1, the reference for k = 1), of a short at +k the next level
down; the stop of every position lies `stop_levels` spacings beyond the outermost level. When a
level's position has taken profit, the level is free again and its entry order is placed again.

The grid is repositioned (every order cancelled, every grid position closed, a new grid built
around the last price) when the price leaves the range by `reposition_levels` spacings, or, with
`reposition_on_trend`, when the math engine's regime turns from RANGE to a trend.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import ROUND_DOWN, Decimal

from agents.strategies.base import Cancel, Facts, Intent, Place, Reduce, RestingOrder, Step, regime
from core.settings import GridSettings
from core.types import Side

RANGE = "RANGE"


@dataclass(frozen=True)
class GridState:
    ref: float
    spacing: float
    qty: Decimal
    regime: str  # regime when the grid was built
    generation: int = 1
    repositions: int = 0

    def level_price(self, k: int) -> float:
        return self.ref + k * self.spacing

    def bounds(self, levels: int) -> tuple[float, float]:
        return self.ref - levels * self.spacing, self.ref + levels * self.spacing


def _round_price(x: float, tick: Decimal) -> float:
    if tick <= 0:
        return x
    return float((Decimal(repr(x)) / tick).to_integral_value() * tick)


def _tag(k: int) -> str:
    return f"grid:{k:+d}"


def is_grid(tag: str | None) -> bool:
    return bool(tag) and str(tag).startswith("grid:")


def teardown(facts: Facts, reason: str) -> list[Intent]:
    """Cancel every grid order of the symbol and close every grid position (market)."""
    out: list[Intent] = [Cancel(facts.symbol, o.id, reason) for o in facts.account.orders if is_grid(o.tag)]
    out += [Reduce(facts.symbol, p.id, None, reason, kind="grid_reposition") for p in facts.account.positions
            if is_grid(p.extra.get("tag"))]
    return out


def cancel_entries(facts: Facts, reason: str) -> list[Intent]:
    """Cancel the grid's entry orders only (its positions keep their take-profit and stop)."""
    return [Cancel(facts.symbol, o.id, reason) for o in facts.account.orders if is_grid(o.tag) and not o.reduce_only]


class GridStrategy:
    name = "grid"

    def __init__(self, settings: GridSettings | None = None) -> None:
        self.cfg = settings or GridSettings()

    # -- pure helpers ----------------------------------------------------------------------------
    def build(self, facts: Facts, generation: int, repositions: int) -> GridState | None:
        last = facts.last
        if not last or last <= 0 or facts.account.equity <= 0:
            return None
        floor = self.cfg.spacing_floor_pct / 100 * last
        atr = facts.atr_1h if facts.atr_1h is not None and facts.atr_1h == facts.atr_1h else 0.0
        spacing = max(self.cfg.atr_mult * atr, floor)
        raw = Decimal(repr(facts.account.equity * self.cfg.size_pct / 100 / last))
        step = facts.qty_step if facts.qty_step > 0 else Decimal("0.00000001")
        qty = (raw / step).to_integral_value(rounding=ROUND_DOWN) * step
        if qty <= 0:
            return None
        return GridState(ref=last, spacing=spacing, qty=qty, regime=regime(facts), generation=generation,
                         repositions=repositions)

    def sides(self) -> list[int]:
        d = self.cfg.direction
        return [-1] if d == "long" else [1] if d == "short" else [-1, 1]

    def order_for(self, st: GridState, k: int, facts: Facts) -> RestingOrder:
        n = self.cfg.levels
        price = _round_price(st.level_price(k), facts.price_tick)
        tp = _round_price(st.level_price(k + (1 if k < 0 else -1)), facts.price_tick)
        outer = n + self.cfg.stop_levels
        stop = _round_price(st.level_price(-outer if k < 0 else outer), facts.price_tick)
        base = facts.symbol.split("/")[0]
        return RestingOrder(
            id=f"g{st.generation}-{base}-{k:+d}-{facts.as_of:%Y%m%d%H%M}", symbol=facts.symbol, type="limit",
            side="buy" if k < 0 else "sell", amount=st.qty, price=price, leverage=self.cfg.leverage,
            stop=stop, take_profit=tp, tag=_tag(k), created_at=facts.as_of)

    def out_of_range(self, st: GridState, last: float) -> bool:
        lo, hi = st.bounds(self.cfg.levels)
        pad = self.cfg.reposition_levels * st.spacing
        return last < lo - pad or last > hi + pad

    # -- the step --------------------------------------------------------------------------------
    def step(self, facts: Facts) -> Step:
        st: GridState | None = facts.state if isinstance(facts.state, GridState) else None
        intents: list[Intent] = []
        note = ""
        reg = regime(facts)
        if st is not None:
            why = None
            if self.out_of_range(st, facts.last):
                lo, hi = st.bounds(self.cfg.levels)
                why = f"price {facts.last:.6g} left the grid range [{lo:.6g}, {hi:.6g}]"
            elif self.cfg.reposition_on_trend and st.regime == RANGE and reg != RANGE:
                why = f"regime turned to {reg}"
            if why is not None:
                intents += teardown(facts, f"grid reposition: {why}")
                new = self.build(facts, st.generation + 1, st.repositions + 1)
                if new is None:
                    return Step(tuple(intents), None, f"grid closed ({why}); no new grid (no size)")
                st, note = new, f"grid repositioned: {why}"
                return Step(tuple(intents + self._entries(st, facts, fresh=True)), st, note)
            if st.regime != RANGE and reg == RANGE:
                st = replace(st, regime=reg)  # back in a range: the next turn to a trend repositions again
            note = (f"grid at {st.ref:.6g} (spacing {st.spacing:.6g}): "
                    f"{sum(1 for o in facts.account.orders if is_grid(o.tag) and not o.reduce_only)} entries resting, "
                    f"{sum(1 for p in facts.account.positions if is_grid(p.extra.get('tag')))} levels filled")
        else:
            st = self.build(facts, 1, 0)
            if st is None:
                return Step((), None, "no grid: equity or price too small for one level")
            note = f"grid built at {st.ref:.6g}, spacing {st.spacing:.6g}"
        return Step(tuple(intents + self._entries(st, facts, fresh=False)), st, note)

    def _entries(self, st: GridState, facts: Facts, *, fresh: bool) -> list[Intent]:
        """Entry orders for every free level on the right side of the price."""
        busy: set[str] = set()
        if not fresh:
            busy |= {str(p.extra.get("tag")) for p in facts.account.positions if is_grid(p.extra.get("tag"))}
            busy |= {o.tag for o in facts.account.orders if is_grid(o.tag) and not o.reduce_only}
        out: list[Intent] = []
        for sgn in self.sides():
            for k in range(1, self.cfg.levels + 1):
                lvl = sgn * k
                if _tag(lvl) in busy:
                    continue
                o = self.order_for(st, lvl, facts)
                # a buy above the price (or a sell below it) would fill at once as a taker: wait
                if (o.side == "buy" and o.price >= facts.last) or (o.side == "sell" and o.price <= facts.last):
                    continue
                out.append(Place(o, f"grid level {lvl:+d} ({Side.LONG.value if lvl < 0 else Side.SHORT.value})"))
        return out
