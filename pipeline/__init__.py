"""The cycle's stages as plain functions (no Prefect): the live flows call them through thin tasks, the backtest and the CLI call them directly."""
