"""Translate ccxt exceptions into Quorum's error types where they happen, and retry reads.

Callers react by type (core/errors.py): TransientError and RateLimited are retried, OrderRejected
never is, ConfigError stops with a message saying how to fix it, DataError names the bad symbol.

    with translate_ccxt("bybit", symbol="BTC/USDT:USDT"):
        client.fetch_ticker("BTC/USDT:USDT")

    rows = retry_reads(lambda: client.fetch_ohlcv(...), attempts=3)   # reads only

Order creation must never go through `retry_reads`: a timeout after the exchange accepted an
order would place it twice.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import ccxt

from core.errors import (
    ConfigError,
    DataError,
    ExchangeError,
    OrderRejected,
    QuorumError,
    RateLimited,
    TransientError,
)

log = logging.getLogger(__name__)

_MAX_DETAIL = 200


def _detail(exc: BaseException) -> str:
    """The ccxt message, shortened to one line (ccxt puts the exchange id and the raw body in it)."""
    text = " ".join(str(exc).split())
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


def _retry_after(headers: Mapping[str, Any] | None) -> float | None:
    if not headers:
        return None
    for key, value in headers.items():
        if str(key).lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                return None
    return None


def translate(
    exc: BaseException,
    exchange_id: str = "exchange",
    *,
    symbol: str | None = None,
    headers: Mapping[str, Any] | None = None,
) -> BaseException:
    """Map one ccxt exception to the project's type; anything else is returned unchanged.

    The message is one line. Authentication failures never echo the exchange's text (it can carry
    the key); they say how to fix the configuration instead.
    """
    if isinstance(exc, QuorumError) or not isinstance(exc, ccxt.BaseError):
        return exc
    name = type(exc).__name__
    what = f" for {symbol}" if symbol else ""
    # RateLimitExceeded is a NetworkError (and was a DDoSProtection in older ccxt): test it first.
    if isinstance(exc, ccxt.RateLimitExceeded):
        wait = _retry_after(headers)
        hint = f"; retry after {wait:g} s" if wait is not None else ""
        return RateLimited(f"{exchange_id}: rate limit exceeded{what}{hint} ({_detail(exc)})", retry_after=wait)
    if isinstance(exc, ccxt.NetworkError):  # RequestTimeout, ExchangeNotAvailable, DDoSProtection, ...
        return TransientError(f"{exchange_id}: {name}{what}: {_detail(exc)}")
    if isinstance(exc, ccxt.BadSymbol):
        sym = symbol or "the requested symbol"
        return DataError(f"{exchange_id}: unknown or unsupported symbol {sym} ({_detail(exc)})")
    if isinstance(exc, ccxt.AuthenticationError):  # PermissionDenied, AccountNotEnabled, ...
        return ConfigError(
            f"{exchange_id}: the exchange refused the API credentials ({name}); check the API key and "
            "secret in the environment, that the key has read/trade permission for this account type, "
            "and its IP whitelist"
        )
    if isinstance(exc, ccxt.InsufficientFunds | ccxt.InvalidOrder):
        return OrderRejected(f"{exchange_id}: order rejected{what} ({name}): {_detail(exc)}")
    if isinstance(exc, ccxt.NotSupported):
        return ExchangeError(f"{exchange_id}: not supported{what}: {_detail(exc)}")
    if isinstance(exc, ccxt.OperationFailed):  # other transient-ish failures ccxt groups here
        return TransientError(f"{exchange_id}: {name}{what}: {_detail(exc)}")
    return ExchangeError(f"{exchange_id}: {name}{what}: {_detail(exc)}")


@contextmanager
def translate_ccxt(exchange_id: str = "exchange", *, symbol: str | None = None, client: Any = None) -> Iterator[None]:
    """Re-raise ccxt exceptions raised inside the block as Quorum errors (chained to the original).

    `client` (the ccxt exchange) lets a RateLimited carry the server's Retry-After header.
    """
    try:
        yield
    except ccxt.BaseError as exc:
        headers = getattr(client, "last_response_headers", None) if client is not None else None
        raise translate(exc, exchange_id, symbol=symbol, headers=headers) from exc


def retry_reads[T](
    fn: Callable[[], T],
    attempts: int = 3,
    base_delay: float = 0.5,
    *,
    max_delay: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
    what: str = "read",
) -> T:
    """Call `fn()`; on TransientError (including RateLimited) wait and try again, up to `attempts`.

    Only for reads. Backoff doubles from `base_delay` with a little jitter, capped at `max_delay`;
    a RateLimited with `retry_after` waits at least that long. Raw ccxt errors raised by `fn` are
    translated first, so a BadSymbol or AuthenticationError is never retried. The last error is
    re-raised unchanged.
    """
    if attempts < 1:
        raise ValueError("attempts must be >= 1")
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except ccxt.BaseError as exc:
            err = translate(exc)
            if not isinstance(err, TransientError) or attempt == attempts:
                raise err from exc
        except TransientError as exc:
            err = exc
            if attempt == attempts:
                raise
        delay = min(max_delay, base_delay * 2 ** (attempt - 1)) * (1 + random.uniform(0, 0.1))
        retry_after = getattr(err, "retry_after", None)
        if retry_after is not None:
            delay = max(delay, min(float(retry_after), max_delay))
        log.info("%s failed (%s); retry %d/%d in %.2f s", what, err, attempt, attempts - 1, delay)
        sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def reads_retried[T](
    attempts: int = 3, base_delay: float = 0.5, *, max_delay: float = 30.0
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorator form of `retry_reads` for read functions. Never decorate order creation."""

    def deco(func: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> T:
            return retry_reads(lambda: func(*args, **kwargs), attempts, base_delay,
                               max_delay=max_delay, what=func.__name__)

        return wrapper

    return deco
