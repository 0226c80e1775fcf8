"""Prefect start-up defaults that work on small machines (import before prefect)."""

import os

DEFAULTS = {
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_UI_ENABLED": "false",
}


def apply() -> None:
    for k, v in DEFAULTS.items():
        os.environ.setdefault(k, v)
