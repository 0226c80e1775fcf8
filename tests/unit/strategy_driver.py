"""A tiny driver for strategy tests on crafted price paths: at each decision the strategy sees the
account, its intents go through `pipeline.strategy.execute_intents` (risk checks included), then
the next bar is matched against the resting orders of the paper account."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from agents.strategies.base import AccountView, Facts, Step
from core.settings import Settings
from core.types import Decision, Score
from exchange.paper import PaperAccount
from pipeline.strategy import ExecContext, IntentResult, execute_intents
from risk.manager import AccountState, MarketLimits
from risk.profiles import get_profile

T0 = datetime(2025, 3, 3, 0, 0, tzinfo=UTC)
SYM = "BTC/USDT:USDT"


@dataclass
class Driver:
    strategy: Any
    acct: PaperAccount = field(default_factory=lambda: PaperAccount(Decimal(10_000), slippage_bps=Decimal(0)))
    limits: MarketLimits = field(default_factory=lambda: MarketLimits(qty_step=Decimal("0.001"),
                                                                      price_tick=Decimal("0.01"),
                                                                      min_qty=Decimal("0.001"),
                                                                      min_notional=Decimal("5")))
    state: Any = None
    t: datetime = T0
    last: float = 100.0
    steps: list[Step] = field(default_factory=list)
    results: list[IntentResult] = field(default_factory=list)

    def decide(self, score: Score | None = None, decision: Decision | None = None, atr_1h: float | None = None,
               features: dict[str, float] | None = None, next_open: float | None = None) -> Step:
        eq = float(self.acct.equity({SYM: self.last}))
        view = AccountView(eq, float(self.acct.balance),
                           tuple(p for p in self.acct.open_positions() if p.symbol == SYM),
                           tuple(self.acct.open_orders(SYM)))
        facts = Facts(SYM, self.t, self.last, self.last, self.last, view, score=score, decision=decision,
                      atr_1h=atr_1h, features=features or {}, qty_step=self.limits.qty_step,
                      price_tick=self.limits.price_tick, state=self.state)
        st = self.strategy.step(facts)
        self.state = st.state
        self.steps.append(st)
        acct_state = AccountState(equity=eq, balance=float(self.acct.balance),
                                  positions=tuple(self.acct.open_positions()), day_start_equity=eq,
                                  week_start_equity=eq, peak_equity=eq, now=self.t)
        ctx = ExecContext(self.t, self.strategy.name, acct_state, self.limits, get_profile("default"), Settings(),
                          fill_ts=self.t, fill_price=next_open if next_open is not None else self.last,
                          score=score, snapshot=_snap(self.t, self.last))
        self.results += execute_intents(self.acct, st.intents, ctx)
        return st

    def bar(self, o: float, h: float, lo: float, c: float) -> None:
        self.t += timedelta(hours=1)
        self.acct.match_bar(SYM, o, h, lo, c, self.t)
        self.last = c


def _snap(t: datetime, last: float) -> Any:
    from core.types import MarketSnapshot

    return MarketSnapshot(symbol=SYM, as_of=t, candles={}, last=last, bid=last * 0.9999, ask=last * 1.0001,
                          volume_24h_quote=1e9, funding_rate=0.0001)
