"""Project error types. Callers react by type:

- TransientError: retry (network blips, 5xx, timeouts).
- RateLimited: retry after waiting (a TransientError).
- OrderRejected: never retry.
- ConfigError: stop with a clear message naming the setting.
- DataError: bad or missing market data (unknown symbol, as-of outside the data).
- LLMOutputError: that vote abstains.

A risk denial is a value (risk.RiskVerdict), never an exception.
"""

from __future__ import annotations


class QuorumError(Exception):
    """Base of every error Quorum raises on purpose; its message is one clear line."""


class ConfigError(QuorumError):
    pass


class DataError(QuorumError):
    pass


class TransientError(QuorumError):
    pass


class RateLimited(TransientError):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class ExchangeError(QuorumError):
    """A non-transient exchange failure (bad symbol, auth, not supported)."""


class OrderRejected(ExchangeError):
    pass


class StorageError(QuorumError):
    pass


class LLMOutputError(QuorumError):
    """A model answer that cannot be used; the vote abstains with `reason`.

    `raw` is the answer's text (for one repair attempt); `input_tokens`, `output_tokens` and
    `cost_usd` are what the unusable answer cost, so the caller can still charge it."""

    def __init__(self, message: str, reason: str = "invalid_output", *, raw: str = "",
                 input_tokens: int = 0, output_tokens: int = 0, cost_usd: float = 0.0):
        super().__init__(message)
        self.reason = reason
        self.raw = raw
        self.input_tokens = int(input_tokens)
        self.output_tokens = int(output_tokens)
        self.cost_usd = float(cost_usd)
