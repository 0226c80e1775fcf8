"""The account's persistence: its unit of work.

The paper account (balance, open positions and their exact Decimal ledgers) is stored in the
`accounts` row and mirrored into `positions`, `orders`, `fills` and `position_events`. A cycle loads
it ONCE (`load`), passes it through the pure stages in memory, and stores it at each transaction
boundary (`save_account`, inside the monitor's and the execution's transactions); after a commit
the caller carries on with `acct.settled()`, which equals what a reload would give. Every change
commits in one transaction together with what caused it, so a crash leaves all of it or none of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from core.errors import DataError
from core.settings import Settings
from core.types import Position, PositionEvent
from exchange.base import MarketDataSource
from exchange.paper import PaperAccount
from pipeline.positions import marks, track_record_from
from risk.breakers import account_state_from_history
from risk.manager import AccountState, TrackRecord
from risk.profiles import get_profile
from store import repo
from store.db import transaction
from store.models import AccountRow

Factory = sessionmaker[Session]


def load_account(s: Session, settings: Settings) -> PaperAccount:
    row = repo.get_account(s, settings.mode, settings.paper.starting_balance)
    if row.state:
        return PaperAccount.from_dict(row.state)
    return PaperAccount.from_settings(settings.paper, get_profile(settings.risk_profile).maintenance_margin_rate)


def load(factory: Factory, settings: Settings) -> PaperAccount:
    """The account as stored, read once in its own transaction."""
    with transaction(factory) as s:
        return load_account(s, settings)


def save_account(s: Session, settings: Settings, acct: PaperAccount, clock: datetime | None,
                 checked: Mapping[str, datetime] | None = None) -> list[PositionEvent]:
    """Persist the account: compact state (open positions + their ledgers), every position row,
    the new fills and events. Returns the new events (for the broadcaster)."""
    row = repo.get_account(s, settings.mode, settings.paper.starting_balance)
    row.state = acct.compact_dict()
    row.balance = acct.balance
    row.realised_pnl = acct.realised_pnl
    row.fees_paid = acct.fees_paid
    row.funding_paid = acct.funding_paid
    if clock is not None and (row.clock is None or clock > row.clock):
        row.clock = clock
    row.updated_at = datetime.now(UTC)
    for p in acct.positions.values():
        repo.upsert_position(s, p, settings.mode, (checked or {}).get(p.id))
    s.flush()
    events = list(acct.events)
    repo.add_events(s, events)
    return events


def record_fills(s: Session, acct: PaperAccount, mode: str, cycle_id: str | None, start: int,
                 position_for_fill: Sequence[str]) -> None:
    """Store the account's new fills as orders + fills. A close's client order id is the position id
    and its sequence number among that position's orders (deterministic: the same work after a
    crash and restart produces the same ids, so nothing is stored twice)."""
    seq: dict[str, int] = {}
    for i, fill in enumerate(acct.fills[start:]):
        pid = position_for_fill[i]
        if pid not in seq:
            seq[pid] = repo.order_count(s, pid)
        coid = f"{mode}:{pid}:{fill.kind}:{seq[pid]}"
        seq[pid] += 1
        if repo.order_exists(s, coid) is None:
            repo.add_order_fill(s, coid, cycle_id, pid, fill, mode)


def snapshot_equity(s: Session, mode: str, acct: PaperAccount, prices: Mapping[str, float], t: datetime) -> float:
    unreal = acct.unrealised(prices)
    equity = acct.equity(prices)
    repo.add_equity_snapshot(s, mode, t, float(equity), float(acct.balance), float(unreal),
                             len(acct.open_positions()))
    return float(equity)


def check_clock(factory: Factory, mode: str, as_of: datetime) -> None:
    """A decision may not be earlier than the account's clock (the paper account cannot go back in
    time: its balance already holds what happened later)."""
    with transaction(factory) as s:
        row = s.get(AccountRow, mode)
        clock = None if row is None else row.clock
    if clock is not None and as_of < clock:
        raise DataError(f"--as-of {as_of.isoformat()} is before the {mode} account's clock "
                        f"{clock.isoformat()}: use a later time, or another QUORUM_DATABASE_URL")


NEXT = "next"


def account_clock(factory: Factory, mode: str) -> datetime | None:
    with transaction(factory) as s:
        row = s.get(AccountRow, mode)
        return None if row is None else row.clock


def decision_time(factory: Factory, source: MarketDataSource, mode: str, as_of: str | datetime | None,
                  *, advance: bool = True) -> datetime:
    """The time a run decides at. With live data: now (`as_of` is checked by nothing else). In replay:
    `as_of`, the last bundled bar when None, and for `as_of="next"` the forward clock: the first bar
    after the account's clock (`advance`, the cycle: repeated or scheduled runs walk one bar per run;
    a fresh account starts at the first bar of the data) or the account's clock itself (the monitor and
    the daily report, which do not decide). Call it under the account's lock, so two runs never walk
    to the same bar."""
    if not hasattr(source, "check_as_of"):
        return datetime.now(UTC)
    if as_of != NEXT:
        return source.check_as_of(as_of).to_pydatetime()
    import pandas as pd

    clock = account_clock(factory, mode)
    first, last = source.data_range()
    if clock is None:
        return (first if advance else last).to_pydatetime()
    if not advance:
        return max(pd.Timestamp(clock), first).to_pydatetime()
    t = pd.Timestamp(clock).floor("1h") + pd.Timedelta(hours=1)
    if t > last:
        raise DataError(f"--as-of next: the {mode} account's clock {clock.isoformat()} is at the end of the "
                        f"replay data (last decision bar {last.isoformat()}): nothing left to replay")
    return max(t, first).to_pydatetime()


def open_positions(factory: Factory, mode: str) -> list[Position]:
    with transaction(factory) as s:
        return repo.open_positions(s, mode)


def track_record(factory: Factory, mode: str, now: datetime | None = None,
                 profile: str = "default") -> TrackRecord | None:
    """The Kelly track record at `now`: the profile's rolling window of the stored closed positions."""
    with transaction(factory) as s:
        closed = repo.closed_positions(s, mode)
    return track_record_from(closed, now, profile)


def account_state(factory: Factory, source: MarketDataSource, settings: Settings, now: datetime,
                  acct: PaperAccount) -> AccountState:
    """The risk manager's view of the (in-memory) account: equity at marks, the stored equity history
    for the breakers, manual halts and the last resume."""
    prices = marks(source, [p.symbol for p in acct.open_positions()], now)
    equity = float(acct.equity(prices))
    with transaction(factory) as s:
        hist = repo.equity_history(s, settings.mode)
        halt = repo.active_halt(s, settings.mode, now)
        manual = halt.reason if halt is not None and halt.set_by == "manual" else None
        reset_at = repo.last_resume(s, settings.mode)
    return account_state_from_history(
        hist + [(now, equity)], equity=equity, balance=float(acct.balance), positions=acct.open_positions(),
        now=now, profile=settings.risk_profile, manual_halt=manual, reset_at=reset_at)


def account_summary(factory: Factory, source: MarketDataSource, settings: Settings, now: datetime,
                    acct: PaperAccount | None = None) -> dict[str, Any]:
    """Balance, equity, P&L, open positions with marks, and the halt in force (manual or breaker)."""
    with transaction(factory) as s:
        acct = acct if acct is not None else load_account(s, settings)
        open_pos = acct.open_positions()
        prices = marks(source, [p.symbol for p in open_pos], now)
        halt = repo.active_halt(s, settings.mode, now)
        halt_info = None if halt is None else {"reason": halt.reason, "set_by": halt.set_by,
                                               "until": halt.until.isoformat() if halt.until else None}
        if halt_info is None:  # a breaker halt is derived from the stored equity snapshots
            st = account_state_from_history(
                repo.equity_history(s, settings.mode), equity=float(acct.equity(prices)),
                balance=float(acct.balance), positions=open_pos, now=now, profile=settings.risk_profile,
                reset_at=repo.last_resume(s, settings.mode))
            if st.halted:
                halt_info = {"reason": st.halt_reason, "set_by": "breaker",
                             "until": st.halted_until.isoformat() if st.halted_until else None}
        return {
            "balance": float(acct.balance), "equity": float(acct.equity(prices)),
            "unrealised": float(acct.unrealised(prices)), "realised_pnl": float(acct.realised_pnl),
            "fees_paid": float(acct.fees_paid), "funding_paid": float(acct.funding_paid),
            "open_positions": [{"id": p.id, "symbol": p.symbol, "side": p.side.value, "entry": p.entry,
                                "qty": str(p.qty_open), "stop": p.stop, "tp1": p.tp1, "tp2": p.tp2,
                                "mark": prices.get(p.symbol), "phase": p.phase,
                                "opened_at": p.opened_at.isoformat()} for p in open_pos],
            "halt": halt_info,
        }


def as_before(acct: PaperAccount, t: datetime) -> PaperAccount:
    """The account as it was before the decision at `t`: the positions an earlier run of this same
    decision opened (at or after `t`, not touched since) taken out, their margin and opening fee
    given back. A read-only view for a rerun's panel and risk check (same facts as the first run);
    it is never stored. Unchanged when no such position exists."""
    later = [p for p in acct.open_positions() if p.opened_at >= t]
    if not later or any(p.qty_open != p.qty_initial or p.funding_paid for p in later):
        return acct
    view = PaperAccount.from_dict(acct.to_dict())
    for p in later:
        led = view._ledger.pop(p.id)
        view.balance += led.margin + led.fees
        view.fees_paid -= led.fees
        view.positions.pop(p.id)
        view._open.pop(p.id, None)
    return view
