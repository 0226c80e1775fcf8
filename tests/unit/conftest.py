"""Fixtures of the unit tests that replay the bundled history: the default settings and the replay source
(module-scoped, as each backtest test module builds its runs once)."""

from __future__ import annotations

import pytest

from core.settings import load_settings
from exchange.replay import ReplaySource


@pytest.fixture(scope="module")
def settings():
    return load_settings()


@pytest.fixture(scope="module")
def source(settings):
    return ReplaySource(settings.data_dir)
