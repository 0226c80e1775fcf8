"""The backtest: the bar-by-bar engine over the live functions, its report and its exports."""
