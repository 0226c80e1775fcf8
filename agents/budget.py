"""Per-cycle and per-day token budgets per panel member.

`TokenBudget(per_cycle, per_day, store=...)`:
- `allow(member_id, estimated_tokens, now=None)` is True when spending `estimated_tokens` more keeps
  the member within both its per-cycle and its per-(UTC)-day budget;
- `spend(member_id, tokens, now=None)` records the tokens actually used (input + output);
- `new_cycle()` resets the per-cycle counters (or build one TokenBudget per cycle over a shared store).
A limit of None means unlimited; 0 means no tokens at all. Day totals live in a `UsageStore`
(`InMemoryUsageStore` here; `store.llm_cache.SqlTokenUsageStore` is the database record, with
`CachedTokenUsageStore` putting Redis in front of it as a cache), so a restart does not reset the day.
When the day's total cannot be read the member is stopped (fail closed), never assumed to have spent
nothing. A refusal is logged once per member per cycle, as one line.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, date, datetime
from typing import Protocol

log = logging.getLogger(__name__)


class UsageStore(Protocol):
    def day_total(self, member_id: str, day: date) -> int: ...

    def add(self, member_id: str, day: date, tokens: int) -> int: ...


class InMemoryUsageStore:
    def __init__(self) -> None:
        self._data: dict[tuple[str, date], int] = {}
        self._lock = threading.Lock()

    def day_total(self, member_id: str, day: date) -> int:
        with self._lock:
            return self._data.get((member_id, day), 0)

    def add(self, member_id: str, day: date, tokens: int) -> int:
        with self._lock:
            total = self._data.get((member_id, day), 0) + int(tokens)
            self._data[(member_id, day)] = total
            return total


def _day(now: datetime | None) -> date:
    now = now or datetime.now(UTC)
    if now.tzinfo is not None:
        now = now.astimezone(UTC)
    return now.date()


class TokenBudget:
    def __init__(self, per_cycle: int | None, per_day: int | None, store: UsageStore | None = None):
        self.per_cycle = per_cycle
        self.per_day = per_day
        self.store: UsageStore = store if store is not None else InMemoryUsageStore()
        self._cycle: dict[str, int] = {}
        self._lock = threading.Lock()
        self._logged: set[str] = set()

    def new_cycle(self) -> None:
        with self._lock:
            self._cycle.clear()
            self._logged.clear()

    def cycle_spent(self, member_id: str) -> int:
        with self._lock:
            return self._cycle.get(member_id, 0)

    def day_spent(self, member_id: str, now: datetime | None = None) -> int:
        return self.store.day_total(member_id, _day(now))

    def refusal(self, member_id: str, estimated_tokens: int, now: datetime | None = None) -> str | None:
        """Why `estimated_tokens` more would break a budget, or None when allowed."""
        est = max(0, int(estimated_tokens))
        cycle = self.cycle_spent(member_id)
        if self.per_cycle is not None and cycle + est > self.per_cycle:
            return (f"token budget: {member_id} stopped for this cycle: ~{est:,} tokens needed, "
                    f"{cycle:,} of {self.per_cycle:,} per cycle already spent")
        if self.per_day is not None:
            day = _day(now)
            try:
                spent = self.store.day_total(member_id, day)
            except Exception as exc:  # noqa: BLE001 - an unreadable record stops the member: fail closed
                return (f"token budget: {member_id} stopped: the day's spend cannot be read "
                        f"({str(exc)[:120] or type(exc).__name__})")
            if spent + est > self.per_day:
                return (f"token budget: {member_id} stopped for {day.isoformat()}: ~{est:,} tokens needed, "
                        f"{spent:,} of {self.per_day:,} per day already spent")
        return None

    def allow(self, member_id: str, estimated_tokens: int, now: datetime | None = None) -> bool:
        why = self.refusal(member_id, estimated_tokens, now)
        if why is None:
            return True
        with self._lock:
            first = member_id not in self._logged
            self._logged.add(member_id)
        if first:
            log.warning(why)
        return False

    def spend(self, member_id: str, tokens: int, now: datetime | None = None) -> None:
        tokens = max(0, int(tokens))
        if tokens == 0:
            return
        with self._lock:
            self._cycle[member_id] = self._cycle.get(member_id, 0) + tokens
        try:
            self.store.add(member_id, _day(now), tokens)
        except Exception as exc:  # noqa: BLE001 - recording the spend never breaks a decision
            log.warning("token budget: %s's spend of %d tokens not recorded (%s)", member_id, tokens,
                        str(exc)[:120] or type(exc).__name__)


def estimate_tokens(text_chars: int, n_candidates: int) -> int:
    """A deliberately generous estimate: ~3.5 characters per input token, ~150 output tokens per
    candidate plus 300 of overhead (reasoning models spend more; the actual spend is recorded)."""
    return int(text_chars / 3.5) + 150 * max(1, n_candidates) + 300
