"""A freqtrade strategy doing comparable work to Quorum's math mode on the same bars (RSI, MACD,
MA20/50/200, ATR on 1h; long/short on trend + momentum; 3% stop, ROI ladder), for a speed reference."""
import numpy as np
import pandas as pd
from freqtrade.strategy import IStrategy


class QuorumLike(IStrategy):
    INTERFACE_VERSION = 3
    timeframe = "1h"
    can_short = True
    stoploss = -0.03
    minimal_roi = {"0": 0.045, "48": 0.01}  # TP ~1.5R on a 3% stop, then a stale-style exit
    trailing_stop = False
    use_exit_signal = False
    startup_candle_count = 200
    process_only_new_candles = True

    def leverage(self, pair, current_time, current_rate, proposed_leverage, max_leverage, entry_tag, side, **kw):
        return 1.0

    def populate_indicators(self, df: pd.DataFrame, metadata: dict) -> pd.DataFrame:
        c = df["close"]
        d = c.diff()
        up, dn = d.clip(lower=0), -d.clip(upper=0)
        rs = up.ewm(alpha=1 / 14, adjust=False).mean() / dn.ewm(alpha=1 / 14, adjust=False).mean()
        df["rsi"] = 100 - 100 / (1 + rs)
        macd = c.ewm(span=12, adjust=False).mean() - c.ewm(span=26, adjust=False).mean()
        df["hist"] = macd - macd.ewm(span=9, adjust=False).mean()
        df["ma20"], df["ma50"], df["ma200"] = c.rolling(20).mean(), c.rolling(50).mean(), c.rolling(200).mean()
        tr = np.maximum(df["high"] - df["low"], np.maximum((df["high"] - c.shift()).abs(), (df["low"] - c.shift()).abs()))
        df["atr"] = tr.ewm(alpha=1 / 14, adjust=False).mean()
        return df

    def populate_entry_trend(self, df: pd.DataFrame, metadata: dict) -> pd.DataFrame:
        up = (df["close"] > df["ma50"]) & (df["ma20"] > df["ma50"]) & (df["ma50"] > df["ma200"])
        dn = (df["close"] < df["ma50"]) & (df["ma20"] < df["ma50"]) & (df["ma50"] < df["ma200"])
        df.loc[up & (df["rsi"] > 76) & (df["hist"] > 0), "enter_long"] = 1
        df.loc[dn & (df["rsi"] < 24) & (df["hist"] < 0), "enter_short"] = 1
        return df

    def populate_exit_trend(self, df: pd.DataFrame, metadata: dict) -> pd.DataFrame:
        df.loc[(df["rsi"] < 45) & (df["hist"] < 0), "exit_long"] = 1
        df.loc[(df["rsi"] > 55) & (df["hist"] > 0), "exit_short"] = 1
        return df
