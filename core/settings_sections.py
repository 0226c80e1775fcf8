"""The nested sections of the settings: the panel's members, paper account, signal thresholds,
consensus, and the strategies' parameters (pydantic models, every number finite). `core.settings`
re-exports them; the top-level `Settings` lives there."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.types import Action

FINITE = ConfigDict(allow_inf_nan=False)  # every number setting must be finite (inf/nan rejected)
# the sections the pure leaves take as their parameters (the math engine, the consensus) are frozen too
FROZEN = ConfigDict(allow_inf_nan=False, frozen=True)


class PanelMember(BaseModel):
    """One model on the decision panel. Its numbers are checked: a time limit above 0 (at most an
    hour), prices and weight at least 0, all finite."""

    model_config = FINITE

    id: str = Field(min_length=1, max_length=64)
    provider: Literal["openai", "deepseek", "anthropic", "xai", "ollama", "openrouter"]
    model: str = Field(min_length=1)
    enabled: bool | None = None  # None: enabled when its key or host is present
    timeout_s: float = Field(60.0, gt=0, le=3600, allow_inf_nan=False)
    price_in_per_mtok: float = Field(0.0, ge=0, allow_inf_nan=False)
    price_out_per_mtok: float = Field(0.0, ge=0, allow_inf_nan=False)
    base_url: str | None = None
    system_prompt: str | None = None
    weight: float = Field(1.0, ge=0, le=100, allow_inf_nan=False)


def default_panel() -> list[PanelMember]:
    return [
        PanelMember(id="gpt", provider="openai", model="gpt-5.1", timeout_s=90,
                    price_in_per_mtok=1.25, price_out_per_mtok=10.0),
        PanelMember(id="grok", provider="xai", model="grok-4", timeout_s=120,
                    price_in_per_mtok=3.0, price_out_per_mtok=15.0),
        PanelMember(id="deepseek", provider="deepseek", model="deepseek-reasoner", timeout_s=180,
                    price_in_per_mtok=0.28, price_out_per_mtok=0.42),
        PanelMember(id="claude-sonnet", provider="anthropic", model="claude-sonnet-4-5", timeout_s=90,
                    price_in_per_mtok=3.0, price_out_per_mtok=15.0),
        PanelMember(id="claude-opus", provider="anthropic", model="claude-opus-4-1", timeout_s=150,
                    price_in_per_mtok=15.0, price_out_per_mtok=75.0),
        PanelMember(id="qwen-local", provider="ollama", model="qwen3:8b", timeout_s=120),
    ]


class PaperSettings(BaseModel):
    model_config = FINITE
    starting_balance: float = Field(10_000.0, gt=0)
    taker_fee: float = Field(0.0005, ge=0, lt=0.01)
    maker_fee: float = Field(0.0002, ge=0, lt=0.01)
    slippage_bps: float = Field(2.0, ge=0, lt=500)


class SignalSettings(BaseModel):
    model_config = FROZEN
    long_threshold: float = Field(0.45, gt=0, lt=1)
    short_threshold: float = Field(-0.45, gt=-1, lt=0)
    tf_weights: dict[str, float] = Field(default_factory=lambda: {"1h": 0.30, "4h": 0.50, "1d": 0.20})
    panic_vol_ratio: float = Field(2.5, gt=1, allow_inf_nan=False)
    digesting_vol_ratio: float = Field(1.3, gt=1, allow_inf_nan=False)

    def action_for(self, score: float) -> Action:
        """The signal of a score in [-1, 1]: above long_threshold LONG, below short_threshold SHORT, else
        WAIT (one rule for the math engine and the consensus)."""
        if score > self.long_threshold:
            return Action.LONG
        if score < self.short_threshold:
            return Action.SHORT
        return Action.WAIT

    @field_validator("tf_weights")
    @classmethod
    def _weights(cls, v: dict[str, float]) -> dict[str, float]:
        if set(v) != {"1h", "4h", "1d"}:
            raise ValueError(f"needs exactly the keys 1h, 4h, 1d, got {sorted(v)}")
        if any(not (0 <= w <= 1) for w in v.values()):
            raise ValueError(f"each weight must be between 0 and 1, got {v}")
        if abs(sum(v.values()) - 1.0) > 1e-6:
            raise ValueError(f"weights must sum to 1, got {sum(v.values()):.3f}")
        return v

    @model_validator(mode="after")
    def _regimes(self) -> SignalSettings:
        if self.panic_vol_ratio <= self.digesting_vol_ratio:
            raise ValueError(f"panic_vol_ratio ({self.panic_vol_ratio:g}) must be above digesting_vol_ratio "
                             f"({self.digesting_vol_ratio:g})")
        return self


class ConsensusSettings(BaseModel):
    model_config = FROZEN
    quorum: int = Field(3, ge=1, description="minimum valid votes before the panel counts")
    agreement: float = Field(0.6, gt=0, le=1, description="share of valid weight on the winning side")
    panel_weight: float = Field(0.6, ge=0, le=1, description="weight of the panel vs the math score")
    track_record_weights: bool = False


STRATEGIES = ("trend", "grid", "volatility", "hybrid", "rebalance")
PER_SYMBOL_STRATEGIES = ("trend", "grid", "volatility", "hybrid")


class GridSettings(BaseModel):
    """Grid: `levels` entry levels on each side of a reference price (buys below, sells above in a
    neutral grid), each filled level's take-profit at the next level toward the reference."""

    levels: int = Field(5, ge=1, le=50, description="entry levels per side")
    direction: Literal["neutral", "long", "short"] = "neutral"
    atr_mult: float = Field(1.0, gt=0, description="spacing = max(atr_mult x ATR(1h), floor)")
    spacing_floor_pct: float = Field(0.4, gt=0, lt=20, description="minimum spacing, % of the reference")
    size_pct: float = Field(2.0, gt=0, le=50, description="notional per level, % of equity")
    leverage: int = Field(3, ge=1, le=20)
    stop_levels: float = Field(1.0, gt=0, description="stop this many spacings beyond the outermost level")
    reposition_levels: float = Field(1.0, ge=0, description="reposition when price leaves the range by this many spacings")
    reposition_on_trend: bool = True


class VolatilitySettings(BaseModel):
    """Volatility: breakout on volatility expansion in the direction of momentum; in a range regime,
    mean reversion back inside the Bollinger bands; every position exits after `hold_hours`."""

    bb_length: int = Field(20, ge=5, le=500)
    bb_std: float = Field(2.0, gt=0, le=5)
    atr_fast: int = Field(6, ge=2, le=200)
    atr_slow: int = Field(48, ge=5, le=1000)
    expansion: float = Field(1.5, gt=1, le=10, description="ATR(fast)/ATR(slow) that counts as expansion")
    momentum_bars: int = Field(6, ge=1, le=200)
    mean_reversion: bool = True
    hold_hours: float = Field(12.0, gt=0, le=24 * 30)


class HybridSettings(BaseModel):
    """Hybrid: grid while the math engine says RANGE, trend while it says TREND_UP/TREND_DOWN."""

    handover: Literal["close", "finish"] = Field(
        "close", description="on a trend: close the grid now, or cancel its entries and let positions finish")


class RebalanceSettings(BaseModel):
    """Rebalance: hold target weights on spot (the quote asset counts), trade back when drifted."""

    targets: dict[str, float] = Field(default_factory=lambda: {"BTC": 1 / 3, "XRP": 1 / 3, "USDT": 1 / 3})
    quote: str = "USDT"
    drift_band_pct: float = Field(5.0, gt=0, lt=100, description="rebalance when a weight drifts this many points")
    min_trade_usd: float = Field(10.0, ge=0)
    fee: float = Field(0.001, ge=0, lt=0.05, description="spot taker fee")
    slippage_bps: float = Field(2.0, ge=0, lt=500)
    panel_tilt_pct: float = Field(0.0, ge=0, le=25, description="max tilt per asset from panel votes, points (0: off)")

    @field_validator("targets")
    @classmethod
    def _targets(cls, v: dict[str, float]) -> dict[str, float]:
        v = {k.upper(): float(w) for k, w in v.items()}
        if not v or any(w < 0 for w in v.values()):
            raise ValueError(f"weights must be >= 0, got {v}")
        if abs(sum(v.values()) - 1.0) > 1e-3:
            raise ValueError(f"weights must sum to 1, got {sum(v.values()):.4f}")
        return v


class StrategyParams(BaseModel):
    grid: GridSettings = Field(default_factory=GridSettings)
    volatility: VolatilitySettings = Field(default_factory=VolatilitySettings)
    hybrid: HybridSettings = Field(default_factory=HybridSettings)
    rebalance: RebalanceSettings = Field(default_factory=RebalanceSettings)


def _member_error(raw: Any, err: Any) -> str:
    """One error of a panel member as "panel member 'gpt' (#1): timeout_s = -3: must be ..."."""
    loc = list(err.get("loc", ()))
    idx = loc.pop(0) if loc and isinstance(loc[0], int) else None
    who = f"#{idx}" if idx is not None else "?"
    if idx is not None and isinstance(raw, list | tuple) and 0 <= idx < len(raw):
        item = raw[idx]
        mid = item.get("id") if isinstance(item, dict) else getattr(item, "id", None)
        if mid:
            who = f"{mid!r} (#{idx})"
    field = ".".join(str(p) for p in loc) or "member"
    value = err.get("input")
    shown = "" if isinstance(value, dict | list) else f" = {value!r}"
    return f"panel member {who}: {field}{shown}: {err.get('msg', 'invalid')}"

