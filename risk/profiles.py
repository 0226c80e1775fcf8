"""Named risk profiles: every number the risk manager and the exit rules use, as data.

A profile is a frozen `RiskProfile`; the manager (`risk.manager.evaluate`) and the exit rules
(`risk.exits.step`) read fields from it and never branch on the profile's name. Selecting
another behaviour means another value in a field (e.g. `sizing="kelly"`, `stop_method="fixed"`),
so a new profile is a new entry in `PROFILES`, not new code.

Units: every `*_pct` field is in percent (1.5 means 1.5 %); rates (`maintenance_margin_rate`)
are fractions. Funding is compared per 8 h, as a percentage (0.25 means 0.25 % per 8 h).

Profiles (DESIGN.md §3 and issue 4):

- ``default``: 1.5 % of equity at risk per trade, size = risk / stop distance; leverage by the
  daily ATR% (≥4 % → 3×, ≥3 % → 5×, ≥2 % → 7×, calmer → 10×); ATR stop bounded 1.5–5 %
  (a quantile stop may be chosen instead by `stop_method="quantile"`); TP1 1.5R closes 50 %,
  TP2 2.5R the rest; breakeven (entry +0.15 %) once +2.5 %; after TP1 the stop trails 2 % behind
  the best price; at most 3 positions and one per correlation group; spread > 0.2 % and funding
  beyond ±0.25 %/8 h against the trade veto; no longs after BTC fell > 2 % in 4 h; −5 % daily halt,
  −10 % weekly halt and a −20 % drawdown breaker (until a manual resume), as the six-model spec
  states and every spec Quorum follows bounds the drawdown; stale exit after 48 h with < 1 % profit; close on critical negative news; regime multipliers
  PANIC leverage ×0.5 / stop ×1.5 and DIGESTING ×0.8 / ×1.2.
- ``conservative``: the default rules with leverage ≤ 5×, 1 % risk per trade, daily −5 %,
  weekly −10 % and a −20 % drawdown breaker; a stop on every trade (`require_stop`).
- ``kelly``: risk = 15 % of the Kelly fraction (from the stored win rate and win/loss ratio)
  × a volatility adjustment × the regime adjustment, capped by the account-size tier
  (< $100: 3 %, 1 position; $100–500: 5 %, 2; $500–2,000: 8 %, 3; > $2,000: 12 %, 5);
  Chandelier stop 3×ATR (1h) from the extreme as the initial stop and as the only trailing rule
  (no breakeven move, no 2 % trail); TP1/TP2 at 1.5R/2.5R as default; 24 h time exit, no stale exit.
  With fewer than 20 closed trades, or no track record, it risks `kelly_fallback_risk_pct` (0.5 %)
  × the same adjustments; a non-positive Kelly fraction (no edge) is a denial. The record is the last
  50 trades closed within 90 days, shrunk towards a prior of 10 pseudo-trades (win rate 0.5,
  win/loss 1.5): old trades age out, so a bad start cannot lock the profile out for good
  (risk/track.py).
- ``arena`` (one account per model): a single position's NOTIONAL ≤ 50 % of equity with no open
  position, ≤ 30 % with positions, all positions together ≤ 80 % of equity in notional (the spec's
  caps are on position size: capping only the margin let a 10× position reach ~5× equity in notional
  and lose ~15 % of equity per 3 % stop; now a stop costs at most 1.5 % of equity); stop 3 %,
  take-profit 10 % (all of it); daily −15 %.

Leverage and liquidation: isolated margin, maintenance-margin rate 0.5 % (`maintenance_margin_rate`).
When the liquidation price of a plan would lie inside its stop (or within `liq_buffer_pct` of it),
the manager REDUCES leverage one step at a time until it does not (down to 1×, where a long's
liquidation is at entry × mmr and can never precede a stop); a plan still failing is denied.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from core.errors import ConfigError
from core.types import VolState

Sizing = Literal["fixed_risk", "kelly", "margin_fraction"]
StopMethod = Literal["atr", "quantile", "fixed", "chandelier"]

# base asset -> correlation group. Unknown assets form a group of their own.
DEFAULT_CORRELATION_GROUPS: Mapping[str, str] = MappingProxyType(
    {
        "BTC": "btc",
        "WBTC": "btc",
        "ETH": "layer1",
        "SOL": "layer1",
        "BNB": "layer1",
        "AVAX": "layer1",
        "ADA": "layer1",
        "DOT": "layer1",
        "NEAR": "layer1",
        "APT": "layer1",
        "SUI": "layer1",
        "TRX": "layer1",
        "TON": "layer1",
        "ATOM": "layer1",
        "SEI": "layer1",
        "DOGE": "meme",
        "SHIB": "meme",
        "PEPE": "meme",
        "WIF": "meme",
        "BONK": "meme",
        "FLOKI": "meme",
        "BRETT": "meme",
        "POPCAT": "meme",
        "MEME": "meme",
    }
)


@dataclass(frozen=True)
class AccountTier:
    """Account-size tier: applies while equity < `below_equity` (None = no upper bound)."""

    below_equity: float | None
    max_risk_pct: float
    max_positions: int


def _regime(panic: float, digesting: float) -> Mapping[VolState, float]:
    return MappingProxyType({VolState.NORMAL: 1.0, VolState.DIGESTING: digesting, VolState.PANIC: panic})


@dataclass(frozen=True)
class RiskProfile:
    name: str
    description: str = ""

    # --- sizing --------------------------------------------------------------------------------
    sizing: Sizing = "fixed_risk"
    risk_per_trade_pct: float = 1.5  # fixed_risk: % of equity lost if the stop fills
    # kelly: risk% = kelly_fraction * f* * vol_adj * regime_adj, capped by the account tier
    kelly_fraction: float = 0.15
    kelly_min_trades: int = 20  # fewer closed trades: use kelly_fallback_risk_pct instead of f*
    kelly_fallback_risk_pct: float = 0.5
    # the way back from a bad start (risk/track.py): a rolling window of closed trades and a prior
    kelly_window_trades: int = 50  # only the last N closed trades count
    kelly_window_days: float = 90.0  # ... closed within this many days before the decision
    kelly_prior_trades: int = 10  # pseudo-trades at the prior's win rate and win/loss ratio
    kelly_prior_win_rate: float = 0.5
    kelly_prior_win_loss: float = 1.5  # TP1 1.5R / TP2 2.5R against a 1R stop: f* = 0.17 before evidence
    kelly_vol_ref_atr_pct: float = 2.0  # vol_adj = clamp(ref / atr_pct, kelly_vol_adj_min, 1)
    kelly_vol_adj_min: float = 0.25
    account_tiers: tuple[AccountTier, ...] = ()
    # margin caps (all profiles): % of the FREE balance for one trade's margin, with no open
    # position / with positions, and % of EQUITY for all margin together (existing + new).
    trade_margin_pct_empty: float = 100.0
    trade_margin_pct_with_positions: float = 100.0
    max_total_margin_pct: float = 100.0
    # exposure caps on NOTIONAL (qty x entry, whatever the leverage), % of EQUITY: one trade with no
    # open position / with positions, and all open positions together (existing + new). None: no cap.
    # margin_fraction sizing (arena) takes the tightest cap as its size.
    trade_notional_pct_empty: float | None = None
    trade_notional_pct_with_positions: float | None = None
    max_total_notional_pct: float | None = None
    fee_reserve_pct: float = 0.2  # % of notional kept free for fees and slippage when capping by balance

    # --- leverage ------------------------------------------------------------------------------
    # (daily ATR% threshold, leverage), checked in order; first threshold the ATR% reaches wins.
    leverage_by_atr: tuple[tuple[float, int], ...] = ((4.0, 3), (3.0, 5), (2.0, 7))
    max_leverage: int = 10  # calm markets, and the cap of every path
    regime_leverage_mult: Mapping[VolState, float] = field(default_factory=lambda: _regime(0.5, 0.8))
    maintenance_margin_rate: float = 0.005
    liq_buffer_pct: float = 0.5  # liquidation must lie at least this % of entry beyond the stop

    # --- stop and targets ----------------------------------------------------------------------
    stop_method: StopMethod = "atr"
    atr_stop_mult: float = 1.0  # stop% = daily ATR% * mult, then bounded
    stop_min_pct: float = 1.5
    stop_max_pct: float = 5.0
    fixed_stop_pct: float | None = None
    chandelier_atr_mult: float | None = None  # stop = extreme -/+ mult * ATR(1h)
    regime_stop_mult: Mapping[VolState, float] = field(default_factory=lambda: _regime(1.5, 1.2))
    require_stop: bool = True
    tp1_r: float = 1.5
    tp2_r: float = 2.5
    tp1_fraction: float = 0.5
    fixed_tp_pct: float | None = None  # one take-profit at +x% closing everything (tp1 == tp2)

    # --- trailing and exits --------------------------------------------------------------------
    breakeven_trigger_pct: float | None = 2.5
    breakeven_offset_pct: float = 0.15
    trail_after_tp1_pct: float | None = 2.0
    stale_hours: float | None = 48.0
    stale_min_profit_pct: float = 1.0
    time_exit_hours: float | None = None
    close_on_critical_news: bool = True

    # --- portfolio -----------------------------------------------------------------------------
    max_positions: int = 3
    max_per_group: int = 1
    correlation_groups: Mapping[str, str] = DEFAULT_CORRELATION_GROUPS

    # --- vetoes --------------------------------------------------------------------------------
    max_spread_pct: float | None = 0.2
    funding_veto_pct: float | None = 0.25  # per 8 h, against the trade
    btc_dump_pct: float | None = 2.0  # no longs when BTC 4h change < -x%
    veto_long_on_critical_news: bool = True

    # --- breakers ------------------------------------------------------------------------------
    daily_loss_pct: float | None = 5.0
    weekly_loss_pct: float | None = None
    max_drawdown_pct: float | None = None

    def tier_for(self, equity: float) -> AccountTier | None:
        for tier in self.account_tiers:
            if tier.below_equity is None or equity < tier.below_equity:
                return tier
        return None

    def position_limit(self, equity: float) -> int:
        tier = self.tier_for(equity)
        return min(self.max_positions, tier.max_positions) if tier else self.max_positions


KELLY_TIERS = (
    AccountTier(below_equity=100.0, max_risk_pct=3.0, max_positions=1),
    AccountTier(below_equity=500.0, max_risk_pct=5.0, max_positions=2),
    AccountTier(below_equity=2_000.0, max_risk_pct=8.0, max_positions=3),
    AccountTier(below_equity=None, max_risk_pct=12.0, max_positions=5),
)

PROFILES: Mapping[str, RiskProfile] = MappingProxyType(
    {
        "default": RiskProfile(
            name="default",
            description="DESIGN.md §3: 1.5% risk, ATR stop 1.5-5%, TP 1.5R/2.5R, 3 positions, daily -5%, "
                        "weekly -10%, drawdown breaker -20%",
            weekly_loss_pct=10.0,
            max_drawdown_pct=20.0,
        ),
        "conservative": RiskProfile(
            name="conservative",
            description="leverage <= 5x, 1% risk, daily -5%, weekly -10%, drawdown breaker -20%",
            risk_per_trade_pct=1.0,
            max_leverage=5,
            leverage_by_atr=((4.0, 2), (3.0, 3), (2.0, 4)),
            daily_loss_pct=5.0,
            weekly_loss_pct=10.0,
            max_drawdown_pct=20.0,
            require_stop=True,
        ),
        "kelly": RiskProfile(
            name="kelly",
            description="15% fractional Kelly x volatility x regime, Chandelier 3xATR, 24h time exit, tiers",
            sizing="kelly",
            account_tiers=KELLY_TIERS,
            max_positions=5,
            stop_method="chandelier",
            chandelier_atr_mult=3.0,
            breakeven_trigger_pct=None,  # the Chandelier is this profile's trailing stop
            trail_after_tp1_pct=None,
            time_exit_hours=24.0,
            stale_hours=None,
        ),
        "arena": RiskProfile(
            name="arena",
            description="per-model account: notional per trade <=50% of equity (30% with positions), total <=80%, "
                        "SL 3%, TP 10%",
            sizing="margin_fraction",
            trade_notional_pct_empty=50.0,
            trade_notional_pct_with_positions=30.0,
            max_total_notional_pct=80.0,
            stop_method="fixed",
            fixed_stop_pct=3.0,
            fixed_tp_pct=10.0,
            tp1_fraction=1.0,
            regime_stop_mult=_regime(1.0, 1.0),
            breakeven_trigger_pct=None,
            trail_after_tp1_pct=None,
            stale_hours=None,
            max_positions=10,
            max_per_group=10,
            daily_loss_pct=15.0,
        ),
    }
)


def get_profile(name: str) -> RiskProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f"unknown risk profile {name!r}; allowed: {', '.join(PROFILES)}") from None
