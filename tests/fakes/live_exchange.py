"""FakeBybit on the wall clock: its bars run up to the current hour, like a live exchange."""

from __future__ import annotations

import time

from tests.fakes.exchange_server import HOUR, FakeBybit


class LiveFakeBybit(FakeBybit):
    """Every answer is as of now (the real time), so a cycle on `data_source: ccxt` sees live data."""

    def __init__(self, history_hours: int = 2000, **kw) -> None:  # type: ignore[no-untyped-def]
        now = int(time.time() * 1000)
        super().__init__(now, launch_ms=now - history_hours * HOUR, **kw)

    @property  # type: ignore[override]
    def now_ms(self) -> int:
        return int(time.time() * 1000)

    @now_ms.setter
    def now_ms(self, _value: int) -> None:  # the clock is the wall clock
        pass
