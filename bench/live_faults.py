"""Orders expected vs placed under every injected fault, per exchange and per write (the closing note's table).

    .venv/bin/python bench/live_faults.py

Runs the live broker (real ccxt) against the local Bybit v5 / Binance USDⓈ-M server for each fault on each
order write: the entry, its protective orders, a stop move (new stop + cancel of the old), the closing
order. Prints, per case, the orders Quorum meant to place (expected), those the exchange accepted (placed),
whether the database equals the exchange, and the time taken. Also a per-order latency figure without
faults (local server; measures the broker's own work, not an exchange).
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
import warnings
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

from exchange.broker import OpenRequest  # noqa: E402
from tests.fakes.exchange_private import FakePrivateExchange  # noqa: E402
from tests.fakes.live_setup import (  # noqa: E402
    DECISION,
    ENTRY_PATH,
    MARKET,
    PROTECT_PATH,
    assert_db_equals_exchange,
    broker_for,
    plan,
)

FAULTS = ("500", "429", "500-after", "timeout-after", "drop-after")


def codes(fx: FakePrivateExchange) -> dict[str, int]:
    out: dict[str, int] = {}
    for o in fx.orders_of(MARKET):
        c = o.client_id.split("-")[0][-2]
        out[c] = out.get(c, 0) + 1
    return out


def case(ex: str, where: str, fault: str, tmp: Path) -> tuple[str, str, bool, float]:
    t0 = time.perf_counter()
    with FakePrivateExchange(ex, late_s=1.5) as fx:
        b = broker_for(fx, tmp)
        expected = {"E": 1, "S": 1, "T": 1, "U": 1}
        if where == "entry":
            fx.fault(f"POST {ENTRY_PATH[ex]}", fault)
        elif where == "protective":
            if ex == "bybit":
                fx.fault("POST /v5/order/create", "pass")
            fx.fault(f"POST {PROTECT_PATH[ex]}", fault)
        pid = b.open_position(OpenRequest(plan(), DECISION)).position_id
        if where == "stop move":
            fx.watch_protection = True
            fx.fault(f"POST {PROTECT_PATH[ex]}", fault)
            fx.fault("POST /v5/order/cancel" if ex == "bybit" else "DELETE /fapi/v1/algoOrder", fault)
            b.move_stop(pid, Decimal("39500"), "breakeven")
            expected["S"] = 2
        if where == "close":
            fx.fault(f"POST {ENTRY_PATH[ex]}", fault)
            b.close_position(pid, "bench")
            expected["X"] = 1
        placed = codes(fx)
        try:
            assert_db_equals_exchange(fx, b)
            equal = fx.unprotected == []
        except AssertionError:
            equal = False
    fmt = lambda d: " ".join(f"{k}{v}" for k, v in sorted(d.items()))  # noqa: E731
    return fmt(expected), fmt(placed), equal and placed == expected, time.perf_counter() - t0


def main() -> None:
    print("E entry, S stop, T TP1, U TP2, X close; counts of orders the exchange accepted")
    print(f"{'exchange':12} {'write':11} {'fault':14} {'expected':16} {'placed':16} ok   seconds")
    with tempfile.TemporaryDirectory() as d:
        n = 0
        for ex in ("bybit", "binanceusdm"):
            for where in ("entry", "protective", "stop move", "close"):
                for fault in FAULTS:
                    n += 1
                    tmp = Path(d) / str(n)
                    tmp.mkdir()
                    exp, got, ok, secs = case(ex, where, fault, tmp)
                    print(f"{ex:12} {where:11} {fault:14} {exp:16} {got:16} {'yes' if ok else 'NO ':4} {secs:5.2f}")
        tmp = Path(d) / "lat"
        tmp.mkdir()
        with FakePrivateExchange("bybit") as fx:
            b = broker_for(fx, tmp)
            t0 = time.perf_counter()
            b.open_position(OpenRequest(plan(), DECISION))
            dt = time.perf_counter() - t0
            print(f"open_position (entry + 3 protective, journal on SQLite, local server): {dt * 1000:.0f} ms "
                  f"over {len(fx.requests)} HTTP requests")


if __name__ == "__main__":
    main()
