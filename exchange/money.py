"""Decimal money helpers shared by the paper accounts (futures and spot)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

MONEY_Q = Decimal("0.00000001")
PRICE_Q = Decimal("0.00000001")
BPS = Decimal(10_000)


def D(x: Any) -> Decimal:
    """Decimal from Decimal, int, str, float or a numpy scalar (floats by their shortest repr)."""
    if isinstance(x, Decimal):
        return x
    if isinstance(x, int | str):
        return Decimal(str(x))
    return Decimal(repr(float(x)))


def _q(x: Decimal) -> Decimal:
    return x.quantize(MONEY_Q)
