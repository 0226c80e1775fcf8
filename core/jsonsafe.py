"""`json_safe`: any result (dataclasses' dicts, numpy/pandas scalars, datetimes, enums) as JSON-safe values."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd


def json_safe(obj: Any) -> Any:
    """Recursively convert to JSON-safe values: nan/inf -> None, datetimes -> ISO 8601, numpy scalars
    -> Python, enums -> their value, Decimal -> float, tuples/sets -> lists, timedeltas -> seconds."""
    from decimal import Decimal
    from enum import Enum

    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if obj is pd.NaT:
        return None
    if isinstance(obj, Enum):
        return json_safe(obj.value)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating, Decimal)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, pd.Timestamp):
        return None if pd.isna(obj) else obj.isoformat()
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, (timedelta, pd.Timedelta)):
        return pd.Timedelta(obj).total_seconds()
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset, np.ndarray)):
        items = sorted(obj, key=str) if isinstance(obj, (set, frozenset)) else obj
        return [json_safe(v) for v in items]
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    return str(obj)
