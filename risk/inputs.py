"""The risk manager's inputs: the market's trading limits (:class:`MarketLimits`), the account's state
at decision time (:class:`AccountState`) and everything one evaluation needs (:class:`RiskInput`).
Frozen; `risk.manager` re-exports them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from core.types import Decision, MarketSnapshot, NewsReport, Position, Score
from risk.profiles import RiskProfile
from risk.track import TrackRecord


@dataclass(frozen=True)
class MarketLimits:
    """Precision and minimums of one market (mirrors exchange.base.MarketRules; risk/ may not
    import exchange/)."""

    qty_step: Decimal = Decimal("0.001")
    price_tick: Decimal = Decimal("0.01")
    min_qty: Decimal = Decimal("0.001")
    min_notional: Decimal = Decimal("5")
    max_leverage: int = 20

    @classmethod
    def from_rules(cls, rules: object) -> MarketLimits:
        """Build from any object with the MarketRules attribute names (duck-typed)."""
        return cls(
            qty_step=Decimal(str(rules.qty_step)),  # type: ignore[attr-defined]
            price_tick=Decimal(str(rules.price_tick)),  # type: ignore[attr-defined]
            min_qty=Decimal(str(rules.min_qty)),  # type: ignore[attr-defined]
            min_notional=Decimal(str(rules.min_notional)),  # type: ignore[attr-defined]
            max_leverage=int(rules.max_leverage),  # type: ignore[attr-defined]
        )


@dataclass(frozen=True)
class AccountState:
    """What the risk manager knows about the account at decision time `now` (UTC).

    equity = free balance + margin + unrealised P&L. The *_start/peak marks come from stored
    equity snapshots (see `account_state_from_history`), so breakers hold across restarts.
    """

    equity: float
    balance: float  # free balance (not locked as margin)
    positions: tuple[Position, ...] = ()
    day_start_equity: float | None = None
    week_start_equity: float | None = None
    peak_equity: float | None = None
    halted: bool = False
    halt_reason: str | None = None
    halted_until: datetime | None = None  # None with halted=True: until a manual resume
    now: datetime = field(default_factory=lambda: datetime(1970, 1, 1, tzinfo=UTC))

    @property
    def open_positions(self) -> tuple[Position, ...]:
        return tuple(p for p in self.positions if p.is_open)

    @property
    def margin_used(self) -> float:
        return sum(p.margin for p in self.open_positions)

    @property
    def notional_used(self) -> float:
        """Notional exposure of the open positions at their entry prices."""
        return sum(float(p.qty_open) * p.entry for p in self.open_positions)


@dataclass(frozen=True)
class RiskInput:
    decision: Decision
    score: Score
    account: AccountState
    limits: MarketLimits
    bid: float
    ask: float
    funding_rate: float | None = None  # fraction per 8 h (0.0001 = 0.01 %)
    btc_change_4h_pct: float | None = None
    news: NewsReport | None = None
    track: TrackRecord | None = None
    profile: str | RiskProfile = "default"  # a name from PROFILES, or a RiskProfile value
    correlation_groups: Mapping[str, str] | None = None  # base asset -> group; overrides profile
    quantile_stop_pct: float | None = None  # for stop_method="quantile"
    atr_1h: float | None = None  # absolute 1h ATR (price units), for the Chandelier stop

    @property
    def spread_pct(self) -> float:
        mid = (self.bid + self.ask) / 2
        return 0.0 if mid <= 0 else (self.ask - self.bid) / mid * 100.0

    @classmethod
    def from_snapshot(
        cls,
        decision: Decision,
        score: Score,
        snapshot: MarketSnapshot,
        account: AccountState,
        limits: MarketLimits,
        **kwargs: object,
    ) -> RiskInput:
        return cls(
            decision=decision,
            score=score,
            account=account,
            limits=limits,
            bid=snapshot.bid,
            ask=snapshot.ask,
            funding_rate=snapshot.funding_rate,
            **kwargs,  # type: ignore[arg-type]
        )
