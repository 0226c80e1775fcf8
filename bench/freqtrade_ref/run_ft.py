"""Run `freqtrade backtesting` offline: binance's markets are not reachable here, so ccxt's
load_markets is given static USDM perpetual markets for the six pairs (everything else is freqtrade's
own code path). Prints freqtrade's output; wall time measured by the caller."""
import sys

import ccxt
import ccxt.async_support as ccxt_async

PAIRS = {"BTC": ("0.001", "0.1"), "ETH": ("0.001", "0.01"), "SOL": ("1", "0.01"), "XRP": ("0.1", "0.0001"),
         "DOGE": ("1", "0.00001"), "BNB": ("0.01", "0.01")}


def markets():
    out = {}
    for b, (amt, px) in PAIRS.items():
        sym = f"{b}/USDT:USDT"
        out[sym] = {
            "id": f"{b}USDT", "symbol": sym, "base": b, "quote": "USDT", "settle": "USDT", "baseId": b,
            "quoteId": "USDT", "settleId": "USDT", "type": "swap", "spot": False, "margin": False, "swap": True,
            "future": False, "option": False, "active": True, "contract": True, "linear": True, "inverse": False,
            "contractSize": 1.0, "expiry": None, "expiryDatetime": None, "strike": None, "optionType": None,
            "taker": 0.0005, "maker": 0.0002, "precision": {"amount": float(amt), "price": float(px)},
            "limits": {"amount": {"min": float(amt), "max": 1e9}, "price": {"min": float(px), "max": 1e9},
                       "cost": {"min": 5.0, "max": None}, "leverage": {"min": 1, "max": 20}},
            "info": {}, "created": None,
        }
    return out


async def _aload(self, reload=False, params=None):
    return self.set_markets(markets())


def _load(self, reload=False, params=None):
    return self.set_markets(markets())


ccxt_async.Exchange.load_markets = _aload
ccxt.Exchange.load_markets = _load

import atexit  # noqa: E402
import time  # noqa: E402

from freqtrade.optimize import backtesting as _bt  # noqa: E402
from freqtrade.strategy.interface import IStrategy  # noqa: E402

T0 = time.perf_counter()
C0 = time.process_time()
TIMES = {"load": 0.0, "indicators": 0.0, "loop": 0.0}
TRADES = []


def _timed(cls, name, key):
    orig = getattr(cls, name)

    def wrapper(self, *a, **kw):
        t = time.perf_counter()
        try:
            res = orig(self, *a, **kw)
        finally:
            TIMES[key] += time.perf_counter() - t
        if key == "loop" and isinstance(res, dict) and "results" in res:
            TRADES.append(len(res["results"]))
        return res
    setattr(cls, name, wrapper)


_timed(_bt.Backtesting, "load_bt_data", "load")
_timed(IStrategy, "advise_all_indicators", "indicators")
_timed(_bt.Backtesting, "backtest", "loop")


@atexit.register
def _report():
    print(f"FT_TIMING wall={time.perf_counter() - T0:.2f} cpu={time.process_time() - C0:.2f} "
          f"load={TIMES['load']:.2f} indicators={TIMES['indicators']:.2f} loop={TIMES['loop']:.2f} "
          f"trades={TRADES[0] if TRADES else 0}", flush=True)


from freqtrade.main import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
