"""rebalance: hold target weights on spot and trade back to them when they drift.

The portfolio is a set of spot holdings plus the quote asset (USDT); weights are each asset's share
of equity at the last prices (the quote counts: the default is 33/33/33 BTC/XRP/USDT). When any
weight is more than `drift_band_pct` points away from its target, every asset is traded back to
its target: sells first, then buys sized so that the cash after the sells' fees pays for them
(fees and slippage counted); a trade below `min_trade_usd` is skipped. With `panel_tilt_pct` > 0,
the panel's decisions tilt the targets: LONG adds up to that many points to an asset, SHORT takes
them away (scaled by the decision's confidence, never below 0), the quote absorbs the difference.

Pure functions of holdings, prices and settings; `RebalanceStrategy.step` wraps them with the
drift check and returns one `Rebalance` intent (or none).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_DOWN, Decimal

from agents.strategies.base import Rebalance, SpotTrade, Step
from core.settings import RebalanceSettings
from core.types import Action, Decision


def portfolio_value(holdings: Mapping[str, Decimal], prices: Mapping[str, float], quote: str) -> float:
    return sum(float(q) * (1.0 if a == quote else prices[a]) for a, q in holdings.items())


def weights(holdings: Mapping[str, Decimal], prices: Mapping[str, float], quote: str) -> dict[str, float]:
    total = portfolio_value(holdings, prices, quote)
    if total <= 0:
        return {a: 0.0 for a in holdings}
    return {a: float(q) * (1.0 if a == quote else prices[a]) / total for a, q in holdings.items()}


def drift(current: Mapping[str, float], targets: Mapping[str, float]) -> float:
    """Largest absolute weight deviation, in points (0.05 = 5 points)."""
    keys = set(current) | set(targets)
    return max((abs(current.get(k, 0.0) - targets.get(k, 0.0)) for k in keys), default=0.0)


def tilted_targets(targets: Mapping[str, float], decisions: Mapping[str, Decision], max_tilt_pct: float,
                   quote: str) -> dict[str, float]:
    """Targets tilted by the panel: LONG +tilt × confidence, SHORT −tilt × confidence (never < 0);
    the quote takes the difference (never < 0: tilts are scaled down to fit)."""
    out = dict(targets)
    if max_tilt_pct <= 0:
        return out
    tilt = max_tilt_pct / 100
    deltas: dict[str, float] = {}
    for asset, d in decisions.items():
        if asset == quote or asset not in out or d.action is Action.WAIT:
            continue
        sign = 1.0 if d.action is Action.LONG else -1.0
        deltas[asset] = max(sign * tilt * max(0.0, min(1.0, d.confidence)), -out[asset])
    add = sum(deltas.values())
    q = out.get(quote, 0.0)
    if add > q:  # not enough quote to fund the tilts: scale the positive ones down
        pos = sum(v for v in deltas.values() if v > 0)
        neg = sum(v for v in deltas.values() if v < 0)
        scale = (q - neg) / pos if pos > 0 else 0.0
        deltas = {k: (v * scale if v > 0 else v) for k, v in deltas.items()}
        add = sum(deltas.values())
    for k, v in deltas.items():
        out[k] += v
    out[quote] = q - add
    return out


def plan_trades(holdings: Mapping[str, Decimal], prices: Mapping[str, float], targets: Mapping[str, float],
                cfg: RebalanceSettings, qty_steps: Mapping[str, Decimal] | None = None) -> tuple[SpotTrade, ...]:
    """Trades that bring the portfolio to `targets` (sells first; buys fit the cash after fees)."""
    quote = cfg.quote
    total = portfolio_value(holdings, prices, quote)
    if total <= 0:
        return ()
    cost = cfg.fee + cfg.slippage_bps / 10_000
    steps = qty_steps or {}
    sells: list[SpotTrade] = []
    buys: list[tuple[str, float]] = []
    for asset in sorted(set(targets) | set(holdings)):
        if asset == quote:
            continue
        px = prices[asset]
        have = float(holdings.get(asset, Decimal(0)))
        diff_value = targets.get(asset, 0.0) * total - have * px
        if abs(diff_value) < max(cfg.min_trade_usd, 1e-9):
            continue
        if diff_value < 0:
            qty = _round(Decimal(repr(min(-diff_value / px, have))), steps.get(asset))
            if qty > 0 and float(qty) * px >= cfg.min_trade_usd:
                sells.append(SpotTrade(asset, "sell", qty, px))
        else:
            buys.append((asset, diff_value))
    cash = float(holdings.get(quote, Decimal(0))) + sum(t.notional * (1 - cost) for t in sells)
    want = sum(v for _, v in buys)
    scale = min(1.0, cash / (want * (1 + cost))) if want > 0 else 0.0
    out = list(sells)
    for asset, value in buys:
        px = prices[asset]
        qty = _round(Decimal(repr(value * scale / (px * (1 + cost)))), steps.get(asset))
        if qty > 0 and float(qty) * px >= cfg.min_trade_usd:
            out.append(SpotTrade(asset, "buy", qty, px))
    return tuple(out)


def _round(q: Decimal, step: Decimal | None) -> Decimal:
    step = step if step is not None and step > 0 else Decimal("0.00000001")
    return (q / step).to_integral_value(rounding=ROUND_DOWN) * step


@dataclass(frozen=True)
class PortfolioFacts:
    as_of: datetime
    holdings: Mapping[str, Decimal]  # asset -> quantity, the quote included
    prices: Mapping[str, float]  # asset -> last price in the quote
    decisions: Mapping[str, Decision] = field(default_factory=dict)  # asset -> panel/consensus decision
    qty_steps: Mapping[str, Decimal] = field(default_factory=dict)
    halted: bool = False  # the account's breakers: no rebalance while halted
    state: object = None


@dataclass(frozen=True)
class RebalanceState:
    rebalances: int = 0
    last_at: datetime | None = None


class RebalanceStrategy:
    name = "rebalance"

    def __init__(self, settings: RebalanceSettings | None = None) -> None:
        self.cfg = settings or RebalanceSettings()

    def targets(self, facts: PortfolioFacts) -> dict[str, float]:
        return tilted_targets(self.cfg.targets, facts.decisions, self.cfg.panel_tilt_pct, self.cfg.quote)

    def step(self, facts: PortfolioFacts) -> Step:
        st = facts.state if isinstance(facts.state, RebalanceState) else RebalanceState()
        tgt = self.targets(facts)
        cur = weights({a: facts.holdings.get(a, Decimal(0)) for a in tgt}, facts.prices, self.cfg.quote)
        dev = drift(cur, tgt)
        if facts.halted:
            return Step((), st, "account halted: no rebalance")
        if dev * 100 <= self.cfg.drift_band_pct:
            return Step((), st, f"drift {dev * 100:.2f} points within the {self.cfg.drift_band_pct:g}-point band")
        trades = plan_trades(facts.holdings, facts.prices, tgt, self.cfg, facts.qty_steps)
        if not trades:
            return Step((), st, f"drift {dev * 100:.2f} points but every trade is below the minimum size")
        why = f"drift {dev * 100:.2f} points > {self.cfg.drift_band_pct:g}: rebalance to " + ", ".join(
            f"{a} {w:.1%}" for a, w in sorted(tgt.items()))
        return Step((Rebalance(tgt, trades, why),), RebalanceState(st.rebalances + 1, facts.as_of), why)
